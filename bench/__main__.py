"""One benchmark entry point: ``python -m bench [--long] [--slices N]`` (``./dev.sh bench``).

Runs every measurement of issue 19 and prints ONE table; each row has its anchor measured in
the same run (on a shared, loaded machine only same-run ratios mean something):

- scan: spineplan's metadata scan of a 300-slice 512x512 CT series, in process, against a
  pydicom header-only read of the same files;
- info: ``spineplan info`` of that series as a whole process, against a bare interpreter that
  imports numpy (the floor of any Python command);
- convert: ``spineplan convert`` to .nii as a whole process, against SimpleITK's
  ImageSeriesReader + WriteImage and against dcm2niix (PyPI ``dcm2niix``), whole processes too;
- segment: the CT segmenter on the phantom at 1.5 mm, against a naive threshold + connected
  components labelling of the same CT;
- mesh: the 3D view's label meshes of the phantom, against one plain flying-edges surface of
  all bone (no per-label surfaces, smoothing or decimation);
- plan re-check: one drag step's re-check (tube, L4-L5), against a check voxelising the
  instrument over the whole grid;
- plan proposal: ``make_plan`` (tube, L4-L5), against one re-check (the proposal in re-checks);
- start to first frame: ``spineplan gui SAMPLE --screenshot`` as a process, against a process
  that opens a bare Qt window with a VTK widget and saves a screenshot;
- scroll: one axial scroll step on a 512x512x300 CT in the workstation, against the
  scipy map_coordinates reslice of the same plane (what every frame cost before);
- 3D frame: a camera step over the phantom's label meshes, against an empty render;
- with ``--long``: a cohort (``spineplan batch``) of 8 dev MRI studies on Dask with 1 and 2
  workers, against the same cases in a plain loop (bench/bench_cohort.py; minutes).

The GUI rows need a display: without one the command re-runs itself under ``xvfb-run``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
# processes are timed as a user meets them: with their compiled modules cached (__pycache__),
# even where the environment asks Python not to write them
ENV.pop("PYTHONDONTWRITEBYTECODE", None)

_SITK_CONVERT = """
import sys, SimpleITK as sitk
r = sitk.ImageSeriesReader(); r.SetFileNames(r.GetGDCMSeriesFileNames(sys.argv[1]))
sitk.WriteImage(r.Execute(), sys.argv[2])
"""

_QT_FLOOR = """
import sys
import vtkmodules.qt
vtkmodules.qt.PyQtImpl = "PySide6"
import vtkmodules.vtkRenderingOpenGL2
from PySide6.QtWidgets import QApplication, QMainWindow
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
from vtkmodules.vtkRenderingCore import vtkRenderer
app = QApplication([])
w = QMainWindow(); v = QVTKRenderWindowInteractor(w); w.setCentralWidget(v)
r = vtkRenderer(); v.GetRenderWindow().AddRenderer(r)
w.resize(1400, 900); w.show(); app.processEvents(); v.GetRenderWindow().Render()
w.grab().save(sys.argv[1])
v.GetRenderWindow().Finalize()
"""


def best(fn, n: int = 3) -> float:
    """Best of ``n`` wall-clock runs (the least disturbed by the other users of the machine)."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def run(cmd: list[str], **kw) -> None:
    subprocess.run(cmd, check=True, capture_output=True, env=ENV, **kw)


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, str, float, str]] = []

    def add(self, what: str, ours: float, anchor_name: str, anchor: float, unit: str = "s") -> None:
        self.rows.append((what, ours, anchor_name, anchor, unit))
        print(f"  {what}: {ours:.3f} {unit} (anchor {anchor_name}: {anchor:.3f} {unit})",
              file=sys.stderr, flush=True)

    def print(self) -> None:
        w = max(len(r[0]) for r in self.rows)
        a = max(len(r[2]) for r in self.rows)
        print(f"{'measure':{w}s} {'spineplan':>10s}  {'anchor (same run)':{a}s} {'anchor':>10s} {'ratio':>7s}")
        for what, ours, name, anchor, unit in self.rows:
            ratio = ours / anchor if anchor > 0 else float("nan")
            print(f"{what:{w}s} {ours:8.3f} {unit:2s}  {name:{a}s} {anchor:8.3f} {unit:2s} {ratio:6.2f}x")
        print("ratio = spineplan / anchor (below 1: spineplan is faster); best of 3 unless noted")


