"""Built-in CT segmenter: phantom (exact truth), reoriented grids, transitional anatomy,
the bundled sample and the real CT against their reference labels, bad input, cancellation."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from spineplan.core.phantom import make_phantom
from spineplan.core.segmentation import labels as L
from spineplan.core.segmentation.base import default_for
from spineplan.core.segmentation.ct import SURFACE_HU, segment_ct
from spineplan.core.errors import SegmentationError
from spineplan.core.tasks import Cancelled
from spineplan.core.volume import Volume
from spineplan.core.segmentation.result import Anchor, FlagKind


def _dice(a, b, v):
    A, B = a == v, b == v
    s = A.sum() + B.sum()
    return 2.0 * (A & B).sum() / s if s else float("nan")


def _dice_m(a, b):
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def test_registry_offers_the_ct_segmenter():
    assert default_for("CT").name == "classical-ct"


@pytest.fixture(scope="module")
def phantom_run():
    p = make_phantom(spacing=1.5)
    return p, segment_ct(p.ct)


def test_phantom_levels_exact(phantom_run):
    p, r = phantom_run
    assert r.levels == p.truth["levels"]
    assert r.labels.same_grid(p.ct) and r.labels.array.dtype == np.uint16
    assert not r.flags


def test_phantom_vertebra_dice(phantom_run):
    p, r = phantom_run
    dices = [_dice(r.labels.array, p.labels.array, L.vertebra_label(name)) for name in p.truth["levels"]]
    # issue 4's target is a mean of 0.95; measured 0.937-0.991 per level, mean 0.961 at 1.5 mm
    assert min(dices) >= 0.92 and np.mean(dices) >= 0.95, dices


def test_phantom_discs_centres(phantom_run):
    p, r = phantom_run
    for name, d in p.truth["discs"].items():
        assert d["label"] in r.extra["discs"], name
        c = np.array(r.extra["discs"][d["label"]]["center_lps"])
        assert np.linalg.norm(c - np.array(d["center_lps"])) < 4.5, name  # measured <= 3.7 mm (L5-S1)
        assert (r.labels.array == d["label"]).sum() > 0, name
    assert r.extra["centerline_lps"].shape[1] == 3


@pytest.mark.slow
def test_rotated_flipped_grid_same_world_labels():
    p = make_phantom(spacing=1.5)
    # make the phantom asymmetric: remove L3's LEFT transverse process (+x in LPS)
    c3 = np.array(p.truth["vertebrae"]["L3"]["center_lps"])
    ijk = np.argwhere(p.labels.array == L.vertebra_label("L3"))[:, ::-1]
    lps = p.ct.lps_points_from_ijk(ijk)
    tp = (lps[:, 0] > 25.0) & (np.abs(lps[:, 2] - c3[2]) < 20.0)
    kk, jj, ii = ijk[tp, 2], ijk[tp, 1], ijk[tp, 0]
    ct = p.ct.array.copy()
    ct[kk, jj, ii] = 40
    vol0 = p.ct.with_array(ct)
    r = segment_ct(vol0)
    # permute axes and flip: a grid with a non-identity direction matrix
    img = vol0.to_sitk()
    flipped = sitk.Flip(sitk.PermuteAxes(img, [2, 0, 1]), [True, False, True])
    vol = Volume.from_sitk(flipped, modality="CT")
    assert not np.allclose(vol.direction, np.eye(3))
    r2 = segment_ct(vol)
    assert r2.levels == r.levels == p.truth["levels"]
    back = sitk.Resample(r2.labels.to_sitk(), img, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    a = sitk.GetArrayFromImage(back)
    for name in r.levels:
        lab = L.vertebra_label(name)
        assert _dice(a, r.labels.array, lab) > 0.97, name
    # left stays left: L3 has bone far on the right (-x) but none far on the left (+x)
    xs = p.ct.lps_points_from_ijk(np.argwhere(a == L.vertebra_label("L3"))[:, ::-1])[:, 0]
    assert (xs < -30.0).sum() > 50
    assert (xs > 30.0).sum() == 0


@pytest.mark.slow
def test_transitional_l6_told_by_the_ribs():
    """Six rib-free vertebrae between the sacrum and the last rib-bearing one: an L6."""
    p = make_phantom(levels=("T12", "L1", "L2", "L3", "L4", "L5", "L6"), spacing=1.5,
                     iliac_crest=False, left_marker=False, ribs=("T12",))
    r = segment_ct(p.ct)
    assert r.has(FlagKind.TRANSITIONAL_L6)
    assert r.levels == p.truth["levels"]
    assert r.confidence["L6"] < 0.8


@pytest.mark.parametrize("spacing", [1.5, 3.0])
def test_sacralised_l5_is_flagged_and_named_as_l5(spacing):
    """L5's transverse processes fused to the sacral ala (Castellvi III): names unchanged,
    flagged, confidence lowered; the same phantom without the fusion is not flagged."""
    p = make_phantom(levels=("L2", "L3", "L4", "L5"), spacing=spacing, sacralised_l5=True)
    r = segment_ct(p.ct)
    assert r.levels == p.truth["levels"]
    assert r.has(FlagKind.SACRALISED_L5)
    assert max(r.confidence.values()) <= 0.5
    plain = segment_ct(make_phantom(levels=("L2", "L3", "L4", "L5"), spacing=spacing).ct)
    assert not plain.has(FlagKind.SACRALISED_L5)


@pytest.mark.parametrize("spacing, floor", [(1.5, 0.975), (3.0, 0.95)])
def test_rib_heads_are_not_part_of_t12(spacing, floor):
    """T12's rib head sits beside its pedicle, 20-30 mm from the midline, across a 1 mm
    costovertebral joint: the rib is split off at the joint, not cut at a fixed distance.
    (Cut at 38 mm: 856 / 100 rib voxels labelled T12, T12 Dice 0.958 / 0.942.)"""
    p = make_phantom(levels=("T12", "L1", "L2", "L3", "L4", "L5"), spacing=spacing,
                     iliac_crest=False, left_marker=False, ribs=("T12",))
    r = segment_ct(p.ct)
    assert r.levels == p.truth["levels"] and not r.flags
    truth, out = p.labels.array, r.labels.array
    rib = (truth == 0) & (p.ct.array > SURFACE_HU)
    head_mm3 = 4.0 / 3.0 * np.pi * 4.5 ** 3 * 2  # both rib heads
    # (measured 81 / 324 mm^3: partial-volume voxels of the joint; cut at 38 mm 2889 / 2700)
    assert ((out == 19) & rib).sum() * spacing ** 3 < 0.5 * head_mm3
    assert _dice(out, truth, 19) >= floor


@pytest.mark.parametrize("spacing, floor", [(1.5, 0.95), (3.0, 0.92)])
def test_contrast_filled_aorta_touching_the_bodies_is_not_bone(spacing, floor):
    """A contrast-enhanced aorta (170 HU, like the thoracic DICOM series') touching the bodies'
    left front is bone-bright: it was labelled as the vertebrae (99 % of it; mean Dice 0.88 /
    0.86). Now 3-4 % of it, at the wall (measured Dice 0.961 / 0.934)."""
    p = make_phantom(spacing=spacing, aorta_hu=170, left_marker=False)
    aorta = (p.labels.array == 0) & (p.ct.array == 170)
    r = segment_ct(p.ct)
    assert r.levels == p.truth["levels"] and not r.flags
    assert (aorta & (r.labels.array > 0)).sum() < 0.1 * aorta.sum()
    dices = [_dice(r.labels.array, p.labels.array, L.vertebra_label(n)) for n in p.truth["levels"]]
    assert np.mean(dices) >= floor, dices


@pytest.mark.parametrize("heights", [(4.0, 3.0), (2.0, 1.5)])
def test_collapsed_disc_is_found_between_its_endplates(heights):
    """A collapsed L4/L5 disc (4/3 or 2/1.5 mm, anterior/posterior) between cortical endplates
    leaves no minimum in the smoothed body-line profile. It was missed, and so was L5/S1 (too
    far from the chain): every level two off, without a flag (mean Dice 0.105). Found now on
    the unsmoothed profile as a narrow dip between bright endplates (measured 0.968 / 0.947)."""
    p = make_phantom(spacing=1.5, left_marker=False, disc_heights={"L4": heights})
    r = segment_ct(p.ct)
    assert r.levels == p.truth["levels"] and not r.flags
    dices = [_dice(r.labels.array, p.labels.array, L.vertebra_label(n)) for n in p.truth["levels"]]
    assert np.mean(dices) >= 0.93, dices
    assert (r.labels.array == L.disc_label(L.vertebra_label("L4"))).sum() > 0


def test_collapsed_disc_on_a_3mm_grid_is_split_at_its_band_and_flagged():
    """On a 3 mm grid a 3/2 mm disc between its endplates is one bright band, no dip: the
    chain steps over it (the two discs around it are 1-2 spacings apart) and splits the double
    segment at the band, flagged. Before: every level two off, no flag (mean Dice 0.104)."""
    p = make_phantom(spacing=3.0, left_marker=False, disc_heights={"L4": (3.0, 2.0)})
    r = segment_ct(p.ct)
    assert r.levels == p.truth["levels"]
    assert any(f.kind == FlagKind.COLLAPSED_DISC and f.levels == ("L4-L5",) for f in r.flags), r.flags
    assert max(r.confidence.values()) <= 0.5
    dices = [_dice(r.labels.array, p.labels.array, L.vertebra_label(n)) for n in p.truth["levels"]]
    assert np.mean(dices) >= 0.9, dices  # measured 0.931


def _paint_rod(vol, a_lps, b_lps, radius_mm, hu):
    """Set the voxels within ``radius_mm`` of the segment a-b (LPS) to ``hu``."""
    k, j, i = np.indices(vol.array.shape)
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], 1).astype(float)
    p = vol.lps_points_from_ijk(ijk)
    a, b = np.asarray(a_lps, float), np.asarray(b_lps, float)
    t = np.clip((p - a) @ (b - a) / ((b - a) @ (b - a)), 0.0, 1.0)
    near = np.linalg.norm(p - (a + t[:, None] * (b - a)), axis=1) <= radius_mm
    vol.array.reshape(-1)[near] = hu


def test_pedicle_screws_and_rods_keep_the_names():
    """A revision case: pedicle screws in L4 and L5 joined by rods (3000 HU; no streaks
    simulated). The metal is bone-bright and bridges L4 and L5 behind the canal; the levels and
    shapes must hold, and the metal belongs to the vertebra it sits in (measured 0.942)."""
    p = make_phantom(spacing=3.0, left_marker=False)
    heads = {}
    for name in ("L4", "L5"):
        v = p.truth["vertebrae"][name]
        c, w_ax = np.array(v["center_lps"]), np.array(v["axis_lps"])
        u = np.array([1.0, 0.0, 0.0]) - w_ax * w_ax[0]
        u /= np.linalg.norm(u)
        post = np.cross(w_ax, u)  # towards the canal and the back in the phantom's frame
        for s in (1, -1):
            head = c + u * s * 18 + post * 44 + w_ax * 3
            _paint_rod(p.ct, head, c + u * s * 8 - post * 5 + w_ax * 3, 3.0, 3000)
            heads[name, s] = head
    for s in (1, -1):
        _paint_rod(p.ct, heads["L4", s], heads["L5", s], 3.0, 3000)
    metal = p.ct.array == 3000
    r = segment_ct(p.ct)
    assert r.levels == p.truth["levels"] and not r.flags
    lab = r.labels.array
    dices = [_dice(np.where(metal, 0, lab), np.where(metal, 0, p.labels.array), L.vertebra_label(n))
             for n in p.truth["levels"]]
    assert np.mean(dices) >= 0.92, dices
    assert np.isin(lab[metal], [0, 23, 24]).all()


def test_calcified_aorta_is_not_taken_for_the_canal():
    """A non-enhanced aorta (41 HU) with its wall calcified all round (400 HU, 1.5 mm) is a
    dark hole enclosed by bone, like the canal: the canal line jumped to it and the segmenter
    failed (no sacrum recognised, mean Dice 0.17). A canal's ring is an arch and a body (>= half
    bone 3-6 mm out; real CT >= 0.69); the aorta's is a thin wall in soft tissue (<= 0.27).
    (On a 3 mm grid this phantom's wall is a 3 mm voxel ring, which the rule cannot tell.)"""
    from scipy import ndimage as ndi

    p = make_phantom(spacing=1.5, aorta_hu=41, left_marker=False)
    lumen = (p.labels.array == 0) & (p.ct.array == 41)
    p.ct.array[lumen & ~ndi.binary_erosion(lumen, np.ones((1, 3, 3), bool))] = 400
    r = segment_ct(p.ct)
    assert r.levels == p.truth["levels"] and not r.flags
    assert (lumen & (r.labels.array > 0)).sum() < 0.15 * lumen.sum()  # measured 0.10
    dices = [_dice(r.labels.array, p.labels.array, L.vertebra_label(n)) for n in p.truth["levels"]]
    assert np.mean(dices) >= 0.94, dices  # measured 0.954


def test_noise_does_not_make_a_sacralised_l5_but_a_bony_bar_still_does():
    """60 HU of noise on a 1.5 mm grid made 178 mm^2 of L5-sacrum 'contact' out of noise voxels
    and flagged a sacralised L5 (a false alarm lowering every confidence); the contact must be
    bone once smoothed over a voxel. A fused transverse process is still flagged with the noise."""
    rng = np.random.default_rng(1)
    for fused in (False, True):
        p = make_phantom(levels=("L2", "L3", "L4", "L5"), spacing=1.5, left_marker=False,
                         sacralised_l5=fused)
        noisy = p.ct.with_array((p.ct.array + rng.normal(0.0, 60.0, p.ct.array.shape)).astype(np.int16))
        r = segment_ct(noisy)
        assert r.levels == p.truth["levels"]
        assert r.has(FlagKind.SACRALISED_L5) == fused, r.flags


@pytest.mark.slow
def test_t11_in_view_is_not_taken_for_an_l6():
    """A scan reaching T11 has seven vertebrae above the sacrum too: its ribs say it is normal."""
    p = make_phantom(levels=("T11", "T12", "L1", "L2", "L3", "L4", "L5"), spacing=1.5,
                     left_marker=False, ribs=("T11", "T12"))
    r = segment_ct(p.ct)
    assert r.levels == p.truth["levels"] and not r.flags
    assert min(r.confidence.values()) >= 0.9  # sacrum and ribs agree


@pytest.mark.slow
def test_seven_vertebrae_without_ribs_are_named_normally_and_flagged():
    p = make_phantom(levels=("T12", "L1", "L2", "L3", "L4", "L5", "L6"), spacing=1.5,
                     iliac_crest=False, left_marker=False)
    r = segment_ct(p.ct)
    assert r.levels == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]  # the common anatomy
    assert r.has(FlagKind.TRANSITIONAL_UNSEEN)
    assert max(r.confidence.values()) <= 0.5


