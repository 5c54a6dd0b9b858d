"""Benchmark: start to first rendered frame, slice scroll per frame, 3D frame time.

Run under a display or Xvfb: xvfb-run -a .venv/bin/python bench/bench_gui.py
Baselines measured in the same run: reslicing alone (numpy, no Qt) for the scroll, and an
empty VTK render for the 3D frame.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def first_frame_seconds() -> float:
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "spineplan", "gui", str(ROOT / "sample_dicom"),
                        "--screenshot", str(Path(d) / "s.png")], check=True, capture_output=True)
        return time.perf_counter() - t


def scroll_window():
    """The main window (3D view on) showing a random 512x512x300 CT, shown and painted once:
    (app, volume, window, axial view). The scroll benchmarks of this file and bench/__main__.py
    start from it."""
    from spineplan._qtapp import app_instance
    from spineplan.core.volume import Volume
    from spineplan.qt.main_window import MainWindow

    app = app_instance()
    rng = np.random.default_rng(0)
    big = Volume(rng.integers(-1000, 1500, (300, 512, 512), dtype=np.int16), spacing=(0.7, 0.7, 1.0),
                 modality="CT")
    win = MainWindow(with_3d=True)
    win.resize(1400, 900)
    win.show()
    app.processEvents()
    win.scene.set_volume(big)
    app.processEvents()
    v = win.views["axial"]
    v.repaint()
    return app, big, win, v


def main():
    from spineplan.core.phantom import make_phantom
    from spineplan.render.slicing import reslice

    rows = []
    rows.append(("process start -> screenshot of sample (s)", first_frame_seconds(), None))
    app, big, win, v = scroll_window()
    n = 20
    t = time.perf_counter()
    for _ in range(n):
        v.scroll(1)
        v.repaint()
    per_frame = (time.perf_counter() - t) / n
    req = v.request()
    t = time.perf_counter()
    for _ in range(n):
        reslice(big, req)
    base = (time.perf_counter() - t) / n
    rows.append(("axial scroll per frame, 512x512x300 (ms)", 1000 * per_frame, 1000 * base))
    ph = make_phantom(spacing=1.5)
    win.scene.set_volume(ph.ct)
    win.set_labels(ph.labels)
    rw = win.view3d.GetRenderWindow()
    rw.Render()
    t = time.perf_counter()
    for k in range(10):
        win.view3d.renderer.GetActiveCamera().Azimuth(5)
        rw.Render()
    f3d = (time.perf_counter() - t) / 10
    win.view3d.renderer.RemoveAllViewProps()
    t = time.perf_counter()
    for _ in range(10):
        rw.Render()
    empty = (time.perf_counter() - t) / 10
    rows.append(("3D frame, phantom label meshes (ms)", 1000 * f3d, 1000 * empty))
    win.close()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, software OpenGL (Xvfb/llvmpipe)")
    print(f"{'measure':44s} {'spineplan':>10s} {'baseline':>10s}")
    for name, val, b in rows:
        print(f"{name:44s} {val:10.2f} {'' if b is None else f'{b:10.2f}'}")
    print("baselines: numpy reslice alone (scroll); empty VTK render (3D)")


if __name__ == "__main__":
    main()
