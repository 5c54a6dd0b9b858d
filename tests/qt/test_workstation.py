"""The workstation under Xvfb: rendered pixels, display conventions, W/L, scrolling,
measurements with undo, error dialogs, and the --screenshot command."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402

from spineplan.core.measurements import Measurement  # noqa: E402
from spineplan.core.phantom import make_phantom  # noqa: E402
from spineplan.core.planning.safety import CheckId  # noqa: E402
from spineplan.core.segmentation import labels as L  # noqa: E402
from spineplan.core.volume import Volume  # noqa: E402
from spineplan.qt.main_window import MainWindow  # noqa: E402


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(spacing=2.0)


def _make_window(qtbot, tmp_path, with_3d=False, size=(1200, 900)):
    """A shown MainWindow with settings and autosaves in the test's temporary folder."""
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    settings.setValue("autosave_dir", str(tmp_path / "autosave"))
    w = MainWindow(settings=settings, with_3d=with_3d)
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    return w


@pytest.fixture()
def window(qtbot, tmp_path):
    w = _make_window(qtbot, tmp_path)
    yield w
    w.close()
    gc.collect()


def _open(window, phantom, qtbot):
    window.scene.set_volume(phantom.ct)
    qtbot.wait(10)
    for v in window.views.values():
        v.repaint()
    return window


def wait_units(window, timeout_s: float = 60.0):
    """Wait until the window's motor units and 3D label meshes (both computed in the thread
    pool) are current."""
    assert window.settle(timeout_s), "motor units or label meshes never arrived"
    return window


def _propose(window):
    """Propose a plan (computed in the thread pool) and wait for it."""
    window.propose_plan()
    return wait_units(window)


def _set_labels(window, labels):
    window.set_labels(labels)
    return wait_units(window)


def _unit_names(window):
    wait_units(window)
    return [window.unit_table.item(r, 0).text() for r in range(window.unit_table.rowCount())]


def _gray(view, x, y):
    a = view.grab_array()
    return a[int(round(y)), int(round(x))].astype(int)


def test_views_render_bone_where_the_cursor_is(window, phantom, qtbot):
    _open(window, phantom, qtbot)
    for v in window.views.values():
        a = v.grab_array()
        assert a.std() > 10, f"{v.orientation} view is blank"
    # move the crosshair to the centre of the L3 body: bright bone there in every view
    body = np.array(phantom.truth["vertebrae"]["L3"]["center_lps"])
    window.scene.set_cursor(body)
    for v in window.views.values():
        v.repaint()
        x, y = v.lps_to_pixel(body)
        px = _gray(v, x + 3, y + 3)  # beside the crosshair line
        assert px.mean() > 100, (v.orientation, px)
        air = _gray(v, 3, v.height() - 40)
        assert air.mean() < 40


def test_left_marker_on_screen_right_in_radiological(window, phantom, qtbot):
    _open(window, phantom, qtbot)
    marker = np.array(phantom.truth["left_marker_lps"])
    window.scene.set_cursor(marker)
    for name in ("axial", "coronal"):
        v = window.views[name]
        v.repaint()
        x, _ = v.lps_to_pixel(marker)
        assert x > v.width() / 2, name  # patient's left on the screen's right
        a = v.grab_array().astype(int).sum(2)
        cols = np.where(a > 3 * 250)[1]  # the metal bead is the brightest thing
        assert cols.size and cols.mean() > v.width() / 2
    window.set_convention("neurological")
    for name in ("axial", "coronal"):
        v = window.views[name]
        v.repaint()
        x, _ = v.lps_to_pixel(marker)
        assert x < v.width() / 2, name
        a = v.grab_array().astype(int).sum(2)
        cols = np.where(a > 3 * 250)[1]
        assert cols.size and cols.mean() < v.width() / 2