def test_cancel_raises():
    p = make_phantom(levels=("L4", "L5"), spacing=2.0)
    calls = []
    with pytest.raises(Cancelled):
        segment_ct(p.ct, progress=lambda f, m: calls.append(f), cancel=lambda: len(calls) >= 2)


def test_real_ct_levels_and_dice(shared_data):
    d, _, v = _real_ct(shared_data)
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "example_ct_vertebrae_verse.nii.gz")))
    refd = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "example_ct_discs_verse.nii.gz")))
    r = segment_ct(v)
    # the reference's T11 is only a 76-voxel tip at the top edge; all full vertebrae named right
    assert r.levels == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert not r.flags
    assert min(r.confidence.values()) >= 0.9  # the sacrum and T12's ribs agree
    # reached (3 mm): T12 .89 L1 .93 L2 .93 L3 .92 L4 .92 L5 .89 S1 .82, mean .902 (target 0.90);
    # without the marrow fill 0.888, with the disc planes alone behind the canal 0.879, with
    # T12's ribs cut at 38 mm instead of split at their joints 0.899 (T12 .874)
    dices = {lab: _dice(r.labels.array, ref, lab) for lab in (19, 20, 21, 22, 23, 24, 26)}
    for lab, dv in dices.items():
        assert dv > 0.78, (lab, dv)
    assert dices[19] > 0.885
    assert np.mean(list(dices.values())) >= 0.90
    for lab in np.unique(refd)[1:]:
        assert (r.labels.array == lab).sum() > 0, lab


