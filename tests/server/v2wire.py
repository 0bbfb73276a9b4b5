"""Reading protocol-v2 frames (MSG2/HISTORY2) off a raw connection."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.wire import Wire


@dataclass
class Frame:
    kind: str
    topic: str
    id: str
    offset: int
    ts: float
    attempt: int
    payload: bytes
    options: dict[str, str] = field(default_factory=dict)


async def read_frame(w: Wire, timeout: float = 5.0) -> Frame:
    head = (await w.raw_line(timeout)).rstrip(b"\n").decode()
    kind, topic, id, offset, ts, attempt, nbytes, *opts = head.split(" ")
    assert kind in ("MSG2", "HISTORY2"), head
    payload = await w.reader.readexactly(int(nbytes) + 1)
    assert payload.endswith(b"\n")
    options = dict(o.split("=", 1) for o in opts)
    return Frame(kind, topic, id, int(offset), float(ts), int(attempt), payload[:-1], options)


async def put(w: Wire, topic: str, payload: bytes, *options: str) -> str:
    head = " ".join((f"PUT {topic} {len(payload)}", *options))
    await w.send(head.encode() + b"\n" + payload + b"\n")
    return await w.line()