def dicom_rows(t: Table, slices: int, tmp: Path) -> None:
    from spineplan.core.dicom.scan import scan
    from spineplan.core.dicom.write import write_series
    from spineplan.core.volume import Volume

    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 2000, size=(slices, 512, 512), dtype=np.int16)
    series = tmp / "ct"
    write_series(Volume(arr, spacing=(0.7, 0.7, 1.0), origin=(-180, -180, 0), modality="CT"),
                 series, uid_seed="bench")
    del arr
    files = sorted(series.glob("*.dcm"))
    import pydicom

    t.add(f"scan {len(files)} files (in process)", best(lambda: scan(series)),
          "pydicom header-only read", best(lambda: [pydicom.dcmread(f, stop_before_pixels=True) for f in files]))
    py = sys.executable
    t.add(f"info {len(files)} files (process)", best(lambda: run([py, "-m", "spineplan", "info", str(series)])),
          "python -c 'import numpy'", best(lambda: run([py, "-c", "import numpy"])))
    out = tmp / "out"
    out.mkdir()
    ours = best(lambda: run([py, "-m", "spineplan", "convert", str(series), "-o", str(out / "sp.nii")]))
    (tmp / "sitk_convert.py").write_text(_SITK_CONVERT)
    sitk = best(lambda: run([py, str(tmp / "sitk_convert.py"), str(series), str(out / "itk.nii")]))
    t.add("convert to .nii (process)", ours, "SimpleITK read+write (process)", sitk)
    d2n = shutil.which("dcm2niix") or str(Path(sys.executable).with_name("dcm2niix"))
    if Path(d2n).exists() or shutil.which("dcm2niix"):
        def dcm2niix():
            d = out / "d2n"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            run([d2n, "-z", "n", "-o", str(d), str(series)])
        t.add("convert to .nii (process)", ours, "dcm2niix (process)", best(dcm2niix))
    else:
        print("  dcm2niix not installed (pip install dcm2niix): row left out", file=sys.stderr)


def core_rows(t: Table) -> None:
    from scipy import ndimage

    from spineplan.core import meshes
    from spineplan.core.phantom import make_phantom
    from spineplan.core.planning.plan import Anatomy, Plan
    from spineplan.core.planning.planner import evaluate, make_plan
    from spineplan.core.segmentation.base import segment_volume

    ph = make_phantom(spacing=1.5)

    def naive_segment():
        b = ndimage.binary_opening(ph.ct.array > 200)
        lab, n = ndimage.label(b)
        ndimage.sum(b, lab, range(1, n + 1))

    t.add("segment CT phantom 1.5 mm", best(lambda: segment_volume(ph.ct), n=1),
          "threshold + components", best(naive_segment, n=1))
    t.add("mesh: 3D view label meshes", best(lambda: meshes.label_meshes_lps(
        ph.labels, voxel_mm=meshes.DISPLAY_VOXEL_MM, max_triangles=meshes.DISPLAY_MAX_TRIANGLES), n=1),
        "one bone iso-surface", best(lambda: meshes.iso_surface_lps(ph.ct, 200, voxel_mm=None,
                                                                    smooth_iterations=0, max_triangles=None), n=1))
    ph1 = make_phantom(spacing=1.0)
    anat = Anatomy(ph1.ct, ph1.labels)
    t0 = time.perf_counter()
    plan = make_plan(anat, "L4-L5", "tube", "left")
    propose = time.perf_counter() - t0
    moved = Plan.from_dict(plan.to_dict())
    moved.entry_lps = plan.entry_lps + [0.5, 0.5, 0.0]  # one drag step
    recheck = float(np.median([best(lambda: evaluate(moved, anat), n=1) for _ in range(7)]))
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_plan_check import naive_full_grid

    naive = best(lambda: naive_full_grid(anat, plan, plan.parameters.get("diameter_mm", 16) / 2), n=1)
    t.add("plan re-check, tube, phantom 1 mm", recheck, "instrument over whole grid", naive)
    t.add("plan proposal, tube, phantom 1 mm", propose, "one re-check", recheck)


def gui_rows(t: Table, tmp: Path) -> None:
    py = sys.executable
    sample = ROOT / "sample_dicom"
    ours = best(lambda: run([py, "-m", "spineplan", "gui", str(sample), "--screenshot", str(tmp / "g.png")]))
    (tmp / "qt_floor.py").write_text(_QT_FLOOR)
    floor = best(lambda: run([py, str(tmp / "qt_floor.py"), str(tmp / "q.png")]))
    t.add("start to first frame, sample (process)", ours, "bare Qt+VTK window (process)", floor)
    r = subprocess.run([py, "-m", "bench", "--gui-inprocess"], capture_output=True, text=True, env=ENV,
                       cwd=str(ROOT), check=True)
    for what, ours_ms, name, anchor_ms in json.loads(r.stdout.strip().splitlines()[-1]):
        t.add(what, ours_ms, name, anchor_ms, unit="ms")


