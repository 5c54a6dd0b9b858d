"""Levels that the segmenter could not establish are never planned on silently.

The sample CT cut above the sacrum (slices 50-90) names its levels from an assumed anchor: an
L4-L5 plan on it used to say "All checks passed" with its tip in the true L3/L4 disc. Now the
plan is refused until the user confirms the levels, and the plan records who fixed them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from spineplan import cli
from spineplan.core.dicom.load import load_volume, write_volume
from spineplan.core.errors import PlanningError
from spineplan.core.persistence import load_plan
from spineplan.core.planning.plan import Anatomy
from spineplan.core.planning.planner import make_plan
from spineplan.core.scene import Scene
from spineplan.core.segmentation.confirm import ConfirmLevels
from spineplan.core.segmentation.evaluate import crop_k
from spineplan.core.segmentation.result import Anchor, Flag, FlagKind, SegmentationResult


@pytest.fixture(scope="module")
def sample_ct(sample_dicom):
    return load_volume(str(sample_dicom))


@pytest.fixture(scope="module")
def cut_above_sacrum(sample_ct, tmp_path_factory):
    """The sample cut to the slices the issue names (50-90 along the stored stack)."""
    vol = sample_ct
    k = vol.array.shape[0]
    # the stored axis 0 of the sample runs along z; keep the 41 slices 50..90 (or the
    # equivalent from the top when the stack is stored head first)
    cut = crop_k(vol, 50, 91) if vol.direction[2, 2] > 0 else crop_k(vol, k - 91, k - 50)
    path = tmp_path_factory.mktemp("cut") / "cut.nii.gz"
    write_volume(cut, str(path))
    return path


def test_cli_refuses_a_plan_on_unestablished_levels(cut_above_sacrum, tmp_path, capsys):
    out = tmp_path / "plan.json"
    rc = cli.main(["plan", str(cut_above_sacrum), "--level", "L4-L5", "--procedure", "needle",
                   "--side", "right", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("spineplan: error: the levels are not established")
    assert "--confirm-levels" in err[0] and not out.exists()


def test_cli_confirmed_levels_are_recorded_in_the_plan(cut_above_sacrum, tmp_path):
    out = tmp_path / "plan.json"
    rc = cli.main(["plan", str(cut_above_sacrum), "--level", "L4-L5", "--procedure", "needle",
                   "--side", "right", "-o", str(out), "--confirm-levels"])
    assert rc in (0, 3), rc
    seg = load_plan(out)["segmentation"]
    assert seg["evidence"]["anchor"] == "user" and seg["evidence"]["confirmed_level"] == "L4-L5"
    assert seg["flags"] and all(f["kind"] for f in seg["flags"])  # the segmenter's doubts stay on record
    assert seg["needs_confirmation"] is False


def test_plan_on_the_whole_sample_carries_the_sacrum_anchor(sample_dicom, tmp_path):
    out = tmp_path / "plan.json"
    rc = cli.main(["plan", str(sample_dicom), "--level", "L4-L5", "--procedure", "needle",
                   "--side", "right", "-o", str(out)])
    assert rc in (0, 3)
    seg = json.loads(out.read_text())["segmentation"]
    assert seg["evidence"]["anchor"] in ("sacrum", "sacrum_and_ribs") and not seg["needs_confirmation"]
    assert seg["backend"] == "classical-ct" and "L4" in seg["levels"]


def test_plan_with_a_label_file_records_it(sample_dicom, tmp_path):
    out = tmp_path / "plan.json"
    ref = sample_dicom / "reference"
    rc = cli.main(["plan", str(sample_dicom), "--level", "L4-L5", "--procedure", "needle", "--side",
                   "right", "--labels", str(ref / "vertebrae_verse.nii.gz"), "--labels",
                   str(ref / "discs_verse.nii.gz"), "-o", str(out)])
    assert rc in (0, 3)
    assert load_plan(out)["segmentation"]["evidence"]["anchor"] == "labels_file"


def test_core_gate_and_undoable_confirmation(sample_ct):
    """The gate lives in core (make_plan), the confirmation is an undoable scene command."""
    from spineplan.core.segmentation.importers import read_labels
    from spineplan.paths import sample_dicom_dir

    ref = sample_dicom_dir() / "reference"
    labels = read_labels([str(ref / "vertebrae_verse.nii.gz"), str(ref / "discs_verse.nii.gz")], sample_ct)
    names = ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    doubt = SegmentationResult(labels, levels=names, confidence={n: 0.9 for n in names},
                               flags=[Flag(FlagKind.NO_SACRUM, "sacrum not recognised")])
    assert doubt.needs_confirmation and doubt.min_confidence <= 0.2
    scene = Scene()
    scene.set_volume(sample_ct)
    scene.set_labels(labels)
    scene.set_segmentation(doubt)
    assert scene.levels_need_confirmation and scene.segmentation.labels is None
    with pytest.raises(PlanningError, match="not established"):
        make_plan(Anatomy(sample_ct, labels, segmentation=scene.segmentation), "L4-L5", "needle", "right")
    scene.undo_stack.push(ConfirmLevels(scene, "L4-L5"))
    assert not scene.levels_need_confirmation
    assert scene.segmentation.evidence.anchor == Anchor.USER
    plan = make_plan(Anatomy(sample_ct, labels, segmentation=scene.segmentation), "L4-L5", "needle", "right")
    assert plan.segmentation["evidence"]["confirmed_level"] == "L4-L5"
    assert plan.segmentation["flags"][0]["kind"] == "no_sacrum"
    scene.undo_stack.undo()
    assert scene.levels_need_confirmation