def _real_ct(shared_data):
    d = shared_data / "ct_lumbar_totalseg"
    img = sitk.ReadImage(str(d / "example_ct.nii.gz"))
    return d, img, Volume.from_sitk(img, modality="CT")


def test_real_ct_canal_line_follows_the_canal(shared_data):
    """The canal line stays in the canal down to the sacrum: this patient's osteoporotic
    L5/S1 marrow shows as holes in the bone mask, which were once taken for the canal (24 mm
    in front of it), and the L5/S1 disc then fell off the column under a little noise."""
    d, img, v = _real_ct(shared_data)
    cord = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "example_ct_spinal_cord.nii.gz"))) > 0
    r = segment_ct(v)
    errs = []
    for p in r.extra["canal_lps"]:
        k = int(round(img.TransformPhysicalPointToContinuousIndex(tuple(map(float, p)))[2]))
        if 0 <= k < cord.shape[0] and cord[k].any():
            jj, ii = np.nonzero(cord[k])  # the reference's canal contents, this slice
            c = img.TransformContinuousIndexToPhysicalPoint((ii.mean(), jj.mean(), k))
            errs.append(np.hypot(p[0] - c[0], p[1] - c[1]))
    assert len(errs) > 50
    assert max(errs) < 8.0, max(errs)  # measured 5.6 mm (3 mm voxels); was 31 mm


