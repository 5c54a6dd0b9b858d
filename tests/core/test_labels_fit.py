"""A label map from another scan (shifted along the spine) is refused before planning."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from spineplan.core.dicom.load import load_volume, read_image_file
from spineplan.core.export.label_export import write_label_map
from spineplan.core.labelmaps import labels_on_grid
from spineplan.core.segmentation.importers import read_labels
from spineplan.core.phantom import make_phantom
from spineplan.core.segmentation.fit import check_labels_fit_image


def _shifted_labels_file(sample_dicom, tmp_path, dz):
    ref = read_image_file(sample_dicom / "reference" / "vertebrae_verse.nii.gz")
    moved = ref.with_array(ref.array, origin=tuple(np.array(ref.origin) + [0.0, 0.0, dz]))
    out = tmp_path / f"vert_shift{dz:+.0f}.nii.gz"
    write_label_map(moved, out)
    return out


def test_reference_labels_fit_the_sample(sample_dicom):
    ct = load_volume(sample_dicom)
    labels = read_labels([sample_dicom / "reference" / "vertebrae_verse.nii.gz"], ct)
    fit = check_labels_fit_image(ct, labels)
    assert fit.kind == "fits" and fit.ok and fit.check_id == "labels_fit_image"
    assert fit.metrics["median_hu_vertebrae"] > 130
    assert fit.metrics["bone_contrast"] > 5


@pytest.mark.parametrize("dz", [30.0, -30.0, 10.0])
def test_shifted_labels_are_a_misfit(sample_dicom, tmp_path, dz):
    ct = load_volume(sample_dicom)
    labels = read_labels([_shifted_labels_file(sample_dicom, tmp_path, dz)], ct)
    fit = check_labels_fit_image(ct, labels)
    assert fit.kind == "misfit" and not fit.ok
    assert fit.metrics["median_hu_vertebrae"] < 110
    assert fit.metrics["bone_contrast"] < 2.0


def test_phantom_labels_fit_at_three_spacings():
    for spacing in (1.5, 2.0, 3.0):
        ph = make_phantom(spacing=spacing)
        assert check_labels_fit_image(ph.ct, ph.labels).kind == "fits", spacing
        for dz in (6.0, 15.0, 30.0, -30.0):
            moved = ph.labels.with_array(ph.labels.array,
                                         origin=tuple(np.array(ph.labels.origin) + [0, 0, dz]))
            assert check_labels_fit_image(ph.ct, labels_on_grid(moved, ph.ct)).kind == "misfit", (spacing, dz)


def test_mri_is_not_checked():
    ph = make_phantom(spacing=3.0)
    mr = ph.ct.with_array((ph.ct.array.astype(np.float32) + 1000) / 10, modality="MR")
    assert check_labels_fit_image(mr, ph.labels).kind == "not_checked"


def test_plan_refuses_labels_of_another_scan(sample_dicom, tmp_path):
    lab = _shifted_labels_file(sample_dicom, tmp_path, 30.0)
    disc = sample_dicom / "reference" / "discs_verse.nii.gz"
    r = subprocess.run([sys.executable, "-m", "spineplan", "plan", str(sample_dicom), "--level", "L4-L5",
                        "--procedure", "needle", "--side", "right", "--labels", str(lab),
                        "--labels", str(disc), "-o", str(tmp_path / "plan.json")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spineplan: error: the label map does not fit")
    assert not (tmp_path / "plan.json").exists()
