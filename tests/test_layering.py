"""The package's layers import in one direction, with no cycles.

Every import of every module counts, those inside functions too, and so do the
method modules that `methods/registry.py` names (it imports them by name). Each
subpackage may import only the subpackages listed for it; the entry points
(`main`, `report`, `export`, `score`, `scorer`, `api`; `scorer` is an old name that
says the new one) may import anything, and
nothing imports them.
"""

import ast
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "ae4ad_jax"

# One line per subpackage: what it may import (besides itself).
LAYERS = {
    "core": (),
    "nets": ("core",),
    "estimators": ("core",),
    "data": ("core",),
    "runs": ("core",),
    "parallel": ("core", "nets"),
    "methods": ("core", "nets", "estimators", "parallel"),
    "config": ("core", "nets", "estimators", "data", "parallel", "methods", "runs"),
    "evaluation": ("core", "nets", "estimators", "data", "parallel", "methods"),
    "reporting": ("core", "estimators", "data", "parallel", "methods", "evaluation", "runs"),
    "serving": ("core", "nets", "data", "parallel", "methods", "config", "evaluation",
                "runs"),
    "training": ("core", "nets", "estimators", "data", "parallel", "methods", "config",
                 "evaluation", "runs", "reporting", "serving"),
}
ENTRY_POINTS = ("main", "report", "export", "score", "scorer", "api")
# Libraries a layer's modules may not import at module level: the networks know no
# optimiser or data; serving loads no trainer state and draws no figures when it starts.
LIBRARIES = {"nets": ("optax", "tensorflow_datasets", "orbax"),
             "serving": ("optax", "flax.training", "matplotlib")}


def _modules(root):
    """{module name: file} of every .py file under `root`/PACKAGE."""
    found = {}
    for directory, _, names in os.walk(os.path.join(root, PACKAGE)):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                module = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                found[module.removesuffix(".__init__")] = path
    return found


def _registry_targets(tree):
    """The modules a registry names in its MODULES = ("module", ...) literal."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "MODULES"
                                                for t in node.targets):
            return {f"{PACKAGE}.methods.{v.value}" for v in node.value.elts}
    return set()


def imports(root=ROOT):
    """({module: set of package modules it imports}, {module: set of libraries imported
    at module level})."""
    modules = _modules(root)
    graph, libraries = {}, {}
    for module, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        here = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        targets, top_level = set(), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules
                         else base for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] != PACKAGE:
                    if node in tree.body:
                        top_level.add(name)
                    continue
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != module and not module.startswith(name + "."):
                    targets.add(name)
        if module.endswith("methods.registry"):
            targets |= _registry_targets(tree) & set(modules)
        graph[module], libraries[module] = targets, top_level
    return graph, libraries


def layer(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def violations(graph, libraries):
    """Imports that the layer rules forbid, as sentences."""
    found = []
    for module, targets in sorted(graph.items()):
        own = layer(module)
        for target in sorted(targets):
            other = layer(target)
            if other in ENTRY_POINTS:
                found.append(f"{module} imports the entry point {target}")
            elif own in LAYERS and other != own and other not in LAYERS[own]:
                found.append(f"{module} ({own}) imports {target} ({other})")
        for library in sorted(libraries.get(module, ())):
            if any(library == banned or library.startswith(banned + ".")
                   for banned in LIBRARIES.get(own, ())):
                found.append(f"{module} ({own}) imports {library} at module level")
    return found


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_subpackage_has_a_rule_and_says_what_it_may_import():
    graph, _ = imports()
    found = {layer(m) for m in graph if layer(m)}
    assert found == set(LAYERS) | set(ENTRY_POINTS), found ^ (set(LAYERS) | set(ENTRY_POINTS))
    for name, allowed in LAYERS.items():
        with open(os.path.join(ROOT, PACKAGE, name, "__init__.py")) as f:
            doc = ast.get_docstring(ast.parse(f.read()))
        stated = doc.split("May import:")[1].split("Libraries:")[0].strip().rstrip(".")
        stated = () if stated.startswith("nothing") else tuple(
            part.strip().split(" ")[0] for part in stated.split(","))
        assert set(stated) == set(allowed), (name, stated, allowed)


def _third_party(path):
    """The top-level names of the libraries a module imports anywhere (not the standard
    library's, not the package's)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {PACKAGE}


def test_every_subpackage_names_its_modules_and_the_libraries_they_import():
    """Each subpackage's docstring names every module (`name.py`) and, after
    "Libraries:", exactly the libraries its modules import."""
    modules = _modules(ROOT)
    for name in LAYERS:
        with open(os.path.join(ROOT, PACKAGE, name, "__init__.py")) as f:
            doc = ast.get_docstring(ast.parse(f.read()))
        files = {os.path.basename(path) for module, path in modules.items()
                 if layer(module) == name and not path.endswith("__init__.py")}
        assert [f for f in sorted(files) if f"`{f}`" not in doc] == [], name
        stated = doc.split("Libraries:")[1].split("(")[0].strip().rstrip(".")
        stated = set() if stated == "none" else {part.strip() for part in stated.split(",")}
        used = set().union(*(_third_party(path) for module, path in modules.items()
                             if layer(module) == name))
        assert stated == used, (name, sorted(stated - used), sorted(used - stated))


def test_layers_import_downwards_only():
    assert violations(*imports()) == []


def test_the_package_has_no_import_cycle():
    graph, _ = imports()
    assert len(graph) > 50  # every module was read
    assert cycles(graph) == []


@pytest.fixture
def tangled(tmp_path):
    """A package whose net imports the trainer inside a function, and whose trainer and
    evaluator import each other."""
    files = {
        "__init__.py": "",
        "nets/__init__.py": "",
        "nets/net.py": "import optax\n\ndef f():\n    from ae4ad_jax.training import loop\n",
        "training/__init__.py": "",
        "training/loop.py": "from ae4ad_jax.evaluation import scoring\n",
        "evaluation/__init__.py": "",
        "evaluation/scoring.py": "from ..training import loop\n",
    }
    for name, text in files.items():
        path = tmp_path / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


def test_the_checks_find_an_upward_import_a_banned_library_and_a_cycle(tangled):
    graph, libraries = imports(tangled)
    assert violations(graph, libraries) == [
        "ae4ad_jax.evaluation.scoring (evaluation) imports ae4ad_jax.training.loop (training)",
        "ae4ad_jax.nets.net (nets) imports ae4ad_jax.training.loop (training)",
        "ae4ad_jax.nets.net (nets) imports optax at module level"]
    assert cycles(graph) == [["ae4ad_jax.evaluation.scoring", "ae4ad_jax.training.loop"]]
