"""Label corrections in the Segment tab: rename, merge, split at the crosshair, and paint /
erase strokes in the slice views, each one undo step, with the motor-unit table following."""

from __future__ import annotations

import gc

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QPoint, Qt  # noqa: E402

from spineplan.core.phantom import make_phantom  # noqa: E402

from .test_workstation import _make_window, _open, _propose, _set_labels, _unit_names, wait_units  # noqa: E402

L2, L3, L4, L5, L6 = 21, 22, 23, 24, 25


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(spacing=2.0)


@pytest.fixture()
def window(qtbot, tmp_path, phantom):
    w = _make_window(qtbot, tmp_path)
    _open(w, phantom, qtbot)
    _set_labels(w, phantom.labels)
    yield w
    w.close()
    gc.collect()


@pytest.fixture()
def errors(monkeypatch):
    shown = []
    monkeypatch.setattr("PySide6.QtWidgets.QMessageBox.critical",
                        lambda parent, title, text: shown.append((title, text)))
    return shown


_units = _unit_names


def _vertebrae(window):
    wait_units(window)  # the list follows the labels through the background work
    return [window.vertebra_box.itemText(n) for n in range(window.vertebra_box.count())]


def _choose(window, vertebra, name):
    wait_units(window)
    window.vertebra_box.setCurrentText(vertebra)
    window.name_box.setCurrentText(name)
    assert window.vertebra_box.currentText() == vertebra and window.name_box.currentText() == name


def _z_of(labels, mask):
    return labels.lps_points_from_ijk(np.argwhere(mask)[:, ::-1].astype(float))[:, 2]


def test_vertebra_list_follows_the_label_map(window):
    names = _vertebrae(window)
    assert names == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    _choose(window, "L5", "L6")
    window.rename_vertebra()
    names = _vertebrae(window)
    assert names[-2:] == ["L6", "S1"] and "L5" not in names
    assert window.vertebra_box.currentText() == "L6"
    window.undo_action.trigger()
    assert "L5" in _vertebrae(window)


def test_rename_changes_voxels_and_table_and_undo_restores(window, phantom):
    before = window.scene.labels.array.copy()
    assert _units(window)[-2:] == ["L4-L5", "L5-S1"]
    _choose(window, "L5", "L6")
    assert window.rename_vertebra()
    arr = window.scene.labels.array
    assert not (arr == L5).any()
    assert np.array_equal(arr == L6, before == L5)
    # everything else is unchanged, except that the disc below follows (L5/S1 -> L6/S1)
    other = (before != L5) & (before != 124)
    assert np.array_equal(arr[other], before[other])
    assert np.array_equal(arr == 125, before == 124) and (arr == 125).any()
    assert _units(window)[-1] == "L6-S1" and "L5-S1" not in _units(window)
    row = window.unit_table.rowCount() - 1
    assert window.unit_table.item(row, 1).text() != "-"  # L6-S1 keeps its disc heights
    window.undo_action.trigger()
    assert np.array_equal(window.scene.labels.array, before)
    assert _units(window)[-2:] == ["L4-L5", "L5-S1"]


def test_rename_to_an_existing_name_is_refused(window, errors):
    before = window.scene.labels.array.copy()
    steps = len(window.scene.undo_stack)
    _choose(window, "L3", "L4")
    assert window.rename_vertebra() is False
    assert errors and "L4 is already in the label map" in errors[0][1]
    assert np.array_equal(window.scene.labels.array, before)
    assert len(window.scene.undo_stack) == steps


def test_merge_gives_the_absorbed_voxels_to_the_selected_vertebra(window):
    before = window.scene.labels.array.copy()
    _choose(window, "L3", "L4")
    assert window.merge_vertebra()
    arr = window.scene.labels.array
    assert not (arr == L4).any()
    assert np.array_equal(arr == L3, (before == L3) | (before == L4))
    assert "L3-L4" not in _units(window) and "L4-L5" not in _units(window)
    assert "L4" not in _vertebrae(window)
    window.undo_action.trigger()
    assert np.array_equal(window.scene.labels.array, before)
    assert "L3-L4" in _units(window)


