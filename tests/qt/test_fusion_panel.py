"""The Fuse step under Xvfb: a second series opened and registered in the thread pool, the
fused slice's pixels follow the opacity slider and the display mode, nudges are undoable,
and the transform survives a case save and reopen."""

from __future__ import annotations

import gc

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from spineplan.core.dicom.load import write_volume  # noqa: E402
from spineplan.core.phantom import make_phantom  # noqa: E402
from spineplan.core.phantom_mri import make_mri_phantom  # noqa: E402
from spineplan.core.registration import RegistrationSettings, unit_points_lps  # noqa: E402
from spineplan.qt.main_window import MainWindow  # noqa: E402


@pytest.fixture(scope="module")
def phantoms():
    ph = make_phantom(spacing=3.0)
    return ph, make_mri_phantom(ph, spacing_mm=3.0)


@pytest.fixture()
def window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    settings.setValue("autosave_dir", str(tmp_path / "autosave"))
    w = MainWindow(settings=settings, with_3d=False)
    qtbot.addWidget(w)
    w.resize(1100, 800)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()
    gc.collect()


def _pixels(view):
    view._image = None
    view.repaint()
    return view._rgb.astype(int).copy()


def test_second_series_fused_view_follows_opacity_and_nudges_undo(window, phantoms, tmp_path, qtbot):
    ph, mp = phantoms
    window.scene.set_volume(ph.ct)
    window.scene.set_labels(ph.labels)
    assert window.settle(60)
    mri_path = tmp_path / "mri.nii.gz"
    write_volume(mp.mri, mri_path)
    panel = window.fusion_panel
    assert window.fusion_action.text().startswith("Open second series (MRI)")
    panel.settings = RegistrationSettings.fast()
    before = _pixels(window.views["sagittal"])
    panel.open_mri(str(mri_path), block=True)   # loads, then registers (both in the pool)
    assert panel.wait(180)
    f = panel.fusion
    assert f.active and f.result is not None and f.result.level == "L4-L5"
    assert panel.register_button.text() == "Register again"
    pts = unit_points_lps(ph.labels, "L4-L5")
    # (the accuracy is tested in tests/core/test_registration.py; here: registered, on 3 mm
    # grids with the fast settings, to about a voxel where the scanner frames are 15 mm apart)
    from spineplan.core.registration import RigidTransform

    assert RigidTransform.identity().displacement_mm(mp.ct_to_mri, pts).max() > 12.0
    assert f.transform.displacement_mm(mp.ct_to_mri, pts).max() < 4.0
    view = window.views["sagittal"]
    panel.opacity_slider.setValue(0)
    at0 = _pixels(view)
    assert np.array_equal(at0, before)          # opacity 0: the CT alone
    panel.opacity_slider.setValue(100)
    at100 = _pixels(view)
    panel.opacity_slider.setValue(50)
    at50 = _pixels(view)
    changed = np.abs(at100 - at0).sum(axis=2) > 30
    assert changed.mean() > 0.05                 # the MRI covers a good part of the view
    # half opacity lies half-way between the CT and the MRI, pixel by pixel
    assert np.abs(at50[changed] - (at0[changed] + at100[changed]) / 2).max() <= 1.0
    # the bright CSF of the MRI lies in the CT's canal on the fused view
    sac = np.array(ph.truth["discs"]["L4-L5"]["center_lps"]) + [0.0, 29.0, 0.0]  # canal centre
    window.scene.set_cursor(sac)
    img = _pixels(view)
    x, y = view._req.px_from_lps(sac)
    assert img[int(round(y)), int(round(x))].mean() > 150
    # checkerboard and colour differ from the blend
    panel.display_buttons["checkerboard"].setChecked(True)
    chk = _pixels(view)
    assert np.abs(chk - img).sum(axis=2).astype(bool).mean() > 0.02
    panel.display_buttons["colour"].setChecked(True)
    col = _pixels(view)
    assert (np.abs(col[..., 0] - col[..., 2]) > 40).mean() > 0.01  # coloured pixels
    panel.display_buttons["blend"].setChecked(True)
    # a keyboard nudge moves the MRI on the view, and undo puts it back exactly
    t_before = f.transform
    fused = _pixels(view)
    panel.setFocus()
    qtbot.keyClick(panel, Qt.Key_Up)
    assert f.transform.displacement_mm(t_before, [[0.0, 0.0, 0.0]])[0] == pytest.approx(1.0)
    qtbot.keyClick(panel, Qt.Key_Right, Qt.ShiftModifier)
    assert f.transform.angle_to_deg(t_before) == pytest.approx(1.0, abs=1e-6)
    assert not np.array_equal(_pixels(view), fused)
    window.scene.undo_stack.undo()
    window.scene.undo_stack.undo()
    assert np.allclose(f.transform.matrix, t_before.matrix)
    assert np.array_equal(_pixels(view), fused)
    # reset and its undo
    panel.reset_button.click()
    assert np.allclose(f.transform.matrix, np.eye(4))
    window.scene.undo_stack.undo()
    assert np.allclose(f.transform.matrix, t_before.matrix)
    # "Register again" (from a nudged transform) is one undo step
    qtbot.keyClick(panel, Qt.Key_Left)
    nudged = f.transform
    n_steps = len(window.scene.undo_stack)
    panel.register_button.click()
    assert panel.wait(180)
    assert len(window.scene.undo_stack) == n_steps + 1
    assert f.transform.displacement_mm(nudged, pts).max() > 0.3   # the nudge was registered away
    window.scene.undo_stack.undo()
    assert np.allclose(f.transform.matrix, nudged.matrix)
    window.scene.undo_stack.undo()
    assert np.allclose(f.transform.matrix, t_before.matrix)
    # the case file keeps the transform; reopened before the MRI, it is applied when it comes
    case = tmp_path / "case.json"
    window.save_case(case)
    panel.clear()
    assert window.open_case(case)
    panel.open_mri(str(mri_path), block=True)
    assert panel.wait(60)
    assert np.abs(f.transform.matrix - t_before.matrix).max() < 1e-6
