"""Built-in classical sagittal lumbar MRI segmenter (no model weights, CPU).

For sagittal lumbar MRI with bright CSF (T2; T1/water-fat images whose CSF is bright) in any
axis-aligned orientation:

1. LPS-oriented copy (axis permutation/flips only), intensities normalised by percentiles.
2. Midline: in every sagittal slice, the spinal canal is a long bright (CSF) band with the
   vertebral column in front of it, whose signal alternates body/disc with a period of
   25-50 mm; the slices scoring highest on "long x periodic in front" give the midline. The
   canal's borders per row follow the single-run path (bright marrow or discs touching the
   canal do not pull it forward).
3. Mid-sagittal slab: the bodies are the regions of the marrow intensity window (searched,
   like the CT segmenter's threshold) that separates the most body-sized regions touching the
   canal's front; the window is searched again where a body seems missing. Levels are named
   on these regions (step 6). Outlines are then moved to the strongest edges by a marker
   watershed, clipped at the spine's typical body depth and trimmed at endplate lines fitted
   beside the bright nucleus. The posterior wall is placed 2 mm in front of the CSF's
   half-maximum edge (short rows filled in the body's middle); a body deeper than the spine's
   typical depth has its front cut at the strongest edge of its front band.
4. 3D: each body is propagated slice by slice inside its marrow window to find its lateral
   extent; the named bodies take the median width of those whose propagation did not leak to
   the search limit on both sides. The model body is the superellipse cylinder of its
   mid-sagittal outline and that width (lumbar body sections are close to elliptic;
   propagation alone leaks or stops early). Each axial section of the model is then measured
   in the image (rays from its centre to the edge of the section's own marrow signal,
   regularised with the model as prior). In every sagittal slice a marker watershed then
   moves the model's sections to that slice's own edges (by up to 6 mm; what is much brighter
   than the body's own marrow is background) and the surfaces are smoothed in 3D (4 mm across
   the sections); a second such pass starts from the result. The surfaces are then pulled in
   from the watershed line (steepest point of the edge) to the dark cortical line: per body,
   the sagittal boundary layer of lowest mean intensity within 2 mm inside the line.
5. Discs: the space between two consecutive bodies per (AP, left-right) column.
   Canal: the bright CSF band behind the bodies.
6. Levels are counted from the sacrum upward: the lowest regions whose posterior wall lies
   well behind the one above (the promontory), or a lowest mass much larger than a body,
   are sacrum; gaps of about one body count as missed bodies.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import SegmentationError
from ..tasks import Reporter
from ..volume import Volume
from . import labels as L
from .base import padded_box
from .result import Anchor, Flag, FlagKind, LevelEvidence, SegmentationResult

__all__ = ["segment_mri"]

CSF_MIN = 0.55               # normalised CSF signal (1 = 99.5th percentile of the volume)
CANAL_MIN_LENGTH_MM = 50.0   # a canal candidate is at least this long (cranio-caudal)
CANAL_AP_MM = (2.0, 30.0)    # mean AP thickness of the canal band
TRACK_MEDIAN_MM = 25.0         # median filter of the canal borders along the column (nerve roots, gaps)
CANAL_HALF_WIDTH_MM = 12.0   # canal label: this far left and right of the midline
PERIOD_MM = (25.0, 50.0)     # body + disc height
SLAB_HALF_WIDTH_MM = 3.0     # mid-sagittal slab
BODY_DEPTH_MM = 55.0         # the body column reaches this far in front of the canal
MIN_BODY_AREA_MM2 = 300.0    # sagittal area of a lumbar body (~700-1000 mm2 on the references)
BODY_HEIGHT_MM = (12.0, 45.0)
POSTERIOR_WALL_GAP_MM = 6.0  # body marrow starts within this of the canal (wall + ligament)
BODY_CENTRE_MM = (8.0, 32.0)  # mean distance of a body's marrow in front of the canal
MIN_BODY_DEPTH_MM = 15.0
BODY_CLOSING_MM = 4.0        # heterogeneous marrow: notches and holes closed
GAP_BODY_FRACTION = 0.6      # free space between two found bodies that may hide a third
WS_BG_MARGIN = 1.0           # background marker: this many half-windows beyond the window
WS_SEED_EROSION_MM = 3.0
WS_GRADIENT_SIGMA_MM = 1.0
WS_MAX_GROWTH_MM = 5.0       # the watershed moves a window outline by at most this
SURFACE_SIGMA_MM = (1.0, 1.0, 4.0)  # body surface smoothing (z, y, and across the sections: one
#                                     acquired sagittal section, ~4 mm, carries no finer lateral detail)
WS_SLICE_GROWTH_MM = 6.0     # per sagittal slice, the watershed moves the model's outline by at most this
#                              (off the midline a body's section is not its mid-sagittal outline: wedging,
#                              rounded corners, axial rotation move its walls by several mm)
WS_SLICE_PASSES = 2          # per-slice watershed, then 3D surface smoothing, twice: the second pass's
#                              seeds (eroded sections) come from sections that already follow the slice's
#                              own edges instead of the extruded model (whose errors they would carry)
WS_SLICE_BG_MARGIN = 2.0     # per-slice background: this many half-windows beyond the marrow window...
MARROW_BRIGHT_SD = 4.0       # ...or brighter than the body's own marrow by this many robust SDs (disc,
#                              fat, CSF; marrow signal differs between levels, one window is too coarse)
MARROW_CORE_MM = (4.0, 4.0, 8.0)  # a body's marrow statistics come from its model eroded by this (z, y, x)
CORTEX_SEARCH_MM = 2.0       # the dark cortical line is looked for this far inside the per-slice watershed
#                              line: the watershed sits on the steepest point of the edge between the
#                              ~1 mm cortex and the brighter disc/fat outside it, which lies within the
#                              edge's blur (2 x WS_GRADIENT_SIGMA_MM) of the cortex
ANTERIOR_CLIP_MM = 4.0       # a body reaches at most this beyond the spine's typical depth
ENDPLATE_TOLERANCE_MM = 1.0  # body voxels kept beyond the fitted endplate line
ENDPLATE_DISC_REACH_MM = 4.0  # the nucleus lies within this of an endplate (thin annulus/cartilage)
ENDPLATE_MIN_FIT_MM = 6.0    # nucleus width needed to fit the endplate lines
BODY_HALF_WIDTH_MM = 32.0    # lateral search range of a body (lumbar bodies ~ 45-65 mm wide)
TYPICAL_BODY_WIDTH_MM = 50.0  # when every body's propagation leaks: an adult lumbar body's
                              # width (endplates about 40-50 mm from L1 to L5, Panjabi et al.,
                              # Spine 1992), not fitted to the evaluation references
PROPAGATION_MARGIN_MM = 2.0
EXTRUSION_MARGIN_MM = 1.5
LATERAL_AREA_FRACTION = 0.25  # a body's side ends where its sagittal area falls below this
POSTERIOR_EXPONENT = 3.0     # superellipse exponent of the posterior half of a body's section
# measured sections (_measured_body): rays from each axial section's centre find the body's edge
RAY_COUNT = 72               # one ray every 5 degrees
RAY_STEP_MM = 0.5
EDGE_CONTRAST = 0.10         # normalised departure from the section's marrow level that counts as
                             # an edge: about twice the marrow texture (SD 0.04-0.06 on the dev images)
EDGE_SUSTAIN_MM = 2.0        # ... held this long (thicker than the ~1 mm cortex and texture grains)
EDGE_LEVEL = 0.5             # the edge is where the profile has made this fraction of its departure
                             # (the partial-volume middle of the blurred step)
EDGE_SEARCH_MM = 8.0         # the departure's extreme is looked for this far beyond its start
EDGE_MIN_RATIO = 0.4         # edges nearer the centre than this fraction of the model radius are marrow texture
RADIUS_RATIO = (0.5, 2.0)    # a measured radius is trusted between half and twice the model's
RADIUS_MEDIAN = (13.0, 65.0)  # regularisation: median over this many mm along z and degrees of angle
MAX_DISC_HEIGHT_MM = 22.0
SACRAL_SHIFT_MM = 9.5        # S1's posterior wall lies this much behind L5's (mid-sagittal)
SACRUM_AREA_RATIO = 1.8      # or the lowest region is a sacral mass much larger than a body
SACRAL_V_MM = 8.0            # no promontory where the region above lies this far in front of its own upper neighbour
# Calibrated on the field-of-view suite (bench/bench_fov_suite.py, 2026-12-02): of the MRI
# variants named from the sacrum with no flag, 84 % (49/58, tuning half) and 82 % (49/60,
# validation half) had every level right. That is not good enough to show without the
# surgeon's confirmation, so the confidence stays below CONFIRM_BELOW (0.8): MRI level names
# are always confirmed (or one vertebra named) before a plan.
CONFIDENCE_FROM_SACRUM = 0.75
CONFIDENCE_NO_SACRUM = 0.35
CONFIDENCE_PER_GAP = 0.25    # less for each missed body counted across below a level
MERGED_AREA_RATIO = 1.7      # a mobile body's region this many times the median area: two bodies in one?
MISSED_BODY_MM = 8.0         # free space between regions this much taller than a disc hides a body
SPLIT_STEP_RATIO = 0.5       # body regions closer than this x the typical spacing: one body in two?


# --------------------------------------------------------------------------- geometry
def _to_lps(volume: Volume):
    """An LPS-oriented array (z, y, x) of the volume, its spacing and the inverse map."""
    d = volume.direction
    perm = [int(np.argmax(np.abs(d[:, n]))) for n in range(3)]  # world axis of i, j, k
    if sorted(perm) != [0, 1, 2] or np.min(np.max(np.abs(d), axis=0)) < 0.99:
        raise SegmentationError("oblique scan: resample it to an axis-aligned grid first")
    src_axes = [2, 1, 0]  # array axis of i, j, k
    order = [src_axes[perm.index(w)] for w in (2, 1, 0)]
    a = np.transpose(volume.array, order)
    flips = [out for out, w in enumerate((2, 1, 0)) if d[w, perm.index(w)] < 0]
    for ax in flips:
        a = np.flip(a, axis=ax)
    sp = np.array(volume.spacing)[[perm.index(w) for w in (2, 1, 0)]]

    def back(lab: np.ndarray) -> np.ndarray:
        x = lab
        for ax in flips:
            x = np.flip(x, axis=ax)
        return np.ascontiguousarray(np.transpose(x, np.argsort(order)))

    return np.ascontiguousarray(a), sp, back


def _normalised(img: np.ndarray) -> np.ndarray:
    """Intensities mapped so that the 1st percentile is 0 and the 99.5th is 1."""
    if not np.isfinite(img).all():
        raise SegmentationError("the image contains NaN or infinite values")
    if img.min() < -200 and img.max() > 300:
        raise SegmentationError("values look like Hounsfield units: this is a CT, use the CT segmenter")
    lo, hi = np.percentile(img, [1.0, 99.5])
    if hi - lo <= 1e-6 * max(abs(hi), 1.0):
        raise SegmentationError("the image has (almost) no contrast: nothing to segment")
    return ((img - lo) / (hi - lo)).astype(np.float32)


# ----------------------------------------------------------------------------- canal
def _periodicity(p: np.ndarray, sz: float) -> float:
    """Peak autocorrelation of a detrended profile at body+disc periods (0 = none)."""
    p = ndimage.gaussian_filter1d(p, 1.5 / sz)
    d = p - ndimage.gaussian_filter1d(p, 15.0 / sz)
    d = d - d.mean()
    lo, hi = int(PERIOD_MM[0] / sz), int(PERIOD_MM[1] / sz)
    if len(d) < hi + 10 or d.std() < 1e-6:
        return 0.0
    ac = np.correlate(d, d, "full")[len(d) - 1:] / (d.var() * np.arange(len(d), 0, -1))
    return float(max(ac[lo:min(hi, len(d) - 10)].max(), 0.0))


def _canal_candidates_2d(s2: np.ndarray, sp) -> tuple[float, np.ndarray | None]:
    """Best canal band of one sagittal slice ``s2[z, y]``: (score, mask)."""
    fg = ndimage.binary_fill_holes(ndimage.binary_closing(s2 > 0.1, iterations=3))
    depth = ndimage.distance_transform_edt(fg, sampling=sp[:2])
    vert = np.ones((max(int(15.0 / sp[0]), 1), 1), bool)  # cuts the horizontal discs off
    br = ndimage.binary_opening((s2 > CSF_MIN) & (depth > 10.0), structure=vert)
    lab, nl = ndimage.label(br)
    best, mask = 0.0, None
    for i, o in enumerate(ndimage.find_objects(lab)):
        m = lab[o] == i + 1
        zs = np.nonzero(m.any(axis=1))[0]
        length = len(zs) * sp[0]
        thick = m.sum() * sp[1] / max(len(zs), 1)
        if length < CANAL_MIN_LENGTH_MM or not CANAL_AP_MM[0] <= thick <= CANAL_AP_MM[1]:
            continue
        ya = np.argmax(m[zs], axis=1) + o[1].start  # anterior border per z
        y0 = np.clip(ya - int(25 / sp[1]), 0, None)
        y1 = np.clip(ya - int(5 / sp[1]), 1, None)
        cs = np.cumsum(np.pad(s2[zs + o[0].start], ((0, 0), (1, 0))), axis=1)
        rows = np.arange(len(zs))
        prof = (cs[rows, y1] - cs[rows, y0]) / np.maximum(y1 - y0, 1)
        score = length * _periodicity(prof, sp[0])
        if score > best:
            best = score
            mask = np.zeros(s2.shape, bool)
            mask[o] = m
    return best, mask


def _midline(s: np.ndarray, sp, rep: Reporter):
    """Index of the mid-sagittal slice and the canal masks of every slice."""
    nx = s.shape[2]
    scores = np.zeros(nx)
    masks: list = [None] * nx
    for x in range(nx):
        if x % 8 == 0:
            rep.step(x / nx, "looking for the spinal canal")
        scores[x], masks[x] = _canal_candidates_2d(s[:, :, x], sp)
    sm = ndimage.uniform_filter1d(scores, max(int(round(5.0 / sp[2])), 1))
    if sm.max() < 0.3 * CANAL_MIN_LENGTH_MM:
        raise SegmentationError("no spinal canal with a vertebral column in front of it found: "
                                "is this a sagittal lumbar MRI with bright CSF (T2)?")
    good = np.nonzero(sm >= 0.7 * sm.max())[0]
    xc = int(round(np.median(good)))
    return xc, masks, scores


CANAL_UNION_EXCESS_MM = 3.0  # the slab's union band may reach this much farther forward than
# its majority band (partial volume of a 15-25 mm wide canal); more is a structure in front


def _band_track(u: np.ndarray, nz: int, sp) -> tuple[np.ndarray, np.ndarray]:
    """Per z: anterior and posterior y of the canal band ``u[z, y]`` (interpolated,
    median-filtered along the column)."""
    # per row, the canal is one run of the band; bright marrow or discs touching it add
    # runs in front: follow the path of the rows that have a single run
    zz = np.nonzero(u.any(axis=1))[0]
    runs = []
    for z in zz:
        d = np.diff(np.concatenate([[0], u[z].astype(np.int8), [0]]))
        runs.append(list(zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0] - 1)))
    single = [i for i, r in enumerate(runs) if len(r) == 1]
    if len(single) >= 3:
        cz = np.array([(runs[i][0][0] + runs[i][0][1]) / 2.0 for i in single])
        path = np.interp(zz, zz[single], ndimage.median_filter(cz, 9, mode="nearest"))
    else:
        path = np.array([np.mean(r[-1]) for r in runs])
    pick = [min(r, key=lambda ab: abs((ab[0] + ab[1]) / 2.0 - c)) for r, c in zip(runs, path)]
    ya = np.array([a for a, _ in pick], float)
    yp = np.array([b for _, b in pick], float)
    med = max(int(round(TRACK_MEDIAN_MM / sp[0])) | 1, 3)
    all_z = np.arange(nz)
    ya_i = np.interp(all_z, zz, ndimage.median_filter(ya, med, mode="nearest"))
    yp_i = np.interp(all_z, zz, ndimage.median_filter(yp, med, mode="nearest"))
    return ya_i, yp_i


def _canal_track(masks, xc: int, nz: int, sp) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per z: anterior and posterior y of the canal near the midline (interpolated), and the
    anterior y corrected where bright marrow joined to a few slices' bands pulled the front
    into the bodies. The uncorrected front finds and names the bodies (on noisy images the
    correction can make a body look like a sacral step: a level named one off, measured on
    case 07 with 6% noise); the corrected front places their outlines."""
    hw = max(int(round(4.0 / sp[2])), 1)
    near = [m for m in masks[max(xc - hw, 0):xc + hw + 1] if m is not None]
    if not near:
        raise SegmentationError("spinal canal lost at the midline")
    # the neighbours' best bands may be other structures (vessels): keep those that overlap
    # the band nearest to the midline
    ref = masks[xc] if masks[xc] is not None else max(near, key=lambda m: m.sum())
    kept = [m for m in near if (m & ref).sum() >= 0.5 * m.sum()] + [ref]
    ya, yp = _band_track(np.logical_or.reduce(kept), nz, sp)
    ya_union = ya
    if len(kept) > 2:
        # the canal is in every slice of the +-4 mm slab; bright marrow joined to a few
        # slices' bands in front of a body is not (it pulled the front 5-10 mm into the
        # bodies): where the union's front lies well in front of the front of the pixels
        # that half of the slices have, the latter is the canal's front
        maj = (np.sum(kept, axis=0) * 2 >= len(kept)) & ref
        if maj.any():
            ya_m, _ = _band_track(maj, nz, sp)
            ya = np.where(ya_m - ya > CANAL_UNION_EXCESS_MM / sp[1], ya_m, ya)
    sm = 2.0 / sp[0]
    return (ndimage.gaussian_filter1d(ya_union, sm), ndimage.gaussian_filter1d(yp, sm),
            ndimage.gaussian_filter1d(ya, sm))


