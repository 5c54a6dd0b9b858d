"""CT-MRI fusion: the phantom's known transforms are found, the local stage fixes a unit
that moved on its own, a real MRI finds a known motion of itself, transforms round-trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spineplan.core.dicom.load import load_volume
from spineplan.core.errors import InvalidInputError
from spineplan.core.phantom import make_phantom
from spineplan.core.phantom_mri import default_unit_motion, make_mri_phantom
from spineplan.core.registration import (FusionFlagKind, RegistrationSettings, RigidTransform, mri_on_ct,
                                         read_tfm, register_mri_to_ct, unit_points_lps, write_tfm)
from spineplan.core.volume import Volume

LEVEL = "L4-L5"


@pytest.fixture(scope="module")
def ct_phantom():
    return make_phantom(spacing=2.0)


def _errors(result_tx, true_tx, points):
    return float(result_tx.displacement_mm(true_tx, points).max()), result_tx.angle_to_deg(true_tx)


@pytest.fixture(scope="module")
def fused(ct_phantom):
    mp = make_mri_phantom(ct_phantom, spacing_mm=2.0)
    res = register_mri_to_ct(ct_phantom.ct, mp.mri, level=LEVEL, ct_labels=ct_phantom.labels,
                             mri_labels=mp.labels, settings=RegistrationSettings.fast())
    return mp, res


def test_phantom_fusion_error_at_unit_within_1mm_1deg(ct_phantom, fused):
    mp, res = fused
    assert mp.ct_to_mri.angle_deg == pytest.approx(8.0)
    assert np.linalg.norm(mp.ct_to_mri.mri_points_from_ct(ct_phantom.ct.center_lps())[0]
                          - ct_phantom.ct.center_lps()) == pytest.approx(15.0, abs=0.1)
    pts = unit_points_lps(ct_phantom.labels, LEVEL)
    mm, deg = _errors(res.transform, mp.ct_to_mri, pts)
    assert mm <= 1.0 and deg <= 1.0, (mm, deg)
    # the quality figures: the MRI's labels moved onto the CT agree with the CT's at the unit
    assert set(res.dice) == {"L4", "L5", "L4/L5"}
    assert min(res.dice.values()) > 0.9
    assert res.residual_mm is not None and res.residual_mm < 1.0
    assert not [f for f in res.flags if f.kind is FusionFlagKind.RESIDUAL_HIGH]
    # the MRI on the CT grid: the bright CSF lies in the CT's canal, dark cortex in bone
    on_ct = mri_on_ct(mp.mri, ct_phantom.ct, res.transform)
    assert on_ct.same_grid(ct_phantom.ct)
    unit = np.isin(ct_phantom.labels.array, (23, 24))
    canal = ct_phantom.labels.array == 300
    near = np.zeros_like(canal)
    k = np.nonzero(unit.any(axis=(1, 2)))[0]
    near[k.min():k.max() + 1] = True
    assert on_ct.array[canal & near].mean() > 180
    assert on_ct.array[unit].mean() < 130


def test_local_refinement_fixes_a_unit_that_moved_alone(ct_phantom):
    motion = default_unit_motion(ct_phantom, LEVEL)
    mp = make_mri_phantom(ct_phantom, spacing_mm=2.0, unit_motion=motion, seed=1)
    st = RegistrationSettings(**{**RegistrationSettings.fast().__dict__, "restart_offset_mm": 0.0,
                                 "restart_offset_deg": 0.0})
    res = register_mri_to_ct(ct_phantom.ct, mp.mri, level=LEVEL, ct_labels=ct_phantom.labels, settings=st)
    truth = mp.true_transform_at(LEVEL)
    pts = unit_points_lps(ct_phantom.labels, LEVEL)
    g_mm, _ = _errors(res.global_transform, truth, pts)
    l_mm, l_deg = _errors(res.local_transform, truth, pts)
    assert g_mm > 2.0, g_mm            # the global transform alone is off at the moved unit
    assert l_mm <= 1.0 and l_deg <= 1.0, (l_mm, l_deg)
    assert res.local_correction_mm > 2.0


@pytest.mark.parametrize("case", ["case01", "case07", "case20"])
def test_real_mri_registered_to_a_moved_copy_of_itself(shared_data, case):
    import SimpleITK as sitk

    img = shared_data / "mri_lumbar_vb_dev" / f"{case}_mri.nii.gz"
    lab = shared_data / "mri_lumbar_vb_dev" / f"{case}_vertebrae_verse.nii.gz"
    if not img.exists():
        pytest.skip(f"{img.name} not in ../shared/data")
    fixed = load_volume(img)
    labels = load_volume(lab)
    truth = RigidTransform.from_axis_angle((0.3, 0.9, 0.3), 5.0, (4.0, -3.0, 6.0), fixed.center_lps())
    # the moved copy: the anatomy at fixed point x appears at truth(x)
    ref = fixed.to_sitk()
    moved_img = sitk.Resample(sitk.Cast(ref, sitk.sitkFloat32), ref, truth.inverse().to_sitk(),
                              sitk.sitkLinear, 0.0)
    moving = Volume.from_sitk(moved_img, modality="MR")
    res = register_mri_to_ct(fixed, moving, level=LEVEL, ct_labels=labels)  # default settings
    pts = unit_points_lps(labels, LEVEL)
    mm, deg = _errors(res.transform, truth, pts)
    assert mm <= 0.5, (mm, deg)
    assert res.residual_mm < 0.5


def test_transform_json_and_tfm_round_trip(tmp_path):
    t = RigidTransform.from_axis_angle((0.2, -0.5, 0.8), 7.3, (12.5, -3.25, 8.0), (1.0, 22.0, -40.0))
    back = RigidTransform.from_dict(json.loads(json.dumps(t.to_dict())))
    assert np.abs(back.matrix - t.matrix).max() < 1e-12
    f = write_tfm(t, tmp_path / "mri_to_ct.tfm")
    assert "Euler3DTransform" in f.read_text()
    r = read_tfm(f)
    assert np.abs(r.matrix - t.matrix).max() < 1e-6
    pts = np.array([[0.0, 0.0, 0.0], [100.0, -50.0, 30.0]])
    assert np.abs(r.mri_points_from_ct(pts) - t.mri_points_from_ct(pts)).max() < 1e-6
    # SimpleITK reads it as the same map, point by point (ITK convention: fixed -> moving)
    import SimpleITK as sitk

    tx = sitk.ReadTransform(str(f))
    assert np.allclose(tx.TransformPoint((100.0, -50.0, 30.0)), t.mri_points_from_ct(pts)[1], atol=1e-6)


def test_transform_refuses_non_rigid_and_foreign_json(tmp_path):
    m = np.eye(4)
    m[0, 0] = 1.2
    with pytest.raises(InvalidInputError):
        RigidTransform(m)
    with pytest.raises(InvalidInputError):
        RigidTransform.from_dict({"kind": "affine", "matrix": np.eye(4).tolist()})
    with pytest.raises(InvalidInputError):
        write_tfm(RigidTransform.identity(), tmp_path / "x.json")
    (tmp_path / "junk.tfm").write_text("not a transform")
    with pytest.raises(InvalidInputError):
        read_tfm(tmp_path / "junk.tfm")


def test_nudge_moves_and_composes():
    t = RigidTransform.identity((0.0, 0.0, 0.0))
    n = t.nudged((1.0, 0.0, 0.0))
    assert np.allclose(n.mri_points_from_ct([[0.0, 0.0, 0.0]]), [[1.0, 0.0, 0.0]])
    r = t.nudged(rotation_deg=(0.0, 0.0, 90.0))
    assert np.allclose(r.mri_points_from_ct([[1.0, 0.0, 0.0]]), [[0.0, 1.0, 0.0]], atol=1e-12)
    assert r.angle_deg == pytest.approx(90.0)
    assert np.allclose((r.inverse().after(r)).matrix, np.eye(4), atol=1e-12)


def test_mri_phantom_shows_the_ct_anatomy_through_the_known_transforms(ct_phantom):
    from spineplan.core.phantom_mri import T2_INTENSITY

    motion = default_unit_motion(ct_phantom, LEVEL)
    mp = make_mri_phantom(ct_phantom, spacing_mm=2.0, unit_motion=motion, noise=0.0)
    assert mp.mri.orientation() == "IPL" and mp.mri.modality == "MR"
    t = ct_phantom.truth
    # L2's body centre (not moved) through the global transform: marrow, labelled L2
    c = np.array(t["vertebrae"]["L2"]["center_lps"])
    p = mp.ct_to_mri.mri_points_from_ct(c)
    assert mp.mri.value_at_lps(p[0]) == pytest.approx(T2_INTENSITY["cancellous"], abs=5)
    assert mp.labels.value_at_lps(p[0]) == 21
    # the sac beside L2's disc is bright CSF
    sac = np.array(t["discs"]["L2-L3"]["center_lps"]) + [0.0, 29.0, 0.0]
    assert mp.mri.value_at_lps(mp.ct_to_mri.mri_points_from_ct(sac)[0]) > 200
    # the moved unit: L4's centre is found through the unit's own transform, not the global one
    c4 = np.array(t["vertebrae"]["L4"]["center_lps"])
    assert mp.labels.value_at_lps(mp.true_transform_at(LEVEL).mri_points_from_ct(c4)[0]) == 23
    assert np.linalg.norm(mp.true_transform_at(LEVEL).mri_points_from_ct(c4)
                          - mp.ct_to_mri.mri_points_from_ct(c4)) > 2.0
