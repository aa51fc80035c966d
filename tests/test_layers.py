"""The layers of sparsehw: every module imports only from its own layer or the layers below.

Bottom-up (docs/framework.md has the picture)::

    sparsehw.params, sparsehw.process        parameter specs, bounded tool runs
    sparsehw.golden                          golden models, cycle models
    sparsehw.hw                              RTL (Amaranth components)
    sparsehw.verif | sparsehw.synth          testbenches, runner | Yosys/nextpnr wrappers
    sparsehw.registry + sparsehw.families    the blocks and how to build/test/measure them
    sparsehw.flow                            generate, simulate, measure, synthesize
    sparsehw.experiments (+ sparsehw.model)  sweeps, report, studies
    sparsehw.cli, sparsehw.__main__          argument parsing

``verif`` and ``synth`` are siblings: neither imports the other (a testbench does not synthesize,
a synthesis wrapper does not simulate); both sit on ``hw``. Inside a layer anything goes.

Every import counts: module level, inside functions, ``importlib.import_module("...")`` and
``__import__("...")`` with a literal name. The installed layout comes from pyproject.toml's
``[tool.setuptools.package-dir]`` (``hw/`` is ``sparsehw.hw``, ...).
"""

import ast
import tomllib
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parent.parent

#: (layer, rank, module prefixes). A module may import a module of a lower rank, or of its own
#: layer; never a higher rank, nor another layer of the same rank.
LAYERS = (
    ("params", 0, ("sparsehw.params", "sparsehw.process")),
    ("golden", 1, ("sparsehw.golden",)),
    ("hw", 2, ("sparsehw.hw",)),
    ("verif", 3, ("sparsehw.verif",)),
    ("synth", 3, ("sparsehw.synth",)),
    ("registry", 4, ("sparsehw.registry", "sparsehw.families")),
    ("flow", 5, ("sparsehw.flow",)),
    ("experiments", 6, ("sparsehw.experiments", "sparsehw.model")),
    ("cli", 7, ("sparsehw.cli", "sparsehw.__main__")),
)


def layer_of(module):
    """``(layer, rank)`` of a dotted module name of the sparsehw namespace, or None when the name
    is outside it. The bare package ``sparsehw`` (its ``__init__``) is the bottom."""
    if module == "sparsehw":
        return ("sparsehw", -1)
    best = None
    for name, rank, prefixes in LAYERS:
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[2]:
                    best = (name, rank, len(prefix))
    if best is not None:
        return best[:2]
    if module.startswith("sparsehw."):
        return ("unknown", None)
    return None


