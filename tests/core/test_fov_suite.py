"""The field-of-view suite in small: generated crops and variants of a phantom and of dev scans
are right or flagged, never silently wrong, never a traceback; and the confidence is calibrated
(every variant whose lowest confidence is >= 0.8 has all its levels right).

The whole suite (every dev case, every variant) is bench/bench_fov_suite.py; this is the part
that runs in CI on every commit.
"""

from __future__ import annotations

import numpy as np
import pytest

from spineplan.core.phantom import make_phantom
from spineplan.core.segmentation.ct import segment_ct
from spineplan.core.segmentation.evaluate import Outcome, run_and_judge, variants
from spineplan.core.segmentation.result import CONFIRM_BELOW


def _check(judgements):
    bad = {n: (j.outcome.value, j.wrong, j.error[-200:]) for n, j in judgements.items()
           if j.outcome in (Outcome.SILENT, Outcome.CRASHED)}
    assert not bad, bad
    # calibration: confident means right
    over = {n: j.wrong for n, j in judgements.items()
            if j.outcome != Outcome.CRASHED and not j.error and j.min_confidence >= CONFIRM_BELOW
            and not j.levels_right}
    assert not over, over


def test_ct_phantom_variants_are_right_or_flagged():
    ph = make_phantom(spacing=3.0, ribs=("T12",), left_marker=False)
    out = {}
    for name, img, ref in variants(ph.ct, ph.labels, modality="CT", noise=0.03, seed=2):
        img.modality = "CT"
        out[name] = run_and_judge(segment_ct, img, ref)
    assert len(out) >= 12  # crops from both ends through every level, plus the variants
    assert out["original"].outcome == Outcome.RIGHT
    _check(out)
    # a crop that keeps neither the sacrum nor the ribs cannot be named: it asks
    assert out["crop-bottom-through-L4"].outcome == Outcome.FLAGGED


@pytest.mark.parametrize("case", ["case05", "case10"])
def test_mri_cut_through_l1_or_l5_is_right_or_flagged(shared_data, case):
    """An MRI cut so that L1 is half out of view: L1 is found, or the count is flagged; the
    same with the bottom cut through L5 (no sacrum in view)."""
    from spineplan.core.dicom.load import read_image_file
    from spineplan.core.segmentation.importers import read_labels
    from spineplan.core.segmentation.mri import segment_mri

    d = shared_data / "mri_lumbar_vb_dev"
    img = read_image_file(d / f"{case}_mri.nii.gz")
    img.modality = "MR"
    ref = read_labels([str(d / f"{case}_vertebrae_verse.nii.gz")], img)
    want = {"crop-top-through-L1", "crop-bottom-through-L5", "reversed-stack"}
    out = {}
    for name, v, r in variants(img, ref, modality="MR"):
        if name in want:
            v.modality = "MR"
            out[name] = run_and_judge(segment_mri, v, r)
    assert set(out) == want
    _check(out)
    assert out["crop-bottom-through-L5"].outcome == Outcome.FLAGGED  # no sacrum in view
    assert np.isfinite([j.min_confidence for j in out.values()]).all()
