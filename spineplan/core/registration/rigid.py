"""Rigid MRI-to-CT registration (SimpleITK): global, then local around a motor unit.

1. **Global**: both images resampled to isotropic working grids (``global_mm``), Mattes
   mutual information on a random sample of the CT's body voxels, a three-level pyramid,
   regular-step gradient descent on an Euler3DTransform started by a centred (moments)
   initialiser.
2. **Local**: the spine moves between a supine CT and an MRI, so the transform that matters
   for planning is the one of the target motor unit. The CT is cropped to a box around the
   unit's two vertebrae (from the CT labels, grown by ``local_margin_mm``) and the
   registration is run again there, from the global transform, on a finer grid
   (``local_mm``), rotating about the unit's centre.
3. **Quality**: the unit's residual is the largest distance, over the unit's box, between
   two local registrations started ``restart_offset_mm``/``restart_offset_deg`` apart (how
   well the optimum is defined); the body-label Dice compares the MRI's labels, moved onto
   the CT, with the CT's labels at the unit.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidInputError, SegmentationError
from ..segmentation import labels as L
from ..tasks import Reporter
from ..volume import Volume
from .transform import RigidTransform

__all__ = ["RegistrationError", "RegistrationSettings", "FusionFlagKind", "FusionFlag", "RegistrationResult",
           "register_mri_to_ct", "mri_on_ct", "unit_box_lps", "unit_label_values",
           "labels_dice_on_ct", "unit_points_lps", "BODY_HU"]

#: CT voxels above this HU are inside the body: the global metric samples only those.
BODY_HU = -400.0
#: A local correction larger than this (mm at the unit) is not trusted: the global one is kept.
MAX_LOCAL_CORRECTION_MM = 20.0
#: A unit residual above this (mm) is flagged.
RESIDUAL_WARN_MM = 1.0


class RegistrationError(SegmentationError):
    """The registration could not run on these images (bad input: exit 2 on the CLI)."""


@dataclass(frozen=True)
class RegistrationSettings:
    """The named parameters of the registration (defaults: full-size clinical images).

    Parameters
    ----------
    global_mm, local_mm : float
        Working voxel size (mm) of the global and the local stage (never finer than the CT).
    shrink_factors, smoothing_mm : tuple
        The global pyramid: shrink factor and Gaussian sigma (mm) per level.
    local_shrink_factors, local_smoothing_mm : tuple
        The local pyramid.
    iterations, local_iterations : int
        Gradient-descent iterations per level.
    bins : int
        Mattes histogram bins.
    sampling, local_sampling : float
        Fraction of the working voxels sampled by the metric (random, fixed seed).
    local_margin_mm : float
        Growth of the unit's vertebrae box (the local stage's crop of the CT).
    local_mask_mm : float
        Growth of the unit's vertebrae and disc labels: the local metric samples only there.
    restart_offset_mm, restart_offset_deg : float
        Offset of the second local run that measures the residual (0: no residual).
    step_mm, local_step_mm : float
        Initial optimizer step (mm of the largest voxel shift) of each stage.
    seed : int
        Random seed of the metric sampling (results are reproducible).
    """

    global_mm: float = 4.0
    local_mm: float = 1.5
    shrink_factors: tuple = (4, 2, 1)
    smoothing_mm: tuple = (6.0, 3.0, 0.0)
    local_shrink_factors: tuple = (2, 1)
    local_smoothing_mm: tuple = (2.0, 0.0)
    iterations: int = 80
    local_iterations: int = 100
    bins: int = 32
    sampling: float = 0.1
    local_sampling: float = 0.3
    local_margin_mm: float = 8.0
    local_mask_mm: float = 3.0
    step_mm: float = 2.0
    local_step_mm: float = 1.0
    restart_offset_mm: float = 2.0
    restart_offset_deg: float = 2.0
    seed: int = 17

    @classmethod
    def fast(cls) -> "RegistrationSettings":
        """Coarser settings for tests on small phantoms."""
        return cls(global_mm=4.0, local_mm=2.0, iterations=80, local_iterations=60,
                   shrink_factors=(2, 1), smoothing_mm=(4.0, 0.0))


class FusionFlagKind(str, enum.Enum):
    """What a registration doubts (code branches on kinds, never on message text)."""

    RESIDUAL_HIGH = "residual_high"            # the unit's residual exceeds RESIDUAL_WARN_MM
    LOCAL_REJECTED = "local_rejected"          # local correction too large: global kept
    UNIT_OUTSIDE_MRI = "unit_outside_mri"      # the unit's box is not inside the MRI
    NO_LOCAL = "no_local"                      # no level or no CT labels: global only


@dataclass(frozen=True)
class FusionFlag:
    kind: FusionFlagKind
    message: str

    def to_dict(self) -> dict:
        return {"kind": self.kind.value, "message": self.message}


@dataclass
class RegistrationResult:
    """The outcome of :func:`register_mri_to_ct`.

    Attributes
    ----------
    global_transform : RigidTransform
        CT -> MRI (LPS) from the whole images.
    local_transform : RigidTransform or None
        CT -> MRI at the target unit (None without a level).
    level : str or None
    metric_global, metric_local : float
        Final Mattes MI values (negative; lower is better).
    residual_mm : float or None
        Precision at the unit: largest distance over the unit's box between two local runs.
    local_correction_mm : float or None
        How far the local stage moved the unit's box from the global transform (max, mm).
    dice : dict
        ``{structure name: Dice}`` of the MRI labels moved onto the CT, at the unit.
    seconds : float
    flags : list of FusionFlag
    timings : dict
        Wall seconds per stage: prepare, global, local, residual, dice.
    """

    global_transform: RigidTransform
    local_transform: RigidTransform | None = None
    level: str | None = None
    metric_global: float = float("nan")
    metric_local: float | None = None
    residual_mm: float | None = None
    local_correction_mm: float | None = None
    dice: dict = field(default_factory=dict)
    seconds: float = 0.0
    flags: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)  # seconds per stage (bench)

    @property
    def transform(self) -> RigidTransform:
        """The transform to use: the unit's when there is one, else the global one."""
        return self.local_transform if self.local_transform is not None else self.global_transform

    @property
    def mean_dice(self) -> float | None:
        return float(np.mean(list(self.dice.values()))) if self.dice else None

    def to_dict(self) -> dict:
        """JSON form (CLI ``--json``, the case file's fusion record)."""
        r = lambda v: None if v is None else round(float(v), 4)  # noqa: E731
        return {"level": self.level, "transform": self.transform.to_dict(),
                "global_transform": self.global_transform.to_dict(),
                "local_transform": None if self.local_transform is None else self.local_transform.to_dict(),
                "metric_global": r(self.metric_global), "metric_local": r(self.metric_local),
                "residual_mm": r(self.residual_mm), "local_correction_mm": r(self.local_correction_mm),
                "dice": {k: round(float(v), 4) for k, v in self.dice.items()},
                "mean_dice": r(self.mean_dice), "seconds": round(self.seconds, 3),
                "flags": [f.to_dict() for f in self.flags]}


