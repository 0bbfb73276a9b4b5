"""``STATUS <topic> <id|offset>``: where one message is, in each group of its topic.

Nothing here is kept per message for lookups: the answer is read from what the
groups already hold (their cursor, what is pending, the members' rows) and, for
a message a group has finished, from the dead-letter topic, read from the
letters written since the message was published. It costs a few reads of the
logs through the store, and nothing on the delivery paths.

A group's state for the message:

- ``waiting``: not delivered yet, or waiting for its retry, its delay or a member;
- ``inflight``: held by a member (its address), with the attempt and any progress;
- ``dead``: dead-lettered by this group (the letter's reason, error and dlq offset);
- ``done``: finished without a dead letter: acked, or expired (``ttl=``), or passed
  over by a ``SEEK`` (the group keeps no per-message history to tell these apart);
- ``before_start``: the group was created after the message, and never gets it;
- ``filtered``: the message does not match the group's header filter (``SUB ...
  filter=``), so the group passes over it without a delivery. Read from the filter
  and the record's headers: a filter is the group's for life.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import orjson

from linemq.broker.delivery.dead_letters import DeadLetters
from linemq.broker.delivery.pending import Phase
from linemq.broker.delivery.progress import ProgressBoard
from linemq.broker.delivery.router import Router
from linemq.broker.protocol.message_options import PRIORITY_NAMES
from linemq.broker.storage.log_store import LogStore
from linemq.broker.storage.records import Record

if TYPE_CHECKING:
    from linemq.broker.delivery.clients import ClientState
    from linemq.broker.delivery.group import ConsumerGroup

ID_TIME: Final = re.compile(r"msg_(\d{1,15})_[0-9a-f]{8}")
ID_SCAN: Final = 1000
"""Records read at a time while looking for an id among those published in its millisecond."""
ID_SLACK: Final = 1.0
"""Seconds past an id's own time that its record may carry (ids and ts come from one clock read)."""
DLQ_SCAN: Final = 1000


class NotThere(Exception):
    """The topic or the message is not there; ``reason`` is the ERR text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Place:
    """One group's state for the message, and the ``key=value`` fields that go with it."""

    group: str
    state: str
    fields: dict[str, str] = field(default_factory=dict)


async def message_status(
    store: LogStore,
    router: Router,
    dead_letters: DeadLetters,
    topic: str,
    offset: int | None,
    id: str | None,
) -> tuple[Record, dict[str, str], list[Place]]:
    """The message, what its ``MESSAGE`` line says, and its place in each group (sorted);
    ``NotThere`` if the topic or the message is not there. Field values are raw text."""
    log = store.get(topic)
    if log is None:
        raise NotThere(f"no topic {topic}")
    cached = log.read_cached(offset, 1) if offset is not None else None
    if cached and cached[0].offset == offset:
        record: Record | None = cached[0]
    else:
        record = await find_record(store, topic, offset, id)
    if record is None:
        what = id if id is not None else str(offset)
        gone = await is_deleted(store, topic, offset, id)
        raise NotThere(f"message {what} not found in {topic}" + (" (deleted)" * gone))
    now = time.time()
    groups = sorted(router.groups.get(topic, {}).items())
    places = [place_in(group, record.offset, router.progress, now) for _, group in groups]
    for place, (_, group) in zip(places, groups, strict=True):
        if place.state in ("waiting", "done") and place.fields.get("attempts", "0") == "0":
            _mark_filtered(place, group, record)
    dlq = store.get(topic + ".dlq")
    if dlq is not None and any(p.state == "done" for p in places):
        letters = await dead_letters_of(store, record, topic)
        await dead_letters.load(topic)
        removed, kept = dead_letters.removed(topic), dead_letters.first_kept(topic)
        for place in places:
            letter = letters.get(place.group)
            if place.state != "done" or letter is None:
                continue
            dlq_offset = int(letter["dlq_offset"])
            if dlq_offset not in removed and dlq_offset >= kept:
                place.state, place.fields = "dead", letter
    return record, message_fields(record, now), places


async def find_record(
    store: LogStore, topic: str, offset: int | None, id: str | None
) -> Record | None:
    """The stored record of ``topic`` at ``offset``, or with ``id``."""
    log = store.get(topic)
    if log is None:
        return None
    if offset is not None:
        if not log.first_offset <= offset <= log.written_offset:
            return None
        records = await store.read(topic, offset, 1)
        return records[0] if records and records[0].offset == offset else None
    assert id is not None
    match = ID_TIME.fullmatch(id)
    if match is None:
        return None
    at = int(match.group(1)) / 1000
    start = await store.offset_at(topic, at - 0.001)  # a ts is at or after its id's millisecond
    while start <= log.written_offset:
        records = await store.read(topic, start, ID_SCAN)
        if not records:
            return None
        for record in records:
            if record.id == id:
                return record
            if record.ts > at + ID_SLACK:
                return None
        start = records[-1].offset + 1
    return None