def gui_inprocess() -> None:
    """Scroll and 3D frame times in this process (printed as JSON for the parent)."""
    from scipy import ndimage

    from bench.bench_gui import scroll_window
    from spineplan.core.phantom import make_phantom

    app, big, win, v = scroll_window()
    n = 40
    times = []
    for _ in range(n):  # a wheel step: the axial view re-slices, the others move the crosshair
        t = time.perf_counter()
        v.scroll(1)
        app.processEvents()
        times.append(time.perf_counter() - t)
    per_frame = float(np.median(times))
    req = v.request()
    m = big.ijk_from_lps()
    xs = (np.arange(req.width) - (req.width - 1) / 2) * req.mm_per_px
    ys = (np.arange(req.height) - (req.height - 1) / 2) * req.mm_per_px
    A, b = m[:3, :3], m[:3, 3]
    base, ax, ay = A @ req.center_lps + b, A @ req.right, A @ req.down

    def old_reslice():
        coords = (base[:, None, None] + ax[:, None, None] * xs[None, None, :]
                  + ay[:, None, None] * ys[None, :, None])
        ndimage.map_coordinates(big.array, coords[::-1], order=1, mode="constant", cval=-1000,
                                prefilter=False)

    old = float(np.median([best(old_reslice, n=1) for _ in range(10)]))
    rows = [("axial scroll step, 512x512x300 (median)", 1000 * per_frame,
             "map_coordinates reslice alone", 1000 * old)]
    ph = make_phantom(spacing=1.5)
    win.scene.set_volume(ph.ct)
    win.set_labels(ph.labels)
    win.settle()
    rw = win.view3d.GetRenderWindow()
    rw.Render()
    cam = win.view3d.renderer.GetActiveCamera()
    f3d = []
    for _ in range(10):
        cam.Azimuth(5)
        f3d.append(best(rw.Render, n=1))
    win.view3d.renderer.RemoveAllViewProps()
    empty = float(np.median([best(rw.Render, n=1) for _ in range(10)]))
    rows.append(("3D frame, phantom label meshes (median)", 1000 * float(np.median(f3d)),
                 "empty render", 1000 * empty))
    win.view3d.close_vtk()
    win.close()
    print(json.dumps(rows))


def cohort_rows(t: Table) -> None:
    subprocess.run([sys.executable, str(ROOT / "bench" / "bench_cohort.py"), "-n", "8", "--workers", "1,2"],
                   check=True, env=ENV, stdout=sys.stderr)
    doc = json.loads((ROOT / "bench" / "results" / "cohort.json").read_text())
    rows = {(r["mode"], r["workers"]): r["seconds"] for r in doc["rows"]}
    loop = next(s for (mode, _), s in rows.items() if "loop" in mode)
    dask = {w: s for (mode, w), s in rows.items() if "loop" not in mode}
    what = f"{doc.get('n', 8)} studies"
    t.add(f"batch of {what}, Dask 1 worker", dask[1], "plain loop", loop)
    t.add(f"batch of {what}, Dask 2 workers", dask[2], "Dask 1 worker", dask[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--long", action="store_true", help="also the cohort of 8 studies (minutes)")
    ap.add_argument("--slices", type=int, default=300, help="slices of the DICOM series (default 300)")
    ap.add_argument("--only", choices=["dicom", "core", "gui", "cohort"], action="append",
                    help="run only these groups of rows")
    ap.add_argument("--gui-inprocess", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.gui_inprocess:
        gui_inprocess()
        return 0
    groups = args.only or ["dicom", "core", "gui"] + (["cohort"] if args.long else [])
    if "gui" in groups and not os.environ.get("DISPLAY") and shutil.which("xvfb-run"):
        os.execvp("xvfb-run", ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable,
                               "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    t = Table()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "dicom" in groups:
            dicom_rows(t, args.slices, tmp)
        if "core" in groups:
            core_rows(t)
        if "gui" in groups:
            gui_rows(t, tmp)
        if "cohort" in groups:
            cohort_rows(t)
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {load:.1f} at start, {load_end:.1f} at the end; software OpenGL (Xvfb/llvmpipe)")
    t.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
