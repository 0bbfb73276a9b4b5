"""Dead letters: listing them with their failure metadata, and replaying them.

A dead letter is an ordinary record of ``<topic>.dlq`` whose text is a JSON
object. A replay publishes the original text to ``<topic>`` again (new id, new
offset) and keeps a record of it in the topic's replay log (``StateStore.replay_log``),
so a listing shows which letters were replayed and ``REPLAY <topic> ALL`` never
replays one twice.

A letter is checked again before it is republished, as a ``PUB``/``PUT`` of it
would be: a letter that fails (stored before the broker refused writes to
``.dlq`` topics, or damaged) is skipped and counted, never sent as it is.

A replay and its journal line are two writes, so a ``kill -9`` between them
would make the letter look never replayed. Each republished record therefore
carries the letter's offset as its publisher id (``dlq-replay:<offset>``), and
before its first replay a run journals a ``mark``: the topic's next offset. On
the first use after a start, the records from the last mark on are read back and
every letter they carry counts as replayed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import orjson
import structlog

from linemq.broker.delivery.lifecycle import Pending
from linemq.broker.protocol.message_options import (
    PRIORITY_NAMES,
    is_valid_header_name,
    is_valid_token,
)
from linemq.broker.storage.log_store import LogStore
from linemq.broker.storage.records import Meta, Record, StorageError
from linemq.broker.storage.state_store import EventLog, StateStore
from linemq.broker.storage.ticket import Appended

log = structlog.get_logger(__name__)

READ_CHUNK: Final = 1000
REPLAY_PID: Final = "dlq-replay:"

log = structlog.get_logger(__name__)


class DeadLetterNotFound(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a replay did: letters republished, and letters skipped because they fail the
    checks a publish of them would get (``replay_refusal``)."""

    replayed: int
    skipped: int = 0