@pytest.mark.parametrize("seed", [1, 2])
def test_real_ct_names_survive_added_noise(shared_data, seed):
    _, _, v = _real_ct(shared_data)
    rng = np.random.default_rng(seed)
    noisy = v.with_array((v.array + rng.normal(0.0, 30.0, v.array.shape)).astype(np.int16))
    r = segment_ct(noisy)
    assert r.levels == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"], r.flags
    assert not r.flags


@pytest.mark.parametrize("k0", [15, 32])
def test_real_ct_cut_below_the_sacrum_top_keeps_its_anchor(shared_data, k0):
    """A lumbar field of view that ends 36-87 mm below the L5/S1 disc still shows a sacrum
    (bulk and alae): names right, not flagged."""
    _, img, _ = _real_ct(shared_data)
    r = segment_ct(Volume.from_sitk(img[:, :, k0:], modality="CT"))
    assert r.levels == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert not r.flags and r.confidence["S1"] >= 0.9


def test_real_ct_resampled_to_2mm_names_and_arches(shared_data):
    """The fine-grid path on real anatomy: the 3 mm CT interpolated to 2 mm (thin osteoporotic
    cortex blurred; facet gaps not resolved). Bodies were lost from the line (names L3..S1),
    and with markers only in front of the canal the watershed gave half of each arch to the
    neighbour (mean Dice 0.78)."""
    d, img, _ = _real_ct(shared_data)
    size = [int(round(n * img.GetSpacing()[0] / 2.0)) for n in img.GetSize()]
    fine = sitk.Resample(img, size, sitk.Transform(), sitk.sitkLinear, img.GetOrigin(), (2.0,) * 3,
                         img.GetDirection(), -1024, sitk.sitkInt16)
    ref = sitk.GetArrayFromImage(sitk.Resample(sitk.ReadImage(str(d / "example_ct_vertebrae_verse.nii.gz")),
                                               fine, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    r = segment_ct(Volume.from_sitk(fine, modality="CT"))
    assert r.levels == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"] and not r.flags
    dices = [_dice(r.labels.array, ref, lab) for lab in (19, 20, 21, 22, 23, 24, 26)]
    assert np.mean(dices) > 0.83, dices  # measured 0.854 (against a blocky 3 mm reference)


def test_real_ct_pubis_is_not_sacrum(shared_data):
    d, img, v = _real_ct(shared_data)
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "example_ct_vertebrae_verse.nii.gz")))
    r = segment_ct(v)
    z_ref = np.nonzero((ref == 26).any(axis=(1, 2)))[0].min()  # the sacrum's tip
    z_out = np.nonzero((r.labels.array == 26).any(axis=(1, 2)))[0]
    # the pubic symphysis, 30 mm below the tip, was labelled S1 (334 voxels)
    assert z_out.min() >= z_ref - 1, (z_out.min(), z_ref)


