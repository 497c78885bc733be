"""The package's layout: rooms in the order the data goes through them, imports pointing down that order,
and the two modules kept apart from the rest (read with `ast`, never by importing)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"

# the foundation every room may use, then the rooms in the data's order; a module may import from its
# own room and from those before it, never from a later one
FOUNDATION = {"__init__", "definition", "findings", "numbers", "text", "wording", "units", "atomic",
              "periods"}
ORDER = ["foundation", "intake", "checks", "consolidate", "pool", "outbox", "writers", "history", "mail",
         "wiring", "cli", "launcher"]
APART = ["pipeline/intake/guard.py", "pipeline/intake/isolation.py"]  # untrusted input: nothing shared


def _modules() -> dict[str, Path]:
    """Dotted name → file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def room(module: str) -> str:
    """The room of a dotted module name (pipeline.intake.guard → intake, pipeline.text → foundation)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in FOUNDATION:
        return "foundation"
    return parts[1]


def imported(source: str) -> list[tuple[int, str]]:
    """(line, dotted module) of every pipeline module `source` imports, at its top or inside a function."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "pipeline"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            for a in node.names:  # from pipeline import x: x may be a module or a name of the package
                sub = f"{node.module}.{a.name}"
                found.append((node.lineno, sub if sub in MODULES else node.module))
    return found


def test_every_module_has_a_room():
    assert {room(m) for m in MODULES} <= set(ORDER)


def upward(module: str, source: str) -> list[str]:
    """The imports of `source` (the module `module`) from a room later in the data's way."""
    mine = ORDER.index(room(module))
    return [f"{module}:{line} imports {target}" for line, target in imported(source)
            if ORDER.index(room(target)) > mine]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_data_s_way(module):
    found = upward(module, MODULES[module].read_text(encoding="utf-8"))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path", APART)
def test_the_guard_and_the_supervisor_import_nothing_from_the_pipeline(path):
    assert imported((PACKAGE.parent / path).read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if room(m) not in ("cli", "launcher")))
def test_only_the_command_line_parses_arguments(module):
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "argparse" not in names


@pytest.mark.parametrize(("module", "source", "found"), [
    ("pipeline.writers.district", "from pipeline.history.store import open_store\n",
     ["pipeline.writers.district:1 imports pipeline.history.store"]),
    ("pipeline.intake.reader", "def f():\n    from pipeline.checks import validate\n",
     ["pipeline.intake.reader:2 imports pipeline.checks.validate"]),
    ("pipeline.text", "import pipeline.wiring\n", ["pipeline.text:1 imports pipeline.wiring"]),
    ("pipeline.wiring", "from pipeline.writers.district import SHEETS\nfrom pipeline import findings\n", []),
])
def test_the_check_itself(module, source, found):
    """An import up the data's way is caught, at the top of a module or inside a function; down is fine."""
    assert upward(module, source) == found
