"""Label-map corrections as undoable scene commands: slice brush, rename, labels event, redo."""

from __future__ import annotations

import numpy as np
import pytest

from spineplan.core.errors import SegmentationError
from spineplan.core.phantom import make_phantom
from spineplan.core.scene import Scene
from spineplan.core.segmentation import labels as L
from spineplan.core.segmentation.edit import (merge_command, paint_command, paint_disc_on_slice,
                                              rename_command, shift_levels_command, split_command)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(spacing=2.0)


@pytest.fixture
def scene(phantom):
    s = Scene()
    s.set_volume(phantom.ct)
    s.set_labels(phantom.labels)
    return s


def test_disc_brush_paints_only_the_slice_within_radius(phantom):
    lab = phantom.labels
    c = np.array(phantom.truth["vertebrae"]["L3"]["center_lps"])
    out = paint_disc_on_slice(lab.array, lab, c, 6.0, 300, axis=2)
    changed = np.argwhere(out != lab.array)  # [k, j, i]
    assert len(changed) > 0
    k0 = int(np.rint(lab.ijk_points_from_lps(c)[2]))
    assert set(changed[:, 0].tolist()) == {k0}
    new = lab.lps_points_from_ijk(changed[:, ::-1].astype(float))
    assert np.linalg.norm(new - c, axis=1).max() <= 6.0 + 1e-6
    assert (out[changed[:, 0], changed[:, 1], changed[:, 2]] == 300).all()
    # erase restricted to one label touches only that label
    er = paint_disc_on_slice(lab.array, lab, c, 20.0, 0, axis=2, only_on=22)
    diff = er != lab.array
    assert diff.any() and set(np.unique(lab.array[diff]).tolist()) == {22}


def test_shift_command_fires_labels_event_undo_and_redo(scene, phantom):
    seen = []
    scene.events.labels.connect(lambda lab, region: seen.append(lab))
    before = phantom.labels.array.copy()
    scene.undo_stack.push(shift_levels_command(scene, -1))
    assert len(seen) == 1
    a = scene.labels.array
    for v in (20, 21, 22, 23, 24):  # L1..L5 -> T12..L4, discs follow
        assert (a == v - 1).sum() == (before == v).sum()
    assert (a == L.disc_label(23)).sum() == (before == L.disc_label(24)).sum()
    after = a.copy()
    scene.undo_stack.undo()
    assert np.array_equal(scene.labels.array, before) and len(seen) == 2
    scene.undo_stack.redo()
    assert np.array_equal(scene.labels.array, after)


def test_rename_merge_split_commands_round_trip(scene, phantom):
    before = phantom.labels.array.copy()
    c = np.array(phantom.truth["vertebrae"]["L3"]["center_lps"])
    scene.undo_stack.push(rename_command(scene, 24, 25))  # L5 -> L6 by hand
    assert not (scene.labels.array == 24).any() and (scene.labels.array == 25).sum() == (before == 24).sum()
    # its disc follows (L5/S1 -> L6/S1), so the motor unit keeps its disc
    assert not (scene.labels.array == 124).any() and (scene.labels.array == 125).sum() == (before == 124).sum()
    with pytest.raises(SegmentationError):  # a name in use is refused, not merged silently
        rename_command(scene, 23, 25).do()
    scene.undo_stack.push(merge_command(scene, 21, 22))
    assert not (scene.labels.array == 22).any()
    scene.undo_stack.push(split_command(scene, 21, c, [0, 0, 1.0], 22))
    lab = scene.labels
    sup = lab.lps_points_from_ijk(np.argwhere(lab.array == 22)[:, ::-1].astype(float))
    assert len(sup) > 0 and (sup[:, 2] > c[2]).all()  # the part the normal (+S) points to
    assert len(scene.undo_stack) == 3
    while scene.undo_stack.undo():
        pass
    assert np.array_equal(scene.labels.array, before)


def test_slice_paint_stroke_is_one_step_and_stores_only_changes(scene, phantom):
    before = phantom.labels.array.copy()
    c = np.array(phantom.truth["vertebrae"]["L2"]["center_lps"])
    for dx in (0.0, 3.0, 6.0, 9.0):
        scene.undo_stack.push(paint_command(scene, c + [dx, 0, 0], 5.0, 300, axis=2, stroke_id=1))
    scene.undo_stack.end_merge()
    scene.undo_stack.push(paint_command(scene, c, 5.0, 0, axis=2, stroke_id=2))  # new stroke
    assert len(scene.undo_stack) == 2
    stroke = scene.undo_stack._done[0]
    n_changed = int(((scene.labels.array != before)).sum())
    assert 0 < stroke._idx.size < before.size // 100 and n_changed > 0
    scene.undo_stack.undo()
    scene.undo_stack.undo()
    assert np.array_equal(scene.labels.array, before)