def test_sample_ct_levels_match_the_reference(sample_dicom):
    from spineplan.core.dicom.load import load_volume
    from spineplan.core.segmentation.importers import read_labels

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
        assert _dice_m(res.labels.array == v, ref == v) >= floor
    for disc in (121, 122, 123):  # measured 0.78-0.85
        assert _dice_m(res.labels.array == disc, ref == disc) >= 0.65


def test_not_a_ct():
    phantom = make_phantom(levels=("L4", "L5"), spacing=2.0)
    mr = phantom.ct.with_array(np.clip(phantom.ct.array, 0, 500).astype(np.int16), modality="MR")
    with pytest.raises(SegmentationError):
        segment_ct(mr)
    empty = Volume(np.full((40, 40, 40), -1000, np.int16), modality="CT")
    empty.array[10:30, 10:30, 10:30] = 500
    with pytest.raises(SegmentationError):
        segment_ct(empty)


def _above_l3_l4(p):
    """The phantom's slices above its L3/L4 disc: no sacrum in view."""
    k_cut = int(round(p.ct.ijk_points_from_lps(np.array([p.truth["discs"]["L3-L4"]["center_lps"]]))[0, 2]))
    ct = p.ct
    a = ct.array[k_cut + 2:] if ct.direction[2, 2] > 0 else ct.array[:k_cut - 2]
    origin = ct.lps_points_from_ijk(np.array([[0, 0, k_cut + 2 if ct.direction[2, 2] > 0 else 0]]))[0]
    return Volume(np.ascontiguousarray(a), spacing=ct.spacing, origin=tuple(origin),
                  direction=ct.direction, modality="CT")