class DeadLetters:
    def __init__(
        self,
        store: LogStore,
        state: StateStore,
        publish: Callable[[str, str, Meta | None], Appended],
        max_letters: int = 0,
    ) -> None:
        self.store = store
        self.state = state
        self.publish = publish
        self.max_letters = max_letters  # --dlq-max-letters: the newest kept (0: all)
        self._replays: dict[str, tuple[EventLog, dict[int, dict[str, Any]]]] = {}
        self._removed: dict[str, set[int]] = {}  # letters removed one by one (PURGE ... <id>)

    async def _replay_log(self, topic: str) -> tuple[EventLog, dict[int, dict[str, Any]]]:
        entry = self._replays.get(topic)
        if entry is None:
            journal = self.state.replay_log(topic)
            done: dict[int, dict[str, Any]] = {}
            removed = self._removed.setdefault(topic, set())
            entries = journal.replay(is_replay_entry)
            mark = None
            for e in entries:
                if "mark" in e:
                    mark = cast(int, e["mark"])
                elif "del" in e:
                    removed.add(cast(int, e["del"]))
                else:
                    done[cast(int, e["dlq"])] = e
            if journal.needs_rewrite:  # damage (reported) or a journal of an earlier format
                journal.rewrite_now(entries)
            if mark is not None:
                for e in await self._unjournaled(topic, mark, done):
                    journal.append(e)
                    done[cast(int, e["dlq"])] = e
            entry = self._replays.get(topic) or (journal, done)
            self._replays[topic] = entry
        return entry

    async def _unjournaled(
        self, topic: str, mark: int, done: dict[int, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Replays from ``mark`` on whose journal line a crash lost (read from the topic)."""
        found: list[dict[str, Any]] = []
        offset = mark
        while self.store.get(topic) is not None:
            records = await self.store.read(topic, offset, READ_CHUNK)
            if not records:
                break
            for r in records:
                pid = r.meta.pid if r.meta is not None else None
                if pid is None or not pid.startswith(REPLAY_PID):
                    continue
                dlq = int(pid[len(REPLAY_PID) :])
                if dlq not in done:
                    found.append({"dlq": dlq, "offset": r.offset, "id": r.id, "ts": r.ts})
            offset = records[-1].offset + 1
        if found:
            log.warning("replays_recovered", topic=topic, letters=len(found))
        return found

    def forget(self, topic: str) -> None:
        """``<topic>.dlq`` was deleted: its replay records go too (their letters are gone,
        and the offsets they name are never used again)."""
        entry = self._replays.pop(topic, None)
        self._removed.pop(topic, None)
        if entry is not None:  # the log in use, even if a concurrent first use opened another
            entry[0].delete()
        self.state.delete_replay(topic)

    def first_kept(self, topic: str) -> int:
        """The oldest dlq offset ``--dlq-max-letters`` keeps (1 without a limit)."""
        dlq = self.store.get(topic + ".dlq")
        if dlq is None or not self.max_letters:
            return 1
        return max(1, dlq.last_offset - self.max_letters + 1)

    def removed(self, topic: str) -> frozenset[int]:
        """Dlq offsets of letters removed one by one (as far as ``load`` read them)."""
        return frozenset(self._removed.get(topic, ()))

    async def remove(self, topic: str, letter: str) -> int:
        """``PURGE <topic>.dlq <letter>``: remove the letter at that dlq offset, with that
        dlq id, or every letter of the message with that original id; returns how many.

        The removal is a line of the replay journal: the letter is never listed,
        replayed or shown by ``STATUS`` again. Its record stays in ``<topic>.dlq`` (as
        every record of a log does) until its segment is deleted (``PURGE``, ``CLEAN``,
        retention).
        """
        dlq = self.store.get(topic + ".dlq")
        journal, _ = await self._replay_log(topic)
        removed = self._removed.setdefault(topic, set())
        floor = self.first_kept(topic)
        found: list[int] = []
        offset = floor
        by_offset = letter.isascii() and letter.isdigit()
        if by_offset:
            offset = max(int(letter), floor)
        while dlq is not None:
            records = await self.store.read(topic + ".dlq", offset, READ_CHUNK)
            if not records:
                break
            for record in records:
                if record.offset in removed:
                    continue
                if by_offset:
                    if record.offset == int(letter):
                        found.append(record.offset)
                    break
                if letter in (record.id, _letter(record).get("id")):
                    found.append(record.offset)
            if by_offset:
                break
            offset = records[-1].offset + 1
        if not found:
            raise DeadLetterNotFound(f"dead letter {letter} not found in {topic}.dlq")
        for o in found:
            journal.append({"del": o})
            removed.add(o)
        return len(found)

    async def load(self, topic: str) -> None:
        """Read ``topic``'s replay journal (and recover what a crash kept out of it) before
        ``describe``: the first use after a start may read the topic."""
        await self._replay_log(topic)

    def describe(self, topic: str, records: list[Record]) -> list[tuple[int, str]]:
        """Records of ``<topic>.dlq`` as (dlq offset, JSON text) pairs, with their replays
        as far as ``load`` read them."""
        entry = self._replays.get(topic)
        replayed = entry[1] if entry is not None else {}
        removed = self._removed.get(topic, ())
        floor = self.first_kept(topic)
        out = []
        for record in records:
            if record.offset in removed or record.offset < floor:
                continue
            letter = _letter(record)
            done = replayed.get(record.offset)
            letter["replayed"] = (
                None if done is None else {k: done[k] for k in ("offset", "id", "ts")}
            )
            letter.setdefault("dlq_id", record.id)
            out.append((record.offset, orjson.dumps(letter).decode()))
        return out

    async def list(self, topic: str, n: int) -> list[tuple[int, str]]:
        """The last ``n`` dead letters of ``topic`` as (dlq offset, JSON text) pairs."""
        dlq = self.store.get(topic + ".dlq")
        if dlq is None or n <= 0:
            return []
        records = await self.store.read_last(topic + ".dlq", n)
        await self.load(topic)
        return self.describe(topic, records)

    async def replay(self, topic: str, id: str | None) -> Replayed:
        """Republish the letter named by ``id`` (original or dlq id), or all not yet replayed."""
        dlq = self.store.get(topic + ".dlq")
        journal, replayed = await self._replay_log(topic)
        removed = self._removed.get(topic, set())
        count = skipped = 0
        offset = self.first_kept(topic)
        marked = False
        sent: Sent = []
        while dlq is not None:
            records = await self.store.read(topic + ".dlq", offset, READ_CHUNK)
            if not records:
                break
            for record in records:
                if record.offset in removed:
                    continue
                letter = _letter(record)
                if id is None:
                    wanted = record.offset not in replayed
                else:
                    wanted = id in (record.id, letter.get("id"))
                if not wanted:
                    continue
                original = await self._original(topic, letter)
                if id is None and record.offset in replayed:
                    continue  # replayed by another REPLAY meanwhile
                if original is None and letter.get("truncated"):
                    continue  # its message is gone from the topic (logged)
                text, meta = original or (letter.get("msg"), None)
                refusal = replay_refusal(text, meta)
                if refusal is not None or not isinstance(text, str):
                    log.warning(
                        "dead_letter_not_replayed",
                        topic=topic,
                        dlq_offset=record.offset,
                        reason=refusal,
                    )
                    skipped += 1
                    continue
                if not marked:  # written (to the OS) before any record of this run
                    target = self.store.get(topic)
                    journal.append({"mark": 1 if target is None else target.written_offset + 1})
                    journal.write()
                    marked = True
                meta = _with_pid(meta, f"{REPLAY_PID}{record.offset}")
                new = self.publish(topic, text, meta)
                first = new.records[0]
                entry = {"dlq": record.offset, "offset": None, "id": first.id, "ts": first.ts}
                replayed[record.offset] = entry  # no other run replays it meanwhile
                sent.append((entry, new))
                count += 1
            await _journal_replays(journal, replayed, sent)
            offset = records[-1].offset + 1
        if id is not None and count == 0 and skipped == 0:
            raise DeadLetterNotFound(f"dead letter {id} not found in {topic}.dlq")
        return Replayed(count, skipped)

    async def _original(self, topic: str, letter: dict[str, Any]) -> tuple[str, Meta | None] | None:
        """The text and metadata to republish; a truncated letter's come from the topic."""
        text = letter.get("msg")
        if not letter.get("truncated"):
            return (text, _original_meta(letter)) if isinstance(text, str) else None
        offset = letter.get("offset")
        records = await self.store.read(topic, offset, 1) if type(offset) is int else []
        if not records or records[0].offset != offset or records[0].id != letter.get("id"):
            log.warning("replay_message_gone", topic=topic, id=letter.get("id"), offset=offset)
            return None
        record = records[0]
        meta = record.meta
        if meta is not None:
            meta = Meta(data=meta.data, headers=meta.headers, key=meta.key, priority=meta.priority)
        return record.msg, meta


def _with_pid(meta: Meta | None, pid: str) -> Meta:
    if meta is None:
        return Meta(pid=pid)
    return Meta(data=meta.data, headers=meta.headers, key=meta.key, priority=meta.priority, pid=pid)


def is_replay_entry(entry: dict[str, object]) -> bool:
    """A line of a replay journal: a replayed letter, a run's mark, or a removed letter."""
    if "mark" in entry:
        return type(entry["mark"]) is int
    if "del" in entry:
        return type(entry["del"]) is int
    return all(type(entry.get(k)) is int for k in ("dlq", "offset")) and "id" in entry


def _letter(record: Record) -> dict[str, Any]:
    try:
        letter = orjson.loads(record.msg)
    except orjson.JSONDecodeError:
        letter = None
    if not isinstance(letter, dict):
        # Someone published by hand to the .dlq topic: show it as it is.
        letter = {"msg": record.msg}
    return letter


def encode_letter(
    topic: str, group: str, record: Record, p: Pending, reason: str, max_bytes: int
) -> str:
    """The letter's JSON text, within ``max_bytes``.

    A letter too large to store whole (the message near --max-message-bytes, plus
    what is said about it) keeps everything but the message's text and payload,
    and says ``"truncated": true`` with the text's size: the message itself stays
    at ``offset`` in ``topic``, where a replay reads it back.
    """
    letter = build_letter(topic, group, record, p, reason)
    text = orjson.dumps(letter).decode()
    if len(text.encode()) <= max_bytes:
        return text
    letter.pop("original", None)
    letter["msg"] = ""
    letter["truncated"] = True
    letter["msg_bytes"] = len(record.payload)
    return orjson.dumps(letter).decode()


def build_letter(
    topic: str, group: str, record: Record, p: Pending, reason: str
) -> dict[str, object]:
    """The JSON text of a dead letter: the message and why and how it failed."""
    letter: dict[str, object] = {
        "topic": topic,
        "id": record.id,
        "offset": record.offset,
        "ts": record.ts,
        "msg": record.msg,
        "group": group,
        "attempts": p.attempts,
        "reason": reason,
        "first_delivery_ts": p.first_ts or None,
        "last_delivery_ts": p.last_ts or None,
        "dead_ts": time.time(),
    }
    if p.error:  # the consumer's text for the last failure (NACK reason=, TERM)
        letter["error"] = p.error
    if record.meta is not None:
        # What a replay needs to publish the message exactly as it was (v2 publishes).
        letter["original"] = record.meta.encode()
    return letter


def _original_meta(letter: dict[str, Any]) -> Meta | None:
    """The v2 metadata a replay republishes with (exact payload, headers, key, priority).

    Delays, expiry and the publisher id belonged to the first publish and are not
    carried over: a replay is a deliberate new publish.
    """
    original = letter.get("original")
    if not isinstance(original, dict):
        return None
    meta = Meta.decode({"id": "", "offset": 0, "ts": 0, "msg": "", **original})
    if meta is None:
        return None
    return Meta(data=meta.data, headers=meta.headers, key=meta.key, priority=meta.priority)


def replay_refusal(text: object, meta: Meta | None) -> str | None:
    """Why a letter cannot be republished as it is, or None: the text every client is
    shown must be one line (a line break in it would forge a frame for v1 readers), and
    v2 metadata must pass the ``PUT`` rules that ``MSG2`` frames rely on."""
    if not isinstance(text, str):
        return "message is not text"
    if "\n" in text or "\r" in text:  # (a NUL is harmless: v1 text of binary payloads has them)
        return "message text holds a line break"
    if meta is None:
        return None
    if meta.key is not None and not is_valid_token(meta.key):
        return "invalid key"
    if meta.headers and not all(is_valid_header_name(name) for name in meta.headers):
        return "invalid header name"
    if meta.priority not in PRIORITY_NAMES:
        return "invalid priority"
    return None


Sent = list[tuple[dict[str, Any], Appended]]
"""A replay run's republished letters not journaled yet: (journal entry, append)."""


async def _journal_replays(
    journal: EventLog, replayed: dict[int, dict[str, Any]], sent: Sent
) -> None:
    """Journal each republished letter once its record is stored, with the offset the
    store gave it (a store may give offsets only at commit). A record the store failed
    is not a replay: its letter stays to replay again, and the error goes to the caller."""
    error: StorageError | None = None
    for entry, appended in sent:
        try:
            record = (await appended)[0]
        except StorageError as exc:
            del replayed[entry["dlq"]]
            error = error or exc
            continue
        entry["offset"] = record.offset
        journal.append(entry)
    sent.clear()
    if error is not None:
        raise error