async def is_deleted(store: LogStore, topic: str, offset: int | None, id: str | None) -> bool:
    """Whether a message that was not found was there once: below the oldest kept offset,
    or (by id) published before the oldest kept record."""
    log = store.get(topic)
    if log is None:
        return False
    if offset is not None:
        return 0 < offset < log.first_offset
    match = ID_TIME.fullmatch(id or "")
    if match is None or log.first_offset == 1 or log.first_offset > log.written_offset:
        return False
    oldest = await store.read(topic, log.first_offset, 1)
    return bool(oldest) and int(match.group(1)) / 1000 < oldest[0].ts - 0.001


def place_in(group: ConsumerGroup, offset: int, progress: ProgressBoard, now: float) -> Place:
    """Where ``offset`` is in ``group`` now (``done`` may still turn out ``dead``)."""
    state = group.state
    p = state.pending.get(offset)
    if p is not None and p.phase is Phase.WAITING:
        place = Place(group.name, "waiting", {"attempts": str(p.attempts)})
        due = p.retry_at
        if not p.attempts and p.meta is not None:
            due = max(due, p.meta.deliver_at)
        if due > now:
            place.fields["due_ts"] = repr(due)
        if p.reason:
            place.fields["reason"] = p.reason
        if p.error:
            place.fields["error"] = p.error
        return place
    for member in group.members:
        held = member.holdings
        row = held.first
        while True:
            try:
                row = held.offsets.index(offset, row)
            except ValueError:
                break
            if held.held[row]:
                # A row is a first delivery unless the lifecycle keeps more (``history``).
                known = state.history.get(offset)
                attempts = known.attempts if known is not None else 1
                place = Place(group.name, "inflight")
                _holder_fields(place, member.client, attempts, held.sent_at(row))
                report = progress.get(group, offset, attempts)
                if report is not None:
                    if report.percent is not None:
                        place.fields["progress"] = _number(report.percent)
                    if report.note is not None:
                        place.fields["note"] = report.note
                    place.fields["progress_ts"] = repr(report.ts)
                return place
            row += 1
    if p is not None:  # in flight per a replay, not handed to a member yet
        return Place(group.name, "waiting", {"attempts": str(p.attempts)})
    if offset >= state.cursor:
        return Place(group.name, "waiting", {"attempts": "0"})
    if offset < state.start:
        return Place(group.name, "before_start")
    return Place(group.name, "done")


def _mark_filtered(place: Place, group: ConsumerGroup, record: Record) -> None:
    """A message the group never delivered that its filter rejects is ``filtered``."""
    header_filter, meta = group.state.filter, record.meta
    if header_filter is None or header_filter.matches(meta.headers if meta else None):
        return
    place.state, place.fields = "filtered", {}


def _holder_fields(place: Place, client: ClientState, attempt: int, sent: float) -> None:
    place.fields["attempt"] = str(attempt)
    place.fields["member"] = member_name(client)
    place.fields["delivered_ts"] = repr(sent)


def member_name(client: ClientState) -> str:
    """The member's address as ``host:port`` (``[v6]:port``)."""
    peer = getattr(client.sender, "peer", None)
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = str(peer[0]), peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return "-"


async def dead_letters_of(store: LogStore, record: Record, topic: str) -> dict[str, dict[str, str]]:
    """The letters ``record`` of ``topic`` got, by group: read from the letters written since
    it was published."""
    found: dict[str, dict[str, str]] = {}
    name = topic + ".dlq"
    dlq = store.get(name)
    if dlq is None:
        return found
    start = await store.offset_at(name, record.ts)
    needle = record.id
    while start <= dlq.written_offset:
        records = await store.read(name, start, DLQ_SCAN)
        if not records:
            break
        for letter_record in records:
            if needle not in letter_record.msg:
                continue
            try:
                letter = orjson.loads(letter_record.msg)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(letter, dict) or letter.get("id") != needle:
                continue
            if letter.get("offset") != record.offset or letter.get("topic") != topic:
                continue
            fields = {"dlq_offset": str(letter_record.offset)}
            if isinstance(letter.get("attempts"), int):
                fields["attempts"] = str(letter["attempts"])
            if isinstance(letter.get("reason"), str):
                fields["reason"] = letter["reason"]
            if isinstance(letter.get("error"), str):
                fields["error"] = letter["error"]
            found[str(letter.get("group"))] = fields
        start = records[-1].offset + 1
    return found


def message_fields(record: Record, now: float | None = None) -> dict[str, str]:
    """What the ``MESSAGE`` line says about the record itself."""
    fields = {"ts": repr(record.ts)}
    meta = record.meta
    if meta is None:
        return fields
    if meta.key is not None:
        fields["key"] = meta.key
    if meta.priority != 1:
        fields["priority"] = PRIORITY_NAMES.get(meta.priority, str(meta.priority))
    if meta.deliver_at:
        fields["deliver_at"] = repr(meta.deliver_at)
    if meta.expires_at:
        fields["expires_at"] = repr(meta.expires_at)
        if meta.expires_at <= (time.time() if now is None else now):
            fields["expired"] = "1"
    if meta.max_retries is not None:
        fields["max_retries"] = str(meta.max_retries)
    return fields


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)