def test_no_sacrum_in_view_is_flagged_not_trusted():
    p = make_phantom(spacing=2.0, iliac_crest=False, left_marker=False)
    r = segment_ct(_above_l3_l4(p))  # no sacrum and no ribs: no anchor for the names
    assert r.has(FlagKind.LEVEL_UNKNOWN) and r.needs_confirmation
    assert r.evidence.anchor == Anchor.ASSUMED
    assert r.confidence and max(r.confidence.values()) <= 0.1
    # vertebrae and discs are segmented all the same
    vals = {int(v) for v in np.unique(r.labels.array)}
    assert sum(L.is_vertebra(v) for v in vals) >= 3 and sum(L.is_disc(v) for v in vals) >= 2


def test_no_sacrum_in_view_named_from_the_ribs():
    """A thoracolumbar field of view ending above the sacrum: T12 is the last rib-bearing
    vertebra, and the rib-free ones below it are L1, L2, ... (named as if the lowest were S1
    before: four levels off)."""
    p = make_phantom(levels=("T12", "L1", "L2", "L3", "L4", "L5"), spacing=2.0,
                     iliac_crest=False, left_marker=False, ribs=("T12",))
    r = segment_ct(_above_l3_l4(p))
    assert r.levels == ["T12", "L1", "L2", "L3"]
    assert r.has(FlagKind.COUNTED_FROM_RIBS)
    assert max(r.confidence.values()) <= 0.5


@pytest.mark.parametrize("k0", [50, 70])
def test_real_ct_cut_above_the_sacrum_named_from_the_ribs(shared_data, k0):
    """The real CT without its lowest 150 / 210 mm (no sacrum): named from T12's ribs, flagged.
    Before: L1 / L2 at T12, every level off."""
    _, img, _ = _real_ct(shared_data)
    r = segment_ct(Volume.from_sitk(img[:, :, k0:], modality="CT"))
    assert r.levels == ["T12", "L1", "L2", "L3", "L4", "L5"][:len(r.levels)] and len(r.levels) >= 4
    assert r.has(FlagKind.COUNTED_FROM_RIBS)
    assert max(r.confidence.values()) <= 0.5


