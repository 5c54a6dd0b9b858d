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

__all__ = ["DiscGeometry", "MotorUnit", "compute_motor_units", "label_points_lps", "PLAUSIBLE_RANGES",
           "PlausibleRange", "implausible_measurements", "implausible_lines", "units_from_present",
           "CANAL_ABSOLUTE_STENOSIS_MM", "CANAL_RELATIVE_STENOSIS_MM", "meyerding_grade"]

CANAL_ABSOLUTE_STENOSIS_MM = 10.0   # bony AP diameter on CT
CANAL_RELATIVE_STENOSIS_MM = 13.0
SAC_ABSOLUTE_STENOSIS_MM2 = 75.0    # dural sac area on MRI
SAC_RELATIVE_STENOSIS_MM2 = 100.0
MIN_VERTEBRA_MM3 = 2000.0           # smaller fragments (e.g. a vertebra's tip at the edge) are ignored
MIDLINE_HALF_WIDTH_MM = 3.0         # band around the mid-sagittal plane used for AP measurements
FACET_SEARCH_MM = 16.0              # facet joints are searched within this distance of the disc plane
FACET_MAX_GAP_MM = 6.0              # closest approach of the two articular processes


@dataclass(frozen=True)
class PlausibleRange:
    """Physiologically possible values of one measurement; outside it the number is a
    measurement failure (or an anatomy the label map does not show), never a finding."""

    low: float
    high: float
    unit: str
    reason: str

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


#: The one home of the plausibility limits of the motor-unit measurements (names as in
#: :meth:`MotorUnit.measurements`). They are wide on purpose: stenosis, collapse and
#: spondylolisthesis stay inside; only numbers no spine can have fall outside.
PLAUSIBLE_RANGES: dict[str, PlausibleRange] = {
    "disc_height_anterior_mm": PlausibleRange(
        0.0, 22.0, "mm", "a disc cannot have negative height; the tallest lumbar discs (L4/L5, "
        "L5/S1 anteriorly) are about 15-17 mm"),
    "disc_height_middle_mm": PlausibleRange(
        0.0, 22.0, "mm", "as anterior height; normal lumbar mid-disc height is 8-14 mm"),
    "disc_height_posterior_mm": PlausibleRange(
        0.0, 18.0, "mm", "posterior disc height is normally 4-9 mm; taller means a wrong endplate"),
    "segmental_angle_deg": PlausibleRange(
        -20.0, 35.0, "deg", "disc angles run from a few degrees of kyphosis (thoracic, "
        "degenerate segments) to about 25-30 deg of lordosis at L5-S1"),
    "slip_mm": PlausibleRange(
        -12.0, 45.0, "mm", "retrolisthesis rarely exceeds 25 % of a 40 mm endplate (~10 mm); "
        "anterolisthesis reaches 100 % (spondyloptosis, ~45 mm) but not more; Meyerding, CLINICAL.md"),
    "canal_ap_mm": PlausibleRange(
        4.0, 30.0, "mm", "absolute stenosis is < 10 mm on CT (CLINICAL.md) and the tightest "
        "stenoses measure ~5 mm; the widest lumbar canals are ~25 mm"),
    "sac_area_mm2": PlausibleRange(
        20.0, 400.0, "mm2", "absolute stenosis is < 75 mm2 on MRI (CLINICAL.md), severe ~30-50 mm2; "
        "normal lumbar dural sacs are 150-250 mm2"),
}


def implausible_measurements(measurements: dict) -> list[str]:
    """Names of the measurements (a :meth:`MotorUnit.measurements` dict) outside
    :data:`PLAUSIBLE_RANGES`, or not finite."""
    out = []
    for k, v in measurements.items():
        r = PLAUSIBLE_RANGES.get(k)
        if r is not None and v is not None and not (np.isfinite(v) and r.contains(v)):
            out.append(k)
    return out