def test_merge_with_an_absent_vertebra_is_refused(window, errors):
    before = window.scene.labels.array.copy()
    _choose(window, "L3", "L6")
    assert window.merge_vertebra() is False
    assert errors and "not in the label map" in errors[0][1]
    assert np.array_equal(window.scene.labels.array, before)


def test_split_at_the_crosshair_separates_at_the_plane(window, phantom):
    lab = window.scene.labels
    before = lab.array.copy()
    centre = np.array(phantom.truth["vertebrae"]["L3"]["center_lps"])
    window.scene.set_cursor(centre + [0, 0, 1.0])  # between voxel planes (z = ... .15 + 2n)
    z0 = float(window.scene.cursor_lps[2])
    _choose(window, "L3", "L6")
    assert window.split_vertebra_at_cursor()
    arr = window.scene.labels.array
    upper, lower = arr == L3, arr == L6
    assert upper.sum() > 100 and lower.sum() > 100
    assert np.array_equal(upper | lower, before == L3)
    assert _z_of(lab, upper).min() > z0 and _z_of(lab, lower).max() < z0
    assert _z_of(lab, upper).min() - z0 < 2.0 and z0 - _z_of(lab, lower).max() < 2.0  # one voxel each side
    window.undo_action.trigger()
    assert np.array_equal(window.scene.labels.array, before)


def test_split_refused_when_the_plane_misses_or_the_name_is_used(window, phantom, errors):
    before = window.scene.labels.array.copy()
    l1 = np.array(phantom.truth["vertebrae"]["L1"]["center_lps"])
    window.scene.set_cursor(l1)  # far above L3
    _choose(window, "L3", "L6")
    assert window.split_vertebra_at_cursor() is False
    assert "does not cut L3" in errors[-1][1]
    window.scene.set_cursor(phantom.truth["vertebrae"]["L3"]["center_lps"])
    _choose(window, "L3", "L4")
    assert window.split_vertebra_at_cursor() is False
    assert "L4 is already in the label map" in errors[-1][1]
    assert np.array_equal(window.scene.labels.array, before)


def _stroke(qtbot, view, pts_lps):
    """Left-button drag through LPS points; returns the LPS of the pixels actually used."""
    view.repaint()
    px = [QPoint(*(int(round(c)) for c in view.lps_to_pixel(p))) for p in pts_lps]
    qtbot.mousePress(view, Qt.LeftButton, pos=px[0])
    for q in px[1:]:
        qtbot.mouseMove(view, q)
    qtbot.mouseRelease(view, Qt.LeftButton, pos=px[-1])
    return [view.pixel_to_lps(q.x(), q.y()) for q in px]


def _dist_to_path(pts, path):
    d = np.full(len(pts), np.inf)
    for a, b in zip(path[:-1], path[1:]):
        ab = b - a
        t = np.clip(((pts - a) @ ab) / max(ab @ ab, 1e-9), 0, 1)
        d = np.minimum(d, np.linalg.norm(pts - (a + t[:, None] * ab), axis=1))
    return d


def _brush_on_l3(window, phantom):
    """Crosshair on L3's centre, L3 selected: (labels, their array before, L3's centre)."""
    lab = window.scene.labels
    centre = np.array(phantom.truth["vertebrae"]["L3"]["center_lps"])
    window.scene.set_cursor(centre)
    window.vertebra_box.setCurrentText("L3")
    return lab, lab.array.copy(), centre


