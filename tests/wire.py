"""A raw line client for tests: what a netcat user would type and see, byte for byte."""

from __future__ import annotations

import asyncio
import contextlib


class Wire:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, *, banner: bool = True) -> Wire:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        wire = cls(reader, writer)
        if banner:
            assert await wire.line() == "OK connected"
        return wire

    async def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.writer.write(data)
        await self.writer.drain()

    async def raw_line(self, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), timeout)

    async def line(self, timeout: float = 5.0) -> str:
        raw = await self.raw_line(timeout)
        assert raw.endswith(b"\n"), f"connection closed, got {raw!r}"
        return raw[:-1].decode()

    async def lines(self, n: int, timeout: float = 5.0) -> list[str]:
        return [await self.line(timeout) for _ in range(n)]

    async def cmd(self, line: str) -> str:
        await self.send(line + "\n")
        return await self.line()

    async def until(self, last: str, timeout: float = 5.0) -> list[str]:
        """Lines up to and including ``last``."""
        out = []
        while True:
            got = await self.line(timeout)
            out.append(got)
            if got == last:
                return out

    async def silent(self, seconds: float) -> bool:
        """True if nothing arrives for ``seconds``."""
        try:
            raw = await asyncio.wait_for(self.reader.readline(), seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"expected silence, got {raw!r}")

    async def closed(self, timeout: float = 5.0) -> bool:
        data = await asyncio.wait_for(self.reader.read(), timeout)
        return data == b"" or data.endswith(b"\n")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def group_figures(line: str) -> str:
    """A ``GROUP`` line's figures, up to ``paused=``, without the policy keys after them."""
    head, sep, rest = line.partition(" paused=")
    return head + sep + rest.split(" ", 1)[0] if sep else line
