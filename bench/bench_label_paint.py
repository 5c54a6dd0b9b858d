"""Benchmark: label Paint on a 2D view, through the same path as the mouse.

Builds the workstation main window (with the 3D view), loads a CT with labels, selects a
vertebra, turns Paint on and drives a stroke in the axial view with Qt mouse events: one
press, 30 moves of half a brush radius (one dab each) and a release. After each move the Qt
event queue is processed, so the time of a dab includes the repaint of the views that show the
change. Then Undo and Redo of the stroke (Edit menu actions, repaints included).

Cases: the bundled sample CT (122x101x112, 3 mm) with its reference labels -- the baseline
row, measured in the same run -- and a full-size CT: the phantom at 0.586 mm, 513x450x473,
int16 CT and uint16 labels (~100 M voxels).

Columns:
  dab ms        median time of one mouse move carrying one dab (command + events + repaint)
  dab max       slowest such move
  press ms      mouse press (first dab, stroke start)
  release ms    mouse release: the once-per-stroke work on the GUI thread (a snapshot of the
                labels; motor units, vertebra list and 3D meshes start in the thread pool)
  ready ms      mouse release until the motor units, vertebra list and 3D meshes are current
  stroke ms     press + 30 moves + release, all events processed
  undo / redo   the whole stroke, GUI thread (repaints, snapshot; the rest as after release)
  undo kB       memory held by the stroke's undo step (indices + old + new values)
  peak MB       peak resident memory above the resident memory before the stroke
                (press .. redo), from /proc/self/status VmHWM after resetting it

Run: xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python bench/bench_label_paint.py [--small]
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

N_MOVES = 30


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def cases(small_only: bool):
    from spineplan.core.dicom.load import load_volume
    from spineplan.core.segmentation.importers import read_labels
    from spineplan.core.phantom import make_phantom

    s = ROOT / "sample_dicom"
    vol = load_volume(s)
    lab = read_labels([s / "reference" / "vertebrae_verse.nii.gz", s / "reference" / "discs_verse.nii.gz"], vol)
    yield "sample CT (baseline)", vol, lab
    if not small_only:
        ph = make_phantom(spacing=0.586)
        yield "full-size phantom CT", ph.ct, ph.labels


def _timed(action, app, win) -> float:
    """Seconds the GUI thread is busy with ``action`` (events processed); then waits until the
    background label work (motor units, vertebra list, 3D meshes) is done."""
    t = time.perf_counter()
    action()
    app.processEvents()
    busy = time.perf_counter() - t
    win.settle()
    return busy


def measure(win, app, vol, lab):
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest

    win.scene.set_volume(vol)
    win.set_labels(lab)
    win.settle()
    L3 = 22
    centre = lab.lps_points_from_ijk(np.argwhere(lab.array == L3)[:, ::-1].mean(0))
    win.scene.set_cursor(centre)
    win.vertebra_box.setCurrentText("L3")
    win.paint_button.click()
    view = win.views["axial"]
    app.processEvents()
    view.repaint()
    # a straight path in front of the body, in whole-pixel steps of at most half the brush
    # radius: one dab per move
    step_px = max(int(win.brush.radius_mm / 2 / view.request().mm_per_px), 1)
    x0, y0 = (int(round(c)) for c in view.lps_to_pixel(centre + [-20.0, -28.0, 0.0]))
    px = [QPoint(x0 + step_px * n, y0) for n in range(N_MOVES + 1)]

    dabs = [0]
    real_dab = win.brush._dab

    def counted(c):
        dabs[0] += 1
        real_dab(c)
    win.brush._dab = counted

    before = lab.array.copy() if lab.array.size < 5e6 else None
    gc.collect()
    rss0 = _status_kb("VmRSS")
    peak_ok = _reset_peak()
    t_stroke = time.perf_counter()
    t = time.perf_counter()
    QTest.mousePress(view, Qt.LeftButton, Qt.NoModifier, px[0])
    app.processEvents()
    press = time.perf_counter() - t
    moves, per_move_dabs = [], []
    for q in px[1:]:
        d0 = dabs[0]
        t = time.perf_counter()
        QTest.mouseMove(view, q)
        app.processEvents()
        moves.append(time.perf_counter() - t)
        per_move_dabs.append(dabs[0] - d0)
    t = time.perf_counter()
    QTest.mouseRelease(view, Qt.LeftButton, Qt.NoModifier, px[-1])
    app.processEvents()
    release = time.perf_counter() - t
    stroke = time.perf_counter() - t_stroke
    win.settle()
    units = time.perf_counter() - t
    del win.brush._dab
    cmd = win.scene.undo_stack._done[-1]
    undo_kb = sum(getattr(cmd, a).nbytes for a in ("_idx", "_old", "_new")) / 1024
    changed = len(cmd._idx)
    undo = _timed(win.undo_action.trigger, app, win)
    assert np.array_equal(win.scene.labels.array.reshape(-1)[cmd._idx], cmd._old), "undo failed"
    if before is not None:
        assert np.array_equal(win.scene.labels.array, before), "undo did not restore the labels"
    redo = _timed(win.redo_action.trigger, app, win)
    assert np.array_equal(win.scene.labels.array.reshape(-1)[cmd._idx], cmd._new), "redo failed"
    peak = (_status_kb("VmHWM") - rss0) / 1024 if peak_ok else float("nan")
    one = [m for m, d in zip(moves, per_move_dabs) if d == 1] or moves
    win.paint_button.click()
    return dict(dab=1000 * float(np.median(one)), dab_max=1000 * max(one), press=1000 * press,
                release=1000 * release, units=1000 * units, stroke=1000 * stroke, undo=1000 * undo, redo=1000 * redo,
                undo_kb=undo_kb, peak_mb=peak, dabs=dabs[0], voxels=changed)


def main():
    from PySide6.QtCore import QSettings

    from spineplan._qtapp import app_instance
    from spineplan.qt.main_window import MainWindow

    small_only = "--small" in sys.argv
    app = app_instance()
    tmp = tempfile.TemporaryDirectory()
    settings = QSettings(str(Path(tmp.name) / "settings.ini"), QSettings.IniFormat)
    settings.setValue("autosave_dir", str(Path(tmp.name) / "autosave"))
    win = MainWindow(settings=settings, with_3d=True)
    win.resize(1400, 900)
    win.show()
    app.processEvents()
    rows = []
    for name, vol, lab in cases(small_only):
        grid = "x".join(map(str, vol.size_ijk))
        r = measure(win, app, vol, lab)
        rows.append((name, grid, f"{vol.array.dtype}/{lab.array.dtype}", r))
        del vol, lab
        gc.collect()
    win.close()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''} "
          f"Python {platform.python_version()}, Xvfb + software OpenGL; window 1400x900 with 3D view")
    print(f"stroke: press + {N_MOVES} moves of half the 3 mm brush radius + release, axial view, Paint L3 "
          "onto background")
    hdr = (f"{'case':22s} {'grid':>12s} {'dtype':>13s} {'dabs':>5s} {'voxels':>7s} {'dab ms':>8s} "
           f"{'dab max':>8s} {'press':>7s} {'release':>8s} {'ready ms':>9s} {'stroke ms':>10s} {'undo ms':>8s} "
           f"{'redo ms':>8s} {'undo kB':>8s} {'peak MB':>8s}")
    print(hdr)
    for name, grid, dt, r in rows:
        print(f"{name:22s} {grid:>12s} {dt:>13s} {r['dabs']:5d} {r['voxels']:7d} {r['dab']:8.1f} "
              f"{r['dab_max']:8.1f} {r['press']:7.1f} {r['release']:8.0f} {r['units']:9.0f} {r['stroke']:10.0f} "
              f"{r['undo']:8.0f} {r['redo']:8.0f} {r['undo_kb']:8.1f} {r['peak_mb']:8.0f}")
    print("release/undo/redo: time the GUI thread is busy (a snapshot of the labels); motor units,\n"
          "vertebra list and 3D meshes are then computed in the thread pool: 'ready ms' = release\n"
          "until they are current (the GUI stays responsive meanwhile)")


if __name__ == "__main__":
    main()