def test_paint_stroke_in_the_axial_view_is_one_undo_step(window, phantom, qtbot):
    lab, before, centre = _brush_on_l3(window, phantom)
    window.paint_button.click()
    assert all(v.tool == "paint" for v in window.views.values())
    assert window.brush.radius_mm == 3.0
    steps = len(window.scene.undo_stack)
    view = window.views["axial"]
    # lateral to the body, in soft tissue (label 0)
    path = _stroke(qtbot, view, [centre + [40, -10, 0], centre + [47, -10, 0], centre + [55, -10, 0]])
    arr = window.scene.labels.array
    changed = np.argwhere(arr != before)
    assert len(window.scene.undo_stack) == steps + 1
    assert len(changed) > 20
    k_slice = int(np.rint(lab.ijk_points_from_lps(np.asarray(window.scene.cursor_lps))[2]))
    assert set(changed[:, 0].tolist()) == {k_slice}  # only the displayed slice
    k, j, i = changed.T
    assert (arr[k, j, i] == L3).all() and (before[k, j, i] == 0).all()
    pts = lab.lps_points_from_ijk(changed[:, ::-1].astype(float))
    assert np.abs(pts[:, 2] - window.scene.cursor_lps[2]).max() <= 1.0  # half a voxel
    assert _dist_to_path(pts, np.array(path)).max() <= 3.0 + 1e-6
    # the whole path is covered: every background voxel of the slice within 2 mm of it is painted
    kk, jj, ii = np.nonzero(before[k_slice:k_slice + 1] == 0)
    slice_pts = lab.lps_points_from_ijk(np.stack([ii, jj, kk + k_slice], 1).astype(float))
    near = _dist_to_path(slice_pts, np.array(path)) <= 2.0
    assert near.sum() > 10 and (arr[kk[near] + k_slice, jj[near], ii[near]] == L3).all()
    # the motor-unit table is up to date after the stroke (a few voxels do not change it)
    assert _units(window) == ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    window.undo_action.trigger()  # the whole stroke
    assert np.array_equal(window.scene.labels.array, before)


def test_erase_stroke_clears_the_selected_label_only(window, phantom, qtbot):
    lab, before, centre = _brush_on_l3(window, phantom)
    view = window.views["axial"]
    window.paint_button.click()
    _stroke(qtbot, view, [centre + [40, -10, 0], centre + [55, -10, 0]])
    painted = (window.scene.labels.array == L3) & (before == 0)
    assert painted.sum() > 20
    window.erase_button.click()
    assert not window.paint_button.isChecked() and all(v.tool == "erase" for v in window.views.values())
    _stroke(qtbot, view, [centre + [40, -10, 0], centre + [55, -10, 0]])
    assert np.array_equal(window.scene.labels.array, before)  # the painted voxels are 0 again
    # through the body: L3 voxels within the brush become 0, other labels stay
    path = _stroke(qtbot, view, [centre + [-6, 0, 0], centre + [6, 0, 0]])
    arr = window.scene.labels.array
    changed = np.argwhere(arr != before)
    k, j, i = changed.T
    assert len(changed) > 10 and (before[k, j, i] == L3).all() and (arr[k, j, i] == 0).all()
    pts = lab.lps_points_from_ijk(changed[:, ::-1].astype(float))
    assert _dist_to_path(pts, np.array(path)).max() <= 3.0 + 1e-6
    assert np.array_equal(arr[arr != before], np.zeros(len(changed), arr.dtype))
    window.undo_action.trigger()
    assert np.array_equal(window.scene.labels.array[arr != before], before[arr != before])


def test_sagittal_stroke_stays_on_its_slice_and_crosshair_returns(window, phantom, qtbot):
    lab, before, centre = _brush_on_l3(window, phantom)
    window.paint_button.click()
    view = window.views["sagittal"]
    _stroke(qtbot, view, [centre + [0, -45, 0], centre + [0, -55, 10]])  # in front of the body
    changed = np.argwhere(window.scene.labels.array != before)
    i_slice = int(np.rint(lab.ijk_points_from_lps(np.asarray(window.scene.cursor_lps))[0]))
    assert len(changed) > 10 and set(changed[:, 2].tolist()) == {i_slice}
    window.paint_button.click()  # off: the crosshair tool is back
    assert all(v.tool == "crosshair" for v in window.views.values())
    painted = window.scene.labels.array.copy()
    target = centre + [0, -20, 5]
    x, y = view.lps_to_pixel(target)
    qtbot.mouseClick(view, Qt.LeftButton, pos=QPoint(int(round(x)), int(round(y))))
    assert np.array_equal(window.scene.labels.array, painted)
    assert np.linalg.norm(window.scene.cursor_lps - target) < 1.5


