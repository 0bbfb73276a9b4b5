"""A member's in-flight messages: rows of a few arrays, not an object per message.

Every message in flight is a row here (lifecycle.py: ``deliver``) until it is
acked or taken back. A row holds what an ACK needs: the id and the offset, about
35 bytes (the target is 1 MB per 10,000 in flight). When it left and when its
ack is due are the same for every row a pump adds, so they are kept once per
such run of rows. A message with more history (a key, a priority, a
retry) keeps it in the group's ``history`` meanwhile.

An ACK finds its row by searching the ids (at the row after the last one acked
first, as consumers mostly ack in order). A TOUCH moves the row to the end (its
deadline is the latest); NACK, TERM, an ack timeout, the member leaving and SEEK
take rows out (``take``), and the group makes them waiting ``Pending``s again.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator
from itertools import compress
from typing import Final

SQUEEZE_MIN: Final = 1024
"""Rows of acked messages kept before dropping them from the arrays is worth a copy."""


class Holdings:
    """Rows in delivery order, so in ack-deadline order: every delivery gets the same timeout.

    Ids are kept back to back in one bytearray, ``width`` bytes each: every id
    this broker makes has the same length; a shorter one (a message from an
    earlier release) is padded with NULs, which no id holds, and a longer one
    widens them all. ``first`` is the oldest row still held.
    """

    __slots__ = (
        "deadlines",
        "first",
        "held",
        "hint",
        "ids",
        "left",
        "offsets",
        "sent",
        "starts",
        "width",
    )

    def __init__(self) -> None:
        self.width = 0
        self.ids = bytearray()
        self.offsets = array("q")
        # Runs of rows added together: the first row of each, and for each run the
        # wall-clock time of delivery (``Pending.first_ts``) and the loop time the ack
        # is due by (runs are in deadline order).
        self.starts = array("q")
        self.sent = array("d")
        self.deadlines = array("d")
        self.held = bytearray()  # 1 while the row is in flight
        self.first = 0
        self.left = 0
        self.hint = 0  # where the next ack most likely is

    def __len__(self) -> int:
        return self.left

    def add(self, ids: list[str], offsets: list[int], sent: float, deadline: float) -> None:
        """Rows for one pump's deliveries."""
        n = len(ids)
        width = self.width or len(ids[0])
        blob = "".join(ids).encode()
        if len(blob) != width * n or list(map(len, ids)).count(width) != n:
            blob = self._padded([i.encode() for i in ids])
        else:
            self.width = width
        self.ids += blob
        self.offsets.fromlist(offsets)  # (array.extend goes item by item: twice as slow)
        self._run_from(len(self.held), sent, deadline)
        self.held += b"\x01" * n
        self.left += n

    def _padded(self, encoded: list[bytes]) -> bytes:
        widest = max(map(len, encoded))
        if widest > self.width:
            old, width = self.width, widest
            if old:
                chunks = [self.ids[i : i + old] for i in range(0, len(self.ids), old)]
                self.ids = bytearray(b"".join(c.ljust(width, b"\0") for c in chunks))
            self.width = width
        return b"".join(e.ljust(self.width, b"\0") for e in encoded)

    def _run_from(self, row: int, sent: float, deadline: float) -> None:
        """Rows from ``row`` on were sent at ``sent`` and are due at ``deadline``."""
        if self.deadlines and self.deadlines[-1] == deadline and self.sent[-1] == sent:
            return  # the same pump's rows for another member: the same run
        self.starts.append(row)
        self.sent.append(sent)
        self.deadlines.append(deadline)

    def _run(self, row: int) -> int:
        return bisect_right(self.starts, row) - 1

    def sent_at(self, row: int) -> float:
        return self.sent[self._run(row)]

    def deadline_at(self, row: int) -> float:
        return self.deadlines[self._run(row)]

    def first_deadline(self) -> float:
        """When the oldest held row is due (there must be one)."""
        return self.deadlines[self._run(self.first)]

    def due_by(self, latest: float) -> None:
        """No row is due after ``latest`` (a shorter ack timeout); order is kept."""
        deadlines = self.deadlines
        for r in range(len(deadlines)):
            if deadlines[r] > latest:
                deadlines[r] = latest

    def touch(self, row: int, deadline: float) -> None:
        """A TOUCH: the row moves to the end, due at ``deadline`` (the latest of all)."""
        width = self.width
        self.ids += self.ids[row * width : (row + 1) * width]
        self.offsets.append(self.offsets[row])
        self._run_from(len(self.held), self.sent_at(row), deadline)
        self.held.append(1)
        self.held[row] = 0
        self._tidy()

    def find(self, id: bytes) -> int:
        """The row of ``id`` if it is held here, else -1."""
        width = self.width
        if len(id) != width:
            if len(id) > width or not self.left:
                return -1
            id = id.ljust(width, b"\0")
        held = self.held
        pos = self.ids.find(id, self.first * width)
        while pos >= 0:
            row, rest = divmod(pos, width)
            if not rest and held[row]:
                return row
            pos = self.ids.find(id, pos + 1)
        return -1

    def ack(self, id: bytes) -> int:
        """``id`` is acked: its offset, or -1 if it is not held here. One call, as
        this runs for almost every ack."""
        held, width = self.held, self.width
        row = self.hint  # most acks come in delivery order
        if len(id) < width:
            id = id.ljust(width, b"\0")
        if (
            row >= len(held)
            or not held[row]
            or len(id) != width
            or not self.ids.startswith(id, row * width)
        ):
            row = self.find(id)
            if row < 0:
                return -1
        offset = self.offsets[row]
        held[row] = 0
        self.left -= 1
        self.hint = row + 1
        if row == self.first and self.hint < len(held) and held[self.hint]:
            self.first = self.hint  # the usual case: no search for the next held row
        elif row == self.first or len(held) >= 2 * self.left + SQUEEZE_MIN:
            self._tidy()
        return offset

    def ack_next(self, ids: list[str]) -> list[int] | None:
        """Acks of exactly the next ``len(ids)`` rows after the last one acked, all held:
        their offsets; else None and nothing changed. A consumer acking in order reads
        its acks in runs like this, which then cost one comparison."""
        row, n, width = self.hint, len(ids), self.width
        end = row + n
        held = self.held
        if end > len(held) or held.find(0, row, end) >= 0 or {*map(len, ids)} != {width}:
            return None  # (ids cut elsewhere could join up to the same bytes)
        if self.ids[row * width : end * width] != "".join(ids).encode():
            return None
        held[row:end] = bytes(n)
        self.left -= n
        self.hint = end
        offsets = self.offsets[row:end].tolist()
        self._tidy()
        return offsets

    def take(self, rows: list[int]) -> list[tuple[int, str, float, float]]:
        """``rows`` leave: (offset, id, sent, deadline) each, to become ``Pending``s."""
        offsets, sent, deadlines, run = self.offsets, self.sent, self.deadlines, self._run
        taken = [
            (offsets[row], self.id_at(row), sent[r], deadlines[r])
            for row in rows
            for r in (run(row),)
        ]
        for row in rows:
            self.held[row] = 0
        self.left -= len(rows)
        self._tidy()
        return taken

    def id_at(self, row: int) -> str:
        width = self.width
        return self.ids[row * width : (row + 1) * width].rstrip(b"\0").decode()

    def rows(self) -> Iterator[int]:
        """Rows still held, oldest first."""
        held = self.held
        return (row for row in range(self.first, len(held)) if held[row])

    def expired(self, now: float) -> list[int]:
        """Held rows whose deadline is ``now`` or earlier."""
        deadlines, held, starts = self.deadlines, self.held, self.starts
        rows: list[int] = []
        if not self.left:
            return rows
        r, runs = self._run(self.first), len(starts)
        while r < runs and deadlines[r] <= now:
            end = starts[r + 1] if r + 1 < runs else len(held)
            rows += [row for row in range(max(starts[r], self.first), end) if held[row]]
            r += 1
        return rows

    def lowest_offset(self) -> int | None:
        first = self.first
        return min(compress(self.offsets[first:], self.held[first:]), default=None)

    def _tidy(self) -> None:
        """Move ``first`` past rows no longer held; drop those rows once they are as many as
        the held ones (so the copy costs O(1) per row), or clear everything."""
        held = self.held
        if not self.left:
            self._clear()
            return
        self.first = held.find(1, self.first)
        dead = len(held) - self.left
        if dead >= SQUEEZE_MIN and dead >= self.left:
            self._squeeze()

    def _squeeze(self) -> None:
        """Keep only the held rows (an ack timeout bounds how long one row can hold the rest)."""
        first, width = self.first, self.width
        keep = self.held[first:]
        self.offsets = array("q", compress(self.offsets[first:], keep))
        starts, sent, deadlines = array("q"), array("d"), array("d")
        old, runs, kept = self.starts, len(self.starts), 0
        for r in range(self._run(first), runs):
            end = old[r + 1] if r + 1 < runs else len(self.held)
            n = keep[max(old[r], first) - first : end - first].count(1)
            if n:  # a run with no row left is dropped
                starts.append(kept)
                sent.append(self.sent[r])
                deadlines.append(self.deadlines[r])
                kept += n
        self.starts, self.sent, self.deadlines = starts, sent, deadlines
        each = bytes(keep).replace(b"\x01", b"\x01" * width).replace(b"\x00", b"\x00" * width)
        self.ids = bytearray(compress(self.ids[first * width :], each))
        self.held = bytearray(b"\x01" * self.left)
        self.first = self.hint = 0

    def _clear(self) -> None:
        self.width = 0
        del self.ids[:], self.offsets[:], self.held[:]
        del self.starts[:], self.sent[:], self.deadlines[:]
        self.first = self.hint = self.left = 0