# --------------------------------------------------------------------------- helpers
def _sitk_float(vol: Volume):
    import SimpleITK as sitk

    return sitk.Cast(vol.to_sitk(), sitk.sitkFloat32)


def _working_image(img, spacing_mm: float, default: float):
    """``img`` smoothed to and resampled on an isotropic grid of ``spacing_mm`` (same box)."""
    import SimpleITK as sitk

    sp = np.array(img.GetSpacing(), float)
    if np.all(np.abs(sp - spacing_mm) < 1e-3):
        return img
    size = np.array(img.GetSize())
    new_size = [max(1, int(round(n * s / spacing_mm))) for n, s in zip(size, sp)]
    shrink = [max(1, int(spacing_mm / s + 1e-6)) for s in sp]
    if max(shrink) > 1:  # averaging whole blocks first: most of the smoothing, far cheaper
        D0 = np.array(img.GetDirection()).reshape(3, 3)
        corner0 = np.array(img.GetOrigin()) - D0 @ (sp / 2)
        img = sitk.BinShrink(img, shrink)
        sp = np.array(img.GetSpacing(), float)
        img.SetOrigin(tuple(corner0 + D0 @ (sp / 2)))
    # (ITK needs every sigma > 0: an axis already coarse enough gets a negligible one)
    sig = [float(max(0.1 * s, max(0.0, spacing_mm ** 2 - s ** 2) ** 0.5 / 2.0)) for s in sp]
    src = sitk.SmoothingRecursiveGaussian(img, sig) if max(a / s for a, s in zip(sig, sp)) > 0.2 else img
    # the new grid covers the same extent; its first voxel centre sits half a new voxel in
    D = np.array(img.GetDirection()).reshape(3, 3)
    corner = np.array(img.GetOrigin()) - D @ (sp / 2)
    origin = corner + D @ (np.full(3, spacing_mm) / 2)
    return sitk.Resample(src, new_size, sitk.Transform(), sitk.sitkLinear, tuple(origin),
                         (spacing_mm,) * 3, img.GetDirection(), default, sitk.sitkFloat32)


