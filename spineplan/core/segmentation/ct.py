"""Built-in classical CT spine segmenter (no model weights, CPU).

1. LPS-oriented copy of the CT (axis permutation/flips only, no resampling).
2. The spinal canal: per axial slice, a dark (< 70 HU) non-bone hole enclosed by bone,
   chained near the column's midline; its median left-right position is the midline.
3. A mid-sagittal slab (mean over a few mm around the midline): vertebral bodies are
   the bright regions anterior to the canal, separated by the darker discs. An Otsu
   threshold inside the body column splits them; each 2D component is one body, which
   handles disc tilt (lordosis, the sacral slope) naturally.
4. The 2D bodies, extruded across the body width, seed a watershed over the 3D spine
   bone mask so that posterior elements join their own body; borders fall in narrow
   joints (facets).
5. Discs: non-bone voxels between two consecutive bodies in the body footprint.
   Levels are named from the sacrum (the lowest, largest body) upward.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import SegmentationError
from ..tasks import Reporter
from ..volume import Volume
from . import labels as L
from .base import SegmentationResult

__all__ = ["segment_ct", "SURFACE_HU"]

SURFACE_HU = 110.0           # bone surface (partial-volume voxels, as in the references)
CANAL_MAX_HU = 70.0          # canal contents (CSF, fat, cord) are darker than marrow
CANAL_AREA_MM2 = (40.0, 900.0)
SLAB_HALF_WIDTH_MM = 5.0     # mid-sagittal slab
COLUMN_AP_MM = (4.0, 50.0)   # body column: this far anterior of the canal centre
BODY_HALF_WIDTH_MM = 22.0    # lateral extent of a body seed
MIN_BODY_AREA_MM2 = 300.0    # sagittal area of a body (lumbar ~ 900-1200 mm2)
NEAR_SPINE_MM = 50.0         # spine bone lies within this distance of the canal
SACRUM_MIN_AREA_MM2 = 600.0  # sagittal area of the sacral mass below the lowest body
SACRUM_HALF_WIDTH_MM = 30.0
SOFT_TISSUE_MAX_HU = 60.0
POSTERIOR_BELOW_MM = 22.0    # inferior articular and spinous processes reach below the body
POSTERIOR_ABOVE_MM = 12.0    # superior articular processes reach above it    # muscle/vessels stay below; discs (80-100) and bodies above


def _to_lps(volume: Volume):
    """An LPS-oriented array view (z, y, x) of the volume, its spacing and the inverse map."""
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


def _canal_chain(img, bone, sp, rep: Reporter):
    nz = img.shape[0]
    pix = sp[1] * sp[2]
    cands, labs = [], []
    for z in range(nz):
        if z % 16 == 0:
            rep.step(z / nz, "tracking the spinal canal")
        holes = ndimage.binary_fill_holes(bone[z]) & ~bone[z]
        lab, n = ndimage.label(holes)
        labs.append(lab)
        cz = []
        if n:
            idx = np.arange(1, n + 1)
            areas = ndimage.sum(holes, lab, idx) * pix
            means = ndimage.mean(img[z], lab, idx)
            ok = [k + 1 for k in range(n) if CANAL_AREA_MM2[0] <= areas[k] <= CANAL_AREA_MM2[1]
                  and means[k] < CANAL_MAX_HU]
            for k, (cy, cx) in zip(ok, ndimage.center_of_mass(holes, lab, ok) if ok else []):
                y0, x0 = int(cy), int(cx)
                ahead = img[z, max(y0 - int(35 / sp[1]), 0):y0,
                            max(x0 - int(6 / sp[2]), 0):x0 + int(6 / sp[2]) + 1] > 80
                score = float(ahead.mean()) if ahead.size else 0.0
                if score > 0.15:
                    cz.append((k, cy, cx, score))
        cands.append(cz)
    good = [c for cz in cands for c in cz if c[3] > 0.35] or [c for cz in cands for c in cz]
    if len(good) < 3:
        raise SegmentationError("no spinal canal found: is this a CT of the spine?")
    mid_x = float(np.median([c[2] for c in good]))
    mid_y = float(np.median([c[1] for c in good]))
    centres = np.full((nz, 2), np.nan)
    mask = np.zeros(img.shape, bool)
    prev = mid_y
    for z in range(nz):
        best, cost_best = None, np.inf
        for k, cy, cx, score in cands[z]:
            if abs(cx - mid_x) * sp[2] > 12 or abs(cy - prev) * sp[1] > 25:
                continue
            cost = abs(cx - mid_x) * sp[2] + 0.5 * abs(cy - prev) * sp[1] - 10 * score
            if cost < cost_best:
                best, cost_best = (k, cy, cx), cost
        if best is not None:
            centres[z] = best[1:]
            mask[z] = labs[z] == best[0]
            prev = best[1]
    ok = ~np.isnan(centres[:, 0])
    zz = np.arange(nz)
    track = np.stack([np.interp(zz, zz[ok], ndimage.median_filter(centres[ok, d], 5, mode="nearest"))
                      for d in range(2)], 1)
    track = ndimage.gaussian_filter1d(track, sigma=max(4.0 / sp[0], 1.0), axis=0)
    return track, mask, mid_x


def _tidy_bodies(comp, keep, S, column, thr, sp):
    """Merge pieces of one body (overlapping in z) and split two bodies fused across a
    thin disc (a region much taller than the others), in the sagittal slab."""
    regions = [comp == k for k in keep]

    def zr(m):
        z = np.nonzero(m)[0]
        return z.min(), z.max()

    merged = True
    while merged and len(regions) > 1:
        merged = False
        regions.sort(key=lambda m: zr(m)[0])
        for a in range(len(regions) - 1):
            (a0, a1), (b0, b1) = zr(regions[a]), zr(regions[a + 1])
            overlap = min(a1, b1) - max(a0, b0) + 1
            if overlap > 0.3 * min(a1 - a0 + 1, b1 - b0 + 1):
                regions[a] = regions[a] | regions[a + 1]
                del regions[a + 1]
                merged = True
                break
    heights = np.array([(zr(m)[1] - zr(m)[0] + 1) * sp[0] for m in regions])
    typical = float(np.median(heights)) if len(heights) else 0.0
    out = []
    regions_sorted = sorted(zip(regions, heights), key=lambda mh: zr(mh[0])[0])
    for n_, (m, h) in enumerate(regions_sorted):
        # never split the lowest region: a tall one there is the sacrum (S1 and below)
        if n_ > 0 and len(regions) >= 3 and h > 1.6 * typical:
            for t in np.arange(thr + 5.0, thr + 150.0, 5.0):
                parts, n = ndimage.label(ndimage.binary_opening(m & (S > t), structure=np.ones((2, 1), bool)))
                sizes = ndimage.sum(parts > 0, parts, range(1, n + 1)) * sp[0] * sp[1] if n else []
                bigs = [k + 1 for k in range(n) if sizes[k] >= MIN_BODY_AREA_MM2 / 2]
                if len(bigs) >= 2:
                    # give every voxel of the region to the nearest of the pieces
                    seeds = np.zeros(m.shape, np.int32)
                    for i, k in enumerate(bigs):
                        seeds[parts == k] = i + 1
                    _, (iz, iy) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
                    near = seeds[iz, iy]
                    out.extend(m & (near == i + 1) for i in range(len(bigs)))
                    break
            else:
                out.append(m)
        else:
            out.append(m)
    out.sort(key=lambda m: zr(m)[0])
    comp2 = np.zeros(comp.shape, np.int32)
    for i, m in enumerate(out):
        comp2[m] = i + 1
    return comp2


def _limit_to_body_levels(ws: np.ndarray, seeds: np.ndarray, sp) -> None:
    """A vertebra's posterior elements stay near its body's height: voxels the watershed gave
    to a vertebra far above or below its body go to the body whose height range is nearest."""
    ids = [int(v) for v in np.unique(seeds) if v > 0]
    if len(ids) < 2:
        return
    rng = {}
    for v in ids:
        z = np.nonzero((seeds == v).any(axis=(1, 2)))[0]
        rng[v] = (z.min(), z.max())
    nz = ws.shape[0]
    up, down = POSTERIOR_ABOVE_MM / sp[0], POSTERIOR_BELOW_MM / sp[0]
    zz = np.arange(nz)
    dist = np.stack([np.maximum(0, np.maximum(rng[v][0] - zz, zz - rng[v][1])) for v in ids], 1)
    nearest = np.array(ids)[np.argmin(dist, axis=1)]  # per z: the body level nearest in height
    for v in ids:
        lo, hi = rng[v][0] - down, rng[v][1] + up
        bad_z = (zz < lo) | (zz > hi)
        if not bad_z.any():
            continue
        m = (ws == v) & bad_z[:, None, None]
        ws[m] = np.broadcast_to(nearest[:, None, None], ws.shape)[m]


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=256)
    c = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * c) / np.maximum(w0, 1)
    m1 = ((hist * c).sum() - np.cumsum(hist * c)) / np.maximum(w1, 1)
    return float(c[np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def segment_ct(volume: Volume, *, progress=None, cancel=None) -> SegmentationResult:
    """Label vertebrae (with posterior elements), discs and the canal on a CT.

    Parameters
    ----------
    volume : Volume
        CT in HU in an axis-aligned orientation (any flips/permutation).

    Returns
    -------
    SegmentationResult
        Labels on the input grid, levels named from the sacrum upward, confidence and flags.
    """
    rep = Reporter(progress, cancel)
    if volume.modality not in ("CT", ""):
        raise SegmentationError(f"the CT segmenter needs a CT, not {volume.modality}")
    img, sp, back = _to_lps(volume)
    img = img.astype(np.float32)
    if img.max() < 300 or img.min() > -300:
        raise SegmentationError("values are not in Hounsfield units: is this a CT?")
    nz, ny, nx = img.shape
    rep.step(0.02, "bone mask")
    bone = img > SURFACE_HU
    track, canal, mid_x = _canal_chain(img, bone, sp, rep.sub(0.05, 0.35))
    rep.step(0.4, "finding vertebral bodies")
    # mid-sagittal slab S[z, y]
    hw = max(int(round(SLAB_HALF_WIDTH_MM / sp[2])), 1)
    x0, x1 = max(int(mid_x) - hw, 0), min(int(mid_x) + hw + 1, nx)
    S = ndimage.gaussian_filter(img[:, :, x0:x1].mean(axis=2), sigma=(1.0 / sp[0], 1.0 / sp[1]))
    yy = np.arange(ny)[None, :]
    ant = (track[:, 0:1] - yy) * sp[1]  # mm anterior of the canal centre
    column = (ant >= COLUMN_AP_MM[0]) & (ant <= COLUMN_AP_MM[1])
    if not (column & (S > SOFT_TISSUE_MAX_HU)).any():
        raise SegmentationError("the vertebral column is not in view")
    # bodies vs discs: the threshold that separates the most body-sized regions in the slab
    # (marrow of osteoporotic bodies can be only ~30 HU brighter than the discs)
    best = None
    for thr in np.arange(80.0, 260.0, 5.0):
        b = ndimage.binary_opening(column & (S > thr), structure=np.ones((2, 1), bool))
        c, n = ndimage.label(b)
        if n == 0:
            continue
        areas = ndimage.sum(b, c, range(1, n + 1)) * sp[0] * sp[1]
        big = int(np.sum(areas >= MIN_BODY_AREA_MM2))
        if best is None or big > best[0]:
            best = (big, thr, b, c, areas)
    if best is None or best[0] < 2:
        raise SegmentationError("fewer than two vertebral bodies found")
    _, thr, body2d, comp, areas = best
    keep = [k + 1 for k in range(len(areas)) if areas[k] >= MIN_BODY_AREA_MM2]
    comp = _tidy_bodies(comp, keep, S, column, thr, sp)
    keep = [k for k in range(1, int(comp.max()) + 1) if (comp == k).any()]
    zc = ndimage.center_of_mass(body2d, comp, keep)
    keep = [k for _, k in sorted(zip([c[0] for c in zc], keep))]  # caudal -> cranial
    rep.check()
    # the sacrum, in a slab window that also reaches behind the canal (the sacrum tilts back)
    ext = (ant >= -40.0) & (ant <= COLUMN_AP_MM[1])
    eb = ndimage.binary_opening(ext & (S > thr), structure=np.ones((2, 1), bool))
    ec, en = ndimage.label(eb)
    low = comp == keep[0]
    z_low = int(np.nonzero(low)[0].min())
    hits = ec[low & (ec > 0)]
    c_low = int(np.bincount(hits).argmax()) if hits.size else 0
    sacrum_2d = None
    lowest_is_s1 = False
    heights = [np.ptp(np.nonzero(comp == k)[0]) + 1 for k in keep]
    if len(heights) >= 3 and heights[0] >= 1.5 * np.median(heights[1:]):
        lowest_is_s1 = True  # a body much taller than the others: S1 fused with the sacrum
    if c_low and not lowest_is_s1:
        zs = np.nonzero(ec == c_low)[0]
        if zs.min() * sp[0] < z_low * sp[0] - 10.0 and (ec == c_low).sum() >= 2.0 * low.sum():
            lowest_is_s1 = True  # the lowest body continues into the sacral mass below
    if not lowest_is_s1 and en:
        areas_e = ndimage.sum(eb, ec, range(1, en + 1)) * sp[0] * sp[1]
        cz = ndimage.center_of_mass(eb, ec, range(1, en + 1))
        below = [k + 1 for k in range(en) if k + 1 != c_low and cz[k][0] < z_low and areas_e[k] >= SACRUM_MIN_AREA_MM2]
        if below:
            sacrum_2d = ec == max(below, key=lambda k: areas_e[k - 1])
    # 3D seeds: the 2D bodies extruded across the body width, on bone/marrow
    spine = np.zeros(img.shape, bool)
    xx = np.arange(nx)[None, :]
    for z in range(nz):
        cy, cx = track[z]
        d2 = ((np.arange(ny)[:, None] - (cy - 8 / sp[1])) * sp[1]) ** 2 + ((xx - cx) * sp[2]) ** 2
        near = d2 <= NEAR_SPINE_MM ** 2
        filled = ndimage.binary_fill_holes(bone[z] & near)
        spine[z] = filled & ~canal[z]
    seeds = np.zeros(img.shape, np.int32)
    bw = int(round(BODY_HALF_WIDTH_MM / sp[2]))
    for n_, k in enumerate(keep):
        zs, ys = np.nonzero(comp == k)
        for z, y in zip(zs, ys):
            lo, hi = max(int(mid_x) - bw, 0), min(int(mid_x) + bw + 1, nx)
            seeds[z, y, lo:hi] = np.where(img[z, y, lo:hi] > thr, n_ + 1, 0)
    if sacrum_2d is not None:
        sid = len(keep) + 1
        zs, ys = np.nonzero(sacrum_2d)
        sw = int(round(SACRUM_HALF_WIDTH_MM / sp[2]))
        lo, hi = max(int(mid_x) - sw, 0), min(int(mid_x) + sw + 1, nx)
        for z, y in zip(zs, ys):
            seeds[z, y, lo:hi] = np.where(img[z, y, lo:hi] > thr, sid, seeds[z, y, lo:hi])
    spine |= seeds > 0
    dist = ndimage.distance_transform_edt(spine, sampling=sp)
    cost = (255 - np.clip(dist * 20, 0, 254)).astype(np.uint8)
    markers = np.where(spine, seeds, -1).astype(np.int32)
    ws = ndimage.watershed_ift(cost, markers)
    ws[~spine] = 0
    ws[ws < 0] = 0
    _limit_to_body_levels(ws, seeds, sp)
    rep.step(0.8, "naming levels")
    vols = [float((ws == i + 1).sum()) for i in range(len(keep))]
    flags: list[str] = []
    names: dict[int, int] = {}
    ids = list(range(1, len(keep) + 1))
    extra_info = {"lowest_body_is_s1": lowest_is_s1, "sacrum_below_found": sacrum_2d is not None}
    if sacrum_2d is not None:
        names[len(keep) + 1] = L.SACRUM
        sacrum = True
    elif lowest_is_s1:
        names[1] = L.SACRUM
        ids = ids[1:]
        sacrum = True
    else:
        sacrum = False
    if not sacrum:
        flags.append("sacrum not recognised: levels counted from the lowest body, low confidence")
    order = [24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8]
    for i, sid in enumerate(ids[:len(order)]):
        names[sid] = order[i]
    out = np.zeros(img.shape, np.uint16)
    for sid, lab in names.items():
        out[ws == sid] = lab
    # discs: non-bone voxels between consecutive bodies inside the body column
    col3 = np.broadcast_to(column[:, :, None], img.shape) & (
        np.abs(np.arange(nx)[None, None, :] - mid_x) * sp[2] <= BODY_HALF_WIDTH_MM)
    chain = ([len(keep) + 1] if sacrum_2d is not None else []) + list(range(1, len(keep) + 1))
    for low_id, up_id in zip(chain[:-1], chain[1:]):
        if up_id not in names or low_id not in names or names[up_id] == L.SACRUM:
            continue
        up_m, low_m = out == names[up_id], out == names[low_id]
        if not up_m.any() or not low_m.any():
            continue
        zl = int(np.nonzero(low_m.any(axis=(1, 2)))[0].max())
        zu = int(np.nonzero(up_m.any(axis=(1, 2)))[0].min())
        z0, z1 = max(min(zl, zu) - 3, 0), min(max(zl, zu) + 4, nz)
        region = np.zeros(img.shape, bool)
        region[z0:z1] = col3[z0:z1] & (out[z0:z1] == 0) & (img[z0:z1] > -30) & (img[z0:z1] < thr + 40)
        # between the two bodies: below the upper body's voxels and above the lower body's
        below_up = np.zeros(img.shape, bool)
        above_low = np.zeros(img.shape, bool)
        below_up[:-1] = np.cumsum(up_m[::-1], axis=0)[::-1][1:] > 0
        above_low[1:] = np.cumsum(low_m, axis=0)[:-1] > 0
        region &= below_up & above_low
        c, nc = ndimage.label(region)
        if nc:
            sizes = ndimage.sum(region, c, range(1, nc + 1))
            out[c == 1 + int(np.argmax(sizes))] = L.disc_label(names[up_id])
    out[(out == 0) & canal] = L.CANAL
    levels = [L.vertebra_name(v) for v in L.craniocaudal_order({int(v) for v in names.values()})]
    conf = {lv: (0.9 if sacrum else 0.4) for lv in levels}
    rep.step(1.0, "done")
    return SegmentationResult(volume.with_array(back(out), modality="SEG"), levels=levels,
                              confidence=conf, flags=flags,
                              extra={"body_threshold_hu": thr, "midline_index": mid_x, **extra_info})