# ---------------------------------------------------------------------------- bodies
def _disk(radius_vox: float) -> np.ndarray:
    r = max(int(np.ceil(radius_vox)), 1)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return yy ** 2 + xx ** 2 <= radius_vox ** 2 + 0.5


def _carve_endplates(S: np.ndarray, regs, window, sp) -> list:
    """Trim two neighbouring bodies at their endplates: straight lines fitted to the body
    borders where the bright nucleus lies between them, extended over the whole depth. On T2
    the dark annulus has marrow-like signal and would otherwise be taken as body."""
    out = [m.copy() for m in regs]
    ny = S.shape[1]
    zz = np.arange(S.shape[0])[:, None]
    yy = np.arange(ny)
    big = S.shape[0] + 1
    tol = ENDPLATE_TOLERANCE_MM / sp[0]
    for i in range(len(out) - 1):
        up, low = out[i], out[i + 1]  # cranial (higher z) first
        u_bot = np.where(up, zz, big).min(axis=0)
        l_top = np.where(low, zz, -1).max(axis=0)
        ok = (u_bot < big) & (l_top >= 0) & (u_bot - l_top > 1)
        bright = np.zeros(ny, bool)
        for y in np.nonzero(ok)[0]:
            bright[y] = S[l_top[y] + 1:u_bot[y], y].max() > window[1]
        ys = np.nonzero(bright)[0]
        if len(ys) < max(int(ENDPLATE_MIN_FIT_MM / sp[1]), 3):
            continue
        fu = np.polyfit(ys, u_bot[ys], 1)
        fl = np.polyfit(ys, l_top[ys], 1)
        line_u = np.polyval(fu, yy)[None, :]
        line_l = np.polyval(fl, yy)[None, :]
        cols = (up | low).any(axis=0)  # the lines matter over the bodies' depth only
        if np.any((line_u - line_l)[0, cols] < 1):  # crossing lines: no plausible disc
            continue
        out[i] = up & (zz >= line_u - tol)
        out[i + 1] = low & (zz <= line_l + tol)
    if out:
        # the highest body has no neighbour above to pair with, but a disc above it all the
        # same: its upper endplate line is fitted where the bright nucleus lies just above it
        top = out[0]
        u_top = np.where(top, zz, -1).max(axis=0)
        reach = max(int(round(ENDPLATE_DISC_REACH_MM / sp[0])), 1)
        bright = np.zeros(ny, bool)
        for y in np.nonzero(u_top >= 0)[0]:
            seg = S[u_top[y] + 1:u_top[y] + 1 + reach, y]
            bright[y] = seg.size > 0 and seg.max() > window[1]
        ys = np.nonzero(bright)[0]
        if len(ys) >= max(int(ENDPLATE_MIN_FIT_MM / sp[1]), 3):
            line = np.polyval(np.polyfit(ys, u_top[ys], 1), yy)[None, :]
            out[0] = top & (zz <= line + tol)
    return [o if o.sum() >= 0.6 * m.sum() else m for o, m in zip(out, regs)]


