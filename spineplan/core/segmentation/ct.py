"""Built-in classical CT spine segmenter ("classical-ct"; no model weights, CPU only).

Pipeline (all on an axis-aligned LPS working grid, so any input direction works):

1. resample the CT to an LPS-aligned working grid (``z`` = superior, ``y`` = posterior,
   ``x`` = patient left) of at least ``WORK_MM`` spacing;
2. bone mask by HU; the spinal canal as the non-bone holes enclosed by bone in each axial
   slice, robustly fitted as a smooth curve ``x(z), y(z)``;
3. the vertebral-body centre line in front of the canal; the mean-HU profile across the
   body, sampled on planes perpendicular to that line, shows discs as low-HU minima;
4. vertebra markers = column bone between consecutive disc planes (away from them; behind
   the canal as a caudally shifted band, with a wider gap on fine grids), and a marker
   watershed on the gradient magnitude splits bodies at the discs and posterior elements at
   the facet gaps;
5. levels named from the sacrum (lowest segment, checked for its bulk) upward; transitional
   anatomy and a missing sacrum flagged;
6. labels mapped back to the input grid, the surface placed at ``SURFACE_HU``.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi
from scipy.signal import find_peaks

from ..errors import SegmentationError, TooLargeError
from ..memory import available_bytes, release_freed_memory
from ..tasks import Reporter
from ..volume import Volume
from . import labels as L
from .base import padded_box
from .result import Anchor, Flag, FlagKind, LevelEvidence, SegmentationResult

__all__ = ["segment_ct", "WORK_MM", "SURFACE_HU"]

WORK_MM = 1.5        # finest working spacing (mm)
SURFACE_HU = 100.0   # vertebra surface threshold on the output grid (partial-volume voxels)
BONE_HU = 150.0      # bone for canal / column detection on the working grid
BODY_FRONT_OF_CANAL_MM = 6.0  # the body column starts this far in front of the canal centre
FACET_RESOLVED_MM = 2.0       # finer working grids resolve the facet-joint gaps, if the
                              # anatomy shows them: the posterior bands leave them a wider gap
POSTERIOR_SHIFT_MM = 6.0      # posterior-element markers: band moved caudally by this
POSTERIOR_UPPER_SHIFT_MM = 3.0  # (its upper end moves less: pedicles sit high on the body)
POSTERIOR_GAP_MM = 6.0        # and this far from the shifted disc planes
POSTERIOR_GAP_FINE_MM = 9.0   # (on fine grids: measured on the real CT resampled to 1.5 and
                              # 2 mm, front-only markers left the arches to the watershed, which
                              # gave half of them to the neighbour: Dice 0.76 / 0.78; bands with
                              # 9 mm gaps 0.83 / 0.85; the phantom's clear facet gaps 0.97 / 0.95)
SACRUM_BULK = 1.5             # sacrum volume >= this x a whole vertebra's (measured 2.1-3.6;
                              # a lumbar vertebra cut by the field's edge 1.4)
SACRUM_MIN_WIDTH_MM = 85.0    # and alae: this wide SACRUM_FRONT_MM in front of the canal
                              # (measured: real CT 108, phantom 91.5; T12 with rib heads 72)
SACRUM_FRONT_MM = 10.0
MARROW_MIN_HU = 0.0            # fatty sacral marrow can be this dark
PELVIS_FRONT_MM = 60.0        # below the lowest disc, bone this far in front of the canal is pelvis
SACRUM_HALF_WIDTH_MM = 40.0   # sacrum markers reach this far from the midline
SACRUM_TOP_MM = 30.0          # and join bone within this below the lowest disc plane
ILIUM_FROM_MM = 55.0          # below the lowest disc, bone this far from the midline is ilium
DISC_RADIUS_MM = 12.0         # disk sampled to orient a disc plane
DISC_MAX_RADIUS_MM = 30.0     # disc voxels lie within this of the disc centre, in its plane
DISC_REACH_MM = 15.0          # and have both bodies within this above and below
COLLAPSED_ENDPLATE_MM = 4.0   # a collapsed disc: endplates within this of its dark middle
COLLAPSED_CONTRAST = 0.5      # rising by this x the profile's span on both sides, to
COLLAPSED_FLANK = 1.0         # sclerotic endplates this x the span above the local median
                              # (phantom: 1.0 / 2.3; real CT with 40 HU noise: 0.6 / 0.34)
COLLAPSED_SCORE = 0.35        # chain score of such a disc (a clear disc scores >= 0.42)
BRIDGE_COST = 0.6             # a chain step over a disc seen only as a bright band costs this
ENDPLATE_HU = 150.0           # disc-endplate surface (half-way between disc and cortical bone)
SACRUM_CLOSING_MM = 6.0       # the sacrum's marrow is closed over openings this wide
SURFACE_SMOOTH_VOX = 0.7      # vertebra surfaces are smoothed over this many working voxels
CANAL_MAX_GAP_MM = 100.0      # canal samples further apart than this are separate runs
CANAL_RING_BONE = 0.5         # canal holes: this fraction of the shell 3-6 mm outside is bone
CANAL_MAX_HU = 60.0           # canal holes: median HU below this (measured <= 42; osteoporotic
                              # marrow holes >= 73)
BODY_MAX_GAP_MM = 30.0        # body-line samples further apart than this are separate runs
                              # (a disc plus an endplate slice or two without a closed body)
BODY_BEYOND_CANAL_MM = 30.0   # bodies are looked for this far beyond the canal's tracked ends
CANAL_HALF_WIDTH_MM = 15.0    # the canal lumen lies within this of its centre line sideways
CANAL_FRONT_MM = 12.0         # and within this in front of (and behind) it
SACRALISATION_LATERAL_MM = 30.0   # L5-sacrum contact beyond this from the midline (not the
SACRALISATION_CONTACT_MM2 = 50.0   # facets), over this area: transitional (measured: real CT
                                   # 0-36 mm^2 with 0-45 HU of noise, 0-16 resampled or cut;
                                   # the phantom's fused L5 72-162, both sides)
RIB_CUT_MM = 38.0             # thoracic vertebrae end this far from the canal; beyond: ribs
RIB_SEED_MM = 30.0            # on a rib-bearing vertebra, bone this far out is rib, and the rib
                              # is split from the vertebra at the costovertebral joint (T12's
                              # transverse processes are rudimentary; its rib head sits on the
                              # pedicle, 20-30 mm out. Real CT: seeds at 26-34 mm give T12
                              # 0.893-0.896, the plain 38 mm cut 0.874; 22 mm cuts the body)
VERTEBRA_CORE_MM = 16.0       # and bone within this of the canal's centre line is vertebra
RIB_NEAR_MM, RIB_FAR_MM = 40.0, 75.0  # a rib crosses this lateral band and runs on
RIB_MIN_MM3 = 300.0           # bone of a rib in the band at a vertebra's height
RIB_MAX_DEPTH_MM = 25.0       # a rib's medial end is a bar at most this deep (the ilium's a plate)
VESSEL_MIN_MM2 = 150.0        # a vessel's section in front of the column: at least this (an
                              # aorta 14 mm across) and round: its area at most
VESSEL_ROUNDNESS = 1.6        # this x the disc of its largest inscribed radius
VESSEL_RIM_MM = 6.0           # around a vessel's core the watershed finds the wall
VESSEL_BODY_MM = 15.0         # a vessel's core stays this far from the body line
OTHER = 999          # temporary label: ribs, ilium, other bone
DISC_ID = 500        # temporary labels of disc markers (500 + disc index)


# --------------------------------------------------------------------------- grids
#: the vertebra above the first rib-bearing one must be at least this fraction of a whole
#: vertebra's volume to be taken for C7, not a thoracic one whose ribs are cut off by the top
#: of the view (C7 is smaller than a thoracic vertebra: the phantom's, half in view, is 0.54;
#: the real CT's T11 tip at the top of its view 0.05)
FIRST_RIB_ABOVE_FRACTION = 0.3
#: a vertebra between two discs smaller than this fraction of a whole neighbour puts the count
#: in doubt (neighbouring vertebrae differ by about 5-10 % in volume)
SPLIT_BODY_FRACTION = 0.65


def _working_image(volume: Volume) -> tuple[sitk.Image, float]:
    """Resample ``volume`` onto an axis-aligned LPS grid (identity direction)."""
    # (no cast of the whole input to float32 first: the linear interpolator computes in
    # double for every pixel type, and the output is float32 either way)
    img = volume.to_sitk()
    w = max(WORK_MM, min(volume.spacing))
    lo, hi = volume.bounds_lps()
    size = [int(np.floor((hi[n] - lo[n]) / w + 1e-3)) + 1 for n in range(3)]
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing((w, w, w))
    ref.SetOrigin(tuple(float(v) for v in lo))
    ref.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    out = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    return out, w


def _largest_blob(sub: np.ndarray, min_px: float):
    """Centroid (row, col) of the largest blob of ``sub`` if it has at least ``min_px`` pixels
    (the vertebral body in a box in front of the canal), else None."""
    if sub.sum() < min_px:
        return None
    lab, _ = ndi.label(sub)
    big = lab == np.argmax(np.bincount(lab[sub])[1:]) + 1
    if big.sum() < min_px:
        return None
    yy, xx = np.nonzero(big)
    return yy.mean(), xx.mean()


def _median_inliers(z: np.ndarray, v: np.ndarray, half: float, tol: float) -> np.ndarray:
    """Samples ``v(z)`` within ``tol`` of the median of the samples within ``half`` in z."""
    near = np.abs(z[:, None] - z[None, :]) <= half
    med = np.array([np.median(v[row]) for row in near])
    return np.abs(v - med) < tol


def _local_curve(z: np.ndarray, v: np.ndarray, zq: np.ndarray, sigma: float) -> np.ndarray:
    """Inlier samples ``v(z)`` interpolated at ``zq`` and Gaussian-smoothed (sigma in samples)."""
    o = np.argsort(z)
    f = np.interp(zq, z[o], v[o])
    return ndi.gaussian_filter1d(f, sigma, mode="nearest")


def _longest_run(z: np.ndarray, keep: np.ndarray, max_gap: float) -> np.ndarray:
    """Mask of the kept samples in the longest z-run without gaps above ``max_gap``."""
    idx = np.nonzero(keep)[0]
    if len(idx) == 0:
        return keep
    idx = idx[np.argsort(z[idx])]
    breaks = np.nonzero(np.diff(z[idx]) > max_gap)[0]
    starts = np.r_[0, breaks + 1]
    ends = np.r_[breaks, len(idx) - 1]
    b = int(np.argmax(z[idx[ends]] - z[idx[starts]]))
    out = np.zeros_like(keep)
    out[idx[starts[b]:ends[b] + 1]] = True
    return out


def _in_plane(axis: int = 0) -> np.ndarray:
    """3D structuring element connecting voxels only within planes normal to array ``axis``
    (0 = axial slices of the [z, y, x] working grid)."""
    st = np.zeros((3, 3, 3), bool)
    st[tuple(1 if a == axis else slice(None) for a in range(3))] = ndi.generate_binary_structure(2, 1)
    return st


def _filled_sagittal_or_coronal(mask: np.ndarray) -> np.ndarray:
    """``mask`` with the holes it encloses in any sagittal or coronal plane filled (not axial:
    there a vertebral arch encloses the canal)."""
    return ndi.binary_fill_holes(mask, structure=_in_plane(1)) | ndi.binary_fill_holes(mask, structure=_in_plane(2))


def _disk_offsets(radius_vox: float) -> tuple[np.ndarray, np.ndarray]:
    """In-plane offsets (a, b), in voxels, of the points of a disk of ``radius_vox``."""
    g = np.arange(-radius_vox, radius_vox + 1e-6, 1.0)
    A, B = np.meshgrid(g, g)
    keep = A ** 2 + B ** 2 <= radius_vox * radius_vox
    return A[keep], B[keep]


# --------------------------------------------------------------------------- canal
def _canal_candidates(bone: np.ndarray, hu: np.ndarray, w: float) -> np.ndarray:
    """Centroids (x, y, z, area) in voxel units of in-slice holes enclosed by bone whose
    contents are canal-dark (CSF, fat): an osteoporotic body's marrow also shows as a hole
    at BONE_HU, behind which the canal may be open (at a disc), and must not be taken.
    The enclosing bone must be an arch and a body, not a vessel's calcified wall: at least
    CANAL_RING_BONE of the shell 3-6 mm outside the hole is bone (real CT: >= 0.69; a
    calcified aorta, 1-2 mm of wall in soft tissue: <= 0.27)."""
    st = _in_plane(0)
    filled = ndi.binary_fill_holes(bone, structure=st)
    holes = filled & ~bone
    lab, n = ndi.label(holes, structure=st)
    if n == 0:
        return np.zeros((0, 4))
    idx = np.arange(1, n + 1)
    area = ndi.sum_labels(np.ones_like(lab, dtype=np.float32), lab, idx) * w * w
    com = np.array(ndi.center_of_mass(holes, lab, idx))  # (z, y, x)
    ok = (area >= 40.0) & (area <= 700.0)
    med = np.full(n, np.inf)
    med[ok] = ndi.median(hu, lab, idx[ok])
    ok &= med < CANAL_MAX_HU
    r_in, r_out = 3.0 / w, max(6.0 / w, 3.0 / w + 1.0)
    pad = int(np.ceil(r_out)) + 1
    for i, box in enumerate(ndi.find_objects(lab), start=1):
        if not ok[i - 1]:
            continue
        box = (box[0],) + tuple(slice(max(b.start - pad, 0), b.stop + pad) for b in box[1:])
        dist = ndi.distance_transform_edt(lab[box] != i, sampling=(1e6, 1.0, 1.0))
        shell = (dist > r_in) & (dist <= r_out)
        ok[i - 1] = bone[box][shell].mean() >= CANAL_RING_BONE if shell.any() else False
    return np.column_stack([com[ok, 2], com[ok, 1], com[ok, 0], area[ok]])


def _fit_canal(cands: np.ndarray, nz: int, w: float, mid_x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust smooth canal line: arrays cx(z), cy(z) in voxels and the valid z range mask."""
    if len(cands) < 5:
        raise SegmentationError("no spinal canal found: is this a CT of the spine?")
    x, y, z = cands[:, 0], cands[:, 1], cands[:, 2]
    # candidates near the patient's left-right midline (the column is midline)
    sel = np.abs(x - mid_x[np.clip(np.round(z).astype(int), 0, nz - 1)]) < 25.0 / w
    if sel.sum() < 5:
        raise SegmentationError("no spinal canal found near the midline")
    x, y, z = x[sel], y[sel], z[sel]
    # per slice keep the most posterior candidate (the canal lies behind the body holes)
    order = np.lexsort((-y, z))
    z_s, first = np.unique(z[order].round(), return_index=True)
    x, y, z = x[order][first], y[order][first], z_s
    zq = np.arange(nz, dtype=float)
    # outliers against a running median, not a global polynomial: the canal steps back
    # sharply at the lumbosacral junction, which a cubic over the whole column cannot follow
    keep = _median_inliers(z, y, 25.0 / w, 6.0 / w) & _median_inliers(z, x, 25.0 / w, 6.0 / w)
    keep &= _longest_run(z, keep, CANAL_MAX_GAP_MM / w)
    cy = _local_curve(z[keep], y[keep], zq, 8.0 / w)
    cx = _local_curve(z[keep], x[keep], zq, 8.0 / w)
    zin = z[keep]
    valid = (zq >= zin.min()) & (zq <= zin.max())
    return cx, cy, valid


