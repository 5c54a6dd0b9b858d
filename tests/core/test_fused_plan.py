"""A plan on CT bone with the fused MRI's dural sac: "dural sac clearance" follows the MRI's
sac (it fails when the sac is moved in the MRI only) and says where the sac came from."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spineplan import cli
from spineplan.core.dicom.load import write_volume
from spineplan.core.fused_plan import labels_with_mri_soft_tissue, state_structure_sources
from spineplan.core.persistence import load_plan
from spineplan.core.phantom import make_phantom
from spineplan.core.phantom_mri import make_mri_phantom
from spineplan.core.planning.plan import Anatomy
from spineplan.core.planning.planner import evaluate, make_plan
from spineplan.core.planning.safety import CheckId, CheckStatus
from spineplan.core.segmentation import labels as L

LEVEL = "L4-L5"


@pytest.fixture(scope="module")
def phantoms():
    ph = make_phantom(spacing=1.5)
    return ph, make_mri_phantom(ph, spacing_mm=1.5)


def _mri_sac_moved_left(mp, mm: float):
    """The MRI's labels with the dural sac moved ``mm`` towards the patient's left (MRI axis k)."""
    lab = mp.labels.array.copy()
    sac = lab == L.CANAL
    lab[sac] = 0
    moved = np.roll(sac, int(round(mm / mp.mri.spacing[2])), axis=0)
    lab[moved & (lab == 0)] = L.CANAL
    return mp.labels.with_array(lab)


def test_fused_sac_lies_on_the_ct_sac(phantoms):
    ph, mp = phantoms
    fused = labels_with_mri_soft_tissue(ph.labels, mp.labels, mp.ct_to_mri)
    a, b = fused.array == L.CANAL, ph.labels.array == L.CANAL
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.85
    # bone is the CT's, untouched
    unit = np.isin(ph.labels.array, (23, 24))
    assert np.array_equal(fused.array[unit], ph.labels.array[unit])


def test_dural_sac_clearance_uses_the_mri_sac_and_says_so(phantoms):
    ph, mp = phantoms
    plan = make_plan(Anatomy(ph.ct, ph.labels), LEVEL, "cage", "left")
    on_ct = plan.check(CheckId.DURAL_SAC_CLEARANCE)
    assert on_ct.status == CheckStatus.PASSED.value
    assert "MRI" not in on_ct.detail
    # the same plan on CT bone + the MRI's sac, the sac moved 6 mm to the left in the MRI only
    fused = labels_with_mri_soft_tissue(ph.labels, _mri_sac_moved_left(mp, 6.0), mp.ct_to_mri)
    again = evaluate(make_plan(Anatomy(ph.ct, ph.labels), LEVEL, "cage", "left"), Anatomy(ph.ct, fused))
    state_structure_sources(again, {L.CANAL: "MRI (fused)"})
    c = again.check(CheckId.DURAL_SAC_CLEARANCE)
    assert c.status == CheckStatus.FAILED.value, c.detail
    assert c.detail.endswith("[dural sac from the MRI (fused)]")
    # with the MRI's own (unmoved) sac the plan passes again
    same = evaluate(make_plan(Anatomy(ph.ct, ph.labels), LEVEL, "cage", "left"),
                    Anatomy(ph.ct, labels_with_mri_soft_tissue(ph.labels, mp.labels, mp.ct_to_mri)))
    assert same.check(CheckId.DURAL_SAC_CLEARANCE).status == CheckStatus.PASSED.value


def test_cli_plan_with_mri_states_the_sac_source(phantoms, tmp_path, capsys):
    ph, mp = phantoms
    write_volume(ph.ct, tmp_path / "ct.nii.gz")
    write_volume(ph.labels, tmp_path / "ct_labels.nii.gz")
    write_volume(mp.mri, tmp_path / "mri.nii.gz")
    write_volume(mp.labels, tmp_path / "mri_labels.nii.gz")
    code = cli.main(["plan", str(tmp_path / "ct.nii.gz"), "--level", LEVEL, "--procedure", "cage", "--side", "left",
                     "--labels", str(tmp_path / "ct_labels.nii.gz"), "--mri", str(tmp_path / "mri.nii.gz"),
                     "--mri-labels", str(tmp_path / "mri_labels.nii.gz"), "-o", str(tmp_path / "plan.json"),
                     "--json"])
    out = capsys.readouterr()
    assert code in (0, 3), out.err
    json.loads(out.out)
    plan = load_plan(tmp_path / "plan.json")
    sac = next(c for c in plan["checks"] if c["id"] == CheckId.DURAL_SAC_CLEARANCE.value)
    assert "dural sac from the MRI (fused)" in sac["detail"]
    assert "residual" in out.err


def test_cli_plan_with_a_missing_mri_exits_2(phantoms, tmp_path, capsys):
    ph, _ = phantoms
    write_volume(ph.ct, tmp_path / "ct.nii.gz")
    write_volume(ph.labels, tmp_path / "ct_labels.nii.gz")
    code = cli.main(["plan", str(tmp_path / "ct.nii.gz"), "--level", LEVEL, "--procedure", "cage", "--side", "left",
                     "--labels", str(tmp_path / "ct_labels.nii.gz"), "--mri", str(tmp_path / "none.nii.gz"),
                     "-o", str(tmp_path / "plan.json")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("spineplan: error:") and "none.nii.gz" in err
    assert not (tmp_path / "plan.json").exists()
