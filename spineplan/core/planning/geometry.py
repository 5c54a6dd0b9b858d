"""Geometry of instruments against a label map: rays, cylinders, boxes (LPS mm).

All functions work on a cropped region of the label map around the instrument,
so that re-checking a plan while dragging stays fast on large scans.
"""

from __future__ import annotations

import numpy as np

from ..volume import Volume

__all__ = ["sampling_stride", "unit", "angle_to_sagittal_deg", "angle_to_axial_deg", "cylinder_voxels",
           "box_voxels", "skin_exit_lps", "points_along"]


def unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    n = np.linalg.norm(v)
    if n == 0:
        raise ValueError("zero-length direction")
    return v / n


def angle_to_sagittal_deg(direction) -> float:
    """Angle between a direction and the patient's sagittal plane (normal = LPS x)."""
    return float(np.degrees(np.arcsin(min(1.0, abs(unit(direction)[0])))))


def angle_to_axial_deg(direction) -> float:
    """Angle between a direction and the axial plane (normal = LPS z)."""
    return float(np.degrees(np.arcsin(min(1.0, abs(unit(direction)[2])))))


SAMPLING_MM = 1.0  # instrument checks sample the label map at about this spacing


def sampling_stride(vol: Volume) -> int:
    """Voxel stride that samples ``vol`` at about SAMPLING_MM (1 on scans of 1 mm or coarser)."""
    return max(1, int(round(SAMPLING_MM / min(vol.spacing))))


def _crop_grid(vol: Volume, lo_lps: np.ndarray, hi_lps: np.ndarray):
    """Voxel indices covering an LPS box (every ``sampling_stride``-th voxel), and their LPS."""
    corners = np.array([[x, y, z] for x in (lo_lps[0], hi_lps[0]) for y in (lo_lps[1], hi_lps[1])
                        for z in (lo_lps[2], hi_lps[2])])
    ijk = vol.ijk_points_from_lps(corners)
    lo = np.floor(ijk.min(0)).astype(int) - 1
    hi = np.ceil(ijk.max(0)).astype(int) + 2
    size = np.array(vol.size_ijk)
    lo, hi = np.clip(lo, 0, size), np.clip(hi, 0, size)
    if np.any(hi <= lo):
        return None, None
    st = sampling_stride(vol)
    ii, jj, kk = (np.arange(lo[n], hi[n], st) for n in range(3))
    K, J, I = np.meshgrid(kk, jj, ii, indexing="ij")
    idx = np.stack([I.ravel(), J.ravel(), K.ravel()], 1)
    return idx, vol.lps_points_from_ijk(idx.astype(float))


def cylinder_voxels(vol: Volume, p0, p1, radius: float):
    """Voxels (ijk (N, 3), LPS (N, 3)) whose centres lie in the cylinder p0->p1 of ``radius``."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    pad = radius + max(vol.spacing)
    idx, lps = _crop_grid(vol, np.minimum(p0, p1) - pad, np.maximum(p0, p1) + pad)
    if idx is None:
        return np.zeros((0, 3), int), np.zeros((0, 3))
    axis = p1 - p0
    length = np.linalg.norm(axis)
    axis = axis / length
    q = lps - p0
    t = q @ axis
    r2 = np.einsum("ij,ij->i", q, q) - t * t
    inside = (t >= 0) & (t <= length) & (r2 <= radius * radius)
    return idx[inside], lps[inside]


def box_voxels(vol: Volume, center, axes: np.ndarray, half_sizes):
    """Voxels inside an oriented box (axes: 3 unit column vectors, half sizes in mm)."""
    c = np.asarray(center, float)
    A = np.asarray(axes, float)
    h = np.asarray(half_sizes, float)
    ext = np.abs(A) @ h + max(vol.spacing)
    idx, lps = _crop_grid(vol, c - ext, c + ext)
    if idx is None:
        return np.zeros((0, 3), int), np.zeros((0, 3))
    loc = (lps - c) @ A
    inside = np.all(np.abs(loc) <= h, axis=1)
    return idx[inside], lps[inside]


def points_along(p0, p1, step: float = 0.5) -> np.ndarray:
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    n = max(int(np.ceil(np.linalg.norm(p1 - p0) / step)), 1)
    return p0 + (p1 - p0) * np.linspace(0, 1, n + 1)[:, None]


def skin_exit_lps(image: Volume, start, direction, *, air_hu: float = -400.0,
                  max_mm: float = 300.0, step: float = 1.0):
    """First point along ``start + t * direction`` where the body ends (value < air_hu).

    Returns None when the ray leaves the image before reaching air (entry not in view).
    """
    d = unit(direction)
    ts = np.arange(0.0, max_mm, step)
    pts = np.asarray(start, float) + ts[:, None] * d
    ijk = np.rint(image.ijk_points_from_lps(pts)).astype(int)
    size = np.array(image.size_ijk)
    inside = np.all((ijk >= 0) & (ijk < size), axis=1)
    vals = np.full(len(ts), np.nan)
    v = ijk[inside]
    vals[inside] = image.array[v[:, 2], v[:, 1], v[:, 0]]
    # the skin is the last body voxel before a run of air (ignore small air pockets inside)
    air = vals < air_hu
    for n in range(len(ts)):
        if not inside[n]:
            return None
        if air[n] and np.all(air[n:n + 5] | ~inside[n:n + 5]):
            return pts[max(n - 1, 0)]
    return None