def implausible_lines(unit: "MotorUnit") -> list[str]:
    """One line per implausible measurement of a unit: name, value and the plausible range."""
    m = unit.measurements()
    out = []
    for k in unit.implausible:
        r = PLAUSIBLE_RANGES[k]
        out.append(f"{unit.name} {k} {m[k]:.1f} {r.unit} (outside {r.low:g}..{r.high:g} {r.unit}: "
                   "a measurement failure, check the labels)")
    return out


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
        d = asdict(self)
        d["measurements"] = self.measurements()
        d["implausible"] = self.implausible
        return d

    def measurements(self) -> dict:
        """The measurements by their contract names (``segment --json``), only those known."""
        g = self.disc_geometry
        m = {}
        if g is not None:
            m.update(disc_height_anterior_mm=g.anterior_height_mm, disc_height_middle_mm=g.middle_height_mm,
                     disc_height_posterior_mm=g.posterior_height_mm)
        for k, v in (("segmental_angle_deg", self.segmental_angle_deg), ("slip_mm", self.slip_mm),
                     ("canal_ap_mm", self.canal_ap_mm), ("sac_area_mm2", self.dural_sac_area_mm2)):
            if v is not None:
                m[k] = float(v)
        return m

    @property
    def implausible(self) -> list[str]:
        """Names of the measurements outside :data:`PLAUSIBLE_RANGES` (never to be shown as
        plain numbers)."""
        return implausible_measurements(self.measurements())

    def summary_dict(self, digits: int = 1) -> dict:
        """``{level, measurements, implausible}`` as ``segment --json`` gives each unit."""
        return {"level": self.name,
                "measurements": {k: round(float(v), digits) for k, v in self.measurements().items()},
                "implausible": self.implausible}

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


class _Indicators:
    """Trilinear samples of label indicators (1 inside, 0 outside) in a crop of the label map.

    Sampling the interpolated indicator and taking its 0.5 crossings puts a boundary halfway
    between the last voxel centre inside and the first outside, whatever the grid's spacing
    and orientation (voxel-centre extremes are biased by half a voxel on coarse grids).
    """

    def __init__(self, labels: Volume, crop, crops=None):
        self.labels, self.crop = labels, crop
        self.crops = dict(crops or {})   # value -> its own crop (the canal may lie outside ``crop``)
        self._ind: dict = {}

    def sample(self, value: int, pts_lps: np.ndarray) -> np.ndarray:
        if value not in self._ind:
            crop = self.crops.get(value, self.crop)
            self._ind[value] = ((self.labels.array[crop] == value).astype(np.float32),
                                np.array([s.start for s in crop], float))  # k, j, i
        ind, start = self._ind[value]
        ijk = self.labels.ijk_points_from_lps(pts_lps.reshape(-1, 3))
        kji = ijk[:, ::-1].T - start[:, None]
        out = ndimage.map_coordinates(ind, kji, order=1, mode="constant", cval=0.0)
        return out.reshape(pts_lps.shape[:-1])

    def plane(self, value: int, origin, e1, e2, t1, t2, e3=None, offsets=(0.0,)) -> np.ndarray:
        """Indicator on the grid ``origin + t1 e1 + t2 e2`` (shape len(t1) x len(t2)), averaged
        over the offsets along ``e3``."""
        g = (np.asarray(origin)[None, None] + t1[:, None, None] * np.asarray(e1)
             + t2[None, :, None] * np.asarray(e2))
        if e3 is None:
            return self.sample(value, g)
        return np.mean([self.sample(value, g + o * np.asarray(e3)) for o in offsets], axis=0)


def _crossings(profile: np.ndarray, t: np.ndarray):
    """Positions where a sampled indicator profile rises through and falls through 0.5."""
    inside = profile >= 0.5
    d = np.diff(inside.astype(np.int8))
    def at(k):  # linear interpolation between samples k and k+1
        p0, p1 = profile[k], profile[k + 1]
        f = (0.5 - p0) / (p1 - p0) if p1 != p0 else 0.5
        return float(t[k] + f * (t[k + 1] - t[k]))
    rises = [at(k) for k in np.where(d == 1)[0]]
    falls = [at(k) for k in np.where(d == -1)[0]]
    return rises, falls


def _first_run(profile: np.ndarray, t: np.ndarray, min_gap: float):
    """(start, end) of the first run inside (>= 0.5) from the low end of ``t``, runs separated
    by gaps shorter than ``min_gap`` joined (a hole in a label is not a wall)."""
    rises, falls = _crossings(profile, t)
    if profile[0] >= 0.5:
        rises = [float(t[0])] + rises
    if not rises:
        return None
    start = rises[0]
    falls = [f for f in falls if f > start]
    later = [r for r in rises if r > start]
    for f in falls:
        nxt = [r for r in later if r > f]
        if not nxt or nxt[0] - f >= min_gap:
            return start, f
    return start, float(t[-1])


