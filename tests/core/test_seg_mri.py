"""Built-in MRI segmenter (classical-mri): synthetic T2-like phantom, real MRI from
../shared/data (skipped when absent), bad input, and the `spineplan segment` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from spineplan import cli
from spineplan.core.dicom.load import read_image_file, write_volume
from spineplan.core.errors import SegmentationError
from spineplan.core.phantom import HU, make_phantom
from spineplan.core.segmentation import labels as L
from spineplan.core.segmentation.mri import _measured_body, _pull_in_to_cortex, segment_mri
from spineplan.core.volume import Volume
from spineplan.core.segmentation.result import FlagKind

LUMBAR = ["L1", "L2", "L3", "L4", "L5"]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def _sagittal_ipl(vol: Volume, array_zyx: np.ndarray) -> Volume:
    """Re-grid an axial LPS-identity array [z, y, x] as a sagittal IPL volume (i inferior,
    j posterior, k left), the geometry of the MRI files in ../shared/data."""
    nz = array_zyx.shape[0]
    arr = np.ascontiguousarray(np.transpose(array_zyx[::-1], (2, 1, 0)))  # [x, y, z_down]
    direction = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    origin = vol.lps_points_from_ijk(np.array([0.0, 0.0, nz - 1.0]))
    sx, sy, sz = vol.spacing
    return Volume(arr, spacing=(sz, sy, sx), origin=origin, direction=direction, modality="MR")


@pytest.fixture(scope="module")
def t2_phantom():
    """A T2-like MRI of the CT phantom (marrow mid-grey, dark cortex, bright discs and CSF) on a
    sagittal IPL grid, its body-only reference, and the same image on the axial grid."""
    return _t2_of(make_phantom(spacing=1.5, left_marker=False))


def _t2_of(ph):
    """The T2-like MRI of a CT phantom (see ``t2_phantom``)."""
    ct, lab = ph.ct.array, ph.labels.array
    img = np.full(ct.shape, 0.25, np.float32)            # muscle / soft tissue
    img[ct <= HU["fat"] + 40] = 0.7                       # fat (bright on fast spin echo)
    img[ct <= -500] = 0.0                                 # air
    img[ct == HU["cancellous"]] = 0.45                    # marrow
    img[ct >= HU["posterior"]] = 0.15                     # cortical and posterior bone
    disc = (lab >= 119) & (lab <= 125)
    img[disc] = 0.55
    img[disc & (ct >= HU["nucleus"])] = 0.85              # nucleus
    img[lab == L.CANAL] = 0.95                            # CSF
    rng = np.random.default_rng(0)
    img = (img + rng.normal(0, 0.03, img.shape)).clip(0, None) * 1000
    # body-only reference: marrow + body cortex of each vertebra, no posterior elements
    body = np.where((lab >= 20) & (lab <= 26) & (ct != HU["posterior"]), lab, 0).astype(np.uint16)
    mri = _sagittal_ipl(ph.ct, img.astype(np.uint16))
    ref = _sagittal_ipl(ph.ct, body)
    axial = ph.ct.with_array(img.astype(np.uint16), modality="MR")
    return mri, ref, axial


def test_phantom_levels_and_body_dice(t2_phantom):
    mri, ref, _ = t2_phantom
    res = segment_mri(mri)
    assert res.labels.same_grid(mri) and res.labels.array.dtype == np.uint16
    assert res.levels[-6:] == LUMBAR + ["S1"]
    out = res.labels.array
    dices = [_dice(out == v, ref.array == v) for v in range(20, 25)]
    assert np.mean(dices) >= 0.875, dices  # measured 0.890 (0.890 elliptic sections, 0.86 one extruded outline)
    for up in range(20, 25):  # discs L1/L2 .. L5/S1 present between their bodies
        assert (out == L.disc_label(up)).sum() > 100
    assert (out == L.CANAL).any()
    assert not res.has(FlagKind.NO_SACRUM)


@pytest.mark.parametrize("heights, flag", [((4.0, 3.0), "one body found as two"),
                                           ((2.0, 1.5), "the promontory may lie a level lower")])
def test_thin_disc_that_upsets_the_count_is_flagged(heights, flag):
    """A thin (degenerate) L4/L5 disc on the T2 phantom: at 4/3 mm a body is found as two
    regions 10 mm apart, at 2/1.5 mm L4/L5 is taken for the promontory with two body-like
    'sacral' regions below. Both named the levels wrong without a flag; now the count is
    flagged for confirmation and no level is trusted above 0.5."""
    mri, _, _ = _t2_of(make_phantom(spacing=1.5, left_marker=False, disc_heights={"L4": heights}))
    res = segment_mri(mri)
    assert any(f.kind == FlagKind.COUNT_IN_DOUBT and flag in f.message for f in res.flags), res.flags
    assert max(res.confidence.values()) <= 0.5


def test_axial_grid_gives_the_same_labels_in_world(t2_phantom):
    """Orientation only changes the array order: the axial copy is labelled alike."""
    mri, _, axial = t2_phantom
    a, b = segment_mri(mri), segment_mri(axial)
    assert a.levels == b.levels
    back = np.transpose(a.labels.array, (2, 1, 0))[::-1]  # IPL [x, y, z_down] -> axial [z, y, x]
    for v in range(20, 25):
        assert _dice(back == v, b.labels.array == v) > 0.95


def test_measured_sections_follow_the_image_not_the_model():
    """A boxy body (superellipse, 44 mm wide) whose model section is a 32 mm wide ellipse: the
    rays find its lateral walls against brighter tissue on one side and darker on the other,
    blurred across ~4 mm sagittal sections; marrow-like tissue in front of the body is not
    taken (no deeper than the model's mid-sagittal AP range)."""
    nz, ny, nx = 30, 80, 80
    zz, yy, xx = np.mgrid[0:nz, 0:ny, 0:nx]
    rows = (zz >= 5) & (zz < 25)
    truth = rows & (((xx - 40) / 22.0) ** 4 + ((yy - 35) / 15.0) ** 4 <= 1.0)
    img = np.where(xx < 40, 0.8, 0.15).astype(np.float32)   # psoas-like left, dark right
    img[rows & (yy >= 5) & (yy < 18) & (np.abs(xx - 40) < 15)] = 0.45  # marrow-like, in front
    img[truth] = 0.45
    img = ndimage.gaussian_filter(img, (0.5, 1.0, 2.0))
    img += np.random.default_rng(0).normal(0, 0.02, img.shape).astype(np.float32)
    model = rows & (((xx - 40) / 16.0) ** 2 + ((yy - 35) / 15.0) ** 2 <= 1.0)
    out = _measured_body(img, model, np.array([1.0, 1.0, 1.0]))
    assert _dice(model, truth) < 0.8  # 0.77
    assert _dice(out, truth) > 0.95  # measured 0.975
    assert not out[:, :18].any() and not (out & ~rows).any()


def test_surface_is_pulled_in_to_the_dark_cortex_found_in_the_image():
    """A body (marrow 0.45) with a 1 mm dark cortex (0.15) and bright disc/fat outside (0.7):
    a mask whose surface lies 1 or 2 mm outside the cortex (the watershed line on the steepest
    point of the edge) is moved onto the cortex; a mask already on it is left alone (a fixed
    pull-in would cut the cortex off); at 1.5 mm voxels with the cortex in the outer layer,
    nothing moves either."""
    nz, ny, nx = 50, 60, 5
    zz, yy = np.mgrid[0:nz, 0:ny]
    truth2d = (np.abs(zz - 25) / 15.0) ** 4 + (np.abs(yy - 30) / 18.0) ** 4 <= 1.0
    st = np.zeros((3, 3), bool)
    st[1, :] = st[:, 1] = True
    cortex2d = truth2d & ~ndimage.binary_erosion(truth2d, structure=st)
    img2d = np.where(truth2d, 0.45, 0.7).astype(np.float32)
    img2d[cortex2d] = 0.15
    img = np.repeat(ndimage.gaussian_filter(img2d, 0.5)[:, :, None], nx, axis=2)
    img += np.random.default_rng(0).normal(0, 0.03, img.shape).astype(np.float32)
    truth = np.repeat(truth2d[:, :, None], nx, axis=2)
    sp = np.array([1.0, 1.0, 4.0])
    for grow in (1, 2):  # the watershed line 1 or 2 mm outside the cortex
        m = np.repeat(ndimage.binary_dilation(truth2d, structure=st, iterations=grow)[:, :, None], nx, axis=2)
        assert _dice(m, truth) < 0.95
        assert np.array_equal(_pull_in_to_cortex(m, img, sp), truth), grow
    assert np.array_equal(_pull_in_to_cortex(truth, img, sp), truth)  # already on the cortex
    assert np.array_equal(_pull_in_to_cortex(truth, img, np.array([1.5, 1.5, 4.0])), truth)


def _vb_case(shared_data, n: str):
    d = shared_data / "mri_lumbar_vb_dev"
    return read_image_file(d / f"case{n}_mri.nii.gz"), read_image_file(d / f"case{n}_vertebrae_verse.nii.gz")


# measured 0.839 (02), 0.879 (04), 0.857 (08) with all of session 4's changes; 0.835, 0.873, 0.833
# with the per-slice refinement alone; 0.804, 0.841, 0.821 with one pass of the per-slice
# watershed limited to 3 mm, one marrow window as its background and the surfaces left on the
# watershed line; 0.772, 0.818, 0.798 with one extruded mid-sagittal outline per body and per-body widths
@pytest.mark.parametrize("n, min_dice", [("02", 0.815), ("04", 0.855), ("08", 0.825)])
def test_real_vb_cases_levels_and_dice(shared_data, n, min_dice):
    img, ref = _vb_case(shared_data, n)
    res = segment_mri(img)
    out, r = res.labels.array, ref.array
    for v in range(20, 25):  # every reference body is mostly given its own level
        got, cnt = np.unique(out[r == v], return_counts=True)
        cnt = np.where(got == 0, 0, cnt)
        assert int(got[np.argmax(cnt)]) == v, (n, L.vertebra_name(v), got, cnt)
    assert set(LUMBAR) <= set(res.levels)
    assert np.mean([_dice(out == v, r == v) for v in range(20, 25)]) >= min_dice


def test_real_case_keeps_levels_and_shapes_under_noise(shared_data):
    """Case 07 (the hardest) with Gaussian noise of 3% of its intensity range: every body keeps
    its level and the shapes hold (measured 0.867; 0.863 without noise; all 10 cases keep their
    levels at 3%)."""
    img, ref = _vb_case(shared_data, "07")
    a = img.array.astype(np.float32)
    span = float(np.percentile(a, 99.5) - np.percentile(a, 1))
    noisy = img.with_array(a + np.random.default_rng(7).normal(0.0, 0.03 * span, a.shape).astype(np.float32))
    src = a.copy()
    out, r = segment_mri(noisy).labels.array, ref.array
    assert np.array_equal(img.array, src)  # the input is not modified
    for v in range(20, 25):
        got, cnt = np.unique(out[r == v], return_counts=True)
        cnt = np.where(got == 0, 0, cnt)
        assert int(got[np.argmax(cnt)]) == v, (L.vertebra_name(v), got, cnt)
    assert np.mean([_dice(out == v, r == v) for v in range(20, 25)]) >= 0.83


@pytest.mark.parametrize("seed", [0, 5])
def test_heavy_noise_does_not_make_a_promontory_of_a_noisy_posterior_wall(shared_data, seed):
    """Case 07 with 6% noise: in these draws L4's region has its posterior wall 12-15 mm in front
    of L3's, so L5 stepped back behind it like S1 behind L5, and every level was named one off
    without a flag (also with the session-3 naming). A step back that only undoes the step
    forward above it is not the promontory: the levels are right (the sacrum, when missed,
    is flagged)."""
    img, ref = _vb_case(shared_data, "07")
    a = img.array.astype(np.float32)
    span = float(np.percentile(a, 99.5) - np.percentile(a, 1))
    noisy = img.with_array(a + np.random.default_rng(seed).normal(0.0, 0.06 * span, a.shape).astype(np.float32))
    res = segment_mri(noisy)
    out, r = res.labels.array, ref.array
    named = []
    for v in range(20, 25):
        got, cnt = np.unique(out[r == v], return_counts=True)
        cnt = np.where(got == 0, 0, cnt)
        named.append(int(got[np.argmax(cnt)]))
    # right, or (with the sacrum missed: seed 5 on current numpy/scipy wheels names T12..L5)
    # flagged for confirmation; never wrong at a confidence that skips the confirmation
    assert named == list(range(20, 25)) or (res.needs_confirmation and res.has(FlagKind.NO_SACRUM)), (
        named, res.levels, res.confidence)


# the mid-sagittal stage's known 2D errors: 01 (canal front tracked 5-10 mm inside L2/L3),
# 05 (L3's back wall 12 mm short), 07 (L1 soft tissue in front, L2/L3/L5 cut by the canal
# track); measured 0.848, 0.868, 0.863 with all of session 4's changes; 0.828, 0.836, 0.848 with the
# 2D fixes alone (0.782, 0.814, 0.748 before)
@pytest.mark.parametrize("n, min_dice", [("01", 0.815), ("05", 0.825), ("07", 0.835)])
def test_real_vb_cases_mid_sagittal_errors(shared_data, n, min_dice):
    img, ref = _vb_case(shared_data, n)
    out, r = segment_mri(img).labels.array, ref.array
    dices = [_dice(out == v, r == v) for v in range(20, 25)]
    assert min(dices) >= 0.77 and np.mean(dices) >= min_dice, dices


def test_posterior_wall_fills_a_notch_and_cuts_behind_the_canal():
    """A body's rows reach its posterior wall (2 mm in front of the CSF edge): a notch of
    other marrow signal at the back is filled, what lies behind the wall is cut, and the
    rows at the endplate rims are left alone."""
    from spineplan.core.segmentation.mri import WALL_TO_CSF_MM, _posterior_wall

    sp = np.array([1.0, 1.0, 1.0])
    m = np.zeros((60, 80), bool)
    m[12:40, 20:53] = True         # body rows 12..39, back at the wall (y = 52)
    m[20:32, 42:53] = False        # 10 mm notch at the back, mid-height
    m[10:12, 20:40] = True         # the rounded rim at the top: short rows
    m[30:36, 53:58] = True         # soft tissue behind the wall joined to the body
    yw = np.full(60, 52.0 + WALL_TO_CSF_MM)  # CSF edge: the wall is at y = 52
    out = _posterior_wall(m, yw, sp)
    assert out[20:32, 42:53].all()           # notch filled up to the wall
    assert not out[:, 53:].any()             # nothing behind the wall
    assert not out[10:12, 40:].any()         # rim rows not squared off


def test_real_case_on_a_clinical_sagittal_grid(shared_data):
    """0.7 mm in-plane, 4 mm slices (a usual sagittal T2 protocol): levels still right."""
    import SimpleITK as sitk

    img, ref = _vb_case(shared_data, "03")
    new_sp = (0.7, 0.7, 4.0)  # i (inferior), j (posterior): in-plane; k: across slices
    size = [int(round(n * s / t)) for n, s, t in zip(img.to_sitk().GetSize(), img.spacing, new_sp)]

    def resample(vol, interp):
        im = vol.to_sitk()
        return Volume.from_sitk(sitk.Resample(im, size, sitk.Transform(), interp, im.GetOrigin(), new_sp,
                                              im.GetDirection(), 0, im.GetPixelID()))

    img2, ref2 = resample(img, sitk.sitkLinear), resample(ref, sitk.sitkNearestNeighbor)
    out = segment_mri(img2).labels.array
    for v in range(20, 25):
        got, cnt = np.unique(out[ref2.array == v], return_counts=True)
        cnt = np.where(got == 0, 0, cnt)
        assert int(got[np.argmax(cnt)]) == v, (L.vertebra_name(v), got, cnt)
    # measured 0.839 (0.828 before the two per-slice passes with per-body marrow background,
    # 0.80 with one extruded outline per body)
    assert np.mean([_dice(out == v, ref2.array == v) for v in range(20, 25)]) >= 0.815


def test_real_ivd_case_disc_levels(shared_data):
    d = shared_data / "mri_lumbar_ivd_dev"
    img, ref = read_image_file(d / "case20_mri.nii.gz"), read_image_file(d / "case20_discs_verse.nii.gz")
    res = segment_mri(img)
    out, r = res.labels.array, ref.array
    dices = []
    for v in range(120, 125):
        got, cnt = np.unique(out[r == v], return_counts=True)
        cnt = np.where((got >= 100) & (got < L.CANAL), cnt, 0)  # the disc label met most
        assert int(got[np.argmax(cnt)]) == v, (L.disc_name(v), got, cnt)
        dices.append(_dice(out == v, r == v))
    assert min(dices) > 0.35 and np.mean(dices) > 0.52, dices  # measured 0.38-0.78, mean 0.546 (was 0.28-0.76, 0.48)


def test_ct_in_hounsfield_units_is_refused():
    ph = make_phantom(spacing=3.0)
    ct = ph.ct.with_array(ph.ct.array, modality="")
    with pytest.raises(SegmentationError, match="Hounsfield"):
        segment_mri(ct)
    with pytest.raises(SegmentationError, match="needs an MR"):
        segment_mri(ph.ct)  # modality CT


def test_constant_and_noise_volumes_are_refused():
    flat = Volume(np.full((60, 200, 200), 7, np.uint16), modality="MR")
    with pytest.raises(SegmentationError, match="contrast"):
        segment_mri(flat)
    noise = Volume(np.random.default_rng(1).integers(0, 255, (200, 200, 60)).astype(np.uint8), modality="MR")
    with pytest.raises(SegmentationError, match="canal|bodies"):
        segment_mri(noise)


def test_cli_segment_mri_nifti(t2_phantom, tmp_path, capsys):
    mri, ref, _ = t2_phantom
    src = tmp_path / "mri.nii.gz"
    write_volume(mri, src)  # NIfTI carries no modality
    out = tmp_path / "labels.nii.gz"
    rc = cli.main(["segment", str(src), "-o", str(out), "--modality", "MR", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["backend"] == "classical-mri"
    assert doc["levels"][-6:] == LUMBAR + ["S1"] and "L4-L5" in [u["level"] for u in doc["motor_units"]]
    back = read_image_file(out)
    assert back.same_grid(mri)
    assert _dice(back.array == 22, ref.array == 22) > 0.8
