"""The C sealer (``_seal``) writes and checks exactly what ``checksum``'s Python code does.

Format 2 lines are defined by the Python code; the C one exists for speed only, so any
dump must seal to the same bytes and any line, damaged or not, must get the same verdict.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from linemq.broker.storage import checksum
from linemq.broker.storage.checksum import py_check, py_seal, py_seal_run

try:
    from linemq.broker.storage import _seal
except ImportError:
    if os.environ.get("CI"):
        raise  # CI builds the extension: a missing one is a failure there
    pytest.skip("the C sealer is not built here", allow_module_level=True)

# Strings that need JSON escapes: control characters, quotes, backslashes, any code point.
_texts = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"])),
    st.binary().map(lambda b: b.decode("latin-1")),
    st.text(alphabet='"\\/\n\r\t\x00\x1f\u2028\u2029}{,:c'),
)
_scalars = st.one_of(
    _texts,
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_texts, inner, max_size=4),
    max_leaves=12,
)
_dumps = st.dictionaries(_texts, _values, max_size=6).map(orjson.dumps)


@given(st.lists(_dumps, max_size=8))
@settings(max_examples=300, deadline=None)
def test_c_and_python_seal_any_dump_to_the_same_bytes(dumps: list[bytes]) -> None:
    lines = _seal.seal_run(dumps)
    assert lines == py_seal_run(dumps) == [py_seal(d) for d in dumps]
    assert lines == [_seal.seal(d) for d in dumps]
    for dump, line in zip(dumps, lines, strict=True):
        assert _seal.check_line(line) and py_check(line)
        if dump != b"{}":  # ``{,"c":..}`` is no JSON, but no record is empty
            assert orjson.loads(line)["c"] == crc32c(line[: line.rindex(b',"c":')])


def _damaged(line: bytes, data: st.DataObject) -> bytes:
    """``line`` with one random change of the kinds a disk or a torn write makes."""
    kind = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "delete", "lf"]))
    i = data.draw(st.integers(0, max(len(line) - 1, 0)))
    if kind == "flip" and line:
        bit = data.draw(st.integers(0, 7))
        return line[:i] + bytes([line[i] ^ (1 << bit)]) + line[i + 1 :]
    if kind == "set" and line:
        byte = data.draw(st.sampled_from(b'0123456789},:"c\n\x00'))
        return line[:i] + bytes([byte]) + line[i + 1 :]
    if kind == "cut":
        return line[:i]
    if kind == "insert":
        return line[:i] + data.draw(st.binary(min_size=1, max_size=3)) + line[i:]
    if kind == "delete":
        return line[:i] + line[i + 1 :]
    return line.rstrip(b"\n")


@given(_dumps, st.data())
@settings(max_examples=500, deadline=None)
def test_c_and_python_agree_on_damaged_lines(dump: bytes, data: st.DataObject) -> None:
    line = py_seal(dump)
    for _ in range(data.draw(st.integers(1, 3))):
        line = _damaged(line, data)
    assert _seal.check_line(line) == py_check(line)


@given(st.binary(max_size=40), st.text("0123456789", max_size=13), st.booleans())
@settings(max_examples=300, deadline=None)
def test_c_and_python_agree_on_any_check_field(body: bytes, digits: str, lf: bool) -> None:
    """Leading zeros, too many digits, values above 2**32, the right CRC or not."""
    right = str(crc32c(body))
    for field in (digits, right, "0" + right, "00" + right, right + digits):
        line = body + b',"c":' + field.encode() + b"}" + (b"\n" if lf else b"")
        assert _seal.check_line(line) == py_check(line), line


@given(st.binary(max_size=300), st.integers(0, 7))
@settings(max_examples=300, deadline=None)
def test_both_crc_paths_compute_crc32c(data: bytes, skip: int) -> None:
    """The SSE4.2 and the table code (used by CPUs without it), from any alignment."""
    view = memoryview(data)[min(skip, len(data)) :]
    assert _seal.crc32c(view) == _seal.crc32c_table(view) == crc32c(view)


def test_the_crc_is_crc32c() -> None:
    """The standard check value: CRC-32C of ``123456789`` is 0xE3069283."""
    line = b'123456789,"c":3808858755}\n'
    assert _seal.seal(b"123456789}") == py_seal(b"123456789}") == line
    assert _seal.check_line(line) and py_check(line)


@pytest.mark.parametrize("call", [_seal.seal, _seal.check_line, lambda x: _seal.seal_run([x])])
@pytest.mark.parametrize("value", ["{}", bytearray(b"{}"), memoryview(b"{}"), 1, None])
def test_non_bytes_are_a_type_error(call: Callable[[Any], object], value: object) -> None:
    with pytest.raises(TypeError):
        call(value)


def test_seal_run_takes_a_list() -> None:
    with pytest.raises(TypeError):
        _seal.seal_run((b"{}",))  # type: ignore[arg-type]


@pytest.mark.parametrize("dump", [b"", b"{", b'{"a":1}\n', b"[]"])
def test_a_dump_without_its_closing_brace_is_a_value_error(dump: bytes) -> None:
    with pytest.raises(ValueError):
        _seal.seal(dump)
    with pytest.raises(ValueError):
        _seal.seal_run([b"{}", dump])


def test_the_c_sealer_is_used_by_default() -> None:
    if os.environ.get("LINEMQ_PURE_PYTHON", "0") not in ("", "0"):
        pytest.skip("this run forces the Python code")
    assert checksum.IMPLEMENTATION == "c"
    assert checksum.seal_run is _seal.seal_run


def _implementation(env: dict[str, str]) -> str:
    code = "from broker.storage import checksum; print(checksum.IMPLEMENTATION)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, check=True, text=True
    )
    return out.stdout.strip()


def test_linemq_pure_python_selects_the_python_code() -> None:
    env = {k: v for k, v in os.environ.items() if k != "LINEMQ_PURE_PYTHON"}
    assert _implementation(env) == "c"
    assert _implementation({**env, "LINEMQ_PURE_PYTHON": "0"}) == "c"
    assert _implementation({**env, "LINEMQ_PURE_PYTHON": "1"}) == "python"


@pytest.mark.parametrize(("pure", "expected"), [("1", "python"), ("0", "c")])
def test_serve_says_which_sealer_it_runs_and_both_write_the_same_lines(
    broker_process: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pure: str,
    expected: str,
) -> None:
    monkeypatch.setenv("LINEMQ_PURE_PYTHON", pure)
    proc = broker_process(data_dir=tmp_path / "data")
    listening = [e for e in proc.events() if e.get("event") == "listening"]
    assert listening[0]["checksums"] == expected
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as s:
        f = s.makefile("rwb")
        f.readline()  # banner
        f.write(b"PUB t one\nPUB t two\n")
        f.flush()
        assert f.readline().startswith(b"OK published")
        assert f.readline().startswith(b"OK published")
    assert proc.terminate() == 0  # a clean stop: the segments have every record
    lines = b"".join(p.read_bytes() for p in sorted((tmp_path / "data").rglob("*.log")))
    records = lines.splitlines(keepends=True)
    assert len(records) == 3  # the header and two records
    for line in records:
        assert line == py_seal(line[: line.rindex(b',"c":')] + b"}")
