"""Import hygiene: ``import ctpnp`` is quick and lazy; the library's rooms load what they may.

One fresh interpreter records, for every module of ctpnp, the imports its own
code executes at import time (a wrapper around ``builtins.__import__``); what
a fresh import of a module loads is then the closure of those edges (parent
packages included). Light modules are also imported, each in its own fresh
interpreter, and ``sys.modules`` is checked directly.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ctpnp

ROOT = Path(ctpnp.__file__).parent

RECORDER = r"""
import builtins, importlib, json, pkgutil, sys
import ctpnp
edges = {}
original = builtins.__import__
def recording(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__", "")
    if importer.startswith("ctpnp") and level == 0:
        targets = edges.setdefault(importer, set())
        targets.add(name)
        for item in fromlist or ():
            if name.startswith("ctpnp") and item != "*":
                targets.add(f"{name}.{item}")
    return original(name, globals, locals, fromlist, level)
builtins.__import__ = recording
modules = sorted(m.name for m in pkgutil.walk_packages(ctpnp.__path__, "ctpnp."))
for module in modules:
    importlib.import_module(module)
known = set(sys.modules)
print(json.dumps({"modules": modules,
                  "edges": {k: sorted(t for t in v if not t.startswith("ctpnp") or t in known)
                            for k, v in edges.items()}}))
"""

LIBRARY = ("ctpnp.scanner", "ctpnp.io", "ctpnp.data", "ctpnp.projector", "ctpnp.physics",
           "ctpnp.phantoms", "ctpnp.simulation", "ctpnp.priors", "ctpnp.solvers",
           "ctpnp.quality", "ctpnp.evaluation", "ctpnp.train", "ctpnp.registry", "ctpnp.atomic",
           "ctpnp.linalg", "ctpnp.versions")
APPLICATIONS = ("ctpnp.apps", "ctpnp.figures", "ctpnp.cli")
TORCH_FREE = ("ctpnp.scanner", "ctpnp.io", "ctpnp.data", "ctpnp.registry", "ctpnp.atomic",
              "ctpnp.apps.progress")


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.fixture(scope="module")
def graph() -> dict:
    """``modules`` (every module of ctpnp) and ``edges`` (importer -> names it imports)."""
    done = subprocess.run([sys.executable, "-c", RECORDER], capture_output=True, text=True,
                          check=True, timeout=300)
    return json.loads(done.stdout)


def _loads(module: str, edges: dict[str, list[str]]) -> set[str]:
    """Every name a fresh import of ``module`` loads through ctpnp's own import statements."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]  # parent packages
        todo += edges.get(name, [])
    return seen


def test_third_party_rooms_have_one_home_each(graph):
    homes = {"odl": ("ctpnp.projector",), "astra": ("ctpnp.projector",),
             "pydicom": ("ctpnp.io",), "nibabel": ("ctpnp.io",),
             "matplotlib": ("ctpnp.figures",)}
    for importer, names in graph["edges"].items():
        for name in names:
            if _top(name) in homes:
                assert _under(importer, homes[_top(name)]), f"{importer} imports {name}"


def test_the_library_never_loads_an_application(graph):
    for module in graph["modules"]:
        if _under(module, LIBRARY):
            loaded = _loads(module, graph["edges"])
            assert not {m for m in loaded if _under(m, APPLICATIONS)}, module


def test_the_scanner_description_and_io_load_no_torch(graph):
    for module in graph["modules"]:
        if _under(module, TORCH_FREE):
            loaded = {_top(m) for m in _loads(module, graph["edges"])}
            assert "torch" not in loaded and "safetensors" not in loaded, module


def test_no_module_chooses_a_matplotlib_backend():
    for path in ROOT.rglob("*.py"):
        assert "matplotlib.use(" not in path.read_text(), path


@pytest.mark.parametrize("module", ["ctpnp.scanner", "ctpnp.io", "ctpnp.data", "ctpnp.registry"])
def test_light_rooms_in_a_fresh_interpreter(module):
    """No torch, ODL or ASTRA; pydicom only for ``ctpnp.io`` (``ctpnp.data`` reads DICOM
    through ``ctpnp.io`` inside its functions)."""
    code = (f"import sys, {module}; print(sorted({{m.split('.')[0] for m in sys.modules}}))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                       text=True, check=True).stdout.replace("'", '"'))
    assert "torch" not in loaded and "odl" not in loaded and "astra" not in loaded
    assert ("pydicom" in loaded) == (module == "ctpnp.io")


def test_import_ctpnp_is_quick_and_resolves_every_subpackage_lazily():
    code = """
import sys, time
start = time.perf_counter()
import ctpnp
seconds = time.perf_counter() - start
light = "torch" not in sys.modules and "numpy" not in sys.modules
resolved = [name for name in ctpnp.SUBPACKAGES if getattr(ctpnp, name).__name__ == "ctpnp." + name]
print(seconds, light, len(resolved), len(ctpnp.SUBPACKAGES), callable(ctpnp.io.read_ct_series))
"""
    seconds, light, resolved, total, io_ok = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert float(seconds) < 0.3 and light == "True"
    assert resolved == total and io_ok == "True"
    with pytest.raises(AttributeError, match="nonsense"):
        ctpnp.nonsense  # noqa: B018


def test_every_subpackage_is_listed(graph):
    top_level = {m.split(".")[1] for m in graph["modules"]}
    assert top_level == set(ctpnp.SUBPACKAGES)


def test_the_readme_layout_names_every_package_once():
    """The Layout table of the README has a line for each part of ctpnp and each folder
    of scripts, and names nothing that does not exist."""
    readme = (ROOT.parent / "README.md").read_text()
    table = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    first_cells = [row.split("|")[1] for row in rows]
    named = [name for cell in first_cells for name in re.findall(r"`(ctpnp\.\w+|[\w/]+/)`", cell)]
    assert sorted(n.removeprefix("ctpnp.") for n in named if n.startswith("ctpnp.")) == sorted(
        ctpnp.SUBPACKAGES)
    folders = [n for n in named if n.endswith("/")]
    assert len(folders) == len(set(folders)) and all((ROOT.parent / f).is_dir() for f in folders)
