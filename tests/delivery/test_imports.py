"""Delivery's imports run one way: no circles among its modules (``TYPE_CHECKING`` imports
included), and nothing above it (server, ops, cli) imported from it."""

from __future__ import annotations

import ast
from pathlib import Path

import linemq.broker.delivery

DELIVERY = Path(linemq.broker.delivery.__file__).parent
ABOVE = ("linemq.broker.server", "linemq.broker.ops", "linemq.broker.cli")


def imports() -> dict[str, set[str]]:
    """Each delivery module and the ``linemq.broker`` modules it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted(DELIVERY.glob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        found[f"linemq.broker.delivery.{path.stem}"] = {
            n for n in names if n.startswith("linemq.broker.")
        }
    return found


def test_delivery_modules_import_each_other_without_circles() -> None:
    graph = imports()
    deps = {m: {d for d in ds if d in graph} for m, ds in graph.items()}

    def reaches(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(deps[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo += deps[m]
        return seen

    assert [m for m in deps if m in reaches(m)] == []


def test_delivery_imports_nothing_above_it() -> None:
    upward = {m: sorted(d for d in ds if d.startswith(ABOVE)) for m, ds in imports().items()}
    assert {m: ds for m, ds in upward.items() if ds} == {}


# What delivery may import of storage: the log seam, records and what an append returns
# (``ticket``), the state seam (group, pattern and replay logs, their hot lines sealed by
# ``checksum``) and damage reports.
STORAGE_SEAM = {
    "linemq.broker.storage.log_store",
    "linemq.broker.storage.records",
    "linemq.broker.storage.ticket",
    "linemq.broker.storage.state_store",
    "linemq.broker.storage.checksum",
    "linemq.broker.storage.damage",
}


def test_delivery_reads_topic_logs_only_through_the_seam() -> None:
    """No ``FileStore`` or ``TopicLog``: any store that passes the conformance suite
    (file, memory, PostgreSQL) can sit under delivery."""
    storage = {
        m: sorted(
            d
            for d in ds
            if d.startswith("linemq.broker.storage.")
            and not any(d == s or d.startswith(s + ".") for s in STORAGE_SEAM)
        )
        for m, ds in imports().items()
    }
    assert {m: ds for m, ds in storage.items() if ds} == {}


# Modules that name files: delivery keeps its state through ``StateStore`` alone.
FILES = ("pathlib", "os", "shutil", "tempfile", "glob", "io")


def test_delivery_builds_no_paths_and_opens_no_journals() -> None:
    """Group, pattern and replay state go through the state seam (storage/state_store.py):
    no delivery module imports the journal files, a path or file module, or calls
    ``open``, so a store that keeps state elsewhere (memory, a database) fits under it."""
    found: dict[str, list[str]] = {}
    for path in sorted(DELIVERY.glob("*.py")):
        bad = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                bad += [a.name for a in node.names if a.name.split(".")[0] in FILES]
            elif isinstance(node, ast.ImportFrom) and node.module:
                if node.module.split(".")[0] in FILES or node.module.endswith("storage.journal"):
                    bad.append(node.module)
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open":
                bad.append("open()")
        if bad:
            found[path.stem] = bad
    assert found == {}
