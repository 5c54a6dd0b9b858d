"""Benchmark the rehearsal renderer on the phantom (run on demand, not in CI).

    PYTHONPATH=. python bench/bench_rehearsal.py [--spacing 1.5] [--frames 12]

Prints one table; the baseline is an empty offscreen render window of the same size,
measured in the same run (the cost of a frame that draws nothing).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

from spineplan.core.phantom import make_phantom  # noqa: E402
from spineplan.core.teaching import playback_frames  # noqa: E402
from spineplan.core.export.animation import write_animation  # noqa: E402
from spineplan.render import rehearsal as R  # noqa: E402


def _plan(ph):
    c = np.array(ph.truth["discs"]["L4-L5"]["center_lps"])
    return {"level": "L4-L5", "side": "left", "procedure": "needle",
            "entry_lps": (c + [80.0, 85.0, 0.0]).tolist(), "target_lps": c.tolist(),
            "parameters": {"diameter_mm": 1.5}}


def _per_frame(scene, states, n=6):
    t = time.perf_counter()
    for fs in states[:n]:
        scene.apply(fs)
        scene.capture()
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spacing", type=float, default=1.5)
    ap.add_argument("--frames", type=int, default=12, help="frames per step")
    a = ap.parse_args()
    ph = make_phantom(spacing=a.spacing)
    plan = _plan(ph)
    rows = []

    vtk = R._vtk()
    rw = vtk.vtkRenderWindow()
    rw.SetOffScreenRendering(1)
    rw.SetSize(640, 480)
    rw.AddRenderer(vtk.vtkRenderer())
    rw.Render()
    t = time.perf_counter()
    for _ in range(10):
        rw.Render()
        w2i = vtk.vtkWindowToImageFilter()
        w2i.SetInput(rw)
        w2i.Update()
    rows.append(("baseline: empty 640x480 frame", (time.perf_counter() - t) / 10))
    rw.Finalize()

    t = time.perf_counter()
    scene = R.Rehearsal(plan, ph.ct, ph.labels, size=(640, 480), inset=True)
    rows.append((f"scene build (phantom {a.spacing} mm, CT {ph.ct.size_ijk})", time.perf_counter() - t))
    states = playback_frames(scene.steps, a.frames)
    scene.apply(states[0])
    scene.capture()
    rows.append(("frame 640x480 with inset", _per_frame(scene, states)))
    scene.close()
    scene = R.Rehearsal(plan, ph.ct, ph.labels, size=(640, 480), inset=False)
    scene.apply(states[0])
    scene.capture()
    rows.append(("frame 640x480 without inset", _per_frame(scene, states)))
    scene.close()
    scene = R.Rehearsal(plan, ph.ct, ph.labels, size=(320, 240), inset=True)
    scene.apply(states[0])
    scene.capture()
    rows.append(("frame 320x240 with inset", _per_frame(scene, states)))
    scene.close()

    t = time.perf_counter()
    frames = R.render_rehearsal(plan, ph.ct, ph.labels, size=(640, 480), frames_per_step=a.frames)
    rows.append((f"render_rehearsal total ({len(frames)} frames)", time.perf_counter() - t))
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        write_animation(frames, Path(d) / "r.gif")
        rows.append(("write GIF", time.perf_counter() - t))
        try:
            t = time.perf_counter()
            write_animation(frames, Path(d) / "r.mp4")
            rows.append(("write MP4", time.perf_counter() - t))
        except Exception as exc:  # noqa: BLE001 - report, do not fail the benchmark
            rows.append((f"write MP4 unavailable: {exc}", float("nan")))

    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
          f"python {platform.python_version()} vtk {vtk.vtkVersion.GetVTKVersion()}")
    w = max(len(r[0]) for r in rows)
    print(f"{'case'.ljust(w)}  seconds")
    for name, sec in rows:
        print(f"{name.ljust(w)}  {sec:8.3f}")


if __name__ == "__main__":
    main()
