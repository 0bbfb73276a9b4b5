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
    """

    __slots__ = ("_buf", "_discarding", "_pos", "_skip", "max_line_bytes")

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._buf = b""
        self._pos = 0
        self._discarding = False
        self._skip = 0

    def feed(self, data: bytes) -> None:
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        if self._pos >= len(self._buf):
            self._buf, self._pos = data, 0
        elif self._pos:
            self._buf, self._pos = self._buf[self._pos :] + data, 0
        else:
            self._buf += data

    def lone_line(self, data: bytes) -> bytes | None:
        """``data`` without its LF if it is one whole line and nothing is buffered, else None.

        Most reads from a client that waits for each reply are one request: such a
        read need not be buffered and split. None: ``feed`` it as usual.
        """
        if self._pos < len(self._buf) or self._discarding or self._skip:
            return None
        nl = data.find(b"\n")
        if nl != len(data) - 1 or nl > self.max_line_bytes:
            return None
        return data[:nl]

    def next(self) -> bytes | _Marker | None:
        """The next line without its LF, ``LINE_TOO_LONG``, or None until more is fed."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):  # everything taken, as at the end of most reads
            return None
        if self._discarding:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                self._buf, self._pos = b"", 0
                return None
            self._discarding = False
            pos = nl + 1
        nl = buf.find(b"\n", pos)
        if nl < 0:
            self._pos = pos
            if len(buf) - pos > self.max_line_bytes:
                self._buf, self._pos = b"", 0
                self._discarding = True
                return LINE_TOO_LONG
            return None
        self._pos = nl + 1
        if nl - pos > self.max_line_bytes and not (
            nl - pos == self.max_line_bytes + 1 and buf[nl - 1] == 0x0D  # a CRLF line at the limit
        ):
            return LINE_TOO_LONG
        return buf[pos:nl]

    def take(self, n: int) -> bytes | _Marker | None:
        """Exactly ``n`` payload bytes and their LF (or CRLF), or None until they are all here.

        A payload followed by anything else is still returned as
        ``BAD_TERMINATOR``; what follows is read as the next line.
        """
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
        return len(self._buf) - self._pos
