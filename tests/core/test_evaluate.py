"""The field-of-view suite's judge and variants: geometry kept, outcomes counted right."""

from __future__ import annotations

import numpy as np
import pytest

from spineplan.core.phantom import make_phantom
from spineplan.core.segmentation import labels as L
from spineplan.core.segmentation.evaluate import (Outcome, crop_k, flip_stored_lr, judge,
                                                  reverse_stack, run_and_judge, variants)
from spineplan.core.segmentation.result import Anchor, Flag, FlagKind, LevelEvidence, SegmentationResult
from spineplan.core.errors import SegmentationError


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(levels=("L3", "L4", "L5"), spacing=3.0)


def _centroid_lps(vol, value):
    ijk = np.argwhere(vol.array == value)[:, ::-1].astype(float)  # (k, j, i) -> (i, j, k)
    return vol.lps_points_from_ijk(ijk).mean(axis=0)


@pytest.mark.parametrize("op", [flip_stored_lr, reverse_stack, lambda v: crop_k(v, 3, v.array.shape[0] - 2)])
def test_variants_keep_world_positions(phantom, op):
    lab = phantom.labels
    out = op(lab)
    for v in (L.vertebra_label("L4"), L.vertebra_label("L3")):
        assert np.allclose(_centroid_lps(out, v), _centroid_lps(lab, v), atol=1e-6)


def test_flip_changes_the_stored_array(phantom):
    out = flip_stored_lr(phantom.ct)
    assert not np.array_equal(out.array, phantom.ct.array)
    assert np.linalg.det(out.direction) == pytest.approx(-np.linalg.det(phantom.ct.direction))


def _result(labels, conf=0.9, flags=()):
    names = [L.vertebra_name(int(v)) for v in np.unique(labels.array) if L.is_vertebra(int(v))]
    return SegmentationResult(labels, levels=names, confidence={n: conf for n in names}, flags=list(flags),
                              evidence=LevelEvidence(Anchor.SACRUM))


def test_judge_right_silent_and_flagged(phantom):
    ref = phantom.labels
    assert judge(_result(ref), ref).outcome == Outcome.RIGHT
    shifted = ref.array.copy()
    for v in sorted((int(x) for x in np.unique(ref.array) if L.is_vertebra(int(x)) and x != L.SACRUM)):
        shifted[ref.array == v] = v - 1  # every name one level too high
    wrong = ref.with_array(shifted)
    j = judge(_result(wrong), ref)
    assert j.outcome == Outcome.SILENT and j.wrong["L3"] == "L4"
    flagged = _result(wrong, flags=[Flag(FlagKind.NO_SACRUM, "no sacrum")])
    assert flagged.min_confidence <= 0.2 and judge(flagged, ref).outcome == Outcome.FLAGGED


def test_run_and_judge_counts_refusals_and_crashes(phantom):
    def refuse(v):
        raise SegmentationError("field of view too small")

    def crash(v):
        raise ValueError("array of sample points is empty")

    assert run_and_judge(refuse, phantom.ct, phantom.labels).outcome == Outcome.FLAGGED
    assert run_and_judge(crash, phantom.ct, phantom.labels).outcome == Outcome.CRASHED


def test_variant_references_stay_on_their_images(phantom):
    names = []
    for name, img, ref in variants(phantom.ct, phantom.labels, spacings=(2.0,), noise=0.02):
        names.append(name)
        assert img.same_grid(ref), name
        # bone under every reference vertebra voxel (HU), whatever the variant
        assert np.median(img.array[(ref.array > 0) & (ref.array < 100)]) > 150, name
    assert {"original", "resampled-2.0mm", "reversed-stack", "flipped-lr-stored"} <= set(names)
    assert any(n.startswith("crop-top-through-") for n in names)
    assert any(n.startswith("crop-bottom-through-") for n in names)
