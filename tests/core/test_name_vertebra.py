"""Level unknown: the surgeon names one vertebra and every other is renamed from it.

A lumbar CT crop with neither sacrum nor ribs cannot be named by the segmenter: it is flagged
``level_unknown`` and planning waits. Naming one vertebra on the images renames the whole column
(discs with it) and counts as the user's confirmation, in one undo step.
"""

from __future__ import annotations

import numpy as np
import pytest

from spineplan.core.errors import SegmentationError
from spineplan.core.phantom import make_phantom
from spineplan.core.scene import Scene
from spineplan.core.segmentation import labels as L
from spineplan.core.segmentation.confirm import NameVertebra
from spineplan.core.segmentation.ct import segment_ct
from spineplan.core.segmentation.edit import renamed_from_one
from spineplan.core.segmentation.evaluate import Outcome, _crop_axis, _reference_extent, _si_axis, judge
from spineplan.core.segmentation.result import Anchor, FlagKind


@pytest.fixture(scope="module")
def crop():
    """The phantom (T12-L5) cut above its L4 body: L4's top half, L3, L2, L1, T12; no sacrum, no ribs."""
    ph = make_phantom(spacing=2.0, iliac_crest=False, left_marker=False)
    ax = _si_axis(ph.labels)
    a, b = _reference_extent(ph.labels, ax)[L.vertebra_label("L4")]
    up = ph.ct.direction[2, 2 - ax] > 0
    n = ph.ct.array.shape[ax]
    k0, k1 = ((a + b) // 2, n) if up else (0, (a + b) // 2)
    return _crop_axis(ph.ct, ax, k0, k1), _crop_axis(ph.labels, ax, k0, k1)


def test_crop_without_landmarks_is_level_unknown_and_named_from_one(crop):
    ct, ref = crop
    res = segment_ct(ct)
    assert res.has(FlagKind.LEVEL_UNKNOWN) and res.evidence.anchor == Anchor.ASSUMED
    assert judge(res, ref).outcome == Outcome.FLAGGED and not judge(res, ref).levels_right
    scene = Scene()
    scene.set_labels(res.labels)
    scene.set_segmentation(res)
    assert scene.levels_need_confirmation
    # the surgeon recognises the vertebra that overlaps the reference L2 and names it
    arr = scene.labels.array
    pick = int(np.bincount(arr[(ref.array == L.vertebra_label("L2")) & (arr > 0) & (arr < 100)]).argmax())
    scene.undo_stack.push(NameVertebra(scene, pick, "L2"))
    named = res.labels.with_array(scene.labels.array)
    j = judge(type(res)(named, levels=scene.segmentation.levels, confidence=scene.segmentation.confidence,
                        evidence=scene.segmentation.evidence), ref)
    assert j.levels_right and not j.wrong, j.wrong
    assert not scene.levels_need_confirmation
    assert scene.segmentation.evidence.anchor == Anchor.USER and scene.segmentation.evidence.confirmed_level == "L2"
    assert "S1" not in scene.segmentation.levels  # the assumed 'sacrum' was a lumbar vertebra
    # discs follow their upper vertebra
    discs = {int(v) for v in np.unique(scene.labels.array) if L.is_disc(int(v))}
    assert discs and all(L.vertebra_above_disc(d) in np.unique(scene.labels.array) for d in discs)
    scene.undo_stack.undo()  # one step back: the old names and the unconfirmed status
    assert np.array_equal(scene.labels.array, res.labels.array)
    assert scene.levels_need_confirmation


def test_renamed_from_one_keeps_gaps_and_a_recognised_sacrum():
    arr = np.array([19, 119, 20, 22, 122, 23, 123, 24, 124, 26, 300], np.uint16)  # L2 missing
    # L3 really L4 above a recognised sacrum: L5 would have no name (unless the lowest is an L6)
    with pytest.raises(SegmentationError, match="L6"):
        renamed_from_one(arr, 22, "L4", keep_sacrum=True)
    six = renamed_from_one(arr, 24, "L6", keep_sacrum=True)
    assert six.tolist() == [20, 120, 21, 23, 123, 24, 124, 25, 125, 26, 300]
    out = renamed_from_one(arr, 22, "L2", keep_sacrum=True)  # one up: T12 -> T11, gap kept
    assert out.tolist() == [18, 118, 19, 21, 121, 22, 122, 23, 123, 26, 300]
    # an assumed sacrum is counted like the others (and has no disc of its own below)
    free = renamed_from_one(arr, 26, "L5")
    assert free.tolist() == [18, 118, 19, 21, 121, 22, 122, 23, 123, 24, 300]
    with pytest.raises(SegmentationError, match="sacrum"):
        renamed_from_one(arr, 26, "L5", keep_sacrum=True)
