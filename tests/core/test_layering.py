"""The core must run without a screen: importing every core module loads no Qt and no VTK rendering."""

import pkgutil
import subprocess
import sys

import spineplan.core


def test_core_imports_no_qt_and_no_vtk_rendering():
    mods = [m.name for m in pkgutil.walk_packages(spineplan.core.__path__, "spineplan.core.")]
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('PySide6', 'vtkmodules.vtkRendering', "
        "'vtkmodules.qt', 'spineplan.qt', 'spineplan.render')))\n"
        "print(','.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"core pulled in: {r.stdout}"