def unit_label_values(level: str) -> tuple[int, int, int]:
    """(upper vertebra, lower vertebra, disc) label values of a motor unit name."""
    try:
        up, low = L.parse_motor_unit(level)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    return up, low, L.disc_label(up)


def unit_box_lps(ct_labels: Volume, level: str, margin_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """LPS (lo, hi) of the axis-aligned box around the unit's two vertebrae (+ margin)."""
    up, low, disc = unit_label_values(level)
    arr = ct_labels.array
    m = (arr == up) | (arr == low) | (arr == disc)
    present = {int(v) for v in (up, low) if (arr == v).any()}
    if present != {up, low}:
        raise SegmentationError(f"the CT labels do not contain both vertebrae of {level}")
    k, j, i = np.nonzero(m)
    ijk = np.stack([[i.min(), j.min(), k.min()], [i.max(), j.max(), k.max()]]).astype(float)
    corners = np.array([[a, b, c] for a in ijk[:, 0] for b in ijk[:, 1] for c in ijk[:, 2]])
    lps = ct_labels.lps_points_from_ijk(corners)
    half = np.abs(ct_labels.direction) @ (np.array(ct_labels.spacing) / 2)
    return lps.min(0) - half - margin_mm, lps.max(0) + half + margin_mm


def unit_points_lps(ct_labels: Volume, level: str, max_points: int = 20000) -> np.ndarray:
    """LPS centres of (at most ``max_points``, evenly taken) voxels of the unit's two vertebrae
    and disc: where a transform's error at the unit is measured."""
    up, low, disc = unit_label_values(level)
    k, j, i = np.nonzero(np.isin(ct_labels.array, (up, low, disc)))
    if not len(i):
        raise SegmentationError(f"the CT labels do not contain {level}")
    step = max(1, len(i) // max_points)
    ijk = np.stack([i[::step], j[::step], k[::step]], 1).astype(float)
    return ct_labels.lps_points_from_ijk(ijk)


def _crop_to_box(img, lo, hi):
    """The part of ``img`` whose voxel centres lie in the LPS box (lo, hi)."""
    import SimpleITK as sitk

    corners = [(x, y, z) for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    idx = np.array([img.TransformPhysicalPointToContinuousIndex(tuple(map(float, c))) for c in corners])
    size = np.array(img.GetSize())
    a = np.clip(np.floor(idx.min(0)).astype(int), 0, size - 1)
    b = np.clip(np.ceil(idx.max(0)).astype(int), 0, size - 1)
    return sitk.RegionOfInterest(img, [int(v) for v in (b - a + 1)], [int(v) for v in a])


def _run(fixed, moving, init: RigidTransform, shrink, smooth_mm, iterations, bins, sampling, seed,
         fixed_mask=None, learning_rate=2.0, reporter: Reporter | None = None, lo=0.0, hi=1.0, label=""):
    """One multi-resolution Mattes MI rigid registration; returns (RigidTransform, metric)."""
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(bins))
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(float(sampling), int(seed))
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=float(learning_rate), minStep=1e-3,
                                                 numberOfIterations=int(iterations),
                                                 relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([int(s) for s in shrink])
    reg.SetSmoothingSigmasPerLevel([float(s) for s in smooth_mm])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    tx = init.to_sitk()
    reg.SetInitialTransform(tx, inPlace=True)
    if reporter is not None:
        n_levels = len(shrink)
        state = {"level": -1}

        def on_level():
            state["level"] += 1

        def on_iter():
            f = (state["level"] + min(reg.GetOptimizerIteration() / max(iterations, 1), 1.0)) / n_levels
            reporter.step(lo + (hi - lo) * f, label)

        reg.AddCommand(sitk.sitkMultiResolutionIterationEvent, on_level)
        reg.AddCommand(sitk.sitkIterationEvent, on_iter)
    try:
        out = reg.Execute(fixed, moving)
    except RuntimeError:  # e.g. "too many samples map outside the moving image"
        raise RegistrationError(f"{label or 'the registration'} failed: the MRI and the CT do not overlap "
                                "enough (the same patient and region?)") from None
    result = RigidTransform.from_sitk(out).with_center(init.center_lps)
    return result, float(reg.GetMetricValue())


def _centred_initial(fixed, moving, center_lps) -> RigidTransform:
    """ITK's centred initialiser (moments): the MRI's centre of mass over the CT's."""
    import SimpleITK as sitk

    try:
        tx = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                               sitk.CenteredTransformInitializerFilter.MOMENTS)
    except RuntimeError:
        raise RegistrationError("the MRI or the CT is empty (no signal to register)") from None
    init = RigidTransform.from_sitk(tx)
    return init.with_center(center_lps)


def mri_on_ct(mri: Volume, ct: Volume, transform: RigidTransform, *, labels: bool = False) -> Volume:
    """The MRI resampled onto the CT grid through ``transform`` (CT -> MRI, LPS).

    Linear interpolation for images (float32, 0 outside the MRI), nearest neighbour for a
    label map (``labels=True``: uint16).
    """
    import SimpleITK as sitk

    src = mri.to_sitk()
    if labels:
        out = sitk.Resample(src, ct.to_sitk(), transform.to_sitk(), sitk.sitkNearestNeighbor, 0,
                            sitk.sitkUInt16)
        return ct.with_array(sitk.GetArrayFromImage(out), modality="SEG", meta={})
    out = sitk.Resample(sitk.Cast(src, sitk.sitkFloat32), list(ct.size_ijk), transform.to_sitk(),
                        sitk.sitkLinear, ct.origin, ct.spacing,
                        tuple(np.asarray(ct.direction, float).ravel()), 0.0, sitk.sitkFloat32)
    return ct.with_array(sitk.GetArrayFromImage(out), modality=mri.modality or "MR",
                         meta={"description": "MRI on the CT grid"})


def labels_dice_on_ct(mri_labels: Volume, ct_labels: Volume, transform: RigidTransform,
                      values) -> dict:
    """``{structure name: Dice}`` of the MRI labels moved onto the CT grid against the CT's,
    for each label value present in both."""
    moved = mri_on_ct(mri_labels, ct_labels, transform, labels=True).array
    out = {}
    for v in values:
        a, b = moved == v, ct_labels.array == v
        na, nb = int(a.sum()), int(b.sum())
        if na and nb:
            out[L.segment_name(int(v))] = 2.0 * int((a & b).sum()) / (na + nb)
    return out


def _unit_mask(ct_labels: Volume, level: str, grid, grow_mm: float):
    """The unit's vertebrae and disc, grown by ``grow_mm``, on the working grid ``grid`` (uint8)."""
    import SimpleITK as sitk

    up, low, disc = unit_label_values(level)
    m = ct_labels.with_array(np.isin(ct_labels.array, (up, low, disc)).astype(np.uint8)).to_sitk()
    m = sitk.Resample(m, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    if grow_mm > 0:
        m = sitk.BinaryDilate(m, [max(1, int(round(grow_mm / s))) for s in grid.GetSpacing()])
    return m


def _restart_offset(t: RigidTransform, settings: RegistrationSettings) -> RigidTransform:
    s = settings.restart_offset_mm / np.sqrt(3.0)
    a = settings.restart_offset_deg / np.sqrt(3.0)
    return t.nudged((s, -s, s), (a, a, -a))


# --------------------------------------------------------------------------- main entry
def register_mri_to_ct(ct: Volume, mri: Volume, *, level: str | None = None,
                       ct_labels: Volume | None = None, mri_labels: Volume | None = None,
                       settings: RegistrationSettings | None = None,
                       initial: RigidTransform | None = None,
                       progress=None, cancel=None) -> RegistrationResult:
    """Register ``mri`` rigidly to ``ct`` (global), then locally around ``level``.

    Parameters
    ----------
    ct, mri : Volume
        The fixed CT (HU) and the moving MRI.
    level : str, optional
        Target motor unit (``"L4-L5"``); needs ``ct_labels`` with both of its vertebrae.
    ct_labels, mri_labels : Volume, optional
        CT labels (the unit's box, Dice) and MRI labels (Dice after the transform).
    settings : RegistrationSettings
    initial : RigidTransform, optional
        Start from this transform instead of the centred initialiser ("register again").
    progress, cancel : callables
        ``progress(fraction, message)``; ``cancel() -> bool`` (raises ``tasks.Cancelled``).
    """
    import SimpleITK as sitk

    st = settings or RegistrationSettings()
    rep = Reporter(progress, cancel)
    t0 = time.perf_counter()
    if level is not None and ct_labels is None:
        raise InvalidInputError(f"refining at {level} needs the CT's labels (--labels)")
    if ct_labels is not None and not ct_labels.same_grid(ct):
        from ..labelmaps import labels_on_grid

        ct_labels = labels_on_grid(ct_labels, ct)
    unit = unit_box_lps(ct_labels, level) if level is not None else None
    rep.step(0.0, "preparing images")
    fixed_full = _sitk_float(ct)
    moving_full = _sitk_float(mri)
    min_sp = float(min(ct.spacing))
    g_mm = max(st.global_mm, min_sp)
    fixed = _working_image(fixed_full, g_mm, -1000.0)
    moving = _working_image(moving_full, max(g_mm, float(min(mri.spacing))), 0.0)
    mask = sitk.Cast(fixed > BODY_HU, sitk.sitkUInt8)
    center = (unit[0] + unit[1]) / 2 if unit is not None else np.array(
        fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()]))
    if initial is None:
        init = _centred_initial(fixed, moving, center)
    else:
        init = initial.with_center(center)
    timings = {"prepare": time.perf_counter() - t0}
    rep.step(0.05, "global registration")
    t1 = time.perf_counter()
    glob, m_glob = _run(fixed, moving, init, st.shrink_factors, st.smoothing_mm, st.iterations, st.bins,
                        st.sampling, st.seed, mask, st.step_mm, rep, 0.05, 0.55 if unit is not None else 1.0,
                        "global registration")
    timings["global"] = time.perf_counter() - t1
    res = RegistrationResult(global_transform=glob, level=level, metric_global=m_glob, timings=timings)
    if unit is None:
        res.flags.append(FusionFlag(FusionFlagKind.NO_LOCAL, "no target level: global transform only"))
    else:
        _local_stage(res, fixed_full, moving_full, ct_labels, unit, st, rep, mri)
    t1 = time.perf_counter()
    if mri_labels is not None and ct_labels is not None:
        vals = unit_label_values(level) if level else sorted(
            {int(v) for v in np.unique(ct_labels.array) if L.is_vertebra(int(v)) or L.is_disc(int(v))})
        res.dice = labels_dice_on_ct(mri_labels, ct_labels, res.transform, vals)
    timings["dice"] = time.perf_counter() - t1
    res.seconds = time.perf_counter() - t0
    rep.step(1.0, "registered")
    return res


