"""The shape of the code: no import cycles, layers that go one way, no own-module imports in functions.

Walks every module of ``rtseg/`` with ``ast`` (imports at any depth, including inside functions),
adds the package ``__init__`` files an import runs, and checks:

* the graph has no cycle;
* every import goes down (or sideways inside one package) the layers
  base <- models, data <- metrics <- training <- inference, profiling, export <- benchmark <- commands;
* an import inside a function is never of rtseg's own modules (it may defer a heavy third-party
  package), except the package root's PEP 562 ``__getattr__``, which defers torch and timm so
  that ``import rtseg`` and ``rtseg --help`` stay instant.
"""

from __future__ import annotations

import ast
from pathlib import Path

import rtseg

ROOT = Path(rtseg.__file__).resolve().parent
# Lower numbers are lower layers; a module may import its own layer or below.
LAYERS = {
    "rtseg": 0, "rtseg.errors": 0, "rtseg.atomic": 0, "rtseg.options": 0, "rtseg.runtime": 0,
    "rtseg.checkpoint": 0, "rtseg.distributed": 0, "rtseg.normalisation": 0, "rtseg.memory": 0,
    "rtseg.models": 1, "rtseg.data": 1,
    "rtseg.metrics": 2,
    "rtseg.training": 3,
    "rtseg.inference": 4, "rtseg.profiling": 4, "rtseg.export": 4,
    "rtseg.benchmark": 5,
    "rtseg.commands": 6, "rtseg.cli": 6, "rtseg.__main__": 6,
    "rtseg.engine": 7,  # deprecated re-exports of the old layout: nothing may import it
}
# The packages of one layer that must not import each other (their order is fixed by the layers above).
FORBIDDEN_SIDEWAYS = {("rtseg.data", "rtseg.models"), ("rtseg.models", "rtseg.data")}


def module_names() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = ("rtseg", *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = module_names()


def resolve(name: str) -> str | None:
    """The rtseg module an imported dotted name lives in (``rtseg.models.factory.create_model`` -> factory)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> list[tuple[str, bool]]:
    """``(imported rtseg module, inside a function)`` for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                # ``from pkg import sub`` imports the module pkg.sub; ``from mod import name``, mod
                names = [f"{child.module}.{alias.name}" if f"{child.module}.{alias.name}" in MODULES
                         else child.module for alias in child.names]
            for name in names:
                target = resolve(name) if name.split(".")[0] == "rtseg" else None
                if target and target != module:
                    found.append((target, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _ in imports_of(module):
            edges[module].add(target)
            # Importing a.b.c runs a/__init__ and a/b/__init__ first.
            parts = target.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if parent in MODULES and not module.startswith(parent + ".") and parent != module:
                    edges[module].add(parent)
    return edges


def layer(module: str) -> tuple[int, str]:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix], prefix
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_go_down_the_layers():
    wrong = []
    for module, targets in graph().items():
        if module == "rtseg":
            continue  # the root's lazy __getattr__ is checked below
        own_level, own_package = layer(module)
        for target in targets:
            level, package = layer(target)
            if level > own_level or (own_package, package) in FORBIDDEN_SIDEWAYS:
                wrong.append(f"{module} (layer {own_level}) imports {target} (layer {level})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_function_imports_of_rtseg_modules():
    inside = [f"{module}: {target}" for module in MODULES for target, in_function in imports_of(module)
              if in_function and module != "rtseg"]
    assert not inside, "imports of rtseg modules inside functions:\n" + "\n".join(sorted(inside))


def test_the_checker_sees_cycles_and_function_imports(tmp_path):
    # The walker must see what it is meant to forbid, or the tests above pass vacuously.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert ("rtseg.models", True) in imports_of("rtseg")  # the root's deferred import is found
    assert layer("rtseg.models.zoo.published") == (1, "rtseg.models")
