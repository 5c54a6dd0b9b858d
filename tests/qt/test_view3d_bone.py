"""The 3D view of a CT before any labels: the CT-bone preset shows the bone bright and shaded
(it was a faint, dark cloud: no pixel above 100 grey levels)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings  # noqa: E402

from spineplan.core.dicom.load import load_volume  # noqa: E402
from spineplan.qt.main_window import MainWindow  # noqa: E402

BRIGHT = 100  # mean of r, g, b (0..255) of a lit bone pixel; the background is about 15
MIN_BRIGHT_FRACTION = 0.03  # of the 3D view's pixels: the pelvis and the lumbar spine


def test_ct_bone_preset_shows_bright_bone_on_first_open(qtbot, tmp_path, sample_dicom):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    settings.setValue("autosave_dir", str(tmp_path / "autosave"))
    w = MainWindow(settings=settings, with_3d=True)
    qtbot.addWidget(w)
    w.resize(1200, 900)
    w.show()
    qtbot.waitExposed(w)
    try:
        vol = load_volume(sample_dicom)
        assert vol.modality == "CT"
        w.scene.set_volume(vol)
        qtbot.wait(20)
        img = w.view3d.grab_array().astype(float)
        lum = img.mean(2)
        h, wd = lum.shape
        bright = lum > BRIGHT
        assert bright.mean() > MIN_BRIGHT_FRACTION, f"only {bright.mean():.2%} bright pixels"
        # the bone is where the spine is: bright pixels in the middle third of the view (the
        # lumbar column seen from the front), and the corners (air) stay dark
        assert bright[:, wd // 3: 2 * wd // 3].mean() > MIN_BRIGHT_FRACTION
        for corner in (lum[: h // 8, : wd // 8], lum[: h // 8, -wd // 8:], lum[-h // 8:, -wd // 8:]):
            assert corner.mean() < 40
        # shaded, not flat: the lit bone has a spread of brightness
        assert lum[bright].std() > 10
    finally:
        w.view3d.close_vtk()
        w.close()
        gc.collect()