def test_trajectory_view_paints_a_sphere_and_plan_handles_still_drag(window, phantom, qtbot):
    window.level_box.setCurrentText("L4-L5")
    window.proc_box.setCurrentText("needle")
    _propose(window)
    plan = window.scene.plan
    assert plan is not None
    window.panel.setCurrentIndex(2)
    down = window.plan_views["down"]
    right, _, _ = down.axes()
    before = window.scene.labels.array.copy()
    window.vertebra_box.setCurrentText("L4")
    window.keep_others_box.setChecked(False)  # overwrite whatever is there
    window.paint_button.click()
    assert down.tool == "paint" and down.brush_axis() is None
    spot = np.asarray(plan.target_lps) + 8.0 * right  # beside the target handle
    (p,) = _stroke(qtbot, down, [spot])
    lab = window.scene.labels
    changed = np.argwhere(lab.array != before)
    pts = lab.lps_points_from_ijk(changed[:, ::-1].astype(float))
    assert len(changed) > 5 and (lab.array[tuple(changed.T)] == L4).all()
    assert np.linalg.norm(pts - p, axis=1).max() <= 3.0 + 1e-6
    assert len(set(changed[:, 0].tolist())) >= 2  # a sphere: several axial slices
    # the brush outline is drawn, and the oblique view re-blended only where the sphere shows,
    # exactly as a full redraw would
    assert np.array_equal(down.grab_array(), _full_render(down))
    # the target handle still drags the plan while Paint is on
    steps = len(window.scene.undo_stack)
    painted = lab.array.copy()
    _stroke(qtbot, down, [np.asarray(plan.target_lps), np.asarray(plan.target_lps) + 4.0 * right])
    assert window.scene.plan is not plan and np.array_equal(window.scene.labels.array, painted)
    assert len(window.scene.undo_stack) == steps + 1


def test_3d_meshes_are_rebuilt_once_per_stroke(qtbot, tmp_path, phantom, monkeypatch):
    import spineplan.core.meshes as meshes

    w = _make_window(qtbot, tmp_path, with_3d=True)
    try:
        _open(w, phantom, qtbot)
        _set_labels(w, phantom.labels)
        built = []
        real = meshes.label_meshes_lps
        monkeypatch.setattr(meshes, "label_meshes_lps", lambda lab, *a, **k: built.append(1) or real(lab, *a, **k))
        centre = np.array(phantom.truth["vertebrae"]["L3"]["center_lps"])
        w.scene.set_cursor(centre)
        w.vertebra_box.setCurrentText("L3")
        w.paint_button.click()
        steps = len(w.scene.undo_stack)
        _stroke(qtbot, w.views["axial"], [centre + [40, -10, 0], centre + [55, -10, 0]])
        assert len(w.scene.undo_stack) == steps + 1
        wait_units(w)
        assert len(built) == 1 and 22 in w.view3d._mesh_by_label
        w.undo_action.trigger()  # the 3D view follows label changes again
        wait_units(w)
        assert len(built) == 2
    finally:
        w.close()
        gc.collect()


def test_3d_meshes_are_built_off_the_gui_thread_and_only_the_newest_shows(qtbot, tmp_path, phantom, monkeypatch):
    import threading

    import spineplan.core.meshes as meshes

    w = _make_window(qtbot, tmp_path, with_3d=True)
    try:
        _open(w, phantom, qtbot)
        threads, shown = [], []
        real = meshes.label_meshes_lps
        monkeypatch.setattr(meshes, "label_meshes_lps",
                            lambda lab, *a, **k: threads.append(threading.current_thread()) or real(lab, *a, **k))
        real_show = w.view3d._show_meshes
        monkeypatch.setattr(w.view3d, "_show_meshes", lambda polys: shown.append(sorted(polys)) or real_show(polys))
        w.set_labels(phantom.labels)
        assert w.view3d.meshes_pending and not w.view3d._mesh_by_label  # set_labels returned at once
        from spineplan.core.segmentation.edit import rename_command

        w.scene.undo_stack.push(rename_command(w.scene, L5, L6))  # supersedes the first build
        wait_units(w)
        assert len(shown) == 1 and L6 in shown[0] and L5 not in shown[0]
        assert L6 in w.view3d._mesh_by_label and L5 not in w.view3d._mesh_by_label
        assert threads and all(t is not threading.main_thread() for t in threads)
    finally:
        w.close()
        gc.collect()