def _local_stage(res: RegistrationResult, fixed_full, moving_full, ct_labels: Volume, unit, st, rep,
                 mri: Volume) -> None:
    lo, hi = unit
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    inside = mri.ijk_points_from_lps(res.global_transform.mri_points_from_ct(corners))
    size = np.array(mri.size_ijk)
    if np.any(inside < -0.5) or np.any(inside > size - 0.5):
        res.flags.append(FusionFlag(FusionFlagKind.UNIT_OUTSIDE_MRI,
                                    f"{res.level} is not wholly inside the MRI after the global registration"))
    l_mm = max(st.local_mm, float(min(ct_labels.spacing)))
    margin = st.local_margin_mm
    fixed = _working_image(_crop_to_box(fixed_full, lo - margin - 2 * l_mm, hi + margin + 2 * l_mm),
                           l_mm, -1000.0)
    # the MRI around where the global transform puts the unit (it moves by at most
    # MAX_LOCAL_CORRECTION_MM more)
    m_pts = res.global_transform.mri_points_from_ct(corners)
    grow = margin + MAX_LOCAL_CORRECTION_MM + 2 * l_mm
    moving = _working_image(_crop_to_box(moving_full, m_pts.min(0) - grow, m_pts.max(0) + grow),
                            max(l_mm, float(min(mri.spacing))), 0.0)
    start = res.global_transform.with_center((lo + hi) / 2)
    t1 = time.perf_counter()
    rep.step(0.55, f"local registration at {res.level}")
    hi_frac = 0.8 if st.restart_offset_mm or st.restart_offset_deg else 1.0
    local_mask = _unit_mask(ct_labels, res.level, fixed, st.local_mask_mm)
    local, m_loc = _run(fixed, moving, start, st.local_shrink_factors, st.local_smoothing_mm,
                        st.local_iterations, st.bins, st.local_sampling, st.seed, local_mask, st.local_step_mm,
                        rep, 0.55, hi_frac,
                        f"local registration at {res.level}")
    corr = float(local.displacement_mm(res.global_transform, corners).max())
    if corr > MAX_LOCAL_CORRECTION_MM:
        res.flags.append(FusionFlag(FusionFlagKind.LOCAL_REJECTED,
                                    f"the local registration moved {res.level} by {corr:.1f} mm: "
                                    "global transform kept"))
        local, m_loc = start, res.metric_global
    res.local_transform, res.metric_local, res.local_correction_mm = local, m_loc, corr
    res.timings["local"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    if hi_frac < 1.0:
        again, _ = _run(fixed, moving, _restart_offset(start, st), st.local_shrink_factors,
                        st.local_smoothing_mm, st.local_iterations, st.bins, st.local_sampling,
                        st.seed + 1, local_mask, st.local_step_mm, rep, hi_frac, 1.0, f"checking the registration at {res.level}")
        res.residual_mm = float(again.displacement_mm(local, corners).max())
        if res.residual_mm > RESIDUAL_WARN_MM:
            res.flags.append(FusionFlag(FusionFlagKind.RESIDUAL_HIGH,
                                        f"residual at {res.level} {res.residual_mm:.1f} mm "
                                        f"(> {RESIDUAL_WARN_MM:g} mm): check the fusion"))
    res.timings["residual"] = time.perf_counter() - t1
