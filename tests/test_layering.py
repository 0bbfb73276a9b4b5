"""Imports run one way, and no module imports itself back through others.

Every module's imports are read from its source (``ast``): the ones at the top, the
ones inside functions (loaded late) and the ones under ``if TYPE_CHECKING`` (a circle
hidden from the interpreter is still a circle to a reader). The layers, top to bottom:

    cli ─► server, ops ─► engine ─► delivery ─► storage

``auth`` (users, tokens, permissions) serves both faces; ``observe`` (counters,
snapshots) is read by all of them and reads the broker only through Protocols of its
own; ``config`` and ``logsetup`` are settings. The wire ``protocol`` is for the server
and the client; its pure value grammars (names, durations, sizes) are the vocabulary
every layer shares. ``clients`` and ``tools`` drive brokers from outside and import
nothing of the broker but the protocol.

``ALLOWED_VIOLATIONS`` lists the edges still waiting for their fix, each with the work
that removes it; a test fails once an entry is no longer needed, so the list only
shrinks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
FOLDERS: Final = {
    "linemq": ROOT / "linemq",
    "linemq.broker": ROOT / "broker",
    "linemq.clients": ROOT / "clients",
    "linemq.tools": ROOT / "tools",
}

# Module name prefix -> layer; the longest matching prefix wins.
LAYER_OF: Final = {
    "linemq": "top",
    "linemq.__main__": "top",
    "linemq.broker": "root",
    "linemq.broker.__main__": "cli",
    "linemq.broker.cli": "cli",
    "linemq.broker.verify_command": "cli",
    "linemq.broker.journal_verify": "cli",
    "linemq.broker.server": "server",
    "linemq.broker.ops": "ops",
    "linemq.broker.engine": "engine",
    "linemq.broker.auth": "auth",
    "linemq.broker.observe": "observe",
    "linemq.broker.delivery": "delivery",
    "linemq.broker.storage": "storage",
    "linemq.broker.config": "settings",
    "linemq.broker.logsetup": "settings",
    "linemq.broker.protocol": "protocol",
    "linemq.broker.protocol.names": "vocabulary",
    "linemq.broker.protocol.durations": "vocabulary",
    "linemq.broker.protocol.sizes": "vocabulary",
    "linemq.broker.protocol.filters": "vocabulary",
    "linemq.broker.protocol.message_options": "vocabulary",
    "linemq.broker.protocol.positions": "vocabulary",
    "linemq.clients": "clients",
    "linemq.tools": "tools",
}

BELOW_THE_FACES: Final = {"engine", "auth", "observe", "delivery", "storage", "settings"}
# Which layers a layer may import, besides its own.
ALLOWED: Final[dict[str, set[str]]] = {
    "top": {"cli", "clients", "root"},
    "cli": {"server", "ops", *BELOW_THE_FACES, "protocol", "vocabulary", "root"},
    "server": {*BELOW_THE_FACES, "protocol", "vocabulary"},
    "ops": {*BELOW_THE_FACES, "vocabulary"},
    "engine": {"observe", "delivery", "storage", "settings", "vocabulary"},
    "auth": {"settings", "vocabulary"},
    "delivery": {"observe", "storage", "settings", "vocabulary"},
    "observe": {"settings", "vocabulary"},
    "storage": {"vocabulary"},
    "settings": {"vocabulary"},
    "protocol": {"vocabulary"},
    "vocabulary": set(),
    "root": set(),
    "clients": {"protocol", "vocabulary"},
    "tools": {"clients", "protocol", "vocabulary"},
}

# (importer, imported): known violations, each removed by the work named beside it.
ALLOWED_VIOLATIONS: Final[set[tuple[str, str]]] = set()


@cache
def modules() -> dict[str, Path]:
    """Every module of the installed package, by its installed name."""
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if package != "linemq" or len(parts) == 1:  # linemq/ holds only the top
                if parts[-1] == "__init__":
                    parts.pop()
                found[".".join([package, *parts])] = path
    return found


def _extension(name: str) -> bool:
    """A compiled module (``storage._seal``): a leaf that imports nothing of ours."""
    package, _, leaf = name.rpartition(".")
    path = modules().get(package)
    if path is None or path.name != "__init__.py":
        return False
    return any(f.name.split(".")[0] == leaf and f.suffix != ".py" for f in path.parent.iterdir())


def _imported(importer: str, path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = importer.split(".")
                if path.name != "__init__.py":
                    base.pop()
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:  # ``from package import module`` names the module
                yield f"{source}.{alias.name}"


@cache
def graph() -> dict[str, frozenset[str]]:
    """importer -> the modules of ours it imports (a package's ``__init__`` for its names)."""
    known = modules()
    edges = {}
    for name, path in known.items():
        targets = set()
        for target in _imported(name, path):
            if not target.startswith("linemq"):
                continue
            while target not in known and not _extension(target):
                target = target.rpartition(".")[0]
            if target != name and target in known:
                targets.add(target)
        edges[name] = frozenset(targets)
    return edges


def layer(name: str) -> str | None:
    while name:
        if name in LAYER_OF:
            return LAYER_OF[name]
        name = name.rpartition(".")[0]
    return None


def violations() -> set[tuple[str, str]]:
    found = set()
    for importer, targets in graph().items():
        for target in targets:
            mine, theirs = layer(importer), layer(target)
            if mine != theirs and theirs not in ALLOWED[str(mine)]:
                found.add((importer, target))
    return found


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _without_allowed() -> dict[str, frozenset[str]]:
    return {
        importer: frozenset(t for t in targets if (importer, t) not in ALLOWED_VIOLATIONS)
        for importer, targets in graph().items()
    }


def test_the_import_graph_is_read() -> None:
    edges = graph()
    assert len(edges) > 100
    assert "linemq.broker.server.app" in edges["linemq.broker.cli"]  # a late import
    assert "linemq.broker.storage._seal" not in edges  # compiled, not a source module
    assert "linemq.broker.storage" not in edges["linemq.broker.storage.checksum"]


def test_every_module_belongs_to_a_layer() -> None:
    assert [name for name in modules() if layer(name) is None] == []
    assert set(LAYER_OF.values()) == set(ALLOWED)


def test_imports_run_one_way() -> None:
    unexpected = sorted(violations() - ALLOWED_VIOLATIONS)
    assert unexpected == [], "imports against the layers:\n" + "\n".join(
        f"  {a} ({layer(a)}) -> {b} ({layer(b)})" for a, b in unexpected
    )


def test_no_module_imports_itself_back() -> None:
    assert cycles(_without_allowed()) == []


def test_every_allowed_violation_is_still_needed() -> None:
    """An entry whose import is gone, or that no longer breaks a rule, must be removed."""
    edges, wrong = graph(), violations()
    stale = []
    for importer, target in sorted(ALLOWED_VIOLATIONS):
        if target not in edges.get(importer, ()):
            stale.append((importer, target, "import is gone"))
            continue
        if (importer, target) in wrong:
            continue
        put_back = dict(_without_allowed())
        put_back[importer] = put_back[importer] | {target}
        if not any(importer in c and target in c for c in cycles(put_back)):
            stale.append((importer, target, "breaks no rule now"))
    assert stale == []


def test_the_checks_catch_an_upward_import_and_a_hidden_circle() -> None:
    """The checks themselves, on a made-up graph."""
    edges = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"})}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": frozenset({"b"}), "b": frozenset()}) == []
    assert layer("linemq.broker.storage.topic_log") == "storage"
    assert "server" not in ALLOWED["storage"] and "server" not in ALLOWED["ops"]
    assert "ops" not in ALLOWED["server"] and "delivery" not in ALLOWED["observe"]