def _rib_bearing(markers, surf, dx, Y, ccy, w: float, candidates) -> set:
    """Segments carrying a rib: bone 40-75 mm from the canal, behind the body's front half,
    that runs on beyond 75 mm; its medial end (within 8 mm of the band's inner edge) lies at
    the height of its own vertebra's body (the lower ribs run down past the next vertebra
    laterally, so only the medial end counts) and is a rib's: a bar, in the median axial
    section at most RIB_MAX_DEPTH_MM deep. The ilium runs on too, but its medial edge is a plate
    (real CT: rib ends 6-9 mm deep, ilia 39-57 mm also when cut by the field of view; the
    20-slice thoracic DICOM's ribs 3-6 mm). Lumbar transverse processes end within ~50 mm and
    do not run on. ``dx``: voxels sideways from the canal's centre line."""
    lat = dx * w
    far = surf & (lat > RIB_FAR_MM)
    band = surf & (lat > RIB_NEAR_MM) & (lat <= RIB_FAR_MM) & (Y > ccy - 20.0 / w)
    lab, n = ndi.label(band | far)
    if n == 0:
        return set()
    running = np.unique(lab[far])
    medial = band & np.isin(lab, running[running > 0]) & (lat <= RIB_NEAR_MM + 8.0)
    for k, box in enumerate(ndi.find_objects(np.where(medial, lab, 0)), start=1):
        if box is None:
            continue
        mine = medial[box] & (lab[box] == k)
        rows = mine.any(axis=2)  # (z, y) per axial section
        ys = [np.flatnonzero(r) for r in rows if r.any()]
        if np.median([y[-1] - y[0] + 1 for y in ys]) * w > RIB_MAX_DEPTH_MM:
            medial[box] &= ~mine
    zs_rib = np.nonzero(medial)[0]
    if len(zs_rib) == 0:
        return set()
    out = set()
    for sid in candidates:
        zb = np.nonzero((markers == sid).any(axis=(1, 2)))[0]
        if len(zb) and ((zs_rib >= zb.min()) & (zs_rib <= zb.max())).sum() * w ** 3 >= RIB_MIN_MM3:
            out.add(sid)
    return out