def _full_render(view):
    """The view's pixels drawn from scratch (a window change discards the cached image)."""
    view.set_window(view.level, view.width_)
    return view.grab_array()


def test_a_dab_shows_at_once_by_reblending_only_the_pixels_it_touched(window, phantom, qtbot, monkeypatch):
    import spineplan.qt.slice_view as sv

    lab, before, centre = _brush_on_l3(window, phantom)
    window.paint_button.click()
    window.brush_radius.setValue(6.0)
    for v in window.views.values():
        v.repaint()
    calls = []
    real = sv.reslice
    monkeypatch.setattr(sv, "reslice", lambda vol, req, *a, **k: calls.append((vol, k.get("window"))) or
                        real(vol, req, *a, **k))
    axial = window.views["axial"]
    # 1) a dab away from the crosshair lines: only the axial plane crosses it
    spot = centre + [40, -10, 0]
    x, y = (int(round(c)) for c in axial.lps_to_pixel(spot))
    shown = axial.grab_array()
    qtbot.mousePress(axial, Qt.LeftButton, pos=QPoint(x, y))
    qtbot.wait(1)
    arr = window.scene.labels.array
    assert arr is lab.array and (arr != before).sum() > 10
    after = axial.grab_array()
    assert (np.abs(after[y, x].astype(int) - shown[y, x]).sum() > 30)  # the dab is on screen
    assert not np.array_equal(after, shown)
    # no image reslice, no whole-view label reslice: one small window of labels for the axial view
    assert len(calls) == 1 and calls[0][0] is lab
    x0, y0, x1, y1 = calls[0][1]
    r_px = 6.0 / axial.request().mm_per_px
    assert x0 <= x < x1 and y0 <= y < y1 and (x1 - x0) * (y1 - y0) <= (2 * r_px + 6) ** 2
    assert np.array_equal(after, _full_render(axial))  # exactly what a full redraw shows
    qtbot.mouseRelease(axial, Qt.LeftButton, pos=QPoint(x, y))
    # 2) a dab on the crosshair: every view shows it, each exactly as a full redraw would
    calls.clear()
    painted = window.scene.labels.array.copy()
    x, y = (int(round(c)) for c in axial.lps_to_pixel(centre + [0, -25, 0]))
    window.scene.set_cursor(axial.pixel_to_lps(x, y))
    for v in window.views.values():
        v.repaint()
    calls.clear()
    window.keep_others_box.setChecked(False)
    qtbot.mousePress(axial, Qt.LeftButton, pos=QPoint(x, y))
    qtbot.wait(1)
    assert (window.scene.labels.array != painted).any()
    assert len(calls) == 3 and all(w is not None for _, w in calls)
    for v in window.views.values():
        patched = v.grab_array()
        assert np.array_equal(patched, _full_render(v)), v.orientation
    qtbot.mouseRelease(axial, Qt.LeftButton, pos=QPoint(x, y))
    # undo of the strokes redraws the same way, back to the unpainted labels
    window.undo_action.trigger()
    window.undo_action.trigger()
    assert np.array_equal(window.scene.labels.array, before)
    for v in window.views.values():
        assert np.array_equal(v.grab_array(), _full_render(v)), v.orientation
    v = window.views["axial"]
    window.scene.set_cursor(centre)
    x, y = (int(round(c)) for c in v.lps_to_pixel(spot))
    assert np.abs(v.grab_array()[y, x].astype(int) - shown[y, x]).sum() <= 3  # the first dab is gone