def test_real_ct_ilia_are_not_ribs(shared_data):
    """Cut 120 mm above its bottom, the real CT's sacrum is not recognised and the ilia still
    run on beyond 75 mm from the canal beside L5: they are plates, not ribs. Taken for ribs,
    L5 would have been named T12."""
    _, img, _ = _real_ct(shared_data)
    r = segment_ct(Volume.from_sitk(img[:, :, 40:], modality="CT"))
    assert r.levels == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert r.has(FlagKind.LEVEL_UNKNOWN)


def test_real_thoracic_dicom_named_from_its_ribs(shared_data):
    """The 20-slice (40 mm) thoracic DICOM series: both vertebrae carry ribs, so the lowest is
    named T12 (flagged: it could be a higher one), not S1 as before."""
    from spineplan.core.dicom.load import load_volume
    from spineplan.core.segmentation.importers import read_labels

    d = shared_data / "ct_lumbar_totalseg"
    ct = load_volume(d / "example_ct_dicom")
    r = segment_ct(ct)
    assert r.levels == ["T11", "T12"]
    assert r.has(FlagKind.LOWEST_CARRIES_RIBS)
    assert max(r.confidence.values()) <= 0.2
    ref = read_labels([d / "example_ct_dicom_vertebrae_verse.nii.gz"], ct).array
    for v in (18, 19):  # each reference vertebra is mostly ours of the same name
        got, n = np.unique(r.labels.array[ref == v], return_counts=True)
        assert got[np.argmax(n)] == v


@pytest.mark.slow
def test_motor_units_from_segmenter_labels_match_the_phantom():
    """End to end: the measurements a surgeon reads come from the segmenter's labels, not the
    truth; on a 1 mm phantom they stay close to its known discs (measured: heights 0-1.9 mm
    short, angles within 2.2 degrees, slip within 1.8 mm)."""
    from spineplan.core.segmentation.motor_units import compute_motor_units

    p = make_phantom(spacing=1.0)
    units = {u.name: u for u in compute_motor_units(segment_ct(p.ct).labels, p.ct)}
    for name, t in p.truth["discs"].items():
        u = units[name]
        g = u.disc_geometry
        for k in ("anterior", "middle", "posterior"):
            assert abs(getattr(g, f"{k}_height_mm") - t[f"{k}_height_mm"]) <= 2.5, (name, k)
        assert abs(u.segmental_angle_deg - t["angle_deg"]) <= 3.0, name
        assert abs(u.slip_mm - t["slip_mm"]) <= 2.5, name


@pytest.mark.slow
def test_noise_and_blur_do_not_add_a_level():
    """CT noise on flat marrow makes minima inside a body; they must not become discs."""
    from scipy import ndimage

    # (1 mm, 20 HU: the case that, before short disc gaps were dropped, gained an extra level)
    p = make_phantom(spacing=1.0)
    rng = np.random.default_rng(1)
    a = ndimage.gaussian_filter(p.ct.array.astype(np.float32), 0.7) + rng.normal(0, 20.0, p.ct.array.shape)
    r = segment_ct(p.ct.with_array(a.astype(np.int16)))
    assert r.levels == p.truth["levels"] and not r.flags
    dices = [_dice(r.labels.array, p.labels.array, L.vertebra_label(n)) for n in r.levels]
    assert min(dices) >= 0.78, dices  # measured 0.87-0.97 (the blur moves the 100 HU surface out)


def test_marrow_enclosed_in_sagittal_or_coronal_planes_joins_its_vertebra():
    from spineplan.core.segmentation.ct import _fill_enclosed_marrow
    lab = np.zeros((20, 20, 20), np.uint16)
    lab[4:16, 4:16, 4:16] = 22  # L3: a cortical shell around dark marrow ...
    lab[6:14, 6:14, 6:14] = 0
    lab[6:14, 13:16, 9:11] = 0  # ... open to the back in every axial slice (basivertebral gap)
    canal = np.zeros(lab.shape, bool)
    canal[8:12, 6:9, 6:9] = True  # and a pocket that is canal
    _fill_enclosed_marrow(lab, canal)
    assert (lab[6:14, 6:13, 6:14][~canal[6:14, 6:13, 6:14]] == 22).all()
    assert (lab[canal] == 0).all()
    assert (lab[:, 16:, :] == 0).all()  # nothing outside the cortex


