"""The package layout shows the architecture: layers import in one direction, nothing imports in a
circle, and no class grows past ~300 lines without saying why at its top."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mycelium"
MAX_CLASS_LINES = 300

# what each layer may import from the others (besides errors, events, config and generated proto)
ALLOWED = {
    "policy": set(),
    "learn": set(),
    "net": {"policy"},
    "node": {"policy", "net", "learn"},
    "ui": {"policy", "net", "node", "mesh", "learn", "watch"},
    "mesh": {"learn", "ui", "watch"},
    "watch": {"policy", "net"},
}
SHARED = {"errors", "events", "config", "proto", "__init__"}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Modules of ours that `path` imports at run time (not under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            guarded |= {id(child) for child in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mycelium"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("mycelium")}
    return found & known


def test_nothing_inside_mycelium_imports_in_a_circle() -> None:
    mods = modules()
    graph = {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}
    # a package's __init__ importing its own modules is not a cycle of ours; none of ours do
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(name: str, trail: list[str]) -> bool:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycle.extend(trail[trail.index(target) :] + [target] if target in trail else [name, target])
                return True
            if state.get(target) is None and visit(target, [*trail, target]):
                return True
        state[name] = 2
        return False

    for name in sorted(graph):
        if state.get(name) is None and visit(name, [name]):
            break
    assert not cycle, " -> ".join(cycle)


def test_layers_import_in_one_direction() -> None:
    mods = modules()
    wrong = []
    for name, path in mods.items():
        parts = name.split(".")
        if len(parts) < 2 or parts[1] not in ALLOWED:
            continue
        layer = parts[1]
        for target in imports_of(path, set(mods)):
            other = target.split(".")[1] if "." in target else ""
            if other and other != layer and other not in SHARED and other not in ALLOWED[layer]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, wrong


def test_the_protocol_rules_touch_no_libp2p_trio_or_protobuf() -> None:
    for path in (PACKAGE / "policy").glob("*.py"):
        text = path.read_text()
        for banned in ("import trio", "from libp2p", "import libp2p", "mycelium_pb2", "import time"):
            assert banned not in text, f"{path.name}: {banned}"


def test_no_class_is_over_300_lines_without_a_reason_at_its_top() -> None:
    long_ones = []
    for path in PACKAGE.rglob("*.py"):
        if "proto" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                doc = ast.get_docstring(node) or ""
                if "long because" not in doc:
                    long_ones.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long_ones, long_ones
