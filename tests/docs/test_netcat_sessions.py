"""Every netcat session in README.md and protocol.md, played against a fresh broker."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import BrokerProcess
from tests.docs.sessions import Block, SessionMismatch, auth_file, extract, run

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "protocol.md"]
BLOCKS = [block for doc in DOCS for block in extract(doc)]


def _by_id(block: Block) -> Block:
    wanted = block.options["after"]
    found = [b for b in BLOCKS if b.path == block.path and b.options.get("id") == wanted]
    assert len(found) == 1, f"{block.name}: after={wanted} names no single block"
    return found[0]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_netcat_session_runs_as_documented(
    block: Block, broker_process: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    if block.kind == "fragment":
        pytest.skip(f"marked nc-fragment: {block.note}")
    assert block.kind == "session", (
        f"{block.name} runs nc but has no <!-- nc-session --> or <!-- nc-fragment --> marker"
    )
    args = shlex.split(block.options.get("serve", ""))
    if "user" in block.options:
        args += ["--auth-file", str(auth_file(tmp_path, block.options["user"]))]
    port = broker_process(*args).port
    if "after" in block.options:
        run(_by_id(block), port)
    run(block, port)


def test_docs_have_their_sessions_marked() -> None:
    """Guards the extractor itself: it finds the sessions the docs are known to hold."""
    kinds = {doc.name: [b.kind for b in BLOCKS if b.path == doc] for doc in DOCS}
    assert kinds["README.md"].count("session") >= 1
    assert kinds["protocol.md"].count("session") >= 6
    assert all(kind in ("session", "fragment") for k in kinds.values() for kind in k)


FAKE_DOC = """\
Text.

<!-- nc-session serve="--max-retries 0" id=one -->
```console
$ nc localhost 8888
OK connected
> SUB t g
OK subscribed t in group g
> PUB t hi
OK published
MSG t msg_1795450600001_1a2b3c4d 1 1795450600.0012 hi
> ACK msg_1795450600001_1a2b3c4d
OK ack_received
$ linemq history t        # not netcat: ignored
$ printf 'HISTORY t 1\\nQUIT\\n' | nc localhost 8888
OK connected
HISTORY t msg_1795450600001_1a2b3c4d 1 ... hi
OK history end
OK bye
```

<!-- nc-fragment: shows one line only -->
```
$ nc localhost 8888
MSG t msg_1795450600001_1a2b3c4d 1 1795450600.0012 hi
```

```
$ printf 'PING\\n' | nc localhost 8888
```
"""


def test_extractor_reads_markers_steps_and_unmarked_blocks(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(FAKE_DOC)
    session, fragment, unmarked = extract(doc)
    assert (session.kind, fragment.kind, unmarked.kind) == ("session", "fragment", "unmarked")
    assert session.options == {"serve": "--max-retries 0", "id": "one"}
    assert fragment.note == "shows one line only"
    interactive, piped = session.steps
    assert interactive.piped is None and interactive.lines[1] == (">", "SUB t g")
    assert piped.piped == b"HISTORY t 1\nQUIT\n"
    assert piped.lines[0] == ("<", "OK connected")


def test_fake_session_runs_and_a_wrong_reply_is_caught(
    tmp_path: Path, broker_process: Callable[..., BrokerProcess]
) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(FAKE_DOC)
    port = broker_process().port
    run(extract(doc)[0], port)
    doc.write_text(FAKE_DOC.replace("OK published", "OK nope"))
    with pytest.raises(SessionMismatch, match="OK nope"):
        run(extract(doc)[0], broker_process(data_dir=tmp_path / "other").port)


def test_an_id_must_stand_for_the_same_real_id_throughout(
    tmp_path: Path, broker_process: Callable[..., BrokerProcess]
) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        FAKE_DOC.replace("HISTORY t msg_1795450600001_1a2b3c4d", "HISTORY t msg_1_00000000")
    )
    port = broker_process().port
    with pytest.raises(SessionMismatch, match="msg_1_00000000 in the docs is"):
        run(extract(doc)[0], port)
