"""Dead letters: listing them with their failure metadata, and replaying them.

A dead letter is an ordinary record of ``<topic>.dlq`` whose text is a JSON
object. A replay publishes the original text to ``<topic>`` again (new id, new
offset) and keeps a record of it in ``replays/<topic>.journal``, so a listing
shows which letters were replayed and ``REPLAY <topic> ALL`` never replays one twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, cast

import orjson

from broker.delivery.group_state import Pending
from broker.storage.journal import Journal
from broker.storage.records import Meta, Record
from broker.storage.store import Store

READ_CHUNK: Final = 1000


class DeadLetterNotFound(Exception):
    pass


class DeadLetters:
    def __init__(
        self,
        store: Store,
        replays_dir: Path,
        publish: Callable[[str, str, Meta | None], Record],
        new_journal: Callable[[Path], Journal] = Journal,
    ) -> None:
        self.store = store
        self.replays_dir = replays_dir
        self.publish = publish
        self.new_journal = new_journal
        self._replays: dict[str, tuple[Journal, dict[int, dict[str, Any]]]] = {}

    def _replay_log(self, topic: str) -> tuple[Journal, dict[int, dict[str, Any]]]:
        entry = self._replays.get(topic)
        if entry is None:
            journal = self.new_journal(self.replays_dir / f"{topic}.journal")
            done: dict[int, dict[str, Any]] = {}
            entries = journal.replay(_is_replay)
            for e in entries:
                done[cast(int, e["dlq"])] = e
            if journal.needs_rewrite:  # damage (reported) or a journal of an earlier format
                journal.rewrite_now(entries)
            entry = self._replays[topic] = (journal, done)
        return entry

    def journals(self) -> list[Journal]:
        return [journal for journal, _ in self._replays.values()]

    async def list(self, topic: str, n: int) -> list[tuple[int, str]]:
        """The last ``n`` dead letters of ``topic`` as (dlq offset, JSON text) pairs."""
        dlq = self.store.get(topic + ".dlq")
        if dlq is None or n <= 0:
            return []
        records = await asyncio.to_thread(dlq.read_last, n)
        _, replayed = self._replay_log(topic)
        out = []
        for record in records:
            letter = _letter(record)
            done = replayed.get(record.offset)
            letter["replayed"] = (
                None if done is None else {k: done[k] for k in ("offset", "id", "ts")}
            )
            letter.setdefault("dlq_id", record.id)
            out.append((record.offset, orjson.dumps(letter).decode()))
        return out

    async def replay(self, topic: str, id: str | None) -> int:
        """Republish the letter named by ``id`` (original or dlq id), or all not yet replayed."""
        dlq = self.store.get(topic + ".dlq")
        journal, replayed = self._replay_log(topic)
        count = 0
        offset = 1
        while dlq is not None:
            records = await asyncio.to_thread(dlq.read, offset, READ_CHUNK)
            if not records:
                break
            for record in records:
                letter = _letter(record)
                if id is None:
                    wanted = record.offset not in replayed
                else:
                    wanted = id in (record.id, letter.get("id"))
                text = letter.get("msg")
                if wanted and isinstance(text, str):
                    new = self.publish(topic, text, _original_meta(letter))
                    entry = {"dlq": record.offset, "offset": new.offset, "id": new.id, "ts": new.ts}
                    journal.append(entry)
                    replayed[record.offset] = entry
                    count += 1
            offset = records[-1].offset + 1
        if id is not None and count == 0:
            raise DeadLetterNotFound(f"dead letter {id} not found in {topic}.dlq")
        return count


def _is_replay(entry: dict[str, object]) -> bool:
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
