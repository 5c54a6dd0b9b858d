"""The layers hold: the core runs without a screen (no Qt, no VTK rendering), render without
Qt, and every module of spineplan stands in a layer of the import-linter contract."""

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import spineplan
import spineplan.core
import spineplan.render

ROOT = Path(__file__).resolve().parents[2]


def _modules_loaded_by(package, prefixes) -> str:
    mods = [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.startswith({tuple(prefixes)!r}))\n"
        "print(','.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_core_imports_no_qt_and_no_vtk_rendering():
    bad = _modules_loaded_by(spineplan.core, ("PySide6", "vtkmodules.vtkRendering", "vtkmodules.qt",
                                              "spineplan.qt", "spineplan.render"))
    assert bad == "", f"core pulled in: {bad}"


def test_render_imports_no_qt():
    bad = _modules_loaded_by(spineplan.render, ("PySide6", "vtkmodules.qt", "spineplan.qt"))
    assert bad == "", f"render pulled in: {bad}"


def test_every_module_is_in_one_layer():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = [c for c in cfg if c["type"] == "layers"]
    assert len(layers) == 1 and len(cfg) == 1  # one contract for the whole stack
    names = [m.strip() for layer in layers[0]["layers"] for m in layer.replace(":", "|").split("|")]
    assert len(names) == len(set(names))
    packages = {"spineplan", "spineplan.core"}  # containers of layers, no code of their own
    for m in pkgutil.walk_packages(spineplan.__path__, "spineplan."):
        if m.name in packages:
            continue
        owners = [n for n in names if m.name == n or m.name.startswith(n + ".")]
        assert len(owners) == 1, f"{m.name} is in {owners or 'no layer'} of pyproject.toml's contract"