def test_surface_smoothing_removes_single_voxel_spurs_but_keeps_thin_processes():
    from spineplan.core.segmentation.ct import SURFACE_SMOOTH_VOX, _smooth_vertebra_surfaces
    lab = np.zeros((30, 30, 30), np.uint16)
    lab[5:20, 5:20, 5:20] = 21       # L2 body
    lab[10:13, 20:28, 11:14] = 21    # a 3-voxel-thick process
    lab[12, 12, 20] = 21             # a one-voxel spur (noise at the threshold)
    lab[20:22, 5:20, 5:20] = 121     # the disc below keeps its voxels
    _smooth_vertebra_surfaces(lab, SURFACE_SMOOTH_VOX, np.zeros(lab.shape, bool))
    assert lab[12, 12, 20] == 0
    assert (lab[10:13, 21:27, 11:14] == 21).mean() > 0.6
    assert (lab[20:22, 5:20, 5:20] == 121).all()
    assert (lab[7:18, 7:18, 7:18] == 21).all()


def _thoracic_phantom(rib_levels):
    """C7 to L1 (cut through L1: no sacrum in view), ribs on ``rib_levels``, 2 mm."""
    from spineplan.core.segmentation.evaluate import _crop_axis, _reference_extent, _si_axis

    lv = ["C7"] + [f"T{i}" for i in range(1, 13)] + ["L1"]
    ph = make_phantom(levels=lv, spacing=2.0, ribs=rib_levels, iliac_crest=False, left_marker=False)
    ax = _si_axis(ph.labels)
    a, b = _reference_extent(ph.labels, ax)[L.vertebra_label("L1")]
    up = ph.ct.direction[2, 2 - ax] > 0
    k0, k1 = ((a + b) // 2, ph.ct.array.shape[ax]) if up else (0, (a + b) // 2)
    return _crop_axis(ph.ct, ax, k0, k1), _crop_axis(ph.labels, ax, k0, k1)


def test_thoracic_phantom_named_from_the_first_and_the_last_rib():
    """C7 in view above the first rib (T1), L1 below the last (T12), twelve rib-bearing
    vertebrae between: the two counts agree and every level is right without confirmation."""
    from spineplan.core.segmentation.evaluate import Outcome, judge

    ct, ref = _thoracic_phantom([f"T{i}" for i in range(1, 13)])
    r = segment_ct(ct)
    j = judge(r, ref)
    assert j.outcome == Outcome.RIGHT and not j.wrong
    assert r.evidence.anchor == Anchor.BOTH_RIBS and not r.needs_confirmation
    assert {"C7", "T1", "T6", "T12", "L1"} <= set(r.levels)


def test_first_and_last_rib_that_disagree_are_flagged():
    """Eleven pairs of ribs (T1-T11): counted from the last rib the names are one off, and
    counted from the first rib the count does not reach twelve: flagged, never silent."""
    ct, ref = _thoracic_phantom([f"T{i}" for i in range(1, 12)])
    r = segment_ct(ct)
    assert r.has(FlagKind.ANCHORS_DISAGREE) and r.needs_confirmation


def test_a_body_split_by_a_false_disc_is_flagged():
    """Found by the cohort run: at 3 mm a 6 mm L4-L5 slip made a false disc inside L1, which
    was named T12 and L1 at 0.9 with no flag (silently one level off above L2). A vertebra
    much smaller than its whole neighbour now puts the count in doubt."""
    from spineplan.core.segmentation.evaluate import Outcome, judge

    ph = make_phantom(levels=("L1", "L2", "L3", "L4", "L5"), spacing=3.0, slip_mm={"L4-L5": 6.0})
    r = segment_ct(ph.ct)
    j = judge(r, ph.labels)
    assert j.outcome in (Outcome.RIGHT, Outcome.FLAGGED) and (j.levels_right or r.has(FlagKind.COUNT_IN_DOUBT))