def _imported_names(tree, module, is_package):
    """``(line, dotted name)`` of every import in ``tree`` (function-level included)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                # ``from sparsehw import flow`` imports the module sparsehw.flow.
                yield node.lineno, f"{target}.{alias.name}" if target == "sparsehw" else target
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else \
                func.id if isinstance(func, ast.Name) else None
            first = node.args[0]
            if called in ("import_module", "__import__") and isinstance(first, ast.Constant) \
                    and isinstance(first.value, str):
                yield node.lineno, first.value


def modules_of(roots):
    """``{dotted module name: path}`` of every ``.py`` file under ``roots``, a dict of package
    name to directory (``{"sparsehw.hw": repo/"hw", ...}``); a directory that is itself the root
    of another package is skipped."""
    found = {}
    claimed = {Path(d).resolve() for d in roots.values()}
    for package, directory in roots.items():
        directory = Path(directory).resolve()
        for path in sorted(directory.rglob("*.py")):
            if any(parent in claimed and parent != directory
                   for parent in path.parents if directory in parent.parents):
                continue
            parts = path.relative_to(directory).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package,) + parts)] = path
    return found


def upward_imports(roots):
    """Every import that goes up a layer (or sideways between sibling layers), as lines
    ``path:line: module (layer) imports name (layer)``; empty when the layering holds."""
    problems = []
    for module, path in sorted(modules_of(roots).items()):
        mine = layer_of(module)
        if mine is None:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for line, name in _imported_names(tree, module, path.name == "__init__.py"):
            theirs = layer_of(name)
            if theirs is None or theirs[0] == mine[0]:
                continue
            if mine[1] is None or theirs[1] is None:
                problems.append(f"{path}:{line}: {module} imports {name}, outside every layer")
            elif theirs[1] >= mine[1]:
                problems.append(f"{path}:{line}: {module} ({mine[0]}) imports {name} "
                                f"({theirs[0]}): not below it")
    return problems


def installed_roots(repo=REPO):
    """Package name to directory, from pyproject.toml (what ``pip install`` maps)."""
    config = tomllib.loads((repo / "pyproject.toml").read_text())
    return {package: repo / directory
            for package, directory in config["tool"]["setuptools"]["package-dir"].items()}


def test_every_layer_has_a_home():
    roots = installed_roots()
    assert set(roots) == {"sparsehw", "sparsehw.hw", "sparsehw.golden", "sparsehw.verif",
                          "sparsehw.synth"}
    modules = modules_of(roots)
    for module in modules:
        assert layer_of(module) is not None and layer_of(module)[1] is not None, \
            f"{module} belongs to no layer: add it to LAYERS"
    assert "sparsehw.hw.ring" in modules and "sparsehw.flow" in modules


def test_no_import_goes_up():
    problems = upward_imports(installed_roots())
    assert not problems, "imports that go up a layer:\n" + "\n".join(problems)


def _tree(tmp_path, files):
    roots = {"sparsehw": tmp_path / "sparsehw", "sparsehw.golden": tmp_path / "golden",
             "sparsehw.hw": tmp_path / "hw", "sparsehw.verif": tmp_path / "verif",
             "sparsehw.synth": tmp_path / "synth"}
    for directory in roots.values():
        directory.mkdir()
        (directory / "__init__.py").write_text("")
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return roots


def test_checker_accepts_downward_imports(tmp_path):
    roots = _tree(tmp_path, {
        "golden/nm.py": "from sparsehw.params import ParamSpec\n",
        "hw/spu.py": "import sparsehw.golden.nm as golden\nfrom . import arith\n",
        "hw/arith.py": "",
        "verif/tb.py": "from sparsehw.hw.spu import SPU\nfrom sparsehw.verif import common\n",
        "sparsehw/flow.py": "from sparsehw import registry\nfrom sparsehw.synth.yosys import x\n",
        "sparsehw/cli.py": "from sparsehw import flow\nimport importlib\n"
                           "importlib.import_module('sparsehw.experiments.report')\n",
    })
    assert upward_imports(roots) == []


@pytest.mark.parametrize("path, text, culprit", [
    # the one the issue asks for: an upward import hidden inside a function
    ("golden/nm.py", "def f():\n    import sparsehw.cli\n", "sparsehw.cli"),
    ("hw/spu.py", "from sparsehw.verif.stream import pack\n", "sparsehw.verif.stream"),
    ("verif/tb.py", "from sparsehw.synth import yosys\n", "sparsehw.synth"),     # siblings
    ("synth/yosys.py", "from ..verif import runner\n", "sparsehw.verif"),      # relative
    ("sparsehw/registry.py", "from sparsehw import flow\n", "sparsehw.flow"),
    ("sparsehw/flow.py", "import importlib\n"
                         "importlib.import_module('sparsehw.experiments.sweep')\n",
     "sparsehw.experiments.sweep"),
    ("sparsehw/params.py", "def f():\n    __import__('sparsehw.hw.spu')\n", "sparsehw.hw.spu"),
])
def test_checker_reports_an_upward_import(tmp_path, path, text, culprit):
    roots = _tree(tmp_path, {path: text})
    problems = upward_imports(roots)
    assert len(problems) == 1, problems
    assert culprit in problems[0] and problems[0].startswith(str((tmp_path / path).resolve()))


def test_every_package_is_installed():
    """A package directory missing from pyproject's package list would be left out of a
    non-editable install (``pip install .``)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {module for module, path in modules_of(installed_roots()).items()
             if path.name == "__init__.py"}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "these packages in pyproject.toml have no directory"