def _refine_bodies_2d(S: np.ndarray, regs, window, ant: np.ndarray, sp, above=None) -> list:
    """Body outlines from a marker watershed on the slab's gradient: the marrow window's
    regions (eroded) are the markers of the bodies; bright (disc, CSF, fat), dark (cortex
    lines, air) and out-of-column pixels mark the background. The borders then follow the
    strongest edges (cortex, endplates) instead of the window's fringes."""
    import SimpleITK as sitk

    lo, hi = window
    half = 0.5 * (hi - lo)
    markers = np.zeros(S.shape, np.uint16)
    bg = (ant < -3.0) | (ant > BODY_DEPTH_MM + 5.0) | (S > hi + WS_BG_MARGIN * half) | (S < lo - WS_BG_MARGIN * half)
    markers[bg] = 1
    # between two neighbouring bodies, the middle of their gap is disc (dim discs would
    # otherwise let the bodies flood into them)
    zz = np.arange(S.shape[0])[:, None]
    big = S.shape[0] + 1
    # (``above``: a body cut by the top of the view, not labelled, still bounds the first one)
    chain = ([above] if above is not None else []) + list(regs)
    if above is not None:
        markers[above] = 1
    for up, low in zip(chain[:-1], chain[1:]):
        u_bot = np.where(up, zz, big).min(axis=0)
        l_top = np.where(low, zz, -1).max(axis=0)
        ys = np.nonzero((u_bot < big) & (l_top >= 0) & (u_bot - l_top > 1))[0]
        markers[(u_bot[ys] + l_top[ys]) // 2, ys] = 1
    se = _disk(WS_SEED_EROSION_MM / sp[1])
    for i, r in enumerate(regs):
        core = ndimage.binary_erosion(r, structure=se)
        if core.sum() < 10:
            core = ndimage.binary_erosion(r)
        markers[core] = i + 2
    g = ndimage.gaussian_gradient_magnitude(S.astype(np.float32), sigma=WS_GRADIENT_SIGMA_MM / sp[1])
    gi = sitk.GetImageFromArray(g.astype(np.float32))
    mi = sitk.GetImageFromArray(markers)
    ws = sitk.GetArrayFromImage(sitk.MorphologicalWatershedFromMarkers(gi, mi, markWatershedLine=False,
                                                                      fullyConnected=False))
    out = []
    sm = _disk(1.5 / sp[1])
    for i, r in enumerate(regs):
        m = (ws == i + 2) & ndimage.binary_dilation(r, structure=_disk(WS_MAX_GROWTH_MM / sp[1]))
        m = ndimage.binary_opening(m, structure=sm)
        lab, n = ndimage.label(m)
        if n > 1:
            sizes = ndimage.sum(m, lab, range(1, n + 1))
            m = lab == 1 + int(np.argmax(sizes))
        m = ndimage.binary_fill_holes(m)
        out.append(m if m.sum() >= 0.5 * r.sum() else r)
    # bodies of one spine have similar depths: one row reaching far forward is soft tissue
    depths = [np.median([ant[z][m[z]].max() for z in np.nonzero(m.any(axis=1))[0]]) for m in out]
    limit = float(np.median(depths)) + ANTERIOR_CLIP_MM
    return [_clip_anterior(m, ant, min(limit, d + ANTERIOR_CLIP_MM)) for m, d in zip(out, depths)]


WALL_TO_CSF_MM = 2.0         # posterior cortex + posterior longitudinal ligament + dura between
# a body's marrow outline and the CSF's half-maximum edge
POSTERIOR_FILL_MM = 15.0     # a body's region may stop this short of its wall (marrow signal
# varies next to the wall: basivertebral veins, fat); filled up to the wall
ANTERIOR_WALL_TOLERANCE_MM = 3.0  # concavity of the anterior wall, rim of the corners
ANTERIOR_EDGE_BAND_MM = 5.0  # the anterior wall is sought in this front band of each row
# (the joined soft tissue is the ligament/vessel layer, a few mm)
BODY_DEPTH_SPREAD_MM = 3.0   # lumbar body depths (AP, mid-sagittal) differ by about this along L1-L5
POSTERIOR_RIM_MM = 4.0       # endplate rim + rounded posterior corner of a body (height)
CANAL_EDGE_SEARCH_MM = (5.0, 20.0)  # the CSF peak is sought this far in front of / behind the track
CANAL_EDGE_BG_MM = (15.0, 3.0)      # tissue in front of the canal (body, disc) sampled here


def _canal_front_edge(S: np.ndarray, ya: np.ndarray, sp) -> np.ndarray:
    """Per z: the y of the CSF's anterior edge on the slab (half-way between the CSF peak
    and the tissue in front of it), smoothed along the column like the track. The band
    track's front is where the signal exceeds a fixed CSF level, which bright marrow (fatty,
    T1) or partial volume also exceed; the edge is where the body's posterior wall ends."""
    nz, ny = S.shape
    s0, s1 = int(round(CANAL_EDGE_SEARCH_MM[0] / sp[1])), int(round(CANAL_EDGE_SEARCH_MM[1] / sp[1]))
    b0, b1 = int(round(CANAL_EDGE_BG_MM[0] / sp[1])), int(round(CANAL_EDGE_BG_MM[1] / sp[1]))
    edge = np.array(ya, float)
    for z in range(nz):
        y0 = int(round(ya[z]))
        lo, hi = max(y0 - s0, 0), min(y0 + s1 + 1, ny)
        if hi - lo < 3 or y0 - b0 < 0:
            continue
        row = S[z]
        p = lo + int(np.argmax(row[lo:hi]))
        thr = 0.5 * (row[p] + float(np.median(row[y0 - b0:max(y0 - b1, y0 - b0 + 1)])))
        y = p
        while y - 1 >= 0 and row[y - 1] >= thr:
            y -= 1
        if y > 0 and row[y] > row[y - 1]:  # sub-pixel crossing
            y = y - (row[y] - thr) / (row[y] - row[y - 1])
        edge[z] = y
    med = max(int(round(TRACK_MEDIAN_MM / sp[0])) | 1, 3)
    return ndimage.gaussian_filter1d(ndimage.median_filter(edge, med, mode="nearest"), 2.0 / sp[0])


def _outline_bodies_2d(S: np.ndarray, regs, window, ya: np.ndarray, sp, above=None) -> list:
    """The mid-sagittal outlines of the window's regions: watershed refinement, anterior
    clip and endplate carving, relative to the CSF's anterior edge."""
    yw = _canal_front_edge(S, ya, sp)
    ant = (yw[:, None] - np.arange(S.shape[1])[None, :]) * sp[1]
    regs = _refine_bodies_2d(S, regs, window, ant, sp, above=above)
    regs = _anterior_edge(S, regs, ant, sp)
    regs = _carve_endplates(S, regs, window, sp)
    # (after the endplates: the rows filled up to the posterior wall are the body's own)
    return [_anterior_wall(_posterior_wall(m, yw, sp), sp) for m in regs]


def _anterior_edge(S: np.ndarray, regs, ant: np.ndarray, sp) -> list:
    """The anterior wall at the strongest edge of the region's front band: soft tissue in
    front of a body (anterior longitudinal ligament, vessels, fat) can fall inside the marrow
    window and join the body; the cortex between them is an edge (a dark line, or the step
    to brighter or darker tissue). Per body, a marker watershed on the gradient between the
    body (its region less the front ``ANTERIOR_EDGE_BAND_MM`` of each row) and the pixels
    just in front of it; the outline can only shrink."""
    import SimpleITK as sitk

    g = ndimage.gaussian_gradient_magnitude(S.astype(np.float32), sigma=WS_GRADIENT_SIGMA_MM / sp[1])
    band = ANTERIOR_EDGE_BAND_MM
    ring_se = _disk(2.0 / sp[1])
    out = []
    for i, r in enumerate(regs):
        zs = np.nonzero(r.any(axis=1))[0]
        if len(zs) < 3:
            out.append(r)
            continue
        rowfront = np.where(r, ant, -np.inf).max(axis=1)  # -inf: rows without the body
        rowback = np.where(r, ant, np.inf).min(axis=1)
        has = r.any(axis=1)
        mid = np.full(len(has), np.inf)  # rows without the body: no ring
        mid[has] = 0.5 * (rowfront[has] + rowback[has])
        body = r & (ant <= rowfront[:, None] - band)
        ring = ndimage.binary_dilation(r, structure=ring_se) & ~r & (ant > mid[:, None])
        for j, o in enumerate(regs):
            if j != i:
                ring |= o
        if body.sum() < 10 or ring.sum() < 10:
            out.append(r)
            continue
        markers = np.zeros(S.shape, np.uint16)
        markers[ring] = 1
        markers[body] = 2
        ws = sitk.GetArrayFromImage(sitk.MorphologicalWatershedFromMarkers(
            sitk.GetImageFromArray(g.astype(np.float32)), sitk.GetImageFromArray(markers),
            markWatershedLine=False, fullyConnected=False))
        m = r & (ws == 2)
        m = ndimage.binary_opening(m, structure=_disk(1.0 / sp[1])) | body
        lab, n = ndimage.label(m)
        if n > 1:
            m = lab == 1 + int(np.argmax(ndimage.sum(m, lab, range(1, n + 1))))
        m = ndimage.binary_fill_holes(m)
        out.append(m if m.sum() >= 0.7 * r.sum() else r)
    # a strong edge inside the marrow (heterogeneous marrow, a Schmorl node) can win over
    # the cortex: the bodies of one spine have similar depths, so only a body that reaches
    # farther forward than the spine's depth (after the cut) by more than the spread of
    # lumbar body depths keeps the cut
    def depth(m):
        return float(np.median([ant[z][m[z]].max() for z in np.nonzero(m.any(axis=1))[0]]))
    typical = float(np.median([depth(m) for m in out]))
    return [m if depth(r) > typical + BODY_DEPTH_SPREAD_MM else r for m, r in zip(out, regs)]


def _anterior_wall(m: np.ndarray, sp) -> np.ndarray:
    """A body's anterior wall is nearly straight in the sagittal plane (slightly concave):
    soft tissue of marrow-like signal joined to it (vessels, ligament, a neighbour's disc
    rim) bulges in front of it. The wall is the repeated-median line of the region's front
    per row (robust while the bulges cover less than half of the rows); what lies more than
    ``ANTERIOR_WALL_TOLERANCE_MM`` in front of it is cut."""
    from scipy.stats import siegelslopes

    zs = np.nonzero(m.any(axis=1))[0]
    if len(zs) < 5:
        return m
    front = np.array([np.argmax(m[z]) for z in zs], float)
    slope, icpt = siegelslopes(front, zs.astype(float))
    line = slope * np.arange(m.shape[0]) + icpt
    keep = np.arange(m.shape[1])[None, :] >= (line - ANTERIOR_WALL_TOLERANCE_MM / sp[1])[:, None]
    out = m & keep
    lab, n = ndimage.label(out)
    if n > 1:
        out = lab == 1 + int(np.argmax(ndimage.sum(out, lab, range(1, n + 1))))
    return out if out.sum() >= 0.7 * m.sum() else m


def _posterior_wall(m: np.ndarray, yw: np.ndarray, sp) -> np.ndarray:
    """A body's posterior wall lies at the canal's front (``WALL_TO_CSF_MM`` in front of the
    CSF edge ``yw``): nothing behind it is body, and where the marrow region stops short of
    it by less than ``POSTERIOR_FILL_MM`` (dark or bright marrow, basivertebral veins next to
    the wall), its rows are filled up to the wall. Only the rows of the body's full depth
    (at least half its median depth) and not within ``POSTERIOR_RIM_MM`` of its top or
    bottom (the rounded corners, the disc's annulus behind them)."""
    out = m.copy()
    ny = m.shape[1]
    yy = np.arange(ny)
    wall = yw - WALL_TO_CSF_MM / sp[1]
    out &= yy[None, :] <= wall[:, None]
    zs = np.nonzero(out.any(axis=1))[0]
    if len(zs) == 0:
        return m
    front = np.array([np.argmax(out[z]) for z in zs])
    backy = np.array([ny - 1 - np.argmax(out[z][::-1]) for z in zs])
    depth = backy - front + 1
    full = depth >= 0.5 * np.median(depth)
    fill = POSTERIOR_FILL_MM / sp[1]
    tgt = np.floor(wall[zs]).astype(int)
    # not the rows of the endplate rims, where the disc's annulus lies behind a rounded corner
    rim = POSTERIOR_RIM_MM / sp[0]
    inner = (zs - zs.min() >= rim) & (zs.max() - zs >= rim)
    # rows near the top or bottom only inside a notch (rows reaching the wall above and
    # below it): a region holding part of a disc (T2: dark annulus) must not be squared off
    # there; the middle half of the height is the body's in any case
    near_wall = np.nonzero(backy >= tgt - max(int(round(2.0 / sp[1])), 1))[0]
    k = np.arange(len(zs))
    notch = (k > near_wall[0]) & (k < near_wall[-1]) if len(near_wall) >= 2 else np.zeros(len(zs), bool)
    h = zs.max() - zs.min()
    central = np.abs(zs - 0.5 * (zs.max() + zs.min())) <= 0.25 * h
    inner &= notch | central
    for z, f, b, tg, ok in zip(zs, front, backy, tgt, full & inner):
        if ok and b < tg and tg - b <= fill:
            out[z, f:tg + 1] = True
    return out if out.sum() >= 0.5 * m.sum() else m


def _clip_anterior(m: np.ndarray, ant: np.ndarray, limit: float) -> np.ndarray:
    """Cut what reaches farther than ``limit`` mm in front of the canal (soft tissue of
    marrow-like signal joined to a few rows of the body), keep the largest piece."""
    out = m & (ant <= limit)
    lab, n = ndimage.label(out)
    if n > 1:
        sizes = ndimage.sum(out, lab, range(1, n + 1))
        out = lab == 1 + int(np.argmax(sizes))
    return out


def _window_search(S: np.ndarray, column: np.ndarray, ant: np.ndarray, sp, max_height: float | None = None):
    """The marrow window (lo, hi) giving the most valid body regions inside ``column``:
    ``(count, regions as (slices, mask)), window)`` or None. ``max_height`` (mm): tallest
    region accepted (default: 1.6 body heights)."""
    pix = sp[0] * sp[1]
    se = _disk(2.0 / sp[1])
    vals = S[column]
    if vals.size < MIN_BODY_AREA_MM2 / pix:
        return None
    qs = np.percentile(vals, np.arange(5, 96, 5))
    best = None
    max_h = BODY_HEIGHT_MM[1] * 1.6 if max_height is None else max_height
    for i, lo in enumerate(qs[:-3]):
        for hi in qs[i + 3:]:
            b = ndimage.binary_opening(column & (S > lo) & (S < hi), structure=se)
            lab, n = ndimage.label(b)
            if n == 0:
                continue
            regs = []
            for k, o in enumerate(ndimage.find_objects(lab)):
                m = lab[o] == k + 1
                area = m.sum() * pix
                h = (o[0].stop - o[0].start) * sp[0]
                a_m = ant[o][m]
                if (area >= MIN_BODY_AREA_MM2 and BODY_HEIGHT_MM[0] <= h <= max_h
                        and a_m.min() <= POSTERIOR_WALL_GAP_MM
                        and BODY_CENTRE_MM[0] <= a_m.mean() <= BODY_CENTRE_MM[1]
                        and np.ptp(a_m) >= MIN_BODY_DEPTH_MM):
                    regs.append((o, m, area))
            key = (len(regs), sum(r[2] for r in regs))
            if regs and (best is None or key > best[0]):
                best = (key, regs, (float(lo), float(hi)))
    return best


def _gap_zones(masks, nz: int, sp) -> list[tuple[int, int]]:
    """z ranges (lo, hi) where a body is probably missing: free space between two regions
    of more than ``GAP_BODY_FRACTION`` of a body height, and above the highest region.
    (Not below the lowest: a region found there but not recognised as sacrum would shift
    every name.)"""
    zr = sorted(((np.nonzero(m.any(axis=1))[0][[0, -1]]) for m in masks), key=lambda r: -r[0])
    if len(zr) < 2:
        return []
    height = float(np.median([b - a + 1 for a, b in zr]))
    zones = []
    for (lo_u, _), (_, hi_l) in zip(zr[:-1], zr[1:]):
        if lo_u - hi_l - 1 >= GAP_BODY_FRACTION * height:
            zones.append((hi_l + 1, lo_u - 1))
    if nz - 1 - zr[0][1] >= GAP_BODY_FRACTION * height:
        zones.append((zr[0][1] + 1, nz - 1))
    return zones


def _body_regions(S: np.ndarray, column: np.ndarray, ant: np.ndarray, sp):
    """The intensity window of the marrow that separates the most body-sized regions in the
    mid-sagittal slab ``S[z, y]``: (regions sorted cranial -> caudal, (lo, hi)).

    ``ant[z, y]`` is the distance (mm) in front of the canal's anterior border; a body
    reaches back to the canal (its posterior wall is the canal's front). Where a body seems
    to be missing (a gap, above the highest), the window is searched
    again in that zone alone (marrow signal varies between levels)."""
    best = _window_search(S, column, ant, sp)
    if best is None or best[0][0] < 2:
        raise SegmentationError("fewer than two vertebral bodies found in front of the canal")
    found = []
    for o, m, _ in best[1]:
        full = np.zeros(S.shape, bool)
        full[o] = m
        found.append(full)
    for z0, z1 in _gap_zones(found, S.shape[0], sp):
        zone = np.zeros(S.shape, bool)
        zone[z0:z1 + 1] = True
        # a zone holds one or a few missed bodies, each at most one body tall: a taller
        # region there is a body joined across a disc to its neighbour
        extra = _window_search(S, column & zone, ant, sp, max_height=BODY_HEIGHT_MM[1])
        if extra is None:
            continue
        for o, m, _ in extra[1]:
            full = np.zeros(S.shape, bool)
            full[o] = m
            found.append(full)
    regs = []
    close = _disk(BODY_CLOSING_MM / sp[1])
    for full in found:
        # heterogeneous marrow leaves holes and notches: close them inside the column
        full = ndimage.binary_fill_holes(ndimage.binary_closing(full, structure=close, iterations=1)
                                         | full) & column
        regs.append(full)
    regs.sort(key=lambda m: -np.nonzero(m)[0].mean())  # cranial (high z) first
    # a body cut by the top of the field of view adds nothing to the count from the sacrum
    hts = [np.ptp(np.nonzero(m)[0]) + 1 for m in regs]
    cut_top = None
    if len(regs) > 3 and np.nonzero(regs[0])[0].max() >= S.shape[0] - 2 and hts[0] < 0.7 * np.median(hts):
        cut_top, regs = regs[0], regs[1:]
    return regs, best[2], cut_top


def _body_3d(s: np.ndarray, reg2d: np.ndarray, xc: int, window, ant: np.ndarray, sp,
             taken: np.ndarray) -> np.ndarray:
    """Propagate one mid-sagittal body outline slice by slice to both sides (the marrow
    window's region of each slice that joins the previous one)."""
    nz, ny, nx = s.shape
    vals = s[:, :, xc][reg2d]
    half = 0.5 * (window[1] - window[0])
    med = float(np.median(vals))
    lo, hi = med - 1.3 * half, med + 1.3 * half
    se = _disk(PROPAGATION_MARGIN_MM / sp[1])
    inside = ant >= -1.0
    # a body is no taller or deeper off the midline than its mid-sagittal outline
    inside = inside & ndimage.binary_dilation(reg2d, structure=_disk(EXTRUSION_MARGIN_MM / sp[1]))
    out = np.zeros(s.shape, bool)
    out[:, :, xc] = reg2d
    area0 = reg2d.sum()
    max_dx = int(round(BODY_HALF_WIDTH_MM / sp[2]))
    for step in (1, -1):
        prev = reg2d
        for dx in range(1, max_dx + 1):
            x = xc + step * dx
            if not 0 <= x < nx:
                break
            allowed = ndimage.binary_dilation(prev, structure=se) & inside & ~taken[:, :, x]
            cand = allowed & (s[:, :, x] > lo) & (s[:, :, x] < hi)
            cand = ndimage.binary_opening(cand, structure=_disk(1.0 / sp[1]))
            lab, n = ndimage.label(cand)
            if n == 0:
                break
            keep = np.unique(lab[cand & prev])
            keep = keep[keep > 0]
            m = np.isin(lab, keep)
            m = ndimage.binary_fill_holes(ndimage.binary_closing(m, structure=_disk(2.0 / sp[1])) & allowed)
            if m.sum() < 0.15 * area0:
                break
            out[:, :, x] = m
            prev = m
    return out


def _lateral_extent(prop: np.ndarray, xc: int) -> tuple[int, int]:
    """First and last sagittal slice of a propagated body: where its area stays above
    ``LATERAL_AREA_FRACTION`` of the mid-sagittal area."""
    area = prop.sum(axis=(0, 1)).astype(float)
    a0 = area[xc]
    lo = hi = xc
    while lo - 1 >= 0 and area[lo - 1] >= LATERAL_AREA_FRACTION * a0:
        lo -= 1
    while hi + 1 < len(area) and area[hi + 1] >= LATERAL_AREA_FRACTION * a0:
        hi += 1
    return lo, hi


def _elliptic_body(reg2d: np.ndarray, xm: float, half_w: float, nx: int, sp) -> np.ndarray:
    """The body as an elliptic cylinder: per axial row z of the mid-sagittal outline, an
    ellipse with that row's AP extent and the half width ``half_w`` (mm) about the sagittal
    index ``xm``.

    Lumbar bodies are close to elliptic in axial section (area / inscribed ellipse of the
    bounding box 0.85-1.06 on the references), while marrow-signal propagation leaks into
    psoas and pedicles or stops early on heterogeneous marrow."""
    rows = np.nonzero(reg2d.any(axis=1))[0]
    ny = reg2d.shape[1]
    yy = np.arange(ny)[:, None]
    u = np.abs((np.arange(nx) - xm) * sp[2] / half_w)[None, :]
    model = np.zeros(reg2d.shape + (nx,), bool)
    for z in rows:
        ys = np.nonzero(reg2d[z])[0]
        yc, b = (ys[0] + ys[-1]) / 2.0, (ys[-1] - ys[0] + 1) / 2.0 * sp[1]
        v = np.abs((yy - yc) * sp[1] / b)
        # the posterior half is squarer than an ellipse (kidney-shaped section)
        p = np.where(yy > yc, POSTERIOR_EXPONENT, 2.0)
        model[z] = u ** p + v ** p <= 1.0
    return model


def _measured_body(s: np.ndarray, model: np.ndarray, sp) -> np.ndarray:
    """The body's own axial sections measured in the image, with ``model`` as prior.

    In every axial section of the model a ray is cast from the section's centre every
    ``360 / RAY_COUNT`` degrees; along each, the edge is where the (smoothed) image leaves the
    section's own marrow level (median of the section's core) by ``EDGE_CONTRAST`` for
    ``EDGE_SUSTAIN_MM``, placed at the ``EDGE_LEVEL`` point of that departure (the partial-volume
    middle: across the ~4 mm sagittal sections the lateral edges are blurred). The ratio of the
    measured to the model's radius is regularised by a median over z and angle (rays without an
    edge vote for the model), then smoothed over angle, and the star-shaped section rasterised.
    The marrow may be brighter or darker than what surrounds it (psoas, vessels, fat, discs),
    so a departure of either sign ends it."""
    from scipy.ndimage import map_coordinates, median_filter

    zs = np.nonzero(model.any(axis=(1, 2)))[0]
    if len(zs) == 0:
        return model
    th = np.arange(RAY_COUNT) * 2.0 * np.pi / RAY_COUNT
    dy, dx = np.sin(th)[:, None], np.cos(th)[:, None]
    rr = np.arange(0.0, 2.0 * BODY_HALF_WIDTH_MM + 10.0, RAY_STEP_MM)
    n_sus = max(int(round(EDGE_SUSTAIN_MM / RAY_STEP_MM)), 1)
    n_ext = int(round(EDGE_SEARCH_MM / RAY_STEP_MM))
    idx = np.arange(len(rr))[None, :]
    ratio = np.ones((len(zs), RAY_COUNT))
    r0 = np.zeros((len(zs), RAY_COUNT))
    centres = np.zeros((len(zs), 2))
    for k, z in enumerate(zs):
        sec = model[z]
        yy, xx = np.nonzero(sec)
        cy, cx = yy.mean() * sp[1], xx.mean() * sp[2]
        centres[k] = cy, cx
        coords = [(cy + rr[None, :] * dy) / sp[1], (cx + rr[None, :] * dx) / sp[2]]
        inside = map_coordinates(sec.astype(np.float32), coords, order=1, mode="constant") >= 0.5
        r0[k] = rr[np.argmax(~inside, axis=1)] + 0.5 * RAY_STEP_MM  # model radius (first exit)
        core = ndimage.binary_erosion(sec, iterations=3)
        if core.sum() < 20:
            continue
        dev = map_coordinates(s[z], coords, order=1, mode="nearest") - float(np.median(s[z][core]))
        far = np.abs(dev) >= EDGE_CONTRAST
        run = ndimage.uniform_filter1d(far.astype(np.float32), n_sus, axis=1, origin=-(n_sus // 2)) > 1 - 1e-3
        run &= rr[None, :] >= EDGE_MIN_RATIO * r0[k][:, None]
        found = run.any(axis=1)
        j = np.argmax(run, axis=1)
        sgn = np.sign(dev[np.arange(RAY_COUNT), j])
        dd = dev * sgn[:, None]
        window = (idx >= j[:, None]) & (idx < j[:, None] + n_ext)
        level = EDGE_LEVEL * np.where(window, dd, -np.inf).max(axis=1)
        # start of the run of values above the level that contains j
        below = (dd < level[:, None]) & (idx < j[:, None])
        jb = np.where(below, idx, -1).max(axis=1)  # last index below the level before j
        ok = found & (jb >= 0)
        a = dd[np.arange(RAY_COUNT), np.maximum(jb, 0)]
        b = dd[np.arange(RAY_COUNT), np.maximum(jb, 0) + 1]
        pos = rr[np.maximum(jb, 0)] + RAY_STEP_MM * (level - a) / np.maximum(b - a, 1e-6)
        ratio[k, ok] = pos[ok] / np.maximum(r0[k, ok], 1.0)
    ratio = np.clip(ratio, *RADIUS_RATIO)
    mz = max(int(round(RADIUS_MEDIAN[0] / sp[0])) | 1, 1)
    ma = max(int(round(RADIUS_MEDIAN[1] / (360.0 / RAY_COUNT))) | 1, 1)
    pad = ma // 2
    wrapped = np.concatenate([ratio[:, RAY_COUNT - pad:], ratio, ratio[:, :pad]], axis=1)
    ratio = median_filter(wrapped, size=(mz, ma), mode="nearest")[:, pad:pad + RAY_COUNT]
    ratio = ndimage.gaussian_filter1d(ratio, 1.0, axis=1, mode="wrap")
    radius = ratio * r0
    out = np.zeros_like(model)
    ny, nx = model.shape[1:]
    gy, gx = np.mgrid[0:ny, 0:nx]
    for k, z in enumerate(zs):
        vy, vx = gy * sp[1] - centres[k, 0], gx * sp[2] - centres[k, 1]
        ang = np.mod(np.arctan2(vy, vx), 2 * np.pi) * (RAY_COUNT / (2 * np.pi))
        a0 = np.floor(ang).astype(int) % RAY_COUNT
        f = ang - np.floor(ang)
        lim = (1 - f) * radius[k, a0] + f * radius[k, (a0 + 1) % RAY_COUNT]
        out[z] = np.hypot(vy, vx) <= lim
    # a body is no deeper off the midline than its mid-sagittal outline (as in _body_3d): rays
    # that ran on into tissue of marrow-like signal (prevertebral vessels and psoas in front, a
    # tilted disc behind a lordotic body's endplate) are cut at the outline's AP range
    rows = model.any(axis=2)
    out &= ndimage.binary_dilation(rows, structure=_disk(EXTRUSION_MARGIN_MM / sp[1]))[:, :, None]
    return out


def _refine_bodies_per_slice(s: np.ndarray, raw: np.ndarray, bodies: list, window, sp) -> list:
    """Each sagittal slice's body outlines moved to that slice's own edges.

    The model bodies (one mid-sagittal outline swept across the lateral extent) give the
    markers: per slice their eroded sections are the seeds, what lies farther than
    ``WS_SLICE_GROWTH_MM`` outside them, or outside the marrow window, is background, and
    the middle of the gap between two neighbours is disc. Off the midline the endplates and
    the anterior wall are not where the mid-sagittal outline puts them (wedge shapes,
    rounded corners). Slices where a body's seed vanishes keep the model's section.
    The gradient is taken on the unsmoothed ``raw`` (on ``s`` the edges would be smoothed
    twice), the marrow window is applied to the smoothed ``s``. Each body's own marrow signal
    (median and robust SD over its model's 3D core) adds background where a slice is much
    brighter than that marrow: with the wider growth, discs and fat must not be flooded."""
    import SimpleITK as sitk

    lo, hi = window
    half = 0.5 * (hi - lo)
    union = np.logical_or.reduce(bodies)
    if not union.any():
        return bodies
    grow = WS_SLICE_GROWTH_MM / sp[1]
    pad = int(np.ceil(grow)) + 6
    (z0, z1), (y0, y1) = [(max(int(a.min()) - pad, 0), min(int(a.max()) + pad + 1, n))
                          for a, n in zip(np.nonzero(union.any(axis=2)), s.shape[:2])]
    box = (slice(z0, z1), slice(y0, y1))
    outs = [b.copy() for b in bodies]
    se_grow, se_seed, se_open = _disk(grow), _disk(WS_SEED_EROSION_MM / sp[1]), _disk(1.5 / sp[1])
    se_bg = _disk(grow + 2.0)
    zz = np.arange(z1 - z0)[:, None]
    big = z1 - z0 + 1
    bright = [_marrow_bright_limit(s, b, sp) for b in bodies]
    for x in np.nonzero(union.any(axis=(0, 1)))[0]:
        S = s[box + (x,)]
        secs = [b[box + (x,)] for b in bodies]
        markers = np.zeros(S.shape, np.uint16)
        bg = ~ndimage.binary_dilation(np.logical_or.reduce(secs), structure=se_bg)
        markers[bg | (S > hi + WS_SLICE_BG_MARGIN * half) | (S < lo - WS_SLICE_BG_MARGIN * half)] = 1
        near = [_dilate_local(r, se_grow) for r in secs]  # how far each outline may move
        for r, lim in zip(near, bright):
            if lim is not None:
                markers[r & (S > lim)] = 1
        for up, low in zip(secs[:-1], secs[1:]):
            u_bot = np.where(up, zz, big).min(axis=0)
            l_top = np.where(low, zz, -1).max(axis=0)
            ys = np.nonzero((u_bot < big) & (l_top >= 0) & (u_bot - l_top > 1))[0]
            markers[(u_bot[ys] + l_top[ys]) // 2, ys] = 1
        seeded = []
        for i, r in enumerate(secs):
            if not r.any():
                continue
            core = ndimage.binary_erosion(r, structure=se_seed)
            if core.sum() < 10:
                core = ndimage.binary_erosion(r)
            if core.sum() < 3:
                continue
            markers[core] = i + 2
            seeded.append(i)
        if not seeded:
            continue
        g = ndimage.gaussian_gradient_magnitude(raw[box + (x,)].astype(np.float32),
                                                sigma=WS_GRADIENT_SIGMA_MM / sp[1])
        ws = sitk.GetArrayFromImage(sitk.MorphologicalWatershedFromMarkers(
            sitk.GetImageFromArray(g.astype(np.float32)), sitk.GetImageFromArray(markers),
            markWatershedLine=False, fullyConnected=False))
        for i in seeded:
            m = (ws == i + 2) & near[i]
            m = ndimage.binary_opening(m, structure=se_open)
            lab, n = ndimage.label(m)
            if n > 1:
                m = lab == 1 + int(np.argmax(ndimage.sum(m, lab, range(1, n + 1))))
            outs[i][box + (x,)] = ndimage.binary_fill_holes(m)
    return outs


def _dilate_local(m: np.ndarray, se: np.ndarray) -> np.ndarray:
    """``binary_dilation(m, se)`` computed on the bounding box of ``m`` only."""
    out = np.zeros_like(m)
    if not m.any():
        return out
    r = [k // 2 for k in se.shape]
    box = padded_box(m, r)
    out[box] = ndimage.binary_dilation(m[box], structure=se)
    return out


def _marrow_bright_limit(s: np.ndarray, body: np.ndarray, sp) -> float | None:
    """Signal above which a voxel near ``body`` is not its marrow: the median plus
    ``MARROW_BRIGHT_SD`` robust SDs (1.4826 MAD) of ``s`` over the body's core (the body
    eroded by ``MARROW_CORE_MM``); None for an empty body."""
    if not body.any():
        return None
    r = [m / d for m, d in zip(MARROW_CORE_MM, sp)]
    pad = [int(np.ceil(v)) + 1 for v in r]
    box = padded_box(body, pad)
    R = [max(int(np.ceil(v)), 1) for v in r]
    g = np.ogrid[tuple(slice(-k, k + 1) for k in R)]
    ball = sum((gi / max(ri, 1e-3)) ** 2 for gi, ri in zip(g, r)) <= 1.0
    core = ndimage.binary_erosion(body[box], structure=ball)
    vals = s[box][core] if core.sum() >= 50 else s[body]
    med = float(np.median(vals))
    return med + MARROW_BRIGHT_SD * 1.4826 * float(np.median(np.abs(vals - med)))


def _pull_in_to_cortex(m: np.ndarray, img: np.ndarray, sp) -> np.ndarray:
    """The body mask moved inward in each sagittal plane (z, y) to its dark cortical line,
    measured in the image: the mask's boundary layers (layer 0 = its boundary voxels, layer k
    = those of its k-fold erosion; 4-connected in the sagittal plane) within
    ``CORTEX_SEARCH_MM`` inside the watershed line are compared by their mean intensity in
    ``img`` and the mask is eroded until the darkest layer is its boundary (the cortex is kept,
    what lies outside it goes). Where the watershed line already lies on the cortex (darker
    tissue outside) the outermost layer is the darkest and nothing moves. One offset per body:
    the band means average thousands of voxels, a voxel's own profile is dominated by marrow
    texture and noise. ``img`` is the unsmoothed image: smoothing would move the thin dark
    line's minimum towards the marrow side."""
    k_max = int(np.floor(CORTEX_SEARCH_MM / max(sp[0], sp[1]) + 1e-6))
    if k_max < 1 or not m.any():
        return m
    box = padded_box(m, 1)
    st = np.zeros((3, 3, 1), bool)
    st[1, :, 0] = st[:, 1, 0] = True
    cur, means, eroded = m[box], [], []
    for _ in range(k_max + 1):
        inner = ndimage.binary_erosion(cur, structure=st)
        layer = cur & ~inner
        if not layer.any():
            break
        means.append(float(img[box][layer].mean()))
        eroded.append(cur)
        cur = inner
    k = int(np.argmin(means))
    if k == 0:
        return m
    out = np.zeros_like(m)
    out[box] = eroded[k]
    return out


def _smooth_body(m: np.ndarray, sp) -> np.ndarray:
    """The body mask with its surface smoothed (Gaussian of the mask, thresholded at one
    half): slices segmented one by one jitter from one to the next, a body's surface does not."""
    if not m.any():
        return m
    pad = 2 + int(np.ceil(3 * max(SURFACE_SIGMA_MM)))
    box = padded_box(m, pad)
    out = np.zeros_like(m)
    sig = [g / d for g, d in zip(SURFACE_SIGMA_MM, sp)]
    out[box] = ndimage.gaussian_filter(m[box].astype(np.float32), sig) > 0.5
    return out


def _disc_between(upper: np.ndarray, lower: np.ndarray, max_gap_vox: int) -> np.ndarray:
    """Voxels between two bodies (z up), per y column of each sagittal slice."""
    nz = upper.shape[0]
    zz = np.arange(nz)[:, None, None]
    big = nz + 1
    u_bottom = np.where(upper, zz, big).min(axis=0)      # lowest z of the upper body
    l_top = np.where(lower, zz, -1).max(axis=0)          # highest z of the lower body
    ok = (u_bottom < big) & (l_top >= 0) & (u_bottom - l_top > 1) & (u_bottom - l_top <= max_gap_vox)
    return (zz > l_top[None]) & (zz < u_bottom[None]) & ok[None]


# ------------------------------------------------------------------------------ main
def _sacrum_below(S: np.ndarray, column: np.ndarray, ant: np.ndarray, lowest: np.ndarray, sp):
    """A sacral region below the lowest body (its own marrow window), or None: only a region
    that passes the naming rule's sacrum test is returned, so that a missed L5 never shifts
    the names."""
    z_low = int(np.nonzero(lowest.any(axis=1))[0].min())
    if z_low * sp[0] < 8.0:
        return None
    zone = np.zeros(S.shape, bool)
    zone[:z_low] = True
    found = _window_search(S, column & zone, ant, sp)
    if found is None:
        return None
    best = None
    for o, m, _ in found[1]:
        full = np.zeros(S.shape, bool)
        full[o] = m
        _, n_sac, _, _ = _name_regions([lowest, lowest, full], sp)
        if n_sac and (best is None or full.sum() > best.sum()):
            best = full
    return best


def _name_regions(regs, sp) -> tuple[list[int], int, list[Flag], list[int]]:
    """VerSe labels of the mid-sagittal regions (cranial first), counted from the sacrum.

    S1 sits behind L5 (the column turns back at the promontory): the highest of the lowest
    regions whose posterior wall each lies ``SACRAL_SHIFT_MM`` behind the one above (half
    that when it reaches the bottom of the view), or a lowest region much larger than a body,
    is S1, the ones below it are the rest of the sacrum.
    A gap of about one body between two regions counts as one missed body.
    Returns (labels, number of the sacral regions, flags, bodies missed below each region)."""
    flags: list[Flag] = []
    zs = [np.nonzero(m) for m in regs]
    zc = np.array([z.mean() for z, _ in zs]) * sp[0]
    yc = np.array([np.percentile(y, 95) for _, y in zs]) * sp[1]  # posterior wall
    zmin = np.array([z.min() for z, _ in zs]) * sp[0]
    zmax = np.array([z.max() for z, _ in zs]) * sp[0]
    area = np.array([m.sum() for m in regs], float)
    n = len(regs)
    sacral = 0
    by_size_only = False
    for i in range(n - 1, 0, -1):
        dy = yc[i] - yc[i - 1]
        big = i == n - 1 and n >= 3 and area[i] >= SACRUM_AREA_RATIO * np.median(area[:-1])
        # a step back onto region i that only undoes a step forward of region i-1 (a "V" over
        # two bodies) is a wrong posterior wall of i-1, not the promontory: L5's wall lines up
        # with L4's within a few mm (measured: -1..+6 mm before every step-found S1 of the dev
        # cases; -12..-15 mm where noise made L4's region look like a promontory above L5)
        v_shape = i >= 2 and yc[i - 1] - yc[i - 2] <= -SACRAL_V_MM
        step = (dy >= SACRAL_SHIFT_MM or (dy >= SACRAL_SHIFT_MM / 2 and zmin[i] <= 3.0 and i == n - 1)) \
            and not v_shape
        if step or big:
            sacral += 1
            if big:  # a whole sacral mass: what lies above it is L5
                by_size_only = sacral == 1 and not step and dy < SACRAL_SHIFT_MM / 2
                break
        else:
            break
    sacral = min(sacral, max(n - 2, 0))
    # missed bodies: spacing between consecutive regions much larger than typical
    steps = -np.diff(zc)
    typical = float(np.median(steps)) if len(steps) else 0.0
    missing = [int(round(st / typical)) - 1 if typical > 0 and st > 1.6 * typical else 0 for st in steps]
    first_lumbar = n - 1 - sacral  # index of the lowest non-sacral region
    # free space between consecutive regions taller than any disc hides a body, whatever the
    # typical step (several missed bodies inflate it), down to the first sacral region
    for i in range(min(first_lumbar + 1, n - 1)):
        if not missing[i] and zmin[i] - zmax[i + 1] > MAX_DISC_HEIGHT_MM + MISSED_BODY_MM:
            missing[i] = 1
    if sum(missing[:first_lumbar + 1]):
        flags.append(Flag(FlagKind.BODY_MISSED, f"{sum(missing[:first_lumbar + 1])} vertebral body(ies) not "
                          "segmented between found ones; levels counted across the gap"))
    # (the top region may be a partial body cut by the view: only pairs below it)
    if sacral and by_size_only:
        flags.append(Flag(FlagKind.COUNT_IN_DOUBT, "the sacrum was recognised by its size alone, with no promontory "
                          "step: two merged bodies or a body cut by the view look the same; confirm the count"))
    lumbar_area = area[:first_lumbar + 1]
    merged = [i for i in range(first_lumbar + 1)
              if len(lumbar_area) >= 3 and area[i] > MERGED_AREA_RATIO * np.median(lumbar_area)]
    if merged:
        flags.append(Flag(FlagKind.COUNT_IN_DOUBT, f"a vertebral-body region {area[merged[0]] / np.median(lumbar_area):.1f}x "
                          "the area of the others: two bodies merged into one?; confirm the count"))
    close = [i for i in range(1, first_lumbar) if steps[i] < SPLIT_STEP_RATIO * typical]
    if close:
        flags.append(Flag(FlagKind.COUNT_IN_DOUBT, f"two vertebral-body regions only {steps[close[0]]:.0f} mm apart (typically "
                     f"{typical:.0f} mm): one body found as two, or a thin disc missed beside them; "
                     "confirm the count"))
    if sacral >= 2:
        mobile = np.median(area[:first_lumbar + 1])  # (sacral <= n - 2: first_lumbar >= 1)
        upper = area[first_lumbar + 1:n - 1]
        if len(upper) and np.all((upper > 0.6 * mobile) & (upper < 1.6 * mobile)):
            flags.append(Flag(FlagKind.COUNT_IN_DOUBT, f"{sacral} regions below the promontory found, the upper ones body-like: "
                         "the promontory may lie a level lower (a thin disc?); confirm the count"))
    order = [24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12]
    labels = [0] * n
    gaps_below = [0] * n
    for i in range(n - sacral, n):
        labels[i] = L.SACRUM
    # a body missed between the lowest mobile region and the sacrum: that region is L4
    k = gaps = missing[first_lumbar] if sacral and first_lumbar < n - 1 else 0
    for i in range(first_lumbar, -1, -1):
        labels[i] = order[k] if k < len(order) else 0
        gaps_below[i] = gaps
        if i > 0:
            k += 1 + missing[i - 1]
            gaps += missing[i - 1]
    return labels, sacral, flags, gaps_below


def segment_mri(volume: Volume, *, progress=None, cancel=None) -> SegmentationResult:
    """Label lumbar vertebral bodies, discs and the canal on a sagittal MRI.

    Parameters
    ----------
    volume : Volume
        Sagittal lumbar MRI (T2, or T1/water-fat with bright CSF), axis-aligned, any order.

    Returns
    -------
    SegmentationResult
        Labels on the input grid (bodies 20-24/26, discs 119-124, canal 300), levels named
        from the sacrum upward, confidence per level and flags. ``extra``: midline_index
        (sagittal index on the LPS-oriented grid), marrow_window, sacral_regions, level_basis.
    """
    rep = Reporter(progress, cancel)
    if volume.modality not in ("MR", ""):
        raise SegmentationError(f"the MRI segmenter needs an MR image, not {volume.modality}")
    img, sp, back = _to_lps(volume)
    n = _normalised(img.astype(np.float32))
    nz, ny, nx = n.shape
    if min(nz * sp[0], ny * sp[1]) < 100.0:
        raise SegmentationError("field of view too small for a lumbar spine (< 100 mm)")
    rep.step(0.02, "normalising")
    s = ndimage.gaussian_filter(n, sigma=(1.0 / sp[0], 1.0 / sp[1], 0.5 / sp[2]))
    xc, masks, _ = _midline(s, sp, rep.sub(0.05, 0.45))
    ya, yp, ya_outline = _canal_track(masks, xc, nz, sp)
    rep.step(0.5, "finding vertebral bodies")
    hw = max(int(round(SLAB_HALF_WIDTH_MM / sp[2])), 0)
    S = s[:, :, max(xc - hw, 0):xc + hw + 1].mean(axis=2)
    yy = np.arange(ny)[None, :]
    ant = (ya[:, None] - yy) * sp[1]  # mm in front of the canal's anterior border
    column = (ant >= -2.0) & (ant <= BODY_DEPTH_MM)
    regs, window, cut_top = _body_regions(S, column, ant, sp)
    # levels are named on the window's regions; the refinements below change shapes only
    names, n_sacral, flags, gaps_below = _name_regions(regs, sp)
    if n_sacral == 0:
        s1 = _sacrum_below(S, column, ant, regs[-1], sp)
        if s1 is not None:
            regs = regs + [s1]
            names, n_sacral, flags, gaps_below = _name_regions(regs, sp)
    regs = _outline_bodies_2d(S, regs, window, ya_outline, sp, above=cut_top)
    sacrum = n_sacral > 0
    rep.step(0.6, "bodies in 3D")
    ant3 = np.broadcast_to(ant[:, :, None], n.shape)
    taken = np.zeros(n.shape, bool)
    bodies, extents = [], []
    for i, r in enumerate(regs):
        rep.step(0.6 + 0.25 * i / len(regs), "bodies in 3D")
        lo, hi = _lateral_extent(_body_3d(s, r, xc, window, ant, sp, taken), xc)
        extents.append((lo, hi))
        b = _elliptic_body(r, (lo + hi) / 2.0, (hi - lo + 1) / 2.0 * sp[2], nx, sp)
        taken |= b
        bodies.append(b)
    # one spine's lumbar bodies differ in width by less than the error of each one's
    # propagated extent: all take the median width of those whose propagation stopped
    # before the search limit on at least one side (the others leaked into the tissue beside)
    max_dx = int(round(BODY_HALF_WIDTH_MM / sp[2]))
    named = [i for i, v in enumerate(names) if v and v != L.SACRUM]  # sacrum excluded
    free = [hi - lo + 1 for i, (lo, hi) in enumerate(extents)
            if i in named and (lo > max(xc - max_dx, 0) or hi < min(xc + max_dx, nx - 1))]
    half_w = float(np.median(free)) / 2.0 * sp[2] if free else TYPICAL_BODY_WIDTH_MM / 2.0
    for i in named:
        lo, hi = extents[i]
        bodies[i] = _measured_body(s, _elliptic_body(regs[i], (lo + hi) / 2.0, half_w, nx, sp), sp)
    edges = bodies
    for _ in range(WS_SLICE_PASSES):
        edges = [_smooth_body(b, sp) for b in _refine_bodies_per_slice(s, n, edges, window, sp)]
    bodies = [_pull_in_to_cortex(b, n, sp) for b in edges]
    rep.step(0.85, "naming levels")
    out = np.zeros(n.shape, np.uint16)
    for b, lab in zip(bodies, names):
        if lab:
            out[b & (out == 0)] = lab
    max_gap = int(round(MAX_DISC_HEIGHT_MM / sp[0]))
    # a disc ends at the watershed line (the bright disc's own edge), not at the cortical line
    for up, low, lab_up in zip(edges[:-1], edges[1:], names[:-1]):
        if not lab_up or lab_up == L.SACRUM:
            continue
        d = _disc_between(up, low, max_gap) & (out == 0) & (ant3 >= -1.0)
        out[d] = L.disc_label(lab_up)
    # canal: CSF between the canal borders near the midline
    yp_c = np.minimum(yp, ya + CANAL_AP_MM[1] / sp[1])  # posterior fat may touch the sac low down
    band = (yy >= ya[:, None] - 1) & (yy <= yp_c[:, None] + 1)
    xw = max(int(round(CANAL_HALF_WIDTH_MM / sp[2])), 1)
    canal = np.zeros(n.shape, bool)
    canal[:, :, max(xc - xw, 0):xc + xw + 1] = band[:, :, None] & (s[:, :, max(xc - xw, 0):xc + xw + 1] > CSF_MIN)
    out[canal & (out == 0)] = L.CANAL
    if not sacrum:
        flags.append(Flag(FlagKind.NO_SACRUM, "sacrum not recognised: levels counted from the lowest "
                          "body, low confidence"))
    present = [v for v in names if v]
    levels = [L.vertebra_name(v) for v in L.craniocaudal_order(set(present))]
    # from the sacrum, each level is as sure as the count below it; counted from the lowest
    # body (no sacrum) every name may be off by one
    base = CONFIDENCE_FROM_SACRUM if sacrum else CONFIDENCE_NO_SACRUM
    conf: dict[str, float] = {}
    for lab, gaps in zip(names, gaps_below):
        if lab:
            name = L.vertebra_name(lab)
            conf[name] = round(min(conf.get(name, 1.0), max(base - CONFIDENCE_PER_GAP * gaps, 0.05)), 2)
    rep.step(1.0, "done")
    counted, missed = {}, {}  # bodies counted up from S1 (or from the lowest body) to each level
    for k, (lab, gaps) in enumerate((lab, g) for lab, g in zip(reversed(names), reversed(gaps_below))
                                    if lab and lab != L.SACRUM):
        counted[L.vertebra_name(lab)], missed[L.vertebra_name(lab)] = k + int(sacrum) + gaps, gaps
    if sacrum:
        counted[L.vertebra_name(L.SACRUM)], missed[L.vertebra_name(L.SACRUM)] = 0, 0
    evidence = LevelEvidence(Anchor.SACRUM if sacrum else Anchor.ASSUMED, counted, missed)
    return SegmentationResult(volume.with_array(back(out), modality="SEG"), levels=levels,
                              confidence=conf, flags=flags, evidence=evidence, backend="classical-mri",
                              extra={"midline_index": xc, "marrow_window": window,
                                     "sacral_regions": n_sacral,
                                     "level_basis": "counted from the sacrum" if sacrum
                                     else "counted from the lowest body"})
