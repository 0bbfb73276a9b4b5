"""Splits a byte stream into lines, bounding how much one unfinished line may buffer."""

from __future__ import annotations

from typing import Final


class _LineTooLong:
    """Marker emitted once for each line that exceeded the limit; the rest of it is dropped."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LINE_TOO_LONG"


LINE_TOO_LONG: Final = _LineTooLong()


class LineFramer:
    """Feed bytes, get complete lines (without the LF) and ``LINE_TOO_LONG`` markers.

    The marker is emitted as soon as a line is known to be too long, so the
    client hears about it without waiting for a newline that may never come;
    bytes up to the next LF are then discarded. Memory per connection is
    bounded by ``max_line_bytes``.
    """

    __slots__ = ("_buf", "_discarding", "max_line_bytes")

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._buf = b""
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | _LineTooLong]:
        if self._discarding:
            cut = data.find(b"\n")
            if cut < 0:
                return []
            self._discarding = False
            data = data[cut + 1 :]
        if self._buf:
            data = self._buf + data
            self._buf = b""
        parts = data.split(b"\n")
        tail = parts.pop()
        limit = self.max_line_bytes
        out: list[bytes | _LineTooLong] = []
        for line in parts:
            out.append(line if len(line) <= limit else LINE_TOO_LONG)
        if len(tail) > limit:
            out.append(LINE_TOO_LONG)
            self._discarding = True
        else:
            self._buf = tail
        return out

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished line."""
        return len(self._buf)