def _without_ribs(m: np.ndarray, bone: np.ndarray, hu: np.ndarray, lat_mm: np.ndarray) -> np.ndarray:
    """``m`` (one rib-bearing vertebra and the rib bone joined to it) without its ribs.

    Watershed of the inverted intensity from vertebra seeds near the canal's centre line and
    rib seeds (``bone`` far out, in ``m`` or not: the column's watershed may have given a
    rib's shaft to the vertebra above): the border falls on the darkest path between them,
    the costovertebral joint gaps, as the facet-joint borders do between vertebrae.
    """
    sl = padded_box(m, 2)
    ms, lat = m[sl], np.broadcast_to(lat_mm, m.shape)[sl]
    far = bone[sl] & (lat > RIB_SEED_MM)
    ms = ms | far
    seeds = np.zeros(ms.shape, np.uint8)
    seeds[m[sl] & (lat < VERTEBRA_CORE_MM)] = 1
    seeds[far] = 2
    out = m.copy()
    if not (seeds == 2).any():
        return out
    cost = -ndi.gaussian_filter(np.asarray(hu[sl], np.float32), 0.5)
    cost -= cost.min()
    cost[~ms] = cost.max() * 2 + 1.0  # flooded last: the border stays inside the bone
    ws = sitk.GetArrayViewFromImage(sitk.MorphologicalWatershedFromMarkers(
        sitk.GetImageFromArray(cost), sitk.GetImageFromArray(seeds),
        markWatershedLine=False, fullyConnected=True))
    out[sl] &= ws == 1
    return out


def _vessel_cores(front: np.ndarray, behind: np.ndarray, bx: np.ndarray, by: np.ndarray,
                  w: float) -> np.ndarray:
    """Cores of round, bright tubes in front of the column: contrast-filled vessels.

    In an axial section, a component of the column's front (``front``) that does not join the
    bone behind (``behind``), is at least VESSEL_MIN_MM2 and round (area <= VESSEL_ROUNDNESS x
    the disc of its largest inscribed radius), whose centre lies beside the body-line point
    (``bx``, ``by`` per slice: 15-50 mm from it, within 40 mm sideways) is a vessel's section,
    where it lies apart from the bodies (at the disc levels; a contrast-filled aorta at
    150-170 HU touches the bodies elsewhere). Its inner half-radius core is followed up and
    down the slices while the column keeps >= 70 % of it, never within 15 mm of the body line.
    """
    nz, ny, nx = front.shape
    cores = np.zeros(front.shape, bool)
    ok = np.isfinite(bx) & np.isfinite(by)
    yy, xx = np.ogrid[:ny, :nx]
    min_px = VESSEL_MIN_MM2 / (w * w)
    for k in np.flatnonzero(ok):
        if not front[k].any():
            continue
        lab, n = ndi.label(front[k])
        skip = set(np.unique(lab[ndi.binary_dilation(behind[k]) & front[k]]).tolist())
        for i, box in enumerate(ndi.find_objects(lab), start=1):
            if i in skip or box is None:
                continue
            m = lab[box] == i
            if m.sum() < min_px:
                continue
            cy, cx = (np.argwhere(m) + [box[0].start, box[1].start]).mean(axis=0)
            d = np.hypot(cy - by[k], cx - bx[k]) * w
            if not (VESSEL_BODY_MM <= d <= 50.0 and abs(cx - bx[k]) * w <= 40.0):
                continue
            dt = ndi.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
            r = dt.max()
            if m.sum() > VESSEL_ROUNDNESS * np.pi * r * r:
                continue
            cores[k][box] |= dt >= r / 2
    for step, ks in ((1, range(1, nz)), (-1, range(nz - 2, -1, -1))):
        for k in ks:
            prev = cores[k - step]
            if prev.any() and ok[k]:
                cont = prev & (front[k] | cores[k])
                cont &= np.hypot(yy - by[k], xx - bx[k]) * w >= VESSEL_BODY_MM
                if cont.sum() >= 0.7 * prev.sum():
                    cores[k] |= cont
    return cores


def _add_open_marrow(seg: np.ndarray, sid: int, surf: np.ndarray, taken: np.ndarray,
                     hu: np.ndarray, taken_canal: np.ndarray, w: float) -> None:
    """Give segment ``sid`` the marrow enclosed by its cortex in coronal or sagittal planes but
    open in the axial plane (the sacrum's foramina and fatty marrow below SURFACE_HU)."""
    extra = _filled_sagittal_or_coronal(surf)
    extra &= ~taken & ~surf & (hu > MARROW_MIN_HU)
    lab, n = ndi.label(extra)
    if n == 0:
        return
    touching = np.unique(lab[ndi.binary_dilation(seg == sid) & extra])
    seg[np.isin(lab, touching[touching > 0])] = sid
    # what is still open (foramina, a cortex thinner than a voxel): the sacrum's own closing,
    # holes filled per axial slice, restricted to unlabelled non-canal voxels that are not air
    r = max(int(round(SACRUM_CLOSING_MM / w)), 1)
    ball = ndi.generate_binary_structure(3, 1)
    sac = ndi.binary_closing(seg == sid, structure=ball, iterations=r)
    sac = ndi.binary_fill_holes(sac, structure=_in_plane(0))
    seg[sac & (seg == 0) & ~taken_canal & (hu > MARROW_MIN_HU)] = sid


def _enclosed_canal(holes: np.ndarray, cx, cy, zvalid, X, Y, ccx, ccy, w: float) -> np.ndarray:
    """The whole lumen of the canal where the arch encloses it in the axial plane: the hole
    through the canal line in each slice (a triangular L5 canal reaches beyond any ellipse).
    A hole opening into the body's marrow (basivertebral foramen) is cut to a canal-sized box."""
    lab, n = ndi.label(holes, structure=_in_plane(0))
    zs = np.nonzero(zvalid)[0]
    ids = lab[zs, np.clip(np.round(cy[zs]).astype(int), 0, holes.shape[1] - 1),
              np.clip(np.round(cx[zs]).astype(int), 0, holes.shape[2] - 1)]
    box = (np.abs(X - ccx) < CANAL_HALF_WIDTH_MM / w) & (Y > ccy - CANAL_FRONT_MM / w) \
        & (Y < ccy + CANAL_FRONT_MM / w)
    return np.isin(lab, np.unique(ids[ids > 0])) & box


def _smooth_vertebra_surfaces(out_w: np.ndarray, sigma_vox: float, keep_out: np.ndarray) -> None:
    """Smooth each vertebra's surface at ``sigma_vox``: a voxel goes to the vertebra whose
    Gaussian-blurred indicator is largest there when that exceeds one half. A bone surface is
    smooth at this scale; a threshold surface is ragged with noise and partial volume.
    Discs and other labels keep their voxels; ``keep_out`` (the canal) stays unlabelled."""
    free = ((out_w == 0) & ~keep_out) | ((out_w > 0) & (out_w < 100))
    best = np.zeros(out_w.shape, np.float32)
    new = np.where(free, 0, out_w).astype(out_w.dtype)
    pad = int(np.ceil(3 * sigma_vox))
    for v, sl in enumerate(ndi.find_objects(out_w), start=1):
        if sl is None or not L.is_vertebra(v):
            continue
        sl = tuple(slice(max(a.start - pad, 0), a.stop + pad) for a in sl)
        g = ndi.gaussian_filter((out_w[sl] == v).astype(np.float32), sigma_vox)
        b, n = best[sl], new[sl]
        win = (g > b) & (g > 0.5) & free[sl]
        b[win] = g[win]
        n[win] = v
    out_w[free] = new[free]