def test_motor_units_are_computed_off_the_gui_thread_and_only_the_newest_lands(window, qtbot, monkeypatch):
    import threading

    import spineplan.core.segmentation.motor_units as mu

    threads, real = [], mu.compute_motor_units
    monkeypatch.setattr(mu, "compute_motor_units",
                        lambda *a, **k: threads.append(threading.current_thread()) or real(*a, **k))
    landed = []
    window.scene.events.motor_units.connect(lambda units: landed.append([u.name for u in units]))
    _choose(window, "L5", "L6")
    assert window.rename_vertebra()
    # the edit returns before its motor units exist: the table waits, disabled
    assert window.units_pending and not window.unit_table.isEnabled()
    window.undo_action.trigger()  # a newer edit before the first result is delivered
    assert _units(window)[-2:] == ["L4-L5", "L5-S1"] and window.unit_table.isEnabled()
    qtbot.wait(200)
    # the superseded result (with L6-S1) never reached the table
    assert landed == [_units(window)]
    assert threads and all(t is not threading.main_thread() for t in threads)


def test_planning_while_the_motor_units_are_pending_uses_the_current_labels(window, errors):
    _choose(window, "L5", "L6")
    assert window.rename_vertebra()
    assert window.units_pending
    window.level_box.clear()
    window.level_box.addItems(["L6-S1"])  # the name exists only in the edited labels
    _propose(window)
    assert not errors
    assert window.scene.plan is not None and window.scene.plan.level == "L6-S1"


def test_closing_while_motor_units_are_computed_is_safe(qtbot, tmp_path, phantom):
    w = _make_window(qtbot, tmp_path)
    _open(w, phantom, qtbot)
    w.set_labels(phantom.labels)
    assert w.units_pending
    w.close()
    qtbot.waitUntil(lambda: not w._units_job.running, timeout=30000)
    assert w.units_pending  # the result arrived after the close and was dropped
    gc.collect()


def test_a_plan_is_proposed_off_the_gui_thread_and_dropped_if_the_labels_change(window, qtbot, monkeypatch):
    import threading

    import spineplan.core.planning.planner as planner

    threads, real = [], planner.make_plan
    monkeypatch.setattr(planner, "make_plan", lambda *a, **k: threads.append(threading.current_thread()) or real(*a, **k))
    window.level_box.setCurrentText("L4-L5")
    window.proc_box.setCurrentText("needle")
    assert window.propose_plan() is not None
    assert window.plan_pending and not window.propose_button.isEnabled()
    assert window.propose_plan() is None  # one proposal at a time
    _choose(window, "L5", "L6")  # waits for the proposal
    assert window.scene.plan is not None and window.scene.plan.level == "L4-L5"
    assert threads and all(t is not threading.main_thread() for t in threads)
    steps = len(window.scene.undo_stack)
    window.propose_plan()
    assert window.rename_vertebra()  # the labels change while the proposal runs
    wait_units(window)
    assert len(window.scene.undo_stack) == steps + 1  # the rename only: the stale proposal is dropped
    assert "labels changed while planning" in window.statusBar().currentMessage()
    assert window.propose_button.isEnabled()


def test_corrections_reuse_the_background_label_count(window, monkeypatch):
    """The labels present, counted in the thread pool with the motor units, serve the correction
    buttons while the labels are unchanged (a full-size count took 0.1-0.5 s per click); after an
    edit whose count has not landed yet they are counted afresh."""
    import spineplan.qt.main_window as mw
    from spineplan.core.segmentation.edit import rename_command

    wait_units(window)
    calls = []
    real = mw._labels_present
    monkeypatch.setattr(mw, "_labels_present", lambda arr: calls.append(1) or real(arr))
    assert window._present_labels() == real(window.scene.labels.array) and not calls
    window.scene.undo_stack.push(rename_command(window.scene, L5, L6))
    fresh = window._present_labels()  # before the background count of the rename lands
    assert calls and L6 in fresh and L5 not in fresh
    wait_units(window)
    calls.clear()
    assert window._present_labels() == fresh and not calls
