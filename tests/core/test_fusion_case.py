"""The fusion state: undoable nudge / register again / reset, the case file's transform
round trip, and the ``spineplan fuse`` command's outputs and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spineplan import cli
from spineplan.core.commands import UndoStack
from spineplan.core.dicom.load import load_volume, write_volume
from spineplan.core.errors import PlanFileError
from spineplan.core.persistence import load_case, save_case
from spineplan.core.phantom import make_phantom
from spineplan.core.phantom_mri import make_mri_phantom
from spineplan.core.registration import (Fusion, RegistrationResult, RigidTransform, nudge_command,
                                         read_tfm, registration_command, reset_command,
                                         transform_from_record, unit_points_lps)


def _fusion_with(t: RigidTransform) -> Fusion:
    f = Fusion()
    f.set_mri(make_phantom(spacing=6.0).ct, t)
    return f


def test_nudge_register_again_and_reset_are_undoable():
    t0 = RigidTransform.from_axis_angle((0, 0, 1), 3.0, (1.0, 2.0, 3.0), (0.0, 10.0, 0.0))
    f = _fusion_with(t0)
    seen = []
    f.changed.connect(lambda fu: seen.append(fu.transform))
    stack = UndoStack()
    stack.push(nudge_command(f, translation_mm=(1.0, 0.0, 0.0)))
    p = np.array([[5.0, 5.0, 5.0]])
    assert np.allclose(f.transform.mri_points_from_ct(p) - t0.mri_points_from_ct(p),
                       t0.rotation @ [1.0, 0.0, 0.0])
    stack.push(nudge_command(f, rotation_deg=(0.0, 0.0, 2.0)))
    assert f.transform.angle_to_deg(t0) == pytest.approx(2.0)
    stack.undo()
    stack.undo()
    assert np.allclose(f.transform.matrix, t0.matrix)
    stack.redo()
    assert not np.allclose(f.transform.matrix, t0.matrix)
    stack.undo()
    new = RegistrationResult(global_transform=RigidTransform.from_axis_angle((1, 0, 0), 1.0, (0, 0, 5.0)),
                             level="L4-L5")
    stack.push(registration_command(f, new))
    assert f.result is new and np.allclose(f.transform.matrix, new.transform.matrix)
    stack.push(reset_command(f))
    assert np.allclose(f.transform.matrix, np.eye(4))
    stack.undo()
    assert np.allclose(f.transform.matrix, new.transform.matrix)
    stack.undo()
    assert np.allclose(f.transform.matrix, t0.matrix) and f.result is None
    assert len(seen) >= 8  # every change was announced to the views


def test_case_file_round_trips_the_transform_to_1e6(tmp_path):
    t = RigidTransform.from_axis_angle((0.3, -0.4, 0.87), 8.0, (9.0, -6.0, 10.4), (0.5, 12.25, -3.0))
    f = _fusion_with(t)
    f.level = "L4-L5"
    path = tmp_path / "case.json"
    save_case({"source": None, "measurements": [], "plan": None, "case": None,
               "fusion": f.to_record()}, path)
    doc = load_case(path)
    back = transform_from_record(doc["fusion"])
    assert np.abs(back.matrix - t.matrix).max() < 1e-6
    assert np.abs(back.center_lps - t.center_lps).max() < 1e-6
    assert doc["fusion"]["level"] == "L4-L5"
    # a case file without fusion (all files written before it) still loads
    save_case({"source": None, "measurements": [], "plan": None, "case": None}, tmp_path / "old.json")
    assert "fusion" not in load_case(tmp_path / "old.json")


def test_case_file_refuses_a_bad_or_newer_fusion_record(tmp_path):
    rec = _fusion_with(RigidTransform.identity()).to_record()
    for bad in ({**rec, "record_version": 99}, {**rec, "transform": {"kind": "affine"}}):
        with pytest.raises(PlanFileError):
            save_case({"fusion": bad}, tmp_path / "bad.json")


# --------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuse")
    ph = make_phantom(spacing=3.0)
    mp = make_mri_phantom(ph, spacing_mm=3.0)
    write_volume(ph.ct, d / "ct.nii.gz")
    write_volume(ph.labels.with_array(ph.labels.array.astype(np.uint16)), d / "ct_labels.nii.gz")
    write_volume(mp.mri, d / "mri.nii.gz")
    write_volume(mp.labels, d / "mri_labels.nii.gz")
    return d, ph, mp


def test_cli_fuse_writes_the_fused_image_transform_and_figures(files, capsys):
    d, ph, mp = files
    code = cli.main([
        "fuse", str(d / "ct.nii.gz"), str(d / "mri.nii.gz"), "-o", str(d / "on_ct.nii.gz"),
        "--level", "L4-L5", "--labels", str(d / "ct_labels.nii.gz"),
        "--mri-labels", str(d / "mri_labels.nii.gz"), "--transform", str(d / "t.tfm"), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    doc = json.loads(out)
    assert doc["level"] == "L4-L5"
    assert doc["residual_mm"] is not None and set(doc["dice"]) == {"L4", "L5", "L4/L5"}
    on_ct = load_volume(d / "on_ct.nii.gz")
    assert on_ct.same_grid(ph.ct)
    t = read_tfm(d / "t.tfm")
    assert np.abs(t.matrix - RigidTransform.from_dict(doc["transform"]).matrix).max() < 1e-6
    pts = unit_points_lps(ph.labels, "L4-L5")
    assert t.displacement_mm(mp.ct_to_mri, pts).max() < 4.0  # about a voxel of these 3 mm grids (15 mm apart before)


@pytest.mark.parametrize("args, needle", [
    (["{d}/missing.nii.gz", "{d}/mri.nii.gz", "-o", "{d}/o.nii.gz"], "missing"),
    (["{d}/ct.nii.gz", "{d}/mri.nii.gz", "-o", "{d}/o.png"], "o.png"),
    (["{d}/ct.nii.gz", "{d}/mri.nii.gz", "-o", "{d}/o.nii.gz", "--level", "L9-Q1"], "L9-Q1"),
    (["{d}/ct.nii.gz", "{d}/mri.nii.gz", "-o", "{d}/o.nii.gz", "--transform", "{d}/t.json"], "t.json"),
    (["{d}/ct.nii.gz", "{d}/mri.nii.gz", "-o", "{d}/nofolder/o.nii.gz"], "not a folder"),
    (["{d}/ct.nii.gz", "{d}/mri.nii.gz", "-o", "{d}/o.nii.gz", "--level", "T1-T2", "--labels",
      "{d}/ct_labels.nii.gz"], "T1-T2"),
    (["{d}/ct.nii.gz"], "required"),
])
def test_cli_fuse_bad_input_exits_2_with_one_line(files, capsys, args, needle):
    d = files[0]
    code = cli.main(["fuse"] + [a.format(d=d) for a in args]) if args != ["{d}/ct.nii.gz"] else None
    if code is None:
        with pytest.raises(SystemExit) as e:
            cli.main(["fuse", str(d / "ct.nii.gz")])
        code = e.value.code
    err = capsys.readouterr().err
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("spineplan: error:") and needle in lines[0], err
    assert "Traceback" not in err


def test_cli_fuse_at_a_level_without_labels_segments_the_ct(files, capsys):
    d, ph, mp = files
    code = cli.main(["fuse", str(d / "ct.nii.gz"), str(d / "mri.nii.gz"), "-o", str(d / "seg_on_ct.nii.gz"),
                     "--level", "L4-L5"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "L4-L5: local correction" in out and "residual" in out
    assert (d / "seg_on_ct.nii.gz").exists()


def test_cli_fuse_with_an_empty_mri_exits_2(files, capsys):
    d, ph, mp = files
    write_volume(mp.mri.with_array(np.zeros_like(mp.mri.array)), d / "blank.nii.gz")
    code = cli.main(["fuse", str(d / "ct.nii.gz"), str(d / "blank.nii.gz"), "-o", str(d / "b_on_ct.nii.gz")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("spineplan: error:") and "Traceback" not in err
    assert not (d / "b_on_ct.nii.gz").exists()
