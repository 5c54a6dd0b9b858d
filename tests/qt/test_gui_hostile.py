"""Issue 20 findings 2-5 and 7 in the workstation: what the command line refuses is refused by
the GUI too, with a dialog, and nothing of it reaches the scene (no half-zero image, no
mirrored or 1 mm image, no label map of another scan); ``spineplan gui`` on such a file exits
2 with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings  # noqa: E402

from spineplan.core.dicom.load import read_image_file  # noqa: E402
from spineplan.core.export.label_export import write_label_map  # noqa: E402
from spineplan.qt.main_window import MainWindow  # noqa: E402

from ..core.hostile import CASES  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REFUSED = ["nifti_truncated_gz", "nifti_header_only", "nifti_negative_pixdim", "nifti_zero_pixdim",
           "nifti_nan_pixdim", "nifti_nan_quaternion", "dicom_zero_spacing", "dicom_nan_spacing",
           "dicom_mosaic"]


@pytest.fixture()
def window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    settings.setValue("autosave_dir", str(tmp_path / "autosave"))
    w = MainWindow(settings=settings, with_3d=False)
    qtbot.addWidget(w)
    w.errors = []
    w.show_error = lambda title, msg: w.errors.append((title, msg))
    yield w
    w.close()


@pytest.mark.parametrize("case", REFUSED)
def test_gui_refuses_what_the_loader_refuses(window, case, tmp_path):
    assert case in CASES, sorted(CASES)
    src = CASES[case](tmp_path)
    assert window.open_path(str(src), block=True) is False
    assert window.scene.volume is None  # nothing half-loaded is shown
    assert len(window.errors) == 1 and window.errors[0][0].startswith("Cannot open")


@pytest.mark.parametrize("case", ["nifti_truncated_gz", "nifti_negative_pixdim", "dicom_mosaic"])
def test_gui_command_exits_2_with_one_line(case, tmp_path):
    src = CASES[case](tmp_path)
    r = subprocess.run([sys.executable, "-m", "spineplan", "gui", str(src), "--screenshot",
                        str(tmp_path / "s.png")], capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen",
                            "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("spineplan: error:"), r.stderr
    assert not (tmp_path / "s.png").exists()


def test_gui_refuses_labels_of_another_scan(window, sample_dicom, tmp_path):
    assert window.open_path(str(sample_dicom), block=True)
    ref = read_image_file(sample_dicom / "reference" / "vertebrae_verse.nii.gz")
    moved = ref.with_array(ref.array, origin=tuple(np.array(ref.origin) + [0.0, 0.0, 30.0]))
    write_label_map(moved, tmp_path / "shifted.nii.gz")
    assert window.load_labels([tmp_path / "shifted.nii.gz"]) is False
    assert window.scene.labels is None and window.scene.segmentation is None
    assert [t for t, _ in window.errors] == ["The label map does not fit this image"]
    # the same labels where they belong are taken
    assert window.load_labels([sample_dicom / "reference" / "vertebrae_verse.nii.gz"])
    assert window.scene.labels is not None and (window.scene.labels.array == 23).any()
