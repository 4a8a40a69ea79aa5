"""The package's layers: every module imports only its own layer and the layers below it,
and no import circle exists (imports inside functions count too).

Reads the source with `ast`, so it sees every import, wherever it is written.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "microrep"

#: Bottom to top. A module belongs to the first layer whose prefix names it.
LAYERS = (
    ("ground", ("microrep._version", "microrep.errors", "microrep.fileio", "microrep.device",
                "microrep.registry", "microrep.backend")),
    ("config", ("microrep.config",)),
    ("data", ("microrep.data",)),
    ("nn", ("microrep.nn",)),
    ("pairs", ("microrep.pairs",)),
    ("analysis", ("microrep.analysis",)),
    ("embedding", ("microrep.embedding",)),
    ("training", ("microrep.training",)),
    ("launchers", ("microrep.launchers",)),
    ("commands", ("microrep.commands",)),
    ("cli", ("microrep.cli", "microrep.__main__")),
    ("api", ("microrep",)),
)


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def layer_of(module):
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def resolve(name):
    """The module an import names (a name imported from a package may be its submodule)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports_of(module, source=None):
    """{imported microrep module: line} of every import in a module's source."""
    found = {}
    source = MODULES[module].read_text() if source is None else source
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name if name in MODULES else node.module for name in names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "microrep" and resolve(name) != module:
                found.setdefault(resolve(name), node.lineno)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module):
    own = layer_of(module)
    upward = [f"{target} (line {line}, layer {LAYERS[layer_of(target)][0]})"
              for target, line in GRAPH[module].items() if layer_of(target) > own]
    assert not upward, f"{module} (layer {LAYERS[own][0]}) imports upward: {', '.join(upward)}"


def find_circle(graph):
    """One import circle of `graph` ({module: {imported: line}}) as a list, or None."""
    state, path = {}, []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for target in graph[module]:
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                circle = visit(target)
                if circle:
                    return circle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            circle = visit(module)
            if circle:
                return circle
    return None


def test_no_import_circle():
    circle = find_circle(GRAPH)
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_checks_find_what_they_look_for():
    """An import inside a function body is seen, and a planted circle is found."""
    source = "def f():\n    from microrep.commands.demo import run_demo\n"
    seen = imports_of("microrep.nn.tower", source)
    assert list(seen) == ["microrep.commands.demo"]
    assert layer_of("microrep.commands.demo") > layer_of("microrep.nn.tower")
    planted = dict(GRAPH, **{"microrep.errors": {"microrep.config.fields": 1}})
    assert find_circle(planted)[0] in ("microrep.errors", "microrep.config.fields")
