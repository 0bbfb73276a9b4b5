"""Splits a byte stream into lines and counted payloads, bounding what one line may buffer."""

from __future__ import annotations

from typing import Final


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


LINE_TOO_LONG: Final = _Marker("LINE_TOO_LONG")
"""Emitted once for each line over the limit; the rest of it is dropped."""
BAD_TERMINATOR: Final = _Marker("BAD_TERMINATOR")
"""A counted payload was not followed by a newline."""


class LineFramer:
    """Feed bytes, then pull complete lines (``next``) or counted payloads (``take``).

    Pulling lets the caller switch between the two after each line, which a
    framed publish needs (``PUT <topic> <n>`` then n bytes). ``LINE_TOO_LONG`` is
    given as soon as a line is known to be too long, so the client hears about it
    without waiting for a newline that may never come; bytes up to the next LF
    are then discarded. Memory per connection is bounded by ``max_line_bytes``
    (and by the payload size the caller agreed to ``take``).

    Work is linear in what is fed, however it is split: an unfinished line (or
    anything fed while the caller is not pulling) grows a ``bytearray`` tail in
    amortised constant time per byte, and only bytes not searched before are
    searched for the LF. Whole reads, the common case, never touch the tail.
    """

    __slots__ = ("_buf", "_checked", "_discarding", "_pos", "_skip", "_tail", "max_line_bytes",
                 "scanned")  # fmt: skip

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._buf = b""
        self._pos = 0
        self._tail: bytes | bytearray = b""  # after ``_buf`` was used up: never both hold bytes
        self._checked = 0  # how much of ``_tail`` is known to hold no LF
        self._discarding = False
        self._skip = 0
        self.scanned = 0
        """Bytes searched for an LF while a line was unfinished: linear, never quadratic."""

    def feed(self, data: bytes) -> None:
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        tail = self._tail
        if tail:
            if self._checked == len(tail):  # one unfinished line: search only the new bytes
                self.scanned += len(data)
                if data.find(b"\n") >= 0:
                    self._buf, self._pos = b"".join((tail, data)), 0
                    self._clear_tail()
                    return
            if type(tail) is bytes:  # a second read into the tail: grow it in place from now
                tail = self._tail = bytearray(tail)
            checked = self._checked == len(tail)
            tail += data
            if checked:
                self._checked = len(tail)
        elif self._pos >= len(self._buf):
            self._buf, self._pos = data, 0
        else:  # the caller stopped pulling (a payload, blocked input): keep it all, unsearched
            self._tail = bytearray(memoryview(self._buf)[self._pos :])
            self._tail += data
            self._checked = 0
            self._buf, self._pos = b"", 0

    def _clear_tail(self) -> None:
        self._tail = b""
        self._checked = 0

    def _tail_to_buf(self) -> None:
        self._buf, self._pos = bytes(self._tail), 0
        self._clear_tail()

    def lone_line(self, data: bytes) -> bytes | None:
        """``data`` without its LF if it is one whole line and nothing is buffered, else None.

        Most reads from a client that waits for each reply are one request: such a
        read need not be buffered and split. None: ``feed`` it as usual.
        """
        if self._pos < len(self._buf) or self._tail or self._discarding or self._skip:
            return None
        nl = data.find(b"\n")
        if nl != len(data) - 1 or nl > self.max_line_bytes:
            return None
        return data[:nl]

    def next(self) -> bytes | _Marker | None:
        """The next line without its LF, ``LINE_TOO_LONG``, or None until more is fed."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):  # everything taken, as at the end of most reads
            return self._next_from_tail() if self._tail else None
        if self._discarding:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                self._buf, self._pos = b"", 0
                return None
            self._discarding = False
            pos = nl + 1
        nl = buf.find(b"\n", pos)
        if nl < 0:
            self.scanned += len(buf) - pos
            self._buf, self._pos = b"", 0
            if len(buf) - pos > self.max_line_bytes:
                self._discarding = True
                return LINE_TOO_LONG
            self._tail = buf[pos:]  # the common end of a read: joined with the next one
            self._checked = len(self._tail)
            return None
        self._pos = nl + 1
        if nl - pos > self.max_line_bytes and not (
            nl - pos == self.max_line_bytes + 1 and buf[nl - 1] == 0x0D  # a CRLF line at the limit
        ):
            return LINE_TOO_LONG
        return buf[pos:nl]

    def _next_from_tail(self) -> bytes | _Marker | None:
        tail = self._tail
        nl = tail.find(b"\n", self._checked)
        self.scanned += (len(tail) if nl < 0 else nl) - self._checked
        if nl >= 0:
            self._tail_to_buf()
            return self.next()
        self._checked = len(tail)
        if self._discarding:
            self._clear_tail()
        elif len(tail) > self.max_line_bytes:
            self._clear_tail()
            self._discarding = True
            return LINE_TOO_LONG
        return None

    def take(self, n: int) -> bytes | _Marker | None:
        """Exactly ``n`` payload bytes and their LF (or CRLF), or None until they are all here.

        A payload followed by anything else is still returned as
        ``BAD_TERMINATOR``; what follows is read as the next line.
        """
        if self._tail:
            if len(self._tail) <= n:
                return None
            self._tail_to_buf()
        buf, pos = self._buf, self._pos
        end = pos + n
        if len(buf) <= end:
            return None
        terminator = buf[end : end + 1]
        if terminator == b"\r":
            if len(buf) <= end + 1:
                return None
            if buf[end + 1 : end + 2] == b"\n":
                self._pos = end + 2
                return buf[pos:end]
        elif terminator == b"\n":
            self._pos = end + 1
            return buf[pos:end]
        self._pos = end
        return BAD_TERMINATOR

    def skip(self, n: int) -> None:
        """Drop the next ``n`` bytes (a payload refused for its size) and its line end."""
        if self._tail:
            self._tail_to_buf()
        available = len(self._buf) - self._pos
        if available >= n:
            self._pos += n
        else:
            self._skip = n - available
            self._buf, self._pos = b"", 0
        self._discarding = True  # the payload's own LF ends the discard

    def peek_run(self, prefix: bytes, max_bytes: int) -> bytes | None:
        """Every complete line buffered, as one span, if each starts with ``prefix``
        and the span fits ``max_bytes``; else None. Nothing is consumed (``advance``).

        A publisher's pipelined PUBs to one topic fill whole reads: a few ``bytes``
        calls over the span cost much less than one ``next`` per line.
        """
        if self._discarding:
            return None
        buf, pos = self._buf, self._pos
        end = buf.rfind(b"\n", pos) + 1
        if end <= pos or end - pos > max_bytes or not buf.startswith(prefix, pos):
            return None
        if buf.count(b"\n" + prefix, pos, end) != buf.count(b"\n", pos, end) - 1:
            return None
        return buf[pos:end]

    def advance(self, n: int) -> None:
        """Consume ``n`` bytes that ``peek_run`` returned."""
        self._pos += n

    @property
    def buffered(self) -> int:
        """Bytes held and not yet returned."""
        return len(self._buf) - self._pos + len(self._tail)
