"""Replies to publishes: one slot per connection and commit, filled when the commit's
ticket resolves; a topic that failed gets ``replies.storage_unavailable`` in place."""

from __future__ import annotations

from linemq.broker.protocol import replies
from linemq.broker.protocol.v2 import put_reply
from linemq.broker.server.connection import Connection, Slot
from linemq.broker.storage.records import StorageError
from linemq.broker.storage.ticket import Appended, Ticket


class Repeat:
    """A PUT repeating a pending one's publisher id: answered as a duplicate of it."""

    __slots__ = ("original",)

    def __init__(self, original: Appended) -> None:
        self.original = original


Piece = tuple[str | list[str] | Appended | Repeat, bytes, int]
"""What a slot answers, in order: ``(topic, reply, count)``; ``(order, reply, n)`` for
PUBs to several topics, ``order`` naming each one's topic; ``(appended, b"", 1)`` for a
PUT, whose reply names the offset it was given (known once the ticket resolved), and
``(Repeat(appended), b"", 1)`` for its duplicate."""


class PubSlot(Slot):
    """Every publish a connection made before one commit: one reply, one release.

    A read's PUBs to any number of topics and the PUTs around them share it, so a
    pipelined publisher costs one slot per tick however its publishes are spread.
    """

    __slots__ = ("pieces", "ticket")

    def __init__(self, conn: Connection, ticket: Ticket) -> None:
        super().__init__(conn)
        self.ticket = ticket
        self.pieces: list[Piece] = []
        self.count = 0

    def settled(self, ticket: Ticket) -> None:
        """The commit is durable (or failed, by topic): the replies are known now."""
        self.data = render(self.pieces, ticket.errors)
        self.conn.broker.engine.schedule()  # released by the tick, in order with the rest


def render(pieces: list[Piece], errors: dict[str, StorageError]) -> bytes:
    out: list[bytes] = []
    for key, reply, count in pieces:
        if type(key) is str:
            error = errors.get(key) if errors else None
            out.append((replies.storage_unavailable(error) if error is not None else reply) * count)
        elif type(key) is list:
            if not errors:
                out.append(reply * count)
                continue
            failed = {t: replies.storage_unavailable(e) for t, e in errors.items()}
            out += [failed.get(t, reply) for t in key]
        else:
            repeat = type(key) is Repeat
            appended = key.original if isinstance(key, Repeat) else key
            assert isinstance(appended, Appended)
            error = errors.get(appended.topic)
            if error is not None:
                out.append(replies.storage_unavailable(error))
            else:
                record = appended.records[0]
                out.append(put_reply(record.offset, record.id, duplicate=repeat))
    return out[0] if len(out) == 1 else b"".join(out)


def wait_for(conn: Connection, ticket: Ticket, piece: Piece) -> None:
    """Answer ``piece`` once ``ticket`` resolves, behind everything queued before it."""
    last = conn.last_held()
    if type(last) is PubSlot and last.ticket is ticket and last.data is None:
        last.pieces.append(piece)
        last.count += piece[2]
        return
    slot = PubSlot(conn, ticket)
    slot.pieces.append(piece)
    slot.count = piece[2]
    conn.hold(slot)
    ticket.add_done_callback(slot.settled)