def _fill_enclosed_marrow(out_w: np.ndarray, keep_out: np.ndarray) -> None:
    """Give each vertebra the unlabelled voxels its label encloses in a sagittal or coronal
    plane: marrow darker than SURFACE_HU inside the cortex (fatty or osteoporotic bone).
    Axial planes are left out (there the arch encloses the canal), and so is ``keep_out``
    (the canal, which the sacrum encloses in sagittal planes too)."""
    objs = ndi.find_objects(out_w)
    for v, sl in enumerate(objs, start=1):
        if sl is None or not L.is_vertebra(v):
            continue
        sub = out_w[sl]
        m = sub == v
        sub[_filled_sagittal_or_coronal(m) & (sub == 0) & ~keep_out[sl]] = v


def _darkest_plane_normal(hu: np.ndarray, c: np.ndarray, n0: np.ndarray, w: float) -> np.ndarray:
    """The disc plane's normal through ``c`` (voxel x, y, z): of the sagittal tilts around the
    body line's tangent ``n0``, the one whose disc-sized disk is darkest (the disc lies between
    bright endplates). The tangent alone is unreliable near the ends of the line."""
    A, B = _disk_offsets(DISC_RADIUS_MM / w)
    base = np.degrees(np.arctan2(n0[1], n0[2]))
    best, best_n = np.inf, n0
    for a in np.radians(base + np.arange(-30.0, 30.1, 3.0)):
        n = np.array([n0[0], np.sin(a) * np.hypot(n0[1], n0[2]), np.cos(a) * np.hypot(n0[1], n0[2])])
        n /= np.linalg.norm(n)
        e1 = np.array([1.0, 0.0, 0.0]) - n[0] * n
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(n, e1)
        pts = c[None] + A[:, None] * e1[None] + B[:, None] * e2[None]
        v = ndi.map_coordinates(hu, pts[:, ::-1].T, order=1, cval=-1000.0)
        score = float(np.mean(np.clip(v, -200.0, 600.0)))
        if score < best:
            best, best_n = score, n
    return best_n


def _shifted(mask: np.ndarray, off) -> np.ndarray:
    """``mask`` translated by the integer voxel offset ``off`` (z, y, x), zero-filled."""
    out = np.zeros_like(mask)
    src, dst = [], []
    for o, n in zip(off, mask.shape):
        src.append(slice(max(-o, 0), n - max(o, 0)))
        dst.append(slice(max(o, 0), n - max(-o, 0)))
    out[tuple(dst)] = mask[tuple(src)]
    return out


def _between(upper: np.ndarray, lower: np.ndarray, normal_xyz, reach: int) -> np.ndarray:
    """Voxels with ``upper`` within ``reach`` voxels along ``normal_xyz`` (pointing to the upper
    body) and ``lower`` within ``reach`` against it: the disc's footprint between two bodies."""
    n = np.asarray(normal_xyz, float)[::-1]  # z, y, x
    up = np.zeros(upper.shape, bool)
    down = np.zeros(lower.shape, bool)
    for t in range(1, reach + 1):
        o = tuple(int(v) for v in np.round(t * n))
        up |= _shifted(upper, tuple(-v for v in o))
        down |= _shifted(lower, o)
    return up & down


def _collapsed_discs(raw: np.ndarray, loc_med: np.ndarray, span: float, w: float) -> np.ndarray:
    """Indices of narrow dips of the unsmoothed body-line profile ``raw`` between two bright
    endplates: within COLLAPSED_ENDPLATE_MM on both sides the profile rises by at least
    COLLAPSED_CONTRAST x ``span`` above the dip, to at least COLLAPSED_FLANK x ``span`` above
    the local median ``loc_med`` (the dip itself may be brighter than marrow: a 2 mm disc
    between cortical endplates)."""
    k = max(int(np.ceil(COLLAPSED_ENDPLATE_MM / w)), 1)
    padded = np.pad(raw, k, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, k)  # windows[j] = padded[j:j+k]
    before = windows[:len(raw)].max(axis=1)       # raw[i-k:i]
    after = windows[k + 1:k + 1 + len(raw)].max(axis=1)  # raw[i+1:i+k+1]
    flank = np.minimum(before, after)
    dip = (flank - raw >= COLLAPSED_CONTRAST * span) & (flank >= loc_med + COLLAPSED_FLANK * span)
    dip &= (raw <= padded[k - 1:k - 1 + len(raw)]) & (raw <= padded[k + 1:k + 1 + len(raw)])
    return np.flatnonzero(dip)


def _drop_short_gaps(peaks: np.ndarray, score: np.ndarray, frac: float = 0.7) -> np.ndarray:
    """Vertebrae change height slowly: of two discs closer than ``frac`` of the chain's median
    spacing, the weaker is a minimum inside a body (noise on marrow), not a disc."""
    peaks = np.asarray(peaks)
    while len(peaks) >= 3:
        gaps = np.diff(peaks)
        short = np.nonzero(gaps < frac * np.median(gaps))[0]
        if len(short) == 0:
            break
        a = short[0]
        peaks = np.delete(peaks, a if score[peaks[a]] < score[peaks[a + 1]] else a + 1)
    return peaks


def _regular_chain(idx: np.ndarray, score: np.ndarray, w: float,
                   lo_mm: float = 20.0, hi_mm: float = 50.0, bridge=None) -> tuple[np.ndarray, list]:
    """Best-scoring chain of disc candidates with vertebra-like spacing (dynamic programming).

    ``bridge(a, b)``, if given, returns the index of a disc between candidates ``a`` and ``b``
    that are 1-2 spacings apart, seen by other means, or None: such a step costs BRIDGE_COST.
    Returns the chain and the bridging discs it used (not among ``idx``)."""
    n = len(idx)
    if n == 0:
        return idx, []
    best = score.astype(float).copy()
    prev = np.full(n, -1)
    via = [None] * n
    for i in range(n):  # n is a handful of candidates
        gap = (idx[i] - idx[:i]) * w
        for j in np.nonzero((gap >= lo_mm) & (gap <= hi_mm))[0]:
            if best[j] > 0 and score[i] + best[j] > best[i]:
                best[i], prev[i], via[i] = score[i] + best[j], j, None
        if bridge is None:
            continue
        for j in np.nonzero((gap > hi_mm) & (gap <= 2 * hi_mm))[0]:
            if best[j] > 0 and score[i] + best[j] - BRIDGE_COST > best[i]:
                mid = bridge(idx[j], idx[i])
                if mid is not None:
                    best[i], prev[i], via[i] = score[i] + best[j] - BRIDGE_COST, j, mid
    i = int(np.argmax(best))
    chain, bridged = [], []
    while i >= 0:
        chain.append(idx[i])
        if via[i] is not None:
            chain.append(via[i])
            bridged.append(via[i])
        i = prev[i]
    return np.array(chain[::-1]), bridged


