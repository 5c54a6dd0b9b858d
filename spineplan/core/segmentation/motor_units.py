"""Motor units (functional spinal units) from a label map, with their measurements.

A motor unit is two adjacent vertebrae, the disc between them and the two facet
joints. Everything is computed in LPS millimetres from the labelled voxels, so
the result does not depend on the grid's orientation. Measurement definitions
and thresholds follow CLINICAL.md and are named constants below.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..volume import Volume
from . import labels as L

__all__ = ["DiscGeometry", "MotorUnit", "compute_motor_units", "label_points_lps",
           "CANAL_ABSOLUTE_STENOSIS_MM", "CANAL_RELATIVE_STENOSIS_MM", "meyerding_grade"]

CANAL_ABSOLUTE_STENOSIS_MM = 10.0   # bony AP diameter on CT
CANAL_RELATIVE_STENOSIS_MM = 13.0
SAC_ABSOLUTE_STENOSIS_MM2 = 75.0    # dural sac area on MRI
SAC_RELATIVE_STENOSIS_MM2 = 100.0
MIN_VERTEBRA_MM3 = 2000.0           # smaller fragments (e.g. a vertebra's tip at the edge) are ignored
MIDLINE_HALF_WIDTH_MM = 5.0         # band around the mid-sagittal plane used for AP measurements
FACET_SEARCH_MM = 16.0              # facet joints are searched within this distance of the disc plane
FACET_MAX_GAP_MM = 6.0              # closest approach of the two articular processes


def meyerding_grade(slip_percent: float) -> int:
    """Meyerding grade 0 (none) .. IV from the slip in % of the lower endplate depth."""
    s = abs(slip_percent)
    if s < 1.0:
        return 0
    return 1 if s < 25 else 2 if s < 50 else 3 if s < 75 else 4


@dataclass
class DiscGeometry:
    """Disc centre and frame (LPS) and its heights, depth and width in mm."""

    label: int
    center_lps: list
    normal_lps: list    # unit, towards superior
    lr_lps: list        # unit, in the disc plane, towards the patient's left
    ap_lps: list        # unit, in the disc plane, towards posterior
    anterior_height_mm: float
    middle_height_mm: float
    posterior_height_mm: float
    ap_depth_mm: float
    width_mm: float
    ap_range_mm: tuple = (0.0, 0.0)   # anterior and posterior edge along ap, from the centre
    lr_range_mm: tuple = (0.0, 0.0)


@dataclass
class MotorUnit:
    """One functional spinal unit and its measurements (CLINICAL.md)."""

    name: str
    upper: int
    lower: int
    disc: int | None = None
    disc_geometry: DiscGeometry | None = None
    facet_left_lps: list | None = None
    facet_right_lps: list | None = None
    canal_ap_mm: float | None = None
    canal_grade: str = "unknown"
    dural_sac_area_mm2: float | None = None
    segmental_angle_deg: float | None = None
    slip_mm: float | None = None
    slip_percent: float | None = None
    meyerding: int | None = None
    height_ratio_to_neighbours: float | None = None
    warnings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def facet_lps(self, side: str):
        return self.facet_left_lps if side == "left" else self.facet_right_lps


def label_points_lps(labels: Volume, value: int, bbox=None, surface: bool = False) -> np.ndarray:
    """LPS coordinates (N, 3) of the voxels holding ``value`` (within ``bbox``, slices of the
    array); ``surface``: only its boundary voxels (those with a 6-neighbour of another value)."""
    sl = bbox if bbox is not None else tuple(slice(0, n) for n in labels.array.shape)
    m = labels.array[sl] == value
    if surface:
        m &= ~ndimage.binary_erosion(m)
    kji = np.argwhere(m) + np.array([s.start for s in sl])
    return labels.lps_points_from_ijk(kji[:, ::-1].astype(float))


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _disc_frame(P: np.ndarray, volume: Volume):
    c = P.mean(0)
    cov = np.cov((P - c).T)
    w, V = np.linalg.eigh(cov)
    n = V[:, 0]
    if n[2] < 0:
        n = -n
    ex = np.array([1.0, 0.0, 0.0])
    lr = _unit(ex - n * (ex @ n))
    ap = np.cross(n, lr)
    if ap[1] < 0:  # keep it posterior; for a proper frame flip lr too
        ap, lr = -ap, -lr
    return c, n, lr, ap


def _voxel_step_along(volume: Volume, n: np.ndarray) -> float:
    # extent of one voxel along a direction: sum of |projection| of its edges
    d = volume.direction @ np.diag(volume.spacing)
    return float(np.max(np.abs(d.T @ n)))


def _heights(P, c, n, lr, ap, step):
    """Height profile along ap (midline band), fitted linearly and evaluated at the edges."""
    q = P - c
    a, l, w = q @ ap, q @ lr, q @ n
    mid = np.abs(l) < max(MIDLINE_HALF_WIDTH_MM, 2 * step)
    a, w = a[mid], w[mid]
    if a.size < 10:
        return None
    lo, hi = a.min(), a.max()
    bins = np.arange(lo, hi + 1.0, 1.0)
    idx = np.digitize(a, bins)
    xs, hs, tops, bots = [], [], [], []
    for b in np.unique(idx):
        sel = idx == b
        if sel.sum() < 2:
            continue
        xs.append(a[sel].mean())
        hs.append(w[sel].max() - w[sel].min() + step)
        tops.append(w[sel].max())
        bots.append(w[sel].min())
    xs, hs = np.array(xs), np.array(hs)
    inner = (xs > lo + 2) & (xs < hi - 2)
    if inner.sum() < 3:
        inner = np.ones_like(xs, bool)
    k, b0 = np.polyfit(xs[inner], hs[inner], 1)
    kt, _ = np.polyfit(xs[inner], np.array(tops)[inner], 1)
    kb, _ = np.polyfit(xs[inner], np.array(bots)[inner], 1)
    angle = float(np.degrees(np.arctan(kb) - np.arctan(kt)))
    return dict(anterior=float(k * lo + b0), posterior=float(k * hi + b0), middle=float(b0),
                lo=float(lo), hi=float(hi), angle=angle)


def _body_posterior_wall(P, c, n, lr, ap, w_range):
    """Posterior wall (ap coordinate) of a vertebral body: the end of the first run of bone
    from anterior in the midline band (the canal interrupts the run)."""
    q = P - c
    a, l, w = q @ ap, q @ lr, q @ n
    sel = (np.abs(l) < MIDLINE_HALF_WIDTH_MM) & (w >= w_range[0]) & (w <= w_range[1])
    if sel.sum() < 10:
        return None, None
    a = np.sort(a[sel])
    gaps = np.where(np.diff(a) > 2.5)[0]
    end = a[gaps[0]] if gaps.size else a[-1]
    return float(end), float(end - a[0])


def compute_motor_units(labels: Volume, image: Volume | None = None) -> list[MotorUnit]:
    """Motor units of every pair of adjacent labelled vertebrae, cranial to caudal.

    Parameters
    ----------
    labels : Volume
        VerSe-numbered label map (discs 100 + upper vertebra, 300 canal).
    image : Volume, optional
        Not needed for the label-based measurements; reserved for intensity refinements.

    Returns
    -------
    list of MotorUnit
    """
    arr = labels.array
    voxel_mm3 = float(np.prod(labels.spacing))
    counts = L.label_counts(arr, minlength=400) if arr.size else np.zeros(1)
    present = [lab for lab in L.VERTEBRA_NAMES
               if lab < counts.size and counts[lab] * voxel_mm3 >= MIN_VERTEBRA_MM3]
    present = L.craniocaudal_order(present)
    native = arr.dtype in (np.uint8, np.uint16, np.int16, np.int32)  # no whole-map int32 copy
    objs = ndimage.find_objects(arr if native else arr.astype(np.int32)) if arr.size else []

    cache: dict = {}

    def pts(value, surface=False):
        """LPS points of a label (cached: each vertebra is in two units); ``surface``: only
        its boundary voxels (closest approaches lie there; 5-10x fewer points on fine grids)."""
        key = (value, surface)
        if key in cache:
            return cache[key]
        if value >= len(objs) + 1 or objs[value - 1] is None:
            return np.zeros((0, 3))
        cache[key] = label_points_lps(labels, value, objs[value - 1], surface)
        return cache[key]

    units: list[MotorUnit] = []
    canal = pts(L.CANAL)
    canal_tree = cKDTree(canal) if len(canal) else None
    for up, low in zip(present[:-1], present[1:]):
        try:
            L.parse_motor_unit(f"{L.vertebra_name(up)}-{L.vertebra_name(low)}")
        except ValueError:
            continue  # a gap in the labelling (missing level): not a motor unit
        mu = MotorUnit(name=L.motor_unit_name(up, low), upper=up, lower=low)
        disc = L.disc_label(up)
        D = pts(disc) if disc < 400 and counts.size > disc and counts[disc] > 0 else np.zeros((0, 3))
        U, Lo = pts(up), pts(low)
        if len(D) < 20:
            mu.warnings.append("no disc labelled between these vertebrae")
            # frame from the two bodies
            c = (U.mean(0) + Lo.mean(0)) / 2
            n = _unit(U.mean(0) - Lo.mean(0))
            ex = np.array([1.0, 0, 0])
            lr = _unit(ex - n * (ex @ n))
            ap = np.cross(n, lr)
        else:
            mu.disc = disc
            c, n, lr, ap = _disc_frame(D, labels)
            step = _voxel_step_along(labels, n)
            h = _heights(D, c, n, lr, ap, step)
            q = D - c
            if h is not None:
                mu.disc_geometry = DiscGeometry(
                    label=disc, center_lps=c.tolist(), normal_lps=n.tolist(), lr_lps=lr.tolist(),
                    ap_lps=ap.tolist(), anterior_height_mm=h["anterior"],
                    middle_height_mm=h["middle"], posterior_height_mm=h["posterior"],
                    ap_depth_mm=h["hi"] - h["lo"] + step,
                    width_mm=float((q @ lr).max() - (q @ lr).min() + step),
                    ap_range_mm=(h["lo"], h["hi"]),
                    lr_range_mm=(float((q @ lr).min()), float((q @ lr).max())))
                mu.segmental_angle_deg = h["angle"]
        # slip: posterior walls of the two bodies next to the disc
        half = (mu.disc_geometry.middle_height_mm / 2) if mu.disc_geometry else 5.0
        pu, _ = _body_posterior_wall(U, c, n, lr, ap, (half + 1, half + 8))
        pl, depth_l = _body_posterior_wall(Lo, c, n, lr, ap, (-half - 8, -half - 1))
        if pu is not None and pl is not None and depth_l:
            mu.slip_mm = float(pl - pu)
            mu.slip_percent = float(100.0 * mu.slip_mm / depth_l)
            mu.meyerding = meyerding_grade(mu.slip_percent)
        # bony canal AP at the disc level: body/disc posterior wall to the posterior arch
        back = [x for x in (pu, pl) if x is not None]
        if back:
            wall = max(back)
            arch = []
            for P in (U, Lo):
                q = P - c
                a, l, w = q @ ap, q @ lr, q @ n
                sel = (np.abs(l) < 3) & (np.abs(w) < 14) & (a > wall + 2)
                if sel.any():
                    arch.append(a[sel].min())
            if arch:
                mu.canal_ap_mm = float(min(arch) - wall)
                mu.canal_grade = ("absolute stenosis" if mu.canal_ap_mm < CANAL_ABSOLUTE_STENOSIS_MM
                                  else "relative stenosis" if mu.canal_ap_mm < CANAL_RELATIVE_STENOSIS_MM
                                  else "normal")
        if canal_tree is not None:
            q = canal - c
            slab = np.abs(q @ n) < 1.5
            if slab.any():
                mu.dural_sac_area_mm2 = float(slab.sum() * voxel_mm3 / 3.0)
        # facet joints: closest approach of the upper and lower vertebra posterolateral to the canal
        for side, sgn in (("left", 1.0), ("right", -1.0)):
            fc = _facet_center(pts(up, True), pts(low, True), c, n, lr, ap, sgn)
            if fc is not None:
                setattr(mu, f"facet_{side}_lps", fc.tolist())
        units.append(mu)
    # disc height relative to the neighbours
    for k, mu in enumerate(units):
        if mu.disc_geometry is None:
            continue
        neigh = [u.disc_geometry.middle_height_mm for u in (units[k - 1] if k else None,
                                                             units[k + 1] if k + 1 < len(units) else None)
                 if u is not None and u.disc_geometry is not None]
        if neigh:
            mu.height_ratio_to_neighbours = float(mu.disc_geometry.middle_height_mm / np.mean(neigh))
    return units


def _facet_center(U, Lo, c, n, lr, ap, sgn):
    def region(P):
        q = P - c
        a, l, w = q @ ap, q @ lr, q @ n
        sel = (sgn * l > 8) & (sgn * l < 40) & (np.abs(w) < FACET_SEARCH_MM) & (a > 5)
        return P[sel]

    Pu, Pl = region(U), region(Lo)
    if len(Pu) < 5 or len(Pl) < 5:
        return None
    tree = cKDTree(Pl)
    d, idx = tree.query(Pu, distance_upper_bound=FACET_MAX_GAP_MM)
    ok = np.isfinite(d)
    if not ok.any():
        return None
    dmin = d[ok].min()
    close = ok & (d <= dmin + 1.5)
    mids = (Pu[close] + Pl[idx[close]]) / 2
    return mids.mean(0)
