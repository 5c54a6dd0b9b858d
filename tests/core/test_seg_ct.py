"""Built-in CT segmenter: exact levels on the phantom, real-CT levels against the reference,
orientation independence, bad input, cancel."""

from __future__ import annotations

import numpy as np
import pytest

from spineplan.core.errors import SegmentationError
from spineplan.core.phantom import make_phantom
from spineplan.core.segmentation import labels as L
from spineplan.core.segmentation.base import default_for
from spineplan.core.segmentation.ct import segment_ct
from spineplan.core.tasks import Cancelled
from spineplan.core.volume import Volume


def dice(a, b):
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(spacing=1.5)


@pytest.fixture(scope="module")
def phantom_result(phantom):
    return segment_ct(phantom.ct)


def test_registry_offers_the_ct_segmenter():
    assert default_for("CT").name == "classical-ct"


def test_phantom_levels_exact_and_dice(phantom, phantom_result):
    res = phantom_result
    assert res.levels == phantom.truth["levels"] and not res.flags
    for name in res.levels:
        v = L.vertebra_label(name)
        d = dice(res.labels.array == v, phantom.labels.array == v)
        assert d >= 0.85, (name, d)
    for name, t in phantom.truth["discs"].items():
        m = res.labels.array == t["label"]
        assert m.any(), name
        c = res.labels.lps_points_from_ijk(np.argwhere(m)[:, ::-1].astype(float)).mean(0)
        assert np.linalg.norm(c - t["center_lps"]) <= 5.0, name  # measured <= 4.3 mm


def test_same_labels_in_world_for_a_flipped_grid(phantom, phantom_result):
    ct = phantom.ct
    a = ct.array[::-1, :, ::-1].copy()  # feet-first and mirrored columns: same world
    d = ct.direction.copy()
    d[:, 0] *= -1
    d[:, 2] *= -1
    ni, nj, nk = ct.size_ijk
    origin = ct.lps_points_from_ijk((ni - 1, 0, nk - 1))
    flipped = Volume(a, spacing=ct.spacing, origin=tuple(origin), direction=d, modality="CT")
    res = segment_ct(flipped)
    assert res.levels == phantom_result.levels
    assert np.array_equal(res.labels.array[::-1, :, ::-1], phantom_result.labels.array)


def test_sample_ct_levels_match_the_reference(sample_dicom):
    from spineplan.core.dicom.load import load_volume
    from spineplan.core.labelmaps import read_labels

    ct = load_volume(sample_dicom)
    ref = read_labels([sample_dicom / "reference" / "vertebrae_verse.nii.gz",
                       sample_dicom / "reference" / "discs_verse.nii.gz"], ct).array
    res = segment_ct(ct)
    assert res.levels[-6:] == ["L1", "L2", "L3", "L4", "L5", "S1"]
    # every lumbar vertebra overlaps its own reference label far more than any other
    for name in ("L1", "L2", "L3", "L4", "L5"):
        v = L.vertebra_label(name)
        mine = res.labels.array == v
        overlaps = {int(u): int(((ref == u) & mine).sum()) for u in (19, 20, 21, 22, 23, 24, 26)}
        assert max(overlaps, key=overlaps.get) == v, (name, overlaps)
    for name, floor in (("L2", 0.75), ("L3", 0.75), ("L4", 0.75)):  # measured 0.84-0.87
        v = L.vertebra_label(name)
        assert dice(res.labels.array == v, ref == v) >= floor
    for disc in (121, 122, 123):  # measured 0.78-0.85
        assert dice(res.labels.array == disc, ref == disc) >= 0.65


def test_not_a_ct_and_cancel(phantom):
    mr = phantom.ct.with_array(np.clip(phantom.ct.array, 0, 500).astype(np.int16), modality="MR")
    with pytest.raises(SegmentationError):
        segment_ct(mr)
    empty = Volume(np.full((40, 40, 40), -1000, np.int16), modality="CT")
    empty.array[10:30, 10:30, 10:30] = 500
    with pytest.raises(SegmentationError):
        segment_ct(empty)
    with pytest.raises(Cancelled):
        segment_ct(phantom.ct, cancel=lambda: True)