@pytest.mark.parametrize("axis,only_on", [(None, None), (2, None), (1, 22), (0, None)])
def test_brush_command_matches_the_pure_function(scene, phantom, axis, only_on):
    from spineplan.core.segmentation.edit import paint_sphere

    lab = phantom.labels
    c = np.array(phantom.truth["vertebrae"]["L3"]["center_lps"]) + [1.3, -0.7, 0.4]
    if axis is None:
        expect = paint_sphere(lab.array, lab, c, 7.0, 0, only_on)
    else:
        expect = paint_disc_on_slice(lab.array, lab, c, 7.0, 0, axis, only_on)
    scene.undo_stack.push(paint_command(scene, c, 7.0, 0, axis=axis, only_on=only_on))
    assert np.array_equal(scene.labels.array, expect) and (expect != lab.array).any()
    scene.undo_stack.undo()
    assert np.array_equal(scene.labels.array, lab.array)


def test_paint_edits_the_scene_array_in_place_and_reports_the_changed_box(scene, phantom):
    events = []
    scene.events.labels.connect(lambda lab, region: events.append((lab, region)))
    arr = scene.labels.array
    before = arr.copy()
    c = np.array(phantom.truth["vertebrae"]["L2"]["center_lps"]) + [0, -30.0, 0]
    for n in range(3):  # a three-dab stroke on one axial slice
        scene.undo_stack.push(paint_command(scene, c + [3.0 * n, 0, 0], 4.0, 300, axis=2, stroke_id=7))
    scene.undo_stack.end_merge()
    assert scene.labels.array is arr  # no copy of the label map, per dab or per stroke
    changed = np.argwhere(arr != before)
    assert len(changed) > 10 and (arr[tuple(changed.T)] == 300).all()
    assert len(events) == 3 and all(lab is scene.labels for lab, _ in events)
    boxes = [tuple((r.start, r.stop) for r in region) for _, region in events]
    # the union of the dabs' boxes is exactly the bounding box of the changed voxels
    lo = np.min([[b[0] for b in box] for box in boxes], 0)
    hi = np.max([[b[1] for b in box] for box in boxes], 0)
    assert lo.tolist() == changed.min(0).tolist() and hi.tolist() == (changed.max(0) + 1).tolist()
    assert all(box[0][1] - box[0][0] == 1 for box in boxes)  # one slice each
    after = arr.copy()
    scene.undo_stack.undo()
    assert scene.labels.array is arr and np.array_equal(arr, before)
    _, region = events[-1]  # undo reports the whole stroke's box
    assert [(r.start, r.stop) for r in region] == list(zip(lo.tolist(), hi.tolist()))
    scene.undo_stack.redo()
    assert scene.labels.array is arr and np.array_equal(arr, after)


def test_set_labels_keeps_a_private_copy_so_edits_leave_the_callers_map_alone(phantom):
    s = Scene()
    s.set_volume(phantom.ct)
    s.set_labels(phantom.labels)
    assert s.labels.array is not phantom.labels.array and s.labels.array.flags.c_contiguous
    before = phantom.labels.array.copy()
    c = np.array(phantom.truth["vertebrae"]["L3"]["center_lps"])
    s.undo_stack.push(paint_command(s, c, 8.0, 0))
    assert (s.labels.array != before).any() and np.array_equal(phantom.labels.array, before)


def test_a_dab_that_changes_nothing_is_not_an_event(scene, phantom):
    c = np.array(phantom.truth["vertebrae"]["L3"]["center_lps"])
    scene.undo_stack.push(paint_command(scene, c, 5.0, 300, axis=2))
    events = []
    scene.events.labels.connect(lambda lab, region: events.append(region))
    scene.undo_stack.push(paint_command(scene, c, 5.0, 300, axis=2))  # the same dab again
    assert events == []


def test_edit_on_a_read_only_label_array_copies_it_once(scene, phantom):
    scene.labels.array.flags.writeable = False  # e.g. a view of a file put there directly
    ro = scene.labels.array
    c = np.array(phantom.truth["vertebrae"]["L3"]["center_lps"])
    scene.undo_stack.push(paint_command(scene, c, 5.0, 0, axis=2))
    arr = scene.labels.array
    assert arr is not ro and (arr != ro).any()
    scene.undo_stack.undo()
    assert scene.labels.array is arr and np.array_equal(arr, ro)


def test_a_new_label_map_drops_the_edits_of_the_old_one_from_the_history(scene, phantom):
    """Re-segmenting (or loading labels) after a stroke: undo must not write the old map's
    voxels into the new one."""
    from spineplan.core.commands import FunctionCommand

    c = np.array(phantom.truth["vertebrae"]["L2"]["center_lps"])
    log = []
    scene.undo_stack.push(FunctionCommand(lambda: log.append("do"), lambda: log.append("undo"), "other"))
    scene.undo_stack.push(paint_command(scene, c, 6.0, 0, stroke_id=1))  # erase part of L2
    scene.undo_stack.end_merge()
    scene.undo_stack.push(paint_command(scene, c + [0, 0, 20.0], 6.0, 0, stroke_id=2))
    scene.undo_stack.undo()  # one stroke in the redo list, one in the history
    new = phantom.labels.with_array(np.where(phantom.labels.array > 0, 22, 0).astype(np.uint16))
    scene.set_labels(new)
    assert scene.undo_stack.undo_text() == "other" and not scene.undo_stack.can_redo()
    assert scene.undo_stack.undo() and log == ["do", "undo"]
    assert np.array_equal(scene.labels.array, new.array)
    assert not scene.undo_stack.is_clean()