# --------------------------------------------------------------------------- main
def segment_ct(volume: Volume, *, progress=None, cancel=None) -> SegmentationResult:
    """Segment the vertebral column of a CT volume into labelled vertebrae and discs.

    Parameters
    ----------
    volume : Volume
        CT in Hounsfield units, any voxel grid / direction.
    progress, cancel : callables, optional
        See :mod:`spineplan.core.tasks`; raises ``Cancelled`` when ``cancel()`` is True.

    Returns
    -------
    SegmentationResult
        uint16 labels on the input grid (VerSe numbering, discs 100 + upper, 300 canal),
        levels cranial to caudal, per-level confidence, transitional-anatomy flags, and
        ``extra["centerline_lps"]``, ``extra["discs"]`` (label -> centre / normal, LPS).
    """
    rep = Reporter(progress, cancel)
    if volume.modality not in ("CT", ""):
        raise SegmentationError(f"the CT segmenter needs a CT, not {volume.modality}")
    if volume.array.ndim != 3 or min(volume.array.shape) < 3:
        raise SegmentationError("CT volume too small to segment")
    # beyond the loaded image, segmenting needs about 3 voxel-sized 16-bit arrays at its peak
    # (labels, their resampling, masks; bench/bench_memory.py): refused up front otherwise
    need, avail = 3 * 2 * volume.array.size, available_bytes()
    if need > avail:
        raise TooLargeError(f"segmenting this {'x'.join(map(str, volume.size_ijk))} image needs about "
                            f"{need / 2**20:.0f} MB more memory, and {avail / 2**20:.0f} MB is available; "
                            "free memory, or crop or downsample the image first")
    lo, hi = float(volume.array.min()), float(volume.array.max())
    if hi < 300 or lo > -300:
        raise SegmentationError(f"values {lo:.0f}..{hi:.0f} are not Hounsfield units of a CT "
                                "with air and bone: is this a CT?")
    rep.step(0.0, "resampling")
    wimg, w = _working_image(volume)
    hu = sitk.GetArrayViewFromImage(wimg)  # [z, y, x] LPS aligned
    nz, ny, nx = hu.shape
    rep.step(0.15, "bone and canal")
    bone = hu > BONE_HU
    bone = ndi.binary_closing(bone, structure=np.ones((1, 3, 3), bool)) | bone
    cands = _canal_candidates(bone, hu, w)
    body = hu > -300
    xs_ = np.arange(nx, dtype=float)
    wsum = body.sum(axis=(1, 2)).astype(float)
    mid_x = np.where(wsum > 0, (body.sum(axis=1) * xs_).sum(axis=1) / np.maximum(wsum, 1), nx / 2)
    del body
    cx, cy, zvalid = _fit_canal(cands, nz, w, mid_x)
    rep.step(0.3, "vertebral bodies")

    # ---- body centre line: bone in a box in front of the canal, per slice
    # searched a little beyond the canal's tracked ends too: the sacral canal curves back and
    # opens (the S1 body below the L5/S1 disc is needed to find that disc), and at a disc
    # level the arch does not enclose the canal (a short scan may end there)
    # bodies at BONE_HU, else at SURFACE_HU: an osteoporotic body's thin cortex, blurred by
    # interpolation (a 3 mm CT resampled to 2 mm), does not close at 150 HU and whole bodies
    # went missing from the line
    surf = hu > SURFACE_HU
    zz = np.nonzero(zvalid)[0]
    beyond = int(round(BODY_BEYOND_CANAL_MM / w))
    zz = np.arange(max(zz[0] - beyond, 0), min(zz[-1] + beyond, nz - 1) + 1)
    bx = np.full(nz, np.nan)
    by = np.full(nz, np.nan)
    half_x = int(round(22.0 / w))
    for k in zz:  # per slice (cheap: a small 2D box), no per-voxel loop
        x0, y0 = int(round(cx[k])), int(round(cy[k]))
        ys = slice(max(y0 - int(65 / w), 0), max(y0 - int(11 / w), 1))
        xs = slice(max(x0 - half_x, 0), min(x0 + half_x + 1, nx))
        for mask in (bone, surf):  # SURFACE_HU only where the cortex is open at BONE_HU
            blob = _largest_blob(ndi.binary_fill_holes(mask[k, ys, xs]), 300.0 / (w * w))
            if blob is not None:
                by[k] = ys.start + blob[0]
                bx[k] = xs.start + blob[1]
                break
    ok = ~np.isnan(by)
    if ok.sum() < 10:
        raise SegmentationError("no vertebral bodies found in front of the canal")
    zq = np.arange(nz, dtype=float)
    # outliers (a blob that is not the body) against a running median, not a global
    # polynomial: the sacrum's centroid steps back from L5's and must stay in the line
    size = max(int(round(20.0 / w)), 3) | 1
    med_y = ndi.median_filter(by[ok], size=size, mode="nearest")
    med_x = ndi.median_filter(bx[ok], size=size, mode="nearest")
    inl = (np.abs(by[ok] - med_y) < 8.0 / w) & (np.abs(bx[ok] - med_x) < 6.0 / w)
    zi = zq[ok][inl]
    zi = zi[_longest_run(zi, np.ones(len(zi), bool), BODY_MAX_GAP_MM / w)]
    by_f = _local_curve(zi, by[zi.astype(int)], zq, 8.0 / w)
    bx_f = _local_curve(zi, bx[zi.astype(int)], zq, 8.0 / w)
    zz = zz[(zz >= zi.min()) & (zz <= zi.max())]

    # ---- profile along the body line on planes perpendicular to it
    rep.step(0.4, "discs")
    pts = np.column_stack([bx_f[zz], by_f[zz], zq[zz]])  # voxel units (x, y, z)
    tan = np.gradient(pts, axis=0)
    tan /= np.linalg.norm(tan, axis=1, keepdims=True)
    e1 = np.array([1.0, 0.0, 0.0])[None] - tan[:, :1] * tan
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(tan, e1)
    A, B = _disk_offsets(9.0 / w)
    samp = pts[:, None, :] + A[None, :, None] * e1[:, None, :] + B[None, :, None] * e2[:, None, :]
    coords = np.stack([samp[..., 2], samp[..., 1], samp[..., 0]])  # z, y, x
    # (a tilted disk at the field's edge leaves the volume: edge values, not air, or the air
    # makes a deeper 'minimum' there that hides the top disc)
    vals = ndi.map_coordinates(hu, coords.reshape(3, -1), order=1, mode="nearest").reshape(samp.shape[:2])
    raw = vals.mean(axis=1)
    prof = ndi.gaussian_filter1d(raw, 1.0 / w * 1.5)
    del vals
    span = np.percentile(prof, 90) - np.percentile(prof, 10)
    peaks, _ = find_peaks(-prof, distance=max(int(17.0 / w), 1), prominence=0.1 * span)
    # a disc is darker than the bone around it; in-body minima (cancellous between bright
    # endplates) are not darker than the local median
    loc_med = ndi.median_filter(prof, size=max(int(30.0 / w), 3) | 1, mode="nearest")
    keep = prof[peaks] < loc_med[peaks] - 0.12 * span
    # bright endplates (bone) on both sides of a disc
    win = max(int(20.0 / w), 2)
    mx = ndi.maximum_filter1d(prof, win, mode="nearest")
    above = np.array([mx[min(p + win // 2 + 1, len(prof) - 1)] for p in peaks])
    below = np.array([mx[max(p - win // 2 - 1, 0)] for p in peaks])
    keep &= np.minimum(above, below) - prof[peaks] > 0.15 * span
    keep &= np.minimum(above, below) > np.median(prof)
    all_min = peaks
    peaks = peaks[keep]
    score = (loc_med - prof) / span + 0.3
    # a collapsed disc (a few mm between bright endplates) leaves no minimum once smoothed:
    # found on the unsmoothed profile as a narrow dip between two bright endplates
    thin = _collapsed_discs(raw, loc_med, span, w)
    thin = thin[[np.all(np.abs(peaks - t) * w > 10.0) for t in thin]] if len(peaks) else thin
    score[thin] = COLLAPSED_SCORE  # (their smoothed profile is bright: weaker than any disc)
    peaks = np.sort(np.concatenate([peaks, thin])).astype(int)
    band = raw >= loc_med + COLLAPSED_FLANK * span  # endplate-bright samples

    def sclerotic_band(a, b):
        """A collapsed disc on a coarse grid is one bright band (its two endplates), no dip:
        the brightest sample of the middle half between discs ``a`` and ``b``, if bright."""
        lo_, hi_ = a + (b - a) // 4, b - (b - a) // 4
        mid = lo_ + int(np.argmax(raw[lo_:hi_ + 1]))
        return mid if band[mid] else None

    peaks, bridged = _regular_chain(peaks, score[peaks], w, hi_mm=45.0, bridge=sclerotic_band)
    score[bridged] = COLLAPSED_SCORE
    peaks = _drop_short_gaps(peaks, score)
    # extend cranially: a weaker minimum one vertebra-period above the top disc
    # (endplate contrast fades at the edge of the field of view)
    while len(peaks) >= 2:
        period = np.median(np.diff(peaks))
        gap = all_min - peaks[-1]
        cand = all_min[(gap >= 0.75 * period) & (gap <= 1.25 * period)
                       & (prof[all_min] < loc_med[all_min])]
        if len(cand) == 0:
            break
        peaks = np.append(peaks, cand[np.argmin(prof[cand] - loc_med[cand])])
    if len(peaks) == 0:
        raise SegmentationError("no intervertebral discs found along the column")
    disc_c = pts[peaks]
    disc_n = np.array([_darkest_plane_normal(hu, pts[p], tan[p], w) for p in peaks])
    disc_t = tan[peaks]
    prom = (loc_med - prof)[peaks] / span
    inferred = np.isin(peaks, bridged)  # discs seen only as a bright band
    rep.step(0.5, "vertebrae")

    # ---- disc planes and slabs (signed distance along the normal, in voxels)
    Z, Y, X = np.ogrid[:nz, :ny, :nx]

    def plane_dist(i, normals=None):
        """Signed distance (voxels, float32: one full grid per disc) to disc ``i``'s plane."""
        c, n = disc_c[i], (disc_n if normals is None else normals)[i]
        return ((X - c[0]) * n[0] + (Y - c[1]) * n[1] + (Z - c[2]) * n[2]).astype(np.float32)

    # column mask: bone (and enclosed holes except the canal) near the column
    filled = ndi.binary_fill_holes(surf, structure=_in_plane(0))
    ccx = np.interp(zq, zq[zvalid], cx[zvalid])[:, None, None]
    ccy = np.interp(zq, zq[zvalid], cy[zvalid])[:, None, None]
    canal = (((X - ccx) / (9.0 / w)) ** 2 + ((Y - ccy) / (8.0 / w)) ** 2 <= 1.0) & ~surf
    canal |= _enclosed_canal(filled & ~surf, cx, cy, zvalid, X, Y, ccx, ccy, w)
    col = filled & ~canal
    dx = np.abs(X - ccx)  # voxels sideways from the canal's centre line
    inzone = (dx < 110.0 / w) & (Y > ccy - 80.0 / w) & (Y < ccy + 70.0 / w)
    col &= inzone
    ccl = ndi.label(col, structure=np.ones((3, 3, 3)))[0]
    # keep components touching the body line
    # (the line extended along its end tangents, so that a sacrum or a top vertebra
    # beyond the detected body line, separate from the rest across a disc, is kept)
    steps = np.arange(1.0, 40.0 / w)[:, None]
    line = np.vstack([pts[0] - steps * tan[0], pts, pts[-1] + steps * tan[-1]])
    kb = np.clip(np.round(line[:, [2, 1, 0]]).astype(int), 0, [nz - 1, ny - 1, nx - 1])
    ids = np.unique(ccl[kb[:, 0], kb[:, 1], kb[:, 2]])
    ids = ids[ids > 0]
    col = np.isin(ccl, ids)
    del ccl

    # order discs cranial -> caudal (descending z)
    order = np.argsort(-disc_c[:, 2])
    disc_c, disc_n, prom, disc_t = disc_c[order], disc_n[order], prom[order], disc_t[order]
    inferred = inferred[order]
    nd = len(disc_c)
    dists = [plane_dist(i) for i in range(nd)]
    # behind the canal the bands are cut by planes tilted half-way between the disc's own
    # plane (which carries the lordotic wedge of the disc) and the perpendicular to the body
    # line (which the arches follow, but which is unsure near the line's ends); on 3 mm
    # grids, where these bands decide the arch borders, the disc planes alone gave L4's
    # laminae to L5 (real CT and six noisy copies of it, mean vertebra Dice: 0.860-0.886
    # with the disc planes, 0.875-0.900 with the line's perpendicular, 0.883-0.901 half-way)
    back_n = disc_n + disc_t
    back_n /= np.linalg.norm(back_n, axis=1, keepdims=True)
    bdists = [plane_dist(i, back_n) for i in range(nd)]
    margin = 4.0 / w
    markers = np.zeros(hu.shape, np.uint16)
    # vertebra markers: in the body column between the disc planes; behind the body the
    # band is moved caudally (inferior articular and spinous processes reach below their
    # body's lower disc plane) and a wider gap is left unmarked, where the watershed puts
    # the border in the facet-joint gaps
    front = Y < ccy - BODY_FRONT_OF_CANAL_MM / w
    gap_mm = POSTERIOR_GAP_MM if w > FACET_RESOLVED_MM else POSTERIOR_GAP_FINE_MM
    shift, margin_p = POSTERIOR_SHIFT_MM / w, gap_mm / w
    upper_shift = POSTERIOR_UPPER_SHIFT_MM / w
    for s in range(nd + 1):
        sacrum = s == nd  # no facet below; its alae reach towards the sacro-iliac joints
        side = dx < (SACRUM_HALF_WIDTH_MM if sacrum else 30.0) / w
        m_front = col & side & front
        m_back = col & side & ~front
        if s > 0:
            m_front &= dists[s - 1] < -margin   # below the disc above
            m_back &= bdists[s - 1] < -(margin_p + upper_shift)
        if s < nd:
            m_front &= dists[s] > margin        # above the disc below
            # (the top vertebra is often partial, its disc plane the least sure: no shift)
            m_back &= bdists[s] > (margin_p if s == 0 else margin_p - shift)
        if sacrum:
            if nd:
                # the L5/S1 plane slopes up backwards (sacral slope): extended behind the
                # canal it would give L5's spinous process to the sacrum
                m_back &= Z < disc_c[s - 1][2] + margin_p
            m_front &= Y > ccy - PELVIS_FRONT_MM / w
        if sacrum and nd:
            # in front of the canal, only bone joined to the sacrum's top without passing
            # through the ilia: the pubic symphysis lies below the canal's lowest tracked
            # slice, within PELVIS_FRONT_MM of it, and joins the sacrum only through the
            # pelvic ring (the lower sacrum, whose thin cortex may break at SURFACE_HU, lies
            # behind the canal's line)
            lab, nl = ndi.label(col & (dx < ILIUM_FROM_MM / w), structure=np.ones((3, 3, 3)))
            top = lab[m_front & (dists[nd - 1] > -SACRUM_TOP_MM / w)]
            m_front &= np.isin(lab, np.unique(top[top > 0]))
            del lab
        markers[m_front | m_back] = s + 1
    # contrast-filled great vessels touching the bodies (aorta, vena cava) are not bone: their
    # cores become background markers, and the watershed draws the border on the vessel wall
    vessel = _vessel_cores(col & front, col & ~front, bx_f, by_f, w)
    if vessel.any():
        near = ndi.binary_dilation(vessel, _in_plane(0), iterations=max(int(round(VESSEL_RIM_MM / w)), 1))
        markers[near & (markers <= nd + 1)] = 0
        markers[vessel] = OTHER
        del near
    del front, vessel
    markers[col & (dx > 75.0 / w)] = OTHER
    if nd:
        # below the lowest disc, bone far in front of the canal is the pelvic ring (pubis),
        # joined to the sacrum through the ilia: it must not become sacrum
        below = col & (dists[nd - 1] < -margin)
        markers[below & (Y < ccy - PELVIS_FRONT_MM / w)] = OTHER
        # and bone beside the sacrum beyond the sacro-iliac joints is ilium
        markers[below & (dx > ILIUM_FROM_MM / w)] = OTHER
        del below
    # disc markers: the low-HU middle of each disc, so disc voxels above SURFACE_HU
    # (nucleus, partial volume) are not given to a vertebra
    disc_rad2 = []
    for i in range(nd):
        c = disc_c[i]
        d = dists[i]
        rad2 = (X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2 - d ** 2
        # (the radii compared later, kept as masks: a float64 grid per disc is 8x the memory)
        disc_rad2.append({r: rad2 < (r / w) ** 2 for r in (20.0, DISC_MAX_RADIUS_MM)})
        m = (np.abs(d) <= max(0.6, 1.5 / w)) & (rad2 < (12.0 / w) ** 2) & (hu < BONE_HU) & (hu > -100)
        del rad2
        markers[m & (markers == 0) | m & (markers <= nd + 1) & (hu < SURFACE_HU)] = DISC_ID + i
    # watershed on the gradient magnitude, confined to the column and disc zones
    ca = sitk.GetArrayFromImage(sitk.GradientMagnitudeRecursiveGaussian(wimg, sigma=max(0.7 * w, 1.0)))
    dzone = np.zeros(hu.shape, bool)
    for i in range(nd):
        dzone |= (np.abs(dists[i]) < 8.0 / w) & disc_rad2[i][20.0]
    ca[~(col | dzone)] = ca.max() * 2 + 1.0
    cost = sitk.GetImageFromArray(ca)
    del ca, dzone
    ws = sitk.GetArrayFromImage(sitk.MorphologicalWatershedFromMarkers(
        cost, sitk.GetImageFromArray(markers), markWatershedLine=False, fullyConnected=True))
    seg = ws.astype(np.uint16)
    seg[~col] = 0
    seg[seg == OTHER] = 0
    seg[seg >= DISC_ID] = 0
    rep.step(0.7, "naming levels")

    # ---- naming from the sacrum upward: segment nd+1 (lowest) is the sacrum
    counts = np.bincount(seg.ravel(), minlength=nd + 2)[1:nd + 2] * w ** 3
    flags: list[Flag] = []
    order_caudal = list(range(nd + 1, 0, -1))  # seg ids caudal -> cranial
    # the naming anchor: the lowest segment must be a sacrum, bulkier than a vertebra bounded
    # by two discs and with alae (wide in front of the canal); otherwise (a thoracic or
    # partial scan) the names are only a guess and are flagged so
    full = counts[1:nd]  # segments 2..nd lie between two discs
    front_x = np.nonzero(((seg == nd + 1) & (Y < ccy - SACRUM_FRONT_MM / w)).any(axis=(0, 1)))[0]
    sacrum_width = (np.ptp(front_x) + 1) * w if len(front_x) else 0.0
    sacrum_seen = (len(full) >= 1 and counts[nd] >= SACRUM_BULK * float(np.median(full))
                   and sacrum_width >= SACRUM_MIN_WIDTH_MM)
    # a transitional lumbosacral junction: the lowest mobile vertebra's transverse process
    # meeting the sacral ala (beyond the facet joints), fused or articulating
    if sacrum_seen and nd >= 1:
        lat = dx > SACRALISATION_LATERAL_MM / w
        touch = (seg == nd) & lat & ndi.binary_dilation((seg == nd + 1) & lat)
        if touch.any():
            # a bony bar, not noise: bone (> BONE_HU) once smoothed over a voxel (phantom with
            # 60-100 HU of noise: 178-238 mm^2 of contact, 0-11 of it bone; its fused L5
            # 72-108 mm^2, all bone, 126 with the noise)
            box = padded_box(touch, 3)
            touch[box] &= ndi.gaussian_filter(np.asarray(hu[box], np.float32), 1.0) > BONE_HU
        if touch.sum() * w * w >= SACRALISATION_CONTACT_MM2:
            flags.append(Flag(FlagKind.SACRALISED_L5, "transitional lumbosacral anatomy: the lowest lumbar vertebra's transverse "
                         "process meets the sacrum (sacralised L5?); confirm the count", ("L5", "S1")))
    # the second anchor: the last rib-bearing vertebra is T12
    ribbed = _rib_bearing(markers, surf, dx, Y, ccy, w,
                          order_caudal[3:] if sacrum_seen else order_caudal)
    above = order_caudal[1:]  # mobile vertebrae, position 1 = just above the sacrum
    rib_pos = [p for p, sid in enumerate(above, start=1) if sid in ribbed]
    # without a sacrum, the ribs alone: the lowest rib-bearing segment is T12 (a thoracolumbar
    # scan ending above the sacrum, a thoracic one), unless six or more rib-free segments lie
    # below it (then its lowest is most likely a sacrum not recognised)
    rib_low = min((order_caudal.index(sid) for sid in ribbed), default=None)
    from_ribs = not sacrum_seen and rib_low is not None and rib_low <= 5
    # the first rib: the most cranial rib-bearing vertebra with a rib-free one above it in view
    # (C7) is T1; with the last rib also in view, the twelve rib-bearing vertebrae must agree
    rib_top = max((order_caudal.index(sid) for sid in ribbed), default=None)
    # (C7 whole in view: a vertebra cut by the top of the view may have its ribs out of view)
    first_rib = (not sacrum_seen and rib_top is not None and rib_top + 1 < len(order_caudal)
                 and len(full) >= 1
                 and counts[order_caudal[rib_top + 1] - 1] >= FIRST_RIB_ABOVE_FRACTION * float(np.median(full)))
    both_ribs = first_rib and from_ribs and rib_low > 0  # a rib-free vertebra above and below
    ribs_count_agree = both_ribs and rib_top - rib_low == 11
    if both_ribs and not ribs_count_agree:
        flags.append(Flag(FlagKind.ANCHORS_DISAGREE, f"the first and the last rib disagree ({rib_top - rib_low + 1} "
                          "rib-bearing vertebrae, not 12): levels counted from the last rib (T12); confirm the count"))
    elif first_rib and not both_ribs:
        flags.append(Flag(FlagKind.COUNTED_FROM_RIBS, "no sacrum and no rib-free vertebra below the ribs in view: levels are "
                          "counted from the first rib (T1, with C7 above it); the last rib is not in view to check "
                          "the count; confirm the level"))
        from_ribs = False
    elif first_rib:  # the two rib counts agree
        pass
    elif from_ribs and rib_low == 0:
        flags.append(Flag(FlagKind.LOWEST_CARRIES_RIBS, "no sacrum in view and the lowest vertebra in view carries ribs: named T12 as "
                     "the last rib-bearing vertebra, but it may be a higher one; confirm the level"))
    elif from_ribs:
        flags.append(Flag(FlagKind.COUNTED_FROM_RIBS, f"no sacrum in view: levels are counted from the last rib-bearing vertebra "
                     f"(T12), {rib_low} rib-free below it; confirm the level"))
    elif not sacrum_seen:
        # no landmark: the names are relative to one assumed level (the lowest as S1: a sacrum
        # cut by the field of view is the commonest reason it is not recognised)
        flags.append(Flag(FlagKind.LEVEL_UNKNOWN, "level unknown: neither a sacrum nor ribs recognised in view; the names "
                     "assume the lowest vertebra in view is S1. Name one vertebra to rename them all"))
    n_lumbar = 5
    if sacrum_seen and rib_pos:
        n_lumbar = min(rib_pos) - 1  # rib-free vertebrae between the sacrum and the ribs
        if n_lumbar == 6:
            flags.append(Flag(FlagKind.TRANSITIONAL_L6, "transitional anatomy: L6 (six rib-free vertebrae between the sacrum "
                         "and the last rib-bearing vertebra)", ("L6",)))
        elif n_lumbar == 4:
            flags.append(Flag(FlagKind.LUMBAR_RIB, "ribs on the fifth vertebra above the sacrum: a lumbar rib on L1, or four "
                         "lumbar vertebrae (sacralised L5?); confirm the count", ("L1",)))
            n_lumbar = 5
        elif n_lumbar != 5:
            flags.append(Flag(FlagKind.ANCHORS_DISAGREE, f"the sacrum and the ribs disagree ({n_lumbar} rib-free vertebrae): "
                         "levels counted from the sacrum; confirm the count"))
            n_lumbar = 5
    elif sacrum_seen and nd >= 7:
        flags.append(Flag(FlagKind.TRANSITIONAL_UNSEEN, "seven or more vertebrae above the sacrum and no ribs in view: a transitional "
                     "spine (L6) cannot be told from T11 in view; named as five lumbar vertebrae, "
                     "confirm the count"))
    lumbar = (["L6"] if n_lumbar == 6 else []) + ["L5", "L4", "L3", "L2", "L1"]
    names_up = ["S1"] + lumbar + [f"T{n}" for n in range(12, 0, -1)] + [f"C{n}" for n in range(7, 0, -1)]
    if from_ribs:
        names_up = names_up[names_up.index("T12") - rib_low:]
    elif first_rib:
        names_up = names_up[names_up.index("T1") - rib_top:]
    names_by_seg = {sid: names_up[n] for n, sid in enumerate(order_caudal) if n < len(names_up)}
    # drop tiny partial segments (less than 0.3 cm^3)
    present = [sid for sid in order_caudal if counts[sid - 1] > 300.0 and sid in names_by_seg]
    for i in np.flatnonzero(inferred):  # disc i lies between segments i + 1 and i + 2
        pair = "-".join(names_by_seg.get(sid, "?") for sid in (i + 1, i + 2))
        flags.append(Flag(FlagKind.COLLAPSED_DISC, f"{pair}: no disc space seen, only one bright band (a collapsed disc, or a "
                     "fusion?): the vertebrae are split there; confirm the count", (pair,)))
    # a vertebra between two discs much smaller than its whole neighbours: one body split by
    # a false disc (or a neighbour holding two bodies): the count above it is in doubt (a 3 mm
    # phantom with a 6 mm slip split L1 into 0.37 and 0.58 of a vertebra, and named T12 too)
    for sid in range(2, nd + 1):
        nb = [counts[n - 1] for n in (sid - 1, sid + 1) if 2 <= n <= nd]
        if nb and counts[sid - 1] < SPLIT_BODY_FRACTION * max(nb):
            name = names_by_seg.get(sid, "?")
            flags.append(Flag(FlagKind.COUNT_IN_DOUBT, f"{name}: a vertebra {counts[sid - 1] / max(nb):.0%} of its "
                              "neighbour's volume: one body split in two, or two in one?; confirm the count",
                              (name,)))
            break
    ribs_agree = (sacrum_seen and bool(rib_pos) or ribs_count_agree) and not flags

    if sacrum_seen:
        _add_open_marrow(seg, nd + 1, surf, col | canal, hu, canal, w)

    # ---- discs: low-HU voxels between the endplates, within the body footprint
    rep.step(0.8, "disc labels")
    disc_lab = np.zeros(hu.shape, np.uint16)
    disc_info = {}
    for i in range(nd):
        upper_seg, lower_seg = i + 1, i + 2
        if upper_seg not in names_by_seg:
            continue
        up_label = L.vertebra_label(names_by_seg[upper_seg])
        c, n = disc_c[i], disc_n[i]
        d = dists[i]
        m = (np.abs(d) < 8.0 / w) & disc_rad2[i][DISC_MAX_RADIUS_MM] & (hu > -100) & (hu <= 200)
        # in front of the canal's centre: between L5's and S1's articular processes (the
        # facet joint) both segments are near too (a herniation still reaches the canal's front)
        m &= ~canal & ((ws == DISC_ID + i) | ~col) & (Y < ccy)
        m &= _between(seg == upper_seg, seg == lower_seg, n if n[2] > 0 else -n, int(round(DISC_REACH_MM / w)))
        lab_i, nl = ndi.label(m)
        if nl:
            cc = lab_i[int(round(c[2])), int(round(c[1])), int(round(c[0]))]
            if cc == 0:
                cc = np.argmax(np.bincount(lab_i[m])[1:]) + 1
            m = lab_i == cc
        dl = L.disc_label(up_label)
        # the endplate surface at the half-way HU between disc and bone, not at SURFACE_HU:
        # partial-volume voxels darker than that on the disc's faces belong to the disc (the
        # disc heights of the motor units are measured on these labels)
        face = ndi.binary_dilation(m) & ~m & ((seg == upper_seg) | (seg == lower_seg)) \
            & (hu < ENDPLATE_HU) & (np.abs(d) < 8.0 / w)
        seg[face] = 0
        disc_lab[(m | face) & (disc_lab == 0)] = dl
        disc_info[dl] = (c, n)

    # ---- compose labels on the working grid
    out_w = np.zeros(hu.shape, np.uint16)
    lat_mm = dx * w
    for sid in present:
        m = seg == sid
        if sid in ribbed:  # ribs are not part of their vertebra
            m = _without_ribs(m, surf, hu, lat_mm)
        elif names_by_seg[sid].startswith("T"):  # (ribs not recognised: cut far out)
            m &= ~(lat_mm > RIB_CUT_MM)
        out_w[m] = L.vertebra_label(names_by_seg[sid])
    del lat_mm
    _fill_enclosed_marrow(out_w, canal)
    _smooth_vertebra_surfaces(out_w, SURFACE_SMOOTH_VOX, canal)
    out_w[(out_w == 0) & (disc_lab > 0)] = disc_lab[(out_w == 0) & (disc_lab > 0)]
    sac = hu < 60
    out_w[(out_w == 0) & canal & sac & zvalid[:, None, None]] = L.CANAL
    rep.step(0.9, "mapping to input grid")
    # the working grids are done with: freed before the input-grid labels are made
    del dists, bdists, disc_rad2, markers, seg, ws, disc_lab, col, canal, surf, filled, bone, sac, hu
    release_freed_memory()
    labels = _to_input_grid(out_w, wimg, volume)

    # ---- results
    levels = [names_by_seg[s] for s in sorted(present)]  # seg ids ascend cranial -> caudal
    conf = {}
    for sid in present:
        name = names_by_seg[sid]
        # named from a landmark, every level alike: the field-of-view suite (phantoms and the
        # real CT, 51 variants, 2026-12-02) found no CT level named wrong without a flag, and
        # the former 0.03-per-level fall from the sacrum was not measured but assumed
        base = 0.95 if name == "S1" else 0.9
        # (the flags' kinds cap these: CONFIDENCE_CAP in result.py)
        conf[name] = round(float(np.clip(base, 0.05, 1.0)), 2)
    # LPS geometry from working-grid voxel coords
    org = np.array(wimg.GetOrigin())

    def lps(p):
        return org + np.asarray(p, float) * w

    centerline = lps(pts)
    zc = np.nonzero(zvalid)[0]  # where the canal was tracked (not clamped beyond it)
    canal_line = lps(np.column_stack([cx[zc], cy[zc], zq[zc]]))
    discs_out = {int(k): {"center_lps": lps(c).tolist(), "normal_lps": (n / np.linalg.norm(n)).tolist()}
                 for k, (c, n) in disc_info.items()}
    rep.step(1.0, "done")
    anchor = (Anchor.SACRUM_AND_RIBS if ribs_agree else Anchor.SACRUM) if sacrum_seen else (
        Anchor.BOTH_RIBS if ribs_count_agree else Anchor.LAST_RIB if from_ribs
        else Anchor.FIRST_RIB if first_rib else Anchor.ASSUMED)
    origin_pos = rib_low if from_ribs else rib_top if first_rib else 0
    evidence = LevelEvidence(anchor, counted={names_by_seg[sid]: abs(order_caudal.index(sid) - origin_pos)
                                              for sid in present})
    return SegmentationResult(labels=labels, levels=levels, confidence=conf, flags=flags,
                              evidence=evidence, backend="classical-ct",
                              extra={"centerline_lps": centerline, "discs": discs_out,
                                     "disc_prominence": prom.tolist(),
                                     "canal_lps": canal_line})


def _nearest_on_input_grid(lab_w: np.ndarray, wimg: sitk.Image, ref: tuple,
                           flag_w: np.ndarray | None = None, cut=None) -> np.ndarray:
    """Nearest-neighbour resampling of working-grid labels onto the grid ``ref`` = (size,
    origin, spacing, direction): uint16 labels. With ``flag_w`` (a working-grid mask),
    ``cut(slices, labels, flag)`` is called on each slab of the output with the flag
    resampled alongside (it edits ``labels`` in place).

    The labels are renumbered 0..n-1 for the resampling, with the flag as the lowest bit
    (uint8 when that fits in 256 values: nearest neighbour picks one voxel for both, so
    the renumbering changes nothing), and numbered back into the one full-size output array:
    a third of the memory of a uint16 resample and its copy.
    """
    values = np.unique(lab_w)
    bits = 1 if flag_w is not None else 0
    small = values.size << bits <= 256
    ctype = np.uint8 if small else np.uint16
    number = np.zeros(int(values[-1]) + 1, ctype)  # label -> its renumbering (uint16 labels)
    number[values] = np.arange(values.size, dtype=ctype) << bits
    compact = number[lab_w]
    if bits:
        compact |= flag_w.astype(ctype)
    img = sitk.GetImageFromArray(compact)
    del compact
    release_freed_memory()  # the working-grid temporaries, before the full-size arrays
    img.CopyInformation(wimg)
    size, origin, spacing, direction = ref
    res = sitk.Resample(img, size, sitk.Transform(), sitk.sitkNearestNeighbor, origin, spacing,
                        direction, 0, sitk.sitkUInt8 if small else sitk.sitkUInt16)
    del img
    idx = sitk.GetArrayViewFromImage(res)
    out = np.empty(idx.shape, np.uint16)
    lut = values.astype(np.uint16)
    for k in range(0, idx.shape[0], 32):  # slabs: no full-size index or mask temporaries
        sl = idx[k:k + 32]
        np.take(lut, sl >> bits, out=out[k:k + 32])
        if bits and cut is not None:
            cut(slice(k, k + 32), out[k:k + 32], (sl & 1).astype(bool))
    del idx, res
    return out


def _to_input_grid(out_w: np.ndarray, wimg: sitk.Image, volume: Volume) -> Volume:
    """Nearest-neighbour labels on the input grid; vertebra surfaces at ``SURFACE_HU``."""
    # the input grid (size, origin, spacing, direction): no full-size reference image
    ref = ([int(n) for n in volume.size_ijk], volume.origin, volume.spacing,
           tuple(volume.direction.ravel()))
    same = np.allclose(np.array(wimg.GetSpacing()), volume.spacing)
    if same:
        return volume.with_array(_nearest_on_input_grid(out_w, wimg, ref), modality="SEG")
    # finer input grid: grow vertebra labels by one working voxel, then cut at SURFACE_HU
    vert = (out_w > 0) & (out_w < 100)
    grown = ndi.grey_dilation(np.where(vert, out_w, 0), size=(3, 3, 3))
    grow_mask = (out_w == 0) & (grown > 0)
    lab2 = out_w.copy()
    lab2[grow_mask] = grown[grow_mask]
    del grown, grow_mask
    core = ndi.binary_erosion(vert, iterations=1)
    arr = volume.array

    def cut(sl, lab, core_in):  # vertebra voxels outside the core only where bone
        isv = (lab > 0) & (lab < 100)
        keep = ~isv | core_in | (arr[sl] > SURFACE_HU)
        lab[~keep] = 0

    # the grown labels and the eroded core, resampled together; voxels that were only
    # grown (outside the working label) but are not bone: dropped
    lab_in = _nearest_on_input_grid(lab2, wimg, ref, core.astype(np.uint8), cut)
    del lab2, core
    return volume.with_array(lab_in, modality="SEG")