def _line_fit(x, y):
    """Least-squares line with one pass of outlier rejection (> 2.5 sigma): (slope, intercept)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    k, b = np.polyfit(x, y, 1)
    r = y - (k * x + b)
    s = r.std()
    keep = np.abs(r) <= max(2.5 * s, 1e-6) if s > 0 else np.ones_like(r, bool)
    if keep.sum() >= 3 and not keep.all():
        k, b = np.polyfit(x[keep], y[keep], 1)
    return float(k), float(b)


SAMPLE_MM = 0.5            # spacing of the resampled mid-sagittal and disc-plane grids
MIDLINE_OFFSETS_MM = tuple(np.arange(-MIDLINE_HALF_WIDTH_MM, MIDLINE_HALF_WIDTH_MM + 1e-6, 1.0))  # averaged
WALL_ROWS_MM = (1.5, 6.0)  # rows beside an endplate where a body's posterior wall is taken
ARCH_SEARCH_MM = 14.0      # the posterior arch is searched within this distance of the disc plane
MIN_CANAL_GAP_MM = 3.0     # a gap in the bone narrower than this is a hole, not the canal
SAC_SECTION_OFFSETS_MM = tuple(np.arange(-1.0, 1.01, 0.25))  # disc-plane sections for the sac area
CANAL_REACH_MM = 40.0      # the dural sac is looked for this far around the unit's vertebrae
MIN_DISC_COLUMNS = 4       # mid-sagittal disc columns needed for heights and angle


def _rows(ind, value, origin, e_along, e_up, t, s_values, lr):
    """Mid-sagittal indicator rows of ``value``: along ``e_along`` at heights ``s`` along ``e_up``."""
    return ind.plane(value, origin, e_up, e_along, np.asarray(s_values, float), t, lr, MIDLINE_OFFSETS_MM)


def _posterior_wall(ind, value, origin, e_along, e_up, s_values, lr, t, min_gap):
    """Posterior wall of a vertebral body next to its endplate, in mid-sagittal rows parallel to
    the endplate: the end of the first run of bone from anterior. Returns (wall point LPS, body
    depth mm) or (None, None)."""
    img = _rows(ind, value, origin, e_along, e_up, t, s_values, lr)
    walls, depths, ss = [], [], []
    for s, row in zip(s_values, img):
        run = _first_run(row, t, min_gap)
        if run is None or run[1] >= t[-1] or run[1] - run[0] < 10.0:
            continue
        walls.append(run[1]), depths.append(run[1] - run[0]), ss.append(s)
    if not walls:
        return None, None
    # the corner: on the endplate (the wall is taken as perpendicular to it)
    return np.asarray(origin) + float(np.median(walls)) * e_along, float(np.median(depths))


def _endplates_from_bodies(ind, mu, c, n, lr, ap, t, step):
    """(kt, top0, kb, bot0): lines (w = k a + w0 in the unit's frame) of the upper body's
    inferior and the lower body's superior endplate, from mid-sagittal columns where both
    bodies face each other across a gap; None when fewer than MIN_DISC_COLUMNS columns."""
    w = np.arange(-30.0, 30.0 + SAMPLE_MM, SAMPLE_MM)
    U = ind.plane(mu.upper, c, ap, n, t, w, lr, MIDLINE_OFFSETS_MM)
    Lo = ind.plane(mu.lower, c, ap, n, t, w, lr, MIDLINE_OFFSETS_MM)
    xs, tops, bots = [], [], []
    for a, cu, cl in zip(t, U, Lo):
        ru, _ = _crossings(cu, w)
        _, fl = _crossings(cl, w)
        up = [x for x in ru if x > -15.0]
        low = [x for x in fl if x < 15.0]
        if up and low and up[0] > low[-1]:
            xs.append(a), tops.append(up[0]), bots.append(low[-1])
    if len(xs) < MIN_DISC_COLUMNS:
        return None
    xs = np.array(xs)
    # the bodies only: their AP extent is the longest run of facing columns
    br = np.where(np.diff(xs) > max(2.0, 1.5 * step))[0]
    seg = np.split(np.arange(len(xs)), br + 1)
    keep = max(seg, key=len)
    if len(keep) < MIN_DISC_COLUMNS:
        return None
    xs, tops, bots = xs[keep], np.array(tops)[keep], np.array(bots)[keep]
    kt, top0 = _line_fit(xs, tops)
    kb, bot0 = _line_fit(xs, bots)
    return kt, top0, kb, bot0


def _measure(mu: MotorUnit, ind: _Indicators, c, n, lr, ap, step: float, has_disc: bool,
             has_canal: bool) -> None:
    """Fill the unit's disc geometry, segmental angle, slip, canal AP and dural-sac area.

    Conventions (radiological, mid-sagittal, on the label map resampled at SAMPLE_MM):

    - disc heights: distance between the disc's upper and lower surfaces (endplates) along the
      disc normal, from lines fitted to the surfaces and evaluated at the disc's anterior edge,
      the middle of its AP depth and its posterior edge;
    - segmental angle: angle between the two endplates bounding the disc (CLINICAL.md),
      positive = lordotic (disc taller anteriorly);
    - slip: the posterior-wall offset of the upper body over the lower endplate, i.e. the
      distance, measured along the lower vertebra's superior endplate (its AP direction),
      from the posterior-superior corner of the lower body to the perpendicular dropped from
      the posterior-inferior corner of the upper body; positive = anterolisthesis,
      negative = retrolisthesis; percent of the lower endplate's depth (Meyerding);
    - canal AP: bony AP diameter at the disc level, from the more posterior of the two body
      walls to the nearest anterior edge of the posterior arch within ARCH_SEARCH_MM of the
      disc plane, along the disc's AP direction;
    - dural-sac area: area of the canal label (300) cut by the disc's mid plane.
    """
    t = np.arange(-60.0, 90.0 + SAMPLE_MM, SAMPLE_MM)      # along AP, from the disc centre
    min_gap = max(MIN_CANAL_GAP_MM, 1.2 * step)
    kt = kb = 0.0
    top0, bot0 = 2.5, -2.5
    if has_disc:
        w = np.arange(-20.0, 20.0 + SAMPLE_MM, SAMPLE_MM)
        D = ind.plane(mu.disc, c, ap, n, t, w, lr, MIDLINE_OFFSETS_MM)  # (a, w)
        xs, tops, bots = [], [], []
        for a, col in zip(t, D):
            if col.max() < 0.5:
                continue
            r, f = _crossings(col, w)
            if r and f:
                xs.append(a), bots.append(r[0]), tops.append(f[-1])
        if len(xs) >= MIN_DISC_COLUMNS:
            xs, tops, bots = np.array(xs), np.array(tops), np.array(bots)
            lo, hi = float(xs.min()), float(xs.max())
            inner = (xs > lo + max(2.0, step)) & (xs < hi - max(2.0, step))
            if inner.sum() < MIN_DISC_COLUMNS:
                inner = np.ones_like(xs, bool)
            kt, top0 = _line_fit(xs[inner], tops[inner])
            kb, bot0 = _line_fit(xs[inner], bots[inner])

            def height(a):
                return float((kt * a + top0) - (kb * a + bot0))

            sec = ind.plane(mu.disc, c, ap, lr, t, np.arange(-45.0, 45.0 + SAMPLE_MM, SAMPLE_MM))
            cols = np.where(sec.max(axis=0) >= 0.5)[0]
            lr_lo = float(-45.0 + SAMPLE_MM * cols.min()) if cols.size else 0.0
            lr_hi = float(-45.0 + SAMPLE_MM * cols.max()) if cols.size else 0.0
            mid = (lo + hi) / 2
            mu.disc_geometry = DiscGeometry(
                label=mu.disc, center_lps=np.asarray(c).tolist(), normal_lps=np.asarray(n).tolist(),
                lr_lps=np.asarray(lr).tolist(), ap_lps=np.asarray(ap).tolist(),
                anterior_height_mm=height(lo), middle_height_mm=height(mid),
                posterior_height_mm=height(hi), ap_depth_mm=hi - lo,
                width_mm=lr_hi - lr_lo, ap_range_mm=(lo, hi), lr_range_mm=(lr_lo, lr_hi))
            mu.segmental_angle_deg = float(np.degrees(np.arctan(kb) - np.arctan(kt)))
    else:  # no disc labelled: the endplates are the facing surfaces of the two bodies
        ends = _endplates_from_bodies(ind, mu, c, n, lr, ap, t, step)
        if ends is not None:
            kt, top0, kb, bot0 = ends
            mu.segmental_angle_deg = float(np.degrees(np.arctan(kb) - np.arctan(kt)))
    # endplate frames (mid-sagittal): AP directions along each endplate and their normals
    e_up, e_low = _unit(ap + kt * n), _unit(ap + kb * n)
    n_up, n_low = _unit(n - kt * ap), _unit(n - kb * ap)
    o_up, o_low = c + top0 * n, c + bot0 * n
    s_up = np.arange(WALL_ROWS_MM[0], max(WALL_ROWS_MM[1], 2 * step) + 1e-6, 1.0)
    p_up, _ = _posterior_wall(ind, mu.upper, o_up, e_up, n_up, s_up, lr, t, min_gap)
    p_low, depth_low = _posterior_wall(ind, mu.lower, o_low, e_low, n_low, -s_up, lr, t, min_gap)
    if p_up is not None and p_low is not None:
        mu.slip_mm = float((p_low - p_up) @ e_low)
        mu.slip_percent = float(100.0 * mu.slip_mm / depth_low)
        mu.meyerding = meyerding_grade(mu.slip_percent)
    walls = [float((p - c) @ ap) for p in (p_up, p_low) if p is not None]
    if walls:
        wall = max(walls)
        w = np.arange(-ARCH_SEARCH_MM, ARCH_SEARCH_MM + SAMPLE_MM, SAMPLE_MM)
        ta = t[t >= wall - 1.0]
        bone = np.maximum(ind.plane(mu.upper, c, n, ap, w, ta, lr, MIDLINE_OFFSETS_MM),
                          ind.plane(mu.lower, c, n, ap, w, ta, lr, MIDLINE_OFFSETS_MM))
        arch = []
        for row in bone:
            r, f = _crossings(row, ta)
            gap_start = ta[0] if row[0] < 0.5 else (f[0] if f else None)
            if gap_start is None:
                continue
            nxt = [x for x in r if x > gap_start + min_gap]
            if nxt:
                arch.append(nxt[0])
        if arch:
            mu.canal_ap_mm = float(min(arch) - wall)
            mu.canal_grade = ("absolute stenosis" if mu.canal_ap_mm < CANAL_ABSOLUTE_STENOSIS_MM
                              else "relative stenosis" if mu.canal_ap_mm < CANAL_RELATIVE_STENOSIS_MM
                              else "normal")
    if has_canal:
        ta = t[t >= 0.0]
        lrs = np.arange(-35.0, 35.0 + SAMPLE_MM, SAMPLE_MM)
        # the median of parallel sections within +-1 mm: one section of a voxel map varies by a
        # few % with where it cuts the grid
        areas = [ind.plane(L.CANAL, c + o * n, ap, lr, ta, lrs).sum() * SAMPLE_MM * SAMPLE_MM
                 for o in SAC_SECTION_OFFSETS_MM]
        if max(areas) > 0:
            mu.dural_sac_area_mm2 = float(np.median(areas))


def units_from_present(present: list[int], adjacent=None) -> list[tuple[int, int]]:
    """(upper, lower) label pairs of the motor units of the labelled vertebrae ``present``.

    Every two vertebrae next to each other in cranio-caudal order make a unit when their names
    can be neighbours (counting variants included: L4-S1, L4-L6, L6-S1, T11-T13, T13-L1, T11-L1),
    so level shifts and renames never drop a unit; a gap in the names (L2 then L4: a vertebra
    not labelled) is not a unit.
    """
    out = []
    order = L.craniocaudal_order(present)
    for up, low in zip(order[:-1], order[1:]):
        try:
            L.parse_motor_unit(L.motor_unit_name(up, low))
        except ValueError:
            continue
        out.append((up, low))
    return out


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
        With the measurements of :func:`_measure` and ``implausible`` (the measurement names
        outside :data:`PLAUSIBLE_RANGES`).
    """
    arr = labels.array
    voxel_mm3 = float(np.prod(labels.spacing))
    counts = L.label_counts(arr, minlength=400) if arr.size else np.zeros(1)
    present = [lab for lab in L.VERTEBRA_NAMES
               if lab < counts.size and counts[lab] * voxel_mm3 >= MIN_VERTEBRA_MM3]
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

    def bbox(values, margin=3, within=None):
        boxes = [objs[v - 1] for v in values if v - 1 < len(objs) and objs[v - 1] is not None]
        lo = np.min([[s.start for s in b] for b in boxes], axis=0) - margin
        hi = np.max([[s.stop for s in b] for b in boxes], axis=0) + margin
        lo, hi = np.maximum(lo, 0), np.minimum(hi, arr.shape)
        if within is not None:  # intersect with another box
            lo = np.maximum(lo, [s.start for s in within])
            hi = np.maximum(lo, np.minimum(hi, [s.stop for s in within]))
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))

    # the canal is sampled in its own box near each unit (label maps of the bodies alone do
    # not enclose it); margin in voxels for CANAL_REACH_MM along every axis
    reach = np.ceil(CANAL_REACH_MM / np.asarray(labels.spacing, float)[::-1]).astype(int)

    has_canal = counts.size > L.CANAL and counts[L.CANAL] > 0
    units: list[MotorUnit] = []
    for up, low in units_from_present(present):
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
            if ap[1] < 0:
                ap, lr = -ap, -lr
        else:
            mu.disc = disc
            c, n, lr, ap = _disc_frame(D, labels)
        step = _voxel_step_along(labels, ap)
        box = bbox([up, low] + ([disc] if mu.disc else []))
        crops = {L.CANAL: bbox([L.CANAL], 1, within=bbox([up, low], reach))} if has_canal else {}
        ind = _Indicators(labels, box, crops)
        _measure(mu, ind, c, n, lr, ap, step, mu.disc is not None, has_canal)
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