def test_window_preset_changes_grey_value(window, phantom, qtbot):
    _open(window, phantom, qtbot)
    v = window.views["axial"]
    disc = np.array(phantom.truth["discs"]["L3-L4"]["center_lps"])
    window.scene.set_cursor(disc + [0, -10, 0])
    v.repaint()
    x, y = v.lps_to_pixel(disc + [0, -10, 0])
    bone_window = _gray(v, x + 4, y + 4).mean()
    window.preset_box.setCurrentText("CT soft tissue")  # narrower window: soft tissue brighter
    v.repaint()
    soft_window = _gray(v, x + 4, y + 4).mean()
    assert soft_window > bone_window + 20


def test_scroll_changes_slice_and_status(window, phantom, qtbot):
    _open(window, phantom, qtbot)
    v = window.views["axial"]
    k0 = v.slice_index()
    z0 = window.scene.cursor_lps[2]
    v.scroll(3)
    assert v.slice_index() == k0 + 3
    assert abs(window.scene.cursor_lps[2] - (z0 + 3 * phantom.ct.spacing[2])) <= phantom.ct.spacing[2] / 2
    from PySide6.QtCore import QPoint, Qt

    qtbot.mouseMove(v, QPoint(v.width() // 2, v.height() // 2))
    qtbot.wait(20)
    msg = window.statusBar().currentMessage()
    assert "LPS" in msg and f"{window.scene.cursor_lps[2]:.1f}" in msg


def test_distance_measurement_and_undo(window, phantom, qtbot):
    from PySide6.QtCore import QPoint, Qt

    _open(window, phantom, qtbot)
    v = window.views["axial"]
    window.set_tool("distance")
    a_px, b_px = (v.width() // 2 - 100, v.height() // 2), (v.width() // 2 + 60, v.height() // 2)
    qtbot.mouseClick(v, Qt.LeftButton, pos=QPoint(*a_px))
    qtbot.mouseClick(v, Qt.LeftButton, pos=QPoint(*b_px))
    assert len(window.scene.annotations) == 1
    m = window.scene.annotations[0]
    expected = 160 * v.request().mm_per_px
    voxel = phantom.ct.spacing[0]
    assert abs(m.value() - expected) <= voxel / 2
    assert window.measure_list.count() == 1
    window.undo_action.trigger()
    assert window.scene.annotations == []
    window.redo_action.trigger()
    assert len(window.scene.annotations) == 1 and window.scene.annotations[0] is m
    window.measure_list.setCurrentRow(0)
    window.delete_selected_measurement()
    assert window.scene.annotations == []
    window.undo_action.trigger()
    assert len(window.scene.annotations) == 1


def test_known_phantom_distance(phantom):
    """The distance tool on two known LPS points reports their distance exactly."""
    c1 = np.array(phantom.truth["discs"]["L3-L4"]["center_lps"])
    c2 = np.array(phantom.truth["discs"]["L4-L5"]["center_lps"])
    m = Measurement("distance", [c1.tolist(), c2.tolist()])
    assert abs(m.value() - np.linalg.norm(c2 - c1)) < 1e-9
    cobb = Measurement("cobb", [[0, 0, 0], [10, 0, 0], [0, 0, 5], [10, 0, 5 + 10 * np.tan(np.radians(12))]])
    assert abs(cobb.value() - 12.0) < 1e-6


def test_broken_folder_shows_error_and_keeps_case(window, phantom, qtbot, tmp_path, monkeypatch):
    _open(window, phantom, qtbot)
    shown = []
    monkeypatch.setattr("PySide6.QtWidgets.QMessageBox.critical",
                        lambda parent, title, text: shown.append((title, text)))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.dcm").write_bytes(b"garbage" * 20)
    assert window.open_path(str(tmp_path / "bad"), block=True) is False
    assert shown and "no loadable" in shown[0][1]
    assert window.scene.volume is phantom.ct


def test_background_loading_of_sample(window, qtbot, sample_dicom):
    w = window.open_path(str(sample_dicom))
    with qtbot.waitSignal(w.signals.finished, timeout=30000):
        pass
    qtbot.wait(50)
    assert window.scene.volume is not None and window.scene.volume.array.shape == (112, 101, 122)


def test_gui_screenshot_command(tmp_path, sample_dicom):
    out = tmp_path / "shot.png"
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "spineplan", "gui", str(sample_dicom), "--screenshot", str(out),
                        "--labels", str(sample_dicom / "reference" / "vertebrae_verse.nii.gz")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    import imageio.v2 as iio

    img = iio.imread(out)[..., :3].astype(int)
    h, w = img.shape[:2]
    quads = [img[30:h // 2, :w // 3], img[30:h // 2, w // 3:2 * w // 3], img[h // 2:, :w // 3],
             img[h // 2:, w // 3:2 * w // 3]]
    for q in quads:
        assert q.std() > 5  # every view quadrant has content (the 3D view included)
    # the 3D quadrant shows coloured vertebra meshes (not grey): VTK pixels were captured
    q3d = quads[3]
    sat = q3d.max(2) - q3d.min(2)
    assert (sat > 60).sum() > 200
    r = subprocess.run([sys.executable, "-m", "spineplan", "gui", str(tmp_path / "nope"), "--screenshot",
                        str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("spineplan: error:")


def test_plan_on_phantom_drag_recheck_and_undo(window, phantom, qtbot):
    """Propose a plan in the GUI, drag its entry across the midline: the live check turns
    red (wrong side), the whole drag is one undo step."""
    from PySide6.QtCore import QPoint, Qt

    _open(window, phantom, qtbot)
    _set_labels(window, phantom.labels)
    window.level_box.setCurrentText("L4-L5")
    window.side_box.setCurrentText("left")
    window.proc_box.setCurrentText("needle")
    _propose(window)
    plan = window.scene.plan
    assert plan is not None and not plan.errors()
    assert window.check_list.count() == len(plan.checks) + 1  # the red/amber/green counts first
    n = plan.check_counts()
    assert window.check_list.item(0).text().startswith(f"{n['red']} red · {n['amber']} amber")
    v = window.views["axial"]
    window.scene.set_cursor(plan.entry_lps)
    v.repaint()
    ex, ey = v.lps_to_pixel(plan.entry_lps)
    mid_x, _ = v.lps_to_pixel(np.array(plan.target_lps) - [2 * (plan.entry_lps[0] - plan.target_lps[0]), 0, 0])
    qtbot.mousePress(v, Qt.LeftButton, pos=QPoint(int(ex), int(ey)))
    for f in (0.3, 0.6, 1.0):
        qtbot.mouseMove(v, QPoint(int(ex + f * (mid_x - ex)), int(ey)))
    qtbot.mouseRelease(v, Qt.LeftButton, pos=QPoint(int(mid_x), int(ey)))
    moved = window.scene.plan
    assert moved is not plan and moved.entry_lps[0] < moved.target_lps[0]  # now on the right
    assert moved.check(CheckId.ENTRY_SIDE).severity == "error"
    items = [window.check_list.item(i) for i in range(window.check_list.count())]
    assert not items[0].text().startswith("0 red")
    red = [it for it in items if it.data(Qt.UserRole) == CheckId.ENTRY_SIDE]
    assert len(red) == 1 and red[0].foreground().color() == QColor(235, 60, 60)
    window.undo_action.trigger()  # the whole drag is one step
    assert window.scene.plan is plan


def test_presentation_mode_hides_identity(window, qtbot, sample_dicom):
    from PySide6.QtCore import Qt

    from spineplan.core.dicom.load import load_volume

    vol = load_volume(sample_dicom)
    window.scene.set_volume(vol, source_path=str(sample_dicom))
    assert "SAMPLE^LUMBAR" in window.windowTitle() + window.info_label.text()  # shown when reading
    window.set_presentation(True, title="Case 7: L4-L5 herniation")
    qtbot.wait(50)
    shown = window.windowTitle() + window.info_label.text()
    assert "SAMPLE" not in shown and "Case 7" in shown
    assert not window.panel.isVisible() and window.views["axial"].overlay_scale > 1
    big, small = window.views["axial"], window.views["sagittal"]
    assert big.width() * big.height() > 3 * small.width() * small.height()  # one large view
    k = big.slice_index()
    qtbot.keyClick(window, Qt.Key_Right)
    assert big.slice_index() == k + 1  # keyboard stepping
    window.set_presentation(False)
    assert "SAMPLE^LUMBAR" in window.windowTitle()


def test_measurements_saved_with_the_case(window, phantom, qtbot, tmp_path, monkeypatch):
    _open(window, phantom, qtbot)
    m = Measurement("distance", [[0, 0, 0], [30, 40, 0]], "axial")
    from spineplan.core.measurements import AddMeasurement

    window.scene.undo_stack.push(AddMeasurement(window.scene, m))
    window.save_case(tmp_path / "case.json")
    window.scene.set_annotations([])
    assert window.open_case(tmp_path / "case.json")
    assert [a.value() for a in window.scene.annotations] == [50.0]
    # the same case refused on another image
    shown = []
    monkeypatch.setattr("PySide6.QtWidgets.QMessageBox.critical", lambda *a: shown.append(a[2]))
    window.scene.set_volume(phantom.ct.with_array(phantom.ct.array, origin=(5.0, 0.0, 0.0)))
    assert not window.open_case(tmp_path / "case.json") and shown


def test_plan_views_and_3d_instrument(qtbot, tmp_path, phantom):
    """With a plan: the view down the instrument is perpendicular to the trajectory and
    centred on the target; the 3D view shows the instrument and dims the other units."""
    w = _make_window(qtbot, tmp_path, with_3d=True, size=(1300, 900))
    try:
        w.scene.set_volume(phantom.ct)
        _set_labels(w, phantom.labels)
        w.level_box.setCurrentText("L4-L5")
        w.proc_box.setCurrentText("cage")
        w.side_box.setCurrentText("left")
        _propose(w)
        plan = w.scene.plan
        d = (plan.target_lps - plan.entry_lps) / np.linalg.norm(plan.target_lps - plan.entry_lps)
        down = w.plan_views["down"]
        _, _, normal = down.axes()
        assert abs(abs(normal @ d) - 1) < 1e-9
        w.panel.setCurrentIndex(2)
        down.repaint()
        x, y = down.lps_to_pixel(plan.target_lps)
        assert abs(x - (down.width() - 1) / 2) < 2 and abs(y - (down.height() - 1) / 2) < 2
        assert down.grab_array().std() > 5
        along = w.plan_views["along"]
        right, _, _ = along.axes()
        assert abs(right @ d - 1) < 1e-9
        assert len(w.view3d._plan_actors) >= 3
        # dragging the entry handle in 3D re-checks the plan like a 2D drag (one undo step)
        h = w.view3d.handles["entry"]
        assert np.allclose(h.GetRepresentation().GetWorldPosition(), plan.entry_lps)
        new = plan.entry_lps + [0.0, 0.0, 40.0]
        h.GetRepresentation().SetWorldPosition(list(new))
        h.InvokeEvent("InteractionEvent")
        h.InvokeEvent("EndInteractionEvent")
        assert np.allclose(w.scene.plan.entry_lps, new) and w.scene.plan is not plan
        w.undo_action.trigger()
        assert w.scene.plan is plan
        dimmed = [lab for lab, a in w.view3d._mesh_by_label.items() if a.GetProperty().GetOpacity() < 1]
        assert 23 not in dimmed and 24 not in dimmed and 22 in dimmed
        w.view3d.set_camera("posterior")
        img = w.view3d.grab_array()
        import imageio.v2 as iio

        iio.imwrite(tmp_path / "3d.png", img)
        yellow = (img[..., 0] > 200) & (img[..., 1] > 200) & (img[..., 2] < 120)  # the path
        red = (img[..., 0] > 200) & (img[..., 1] < 120) & (img[..., 2] < 100)     # entry mark
        assert yellow.sum() > 20 and red.sum() > 5
    finally:
        w.close()
        gc.collect()


def test_practice_mode_scores_against_hidden_reference(window, phantom, qtbot, tmp_path):
    from spineplan.core.persistence import save_plan
    from spineplan.core.planning.plan import Anatomy
    from spineplan.core.planning.planner import make_plan as auto_plan

    _open(window, phantom, qtbot)
    _set_labels(window, phantom.labels)
    ref = auto_plan(Anatomy(phantom.ct, phantom.labels), "L4-L5", "needle", "right")
    save_plan(ref.to_dict(), tmp_path / "ref.json")
    window.level_box.setCurrentText("L2-L3")
    assert window.start_practice(tmp_path / "ref.json")
    assert window.level_box.currentText() == "L4-L5" and window.side_box.currentText() == "right"
    assert "entry" not in window.practice_info.text().lower() or "drag" in window.practice_info.text()
    _propose(window)  # the resident's plan: here the automatic one = the reference
    score = window.score_practice()
    assert score.entry_error_mm < 1e-6 and score.angle_difference_deg < 1e-6 and score.overall > 99
    assert "Score" in window.practice_result.text()
    # a resident's entry 10 mm off along x: the score reports exactly that
    window.move_plan_point("entry", window.scene.plan.entry_lps + [10.0, 0, 0])
    score = window.score_practice()
    assert abs(score.entry_error_mm - 10.0) < 1e-6 and score.overall < 100


def test_rehearsal_export_from_gui(window, phantom, qtbot, tmp_path):
    import imageio.v2 as iio
    from pypdf import PdfReader

    _open(window, phantom, qtbot)
    _set_labels(window, phantom.labels)
    window.level_box.setCurrentText("L4-L5")
    window.proc_box.setCurrentText("tube")
    _propose(window)
    w = window.export_rehearsal(str(tmp_path / "r.gif"), str(tmp_path / "r.pdf"), size=(160, 120),
                                frames_per_step=2)
    with qtbot.waitSignal(w.signals.finished, timeout=120000):
        pass
    assert len(iio.mimread(tmp_path / "r.gif")) == 5 * 2  # tube: 5 steps
    assert len(PdfReader(str(tmp_path / "r.pdf")).pages) == 5


def test_autosave_and_recovery_after_crash(qtbot, tmp_path, phantom, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    settings = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    settings.setValue("autosave_dir", str(tmp_path / "autosave"))
    w = MainWindow(settings=settings, with_3d=False)
    qtbot.addWidget(w)
    w._loaded(phantom.ct, "phantom")
    w.scene.undo_stack.push(__import__("spineplan.core.measurements", fromlist=["x"]).AddMeasurement(
        w.scene, Measurement("distance", [[0, 0, 0], [0, 0, 42]], "axial")))
    w._autosaver.flush()
    assert list((tmp_path / "autosave").glob("*.autosave.json"))
    # "crash": a new window on the same image offers the unsaved work back
    w2 = MainWindow(settings=settings, with_3d=False)
    qtbot.addWidget(w2)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)
    w2._loaded(phantom.ct, "phantom")
    assert [round(m.value()) for m in w2.scene.annotations] == [42]


def test_typed_plan_values_recheck(window, phantom, qtbot, monkeypatch):
    _open(window, phantom, qtbot)
    _set_labels(window, phantom.labels)
    window.level_box.setCurrentText("L4-L5")
    window.proc_box.setCurrentText("needle")
    window.side_box.setCurrentText("left")
    _propose(window)
    plan = window.scene.plan
    e = np.array(plan.entry_lps)
    assert window.point_edits["entry"].text().startswith(f"{e[0]:.1f}")
    mirrored = e.copy()
    mirrored[0] = 2 * plan.target_lps[0] - e[0]  # typed onto the other side
    window.point_edits["entry"].setText(", ".join(str(v) for v in mirrored))
    assert window.type_plan_point("entry")
    assert window.scene.plan.check(CheckId.ENTRY_SIDE).severity == "error"
    shown = []
    monkeypatch.setattr("PySide6.QtWidgets.QMessageBox.critical", lambda *a: shown.append(a))
    window.point_edits["target"].setText("1, 2")
    assert not window.type_plan_point("target") and shown


def test_segment_button_runs_in_background_and_fills_the_table(window, phantom, qtbot):
    _open(window, phantom, qtbot)
    window.run_segmentation()
    w = window._worker
    with qtbot.waitSignal(w.signals.finished, timeout=120000):
        pass
    qtbot.waitUntil(lambda: window.scene.labels is not None, timeout=10000)
    names = _unit_names(window)
    assert names == ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    assert window.seg_status.text().startswith("classical-ct: T12, L1")
    assert "⚠" not in window.seg_status.text()
    # the most common correction: all level names one up, undoable
    window.shift_levels(-1)
    assert _unit_names(window)[0] == "T11-T12"
    window.undo_action.trigger()
    assert (window.scene.labels.array == 19).any() and not (window.scene.labels.array == 18).any()
    assert _unit_names(window)[0] == "T12-L1"  # the table follows undo too


def test_plan_exports_from_the_plan_tab(window, phantom, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from spineplan.core.persistence import load_plan

    _open(window, phantom, qtbot)
    _set_labels(window, phantom.labels)
    window.level_box.setCurrentText("L4-L5")
    window.proc_box.setCurrentText("needle")
    _propose(window)
    for fn, name in ((window.save_plan, "p.json"), (window.export_markups, "p.mrk.json"),
                     (window.export_stl, "p.stl"), (window.export_report, "p.pdf")):
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, n=name: (str(tmp_path / n), ""))
        fn()
        assert (tmp_path / name).stat().st_size > 100, name
    assert load_plan(tmp_path / "p.json")["level"] == "L4-L5"


def test_segmentation_without_a_sacrum_warns_on_screen(window, phantom, qtbot):
    """A scan that stops above the sacrum: the names are a guess and the Segment tab says so."""
    ct = phantom.ct
    k0 = int(round(ct.ijk_points_from_lps(np.array([phantom.truth["discs"]["L3-L4"]["center_lps"]]))[0, 2])) + 2
    origin = ct.lps_points_from_ijk(np.array([[0, 0, k0]]))[0]
    cut = Volume(np.ascontiguousarray(ct.array[k0:]), spacing=ct.spacing, origin=tuple(origin),
                 direction=ct.direction, modality="CT")
    window.scene.set_volume(cut)
    window.run_segmentation()
    with qtbot.waitSignal(window._worker.signals.finished, timeout=120000):
        pass
    qtbot.waitUntil(lambda: "⚠" in window.seg_status.text(), timeout=10000)
    assert "level unknown" in window.seg_status.text()
    assert "lowest confidence 0.10" in window.seg_status.text()
    # no plan on unestablished levels until the surgeon confirms them (undoably)
    assert "LEVELS NOT ESTABLISHED" in window.seg_status.text()
    assert window.confirm_levels_button.isEnabled()
    errors = []
    window.show_error = lambda title, msg: errors.append(msg)
    assert window.propose_plan() is None and "not established" in errors[-1]
    window.confirm_levels_button.click()
    assert not window.scene.levels_need_confirmation and not window.confirm_levels_button.isEnabled()
    assert "confirmed by the user" in window.seg_status.text()
    window.undo_action.trigger()
    assert window.scene.levels_need_confirmation and window.confirm_levels_button.isEnabled()
    # or the surgeon names one vertebra: the lowest in view is L3, and the others follow
    lab = phantom.labels
    ref = lab.array[k0:]
    arr = window.scene.labels.array
    lowest = int(np.bincount(arr[(ref == L.vertebra_label("L3")) & (arr > 0) & (arr < 100)]).argmax())
    qtbot.waitUntil(lambda: window.vertebra_box.findText(L.vertebra_name(lowest)) >= 0, timeout=30000)
    window.vertebra_box.setCurrentText(L.vertebra_name(lowest))
    window.name_box.setCurrentText("L3")
    window.name_from_button.click()
    assert len(errors) == 1, errors
    assert not window.scene.levels_need_confirmation and not window.confirm_levels_button.isEnabled()
    arr = window.scene.labels.array
    for name in ("L1", "L2", "L3"):  # each reference body is labelled with its own name now
        v = L.vertebra_label(name)
        vals, cnt = np.unique(arr[ref == v], return_counts=True)
        cnt[vals == 0] = 0
        assert vals[np.argmax(cnt)] == v, name
    assert "confirmed by the user" in window.seg_status.text() and "S1" not in window.seg_status.text().split("\n")[0]


def test_segment_an_mri_nifti_asks_the_modality_and_labels_the_bodies(window, qtbot, shared_data,
                                                                      monkeypatch):
    """A NIfTI MRI carries no modality: the user is asked, then the MRI segmenter runs."""
    from PySide6.QtWidgets import QInputDialog

    from spineplan.core.dicom.load import read_image_file

    d = shared_data / "mri_lumbar_vb_dev"
    vol = read_image_file(d / "case02_mri.nii.gz")
    assert vol.modality == ""
    asked = []
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: (asked.append(a[3]) or ("MR", True)))
    window.scene.set_volume(vol)
    window.run_segmentation()
    assert asked == [["MR", "CT"]]
    with qtbot.waitSignal(window._worker.signals.finished, timeout=120000):
        pass
    qtbot.waitUntil(lambda: window.scene.labels is not None, timeout=10000)
    assert window.seg_status.text().startswith("classical-mri:")
    ref = read_image_file(d / "case02_vertebrae_verse.nii.gz").array
    out = window.scene.labels.array
    for v in (20, 21, 22, 23, 24):  # every body overlaps its own reference level most
        vals, cnt = np.unique(ref[out == v], return_counts=True)
        cnt[vals == 0] = 0
        assert vals[np.argmax(cnt)] == v


def test_opening_a_forged_plan_recomputes_its_checks(window, phantom, qtbot, tmp_path):
    """Issue 20, finding 8: a plan edited outside spineplan (checksum recomputed) is re-checked
    on opening; the stored results that differ are listed in red."""
    import json

    from spineplan.core.persistence import compute_checksum, save_plan
    from spineplan.core.planning.recheck import DifferenceKind

    _open(window, phantom, qtbot)
    window.set_labels(phantom.labels)
    wait_units(window)
    _propose(window)
    doc = save_plan(window.scene.plan.to_dict(), tmp_path / "p.json")
    e, t = doc["entry_lps"], doc["target_lps"]
    doc["entry_lps"] = [2 * t[0] - e[0], e[1], e[2]]  # moved to the other side
    doc["checksum"] = compute_checksum(doc)
    (tmp_path / "p.json").write_text(json.dumps(doc))
    r = window.open_plan_file(tmp_path / "p.json")
    side = [d for d in r.differences if d.name == "entry on planned side"]
    assert side and side[0].kind is DifferenceKind.OUTCOME
    assert window.scene.plan.check(CheckId.ENTRY_SIDE).severity == "error"
    items = [window.check_list.item(n) for n in range(window.check_list.count())]
    flagged = [it for it in items if it.text().startswith("⚠ stored result differs: entry on planned side")]
    assert flagged and flagged[0].foreground().color().red() > 200


def test_screenshot_leaves_identity_out_unless_asked(window, phantom, qtbot):
    """Issue 20, privacy: a screenshot is an export; the patient and the series description are
    not in it by default, while the screen keeps showing them."""
    vol = phantom.ct.with_array(phantom.ct.array)
    vol.meta = dict(phantom.ct.meta, description="ZQXSERIES spine",
                    identity={"patient_name": "Zqxname^Zqxgiven", "patient_id": "ZQX12345"})
    window.scene.set_volume(vol)
    qtbot.wait(10)
    assert "Zqxname" in window.info_label.text() and "ZQXSERIES" in window.info_label.text()
    anon = window.screenshot()
    assert "Zqxname" in window.info_label.text()  # restored on screen
    ident = window.screenshot(identity=True)
    top_left = window.info_label.mapTo(window, window.info_label.rect().topLeft())
    r = window.info_label.rect().translated(top_left)

    def region(img):
        return bytes(img.copy(r).constBits())

    assert region(anon) != region(ident)
    assert "zqx" not in window._info_text(vol, identity=False).lower()


def test_gui_opens_a_plan_without_screenshot_and_refuses_a_bad_one(qtbot, monkeypatch, sample_dicom, tmp_path, capsys):
    """``gui PATH --labels L --plan PLAN`` (no --screenshot) opens the plan once the image and
    labels are in; an invalid plan file is refused in one line before any window opens."""
    from PySide6.QtWidgets import QApplication

    import spineplan.qt.main_window as mw
    from spineplan import cli

    from spineplan.core.dicom.load import load_volume, write_volume
    from spineplan.core.segmentation.importers import read_labels

    vol = load_volume(str(sample_dicom))
    ref = tmp_path / "labels.nii.gz"  # the reference vertebrae and discs in one map
    write_volume(read_labels([str(sample_dicom / "reference" / n) for n in ("vertebrae_verse.nii.gz",
                                                                            "discs_verse.nii.gz")], vol), str(ref))
    plan = tmp_path / "plan.json"
    assert cli.main(["plan", str(sample_dicom), "--labels", str(ref), "--level", "L4-L5", "--procedure",
                     "needle", "--side", "left", "-o", str(plan)]) in (0, 3)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # QSettings of this run stay here
    seen = {}

    class Spy(mw.MainWindow):
        def __init__(self, *a, **k):
            k["settings"] = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
            k["settings"].setValue("autosave_dir", str(tmp_path / "autosave"))  # no user autosave
            super().__init__(*a, **k)
            seen["w"] = self

    monkeypatch.setattr(mw, "MainWindow", Spy)

    def run_until_plan(self):
        qtbot.waitUntil(lambda: "w" in seen and seen["w"].scene.plan is not None, timeout=120000)
        return 0

    monkeypatch.setattr(QApplication, "exec", run_until_plan)
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a plan"}')
    capsys.readouterr()
    assert cli.main(["gui", str(sample_dicom), "--plan", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spineplan: error:")
    assert cli.main(["gui", str(sample_dicom), "--labels", str(ref), "--plan", str(plan)]) == 0
    w = seen["w"]
    assert w.scene.plan.level == "L4-L5" and w.scene.plan.side == "left" and w.scene.labels is not None
    w.close()


def test_autosave_writes_the_last_edits_without_another_and_is_dropped_after_a_save(qtbot, tmp_path, phantom,
                                                                                    monkeypatch):
    """Reliability findings 13 and 14: the throttled autosave is written once the interval is
    over (two quick edits, then idle: both in the file, no third edit needed); a clean save and
    a declined recovery remove it, so the next start does not ask again."""
    import json

    from PySide6.QtWidgets import QMessageBox

    from spineplan.core.measurements import AddMeasurement

    settings = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    settings.setValue("autosave_dir", str(tmp_path / "autosave"))

    def window():
        w = MainWindow(settings=settings, with_3d=False)
        qtbot.addWidget(w)
        return w

    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: (asked.append(1), QMessageBox.No)[1])
    w = window()
    w._loaded(phantom.ct, "phantom")
    for mm in (42, 17):  # the second falls inside the 2 s throttle
        w.scene.undo_stack.push(AddMeasurement(w.scene, Measurement("distance", [[0, 0, 0], [0, 0, mm]], "axial")))
    files = lambda: list((tmp_path / "autosave").glob("*.autosave.json"))  # noqa: E731
    qtbot.waitUntil(lambda: files() and len(json.loads(files()[0].read_text())["state"]["measurements"]) == 2,
                    timeout=10000)
    w.save_case(tmp_path / "case.json")
    assert not files()  # saved cleanly: nothing to recover
    w2 = window()
    w2._loaded(phantom.ct, "phantom")
    assert asked == []
    # unsaved work, then a "crash" (no close): the next start asks once; declined, never again
    w2.scene.undo_stack.push(AddMeasurement(w2.scene, Measurement("distance", [[0, 0, 0], [0, 0, 5]], "axial")))
    w2._flush_autosave()
    assert files()
    w3 = window()
    w3._loaded(phantom.ct, "phantom")
    assert asked == [1] and not files()
    w4 = window()
    w4._loaded(phantom.ct, "phantom")
    assert asked == [1]
