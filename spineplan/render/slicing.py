"""Slice reformatting for the 2D views (numpy; scipy for oblique planes; no Qt, no GPU).

A view plane is defined in LPS by a centre, a screen-right axis and a screen-down
axis. Display conventions:

- radiological (default): axial and coronal show the patient's RIGHT on the screen's
  LEFT (screen-right = +x, the patient's left); axial has anterior at the top.
- neurological: axial and coronal show the patient's left on the screen's left.
- sagittal: anterior on the left, head at the top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.segmentation import labels as L
from ..core.volume import Volume

__all__ = ["ORIENTATIONS", "plane_axes", "trajectory_axes", "letter_of", "SliceRequest", "reslice", "edge_letters", "window_to_gray",
           "LABEL_COLORS", "label_rgba", "blend_labels"]

ORIENTATIONS = ("axial", "coronal", "sagittal")


def plane_axes(orientation: str, convention: str = "radiological"):
    """(screen-right, screen-down, normal) unit vectors in LPS for a view."""
    sx = 1.0 if convention == "radiological" else -1.0
    if orientation == "axial":
        right, down = np.array([sx, 0, 0.0]), np.array([0, 1.0, 0])
    elif orientation == "coronal":
        right, down = np.array([sx, 0, 0.0]), np.array([0, 0, -1.0])
    elif orientation == "sagittal":
        right, down = np.array([0, 1.0, 0]), np.array([0, 0, -1.0])
    else:
        raise ValueError(orientation)
    normal = np.cross(right, down)
    return right, down, normal




def trajectory_axes(entry_lps, target_lps, kind: str):
    """View axes for a plan: "along" (the trajectory lies across the screen, head up) or
    "down" (looking down the instrument from the entry, patient's left to the right)."""
    d = np.asarray(target_lps, float) - np.asarray(entry_lps, float)
    d = d / np.linalg.norm(d)
    if kind == "along":
        up = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([0.0, -1.0, 0.0])
        up = up - (up @ d) * d
        down = -up / np.linalg.norm(up)
        right = d
    elif kind == "down":
        x = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        right = x - (x @ d) * d
        right = right / np.linalg.norm(right)
        down = np.cross(d, right)
    else:
        raise ValueError(kind)
    return right, down, np.cross(right, down)


def letter_of(v) -> str:
    """Anatomical letter of the dominant direction of an LPS vector."""
    v = np.asarray(v, float)
    a = int(np.argmax(np.abs(v)))
    return ("L", "P", "S")[a] if v[a] > 0 else ("R", "A", "I")[a]


def edge_letters(orientation: str, convention: str = "radiological", axes=None) -> dict[str, str]:
    """Anatomical direction letters at the left, right, top and bottom edges of the view."""
    right, down, _ = axes if axes is not None else plane_axes(orientation, convention)
    return {"left": letter_of(-right), "right": letter_of(right), "top": letter_of(-down),
            "bottom": letter_of(down)}


@dataclass
class SliceRequest:
    center_lps: np.ndarray  # the point shown at the middle of the view (on the slice)
    right: np.ndarray
    down: np.ndarray
    mm_per_px: float
    width: int
    height: int

    def lps_from_px(self, x: float, y: float) -> np.ndarray:
        return (self.center_lps + (x - (self.width - 1) / 2) * self.mm_per_px * self.right
                + (y - (self.height - 1) / 2) * self.mm_per_px * self.down)

    def px_from_lps(self, p) -> tuple[float, float]:
        d = np.asarray(p, float) - self.center_lps
        return (float(d @ self.right) / self.mm_per_px + (self.width - 1) / 2,
                float(d @ self.down) / self.mm_per_px + (self.height - 1) / 2)


def reslice(volume: Volume, req: SliceRequest, order: int = 1, cval: float | None = None,
            window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Sample ``volume`` on the view plane; returns a (height, width) float32 array.

    ``window`` = (x0, y0, x1, y1) samples only the pixels [y0:y1, x0:x1] of the view, with
    exactly the values the whole view has there.
    """
    x0, y0, x1, y1 = window if window is not None else (0, 0, req.width, req.height)
    xs = (np.arange(x0, x1) - (req.width - 1) / 2) * req.mm_per_px
    ys = (np.arange(y0, y1) - (req.height - 1) / 2) * req.mm_per_px
    # ijk = A @ lps + b, with lps = c + x*right + y*down: separable in x and y
    m = volume.ijk_from_lps()
    A, b = m[:3, :3], m[:3, 3]
    base = A @ req.center_lps + b
    ax, ay = A @ req.right, A @ req.down
    fill = float(volume.array.min()) if cval is None else cval
    src = volume.array if volume.array.dtype in (np.float32, np.int16, np.uint16, np.uint8) else \
        volume.array.astype(np.float32)
    if order in (0, 1):
        out = _reslice_grid_aligned(src, base, ax, ay, xs, ys, order, fill)
        if out is not None:
            return out
    from scipy import ndimage  # oblique planes only: keeps scipy off the scroll path and the start

    coords = (base[:, None, None] + ax[:, None, None] * xs[None, None, :]
              + ay[:, None, None] * ys[None, :, None])  # (3, H, W) in i, j, k
    out = ndimage.map_coordinates(src, coords[::-1], order=order, mode="constant", cval=fill,
                                  prefilter=False)
    return out.astype(np.float32) if order else out


def _axis_weights(c: np.ndarray, n: int, order: int):
    """Per output coordinate along one voxel axis: inside mask, lower index, upper weight
    (linear) or nearest index (order 0), as ``scipy.ndimage.map_coordinates`` with
    mode="constant" samples: inside is exactly 0 <= c <= n - 1."""
    inside = (c >= 0) & (c <= n - 1)
    if order == 0:
        return inside, np.clip(np.floor(c + 0.5), 0, n - 1).astype(np.intp), None
    i0 = np.clip(np.floor(c), 0, max(n - 2, 0)).astype(np.intp)
    w = np.where(inside, c - i0, 0.0) if n > 1 else np.zeros_like(c)
    return inside, i0, w


def _reslice_grid_aligned(src: np.ndarray, base, ax, ay, xs, ys, order: int, fill: float):
    """``reslice`` of a view whose screen axes run along two voxel axes (the axial, coronal and
    sagittal views of an unrotated grid): separable interpolation on the pixels' rows and
    columns, the values map_coordinates gives (integer sources rounded half away from zero),
    without the (3, H, W) coordinate array. None for an oblique plane."""
    tol = 1e-9 * max(float(np.abs(ax).max()), float(np.abs(ay).max()), 1e-12)
    p = np.flatnonzero(np.abs(ax) > tol)
    q = np.flatnonzero(np.abs(ay) > tol)
    if len(p) != 1 or len(q) != 1 or p[0] == q[0]:
        return None
    p, q = int(p[0]), int(q[0])
    r = 3 - p - q
    shape_ijk = src.shape[::-1]
    cx = base[p] + ax[p] * xs  # coordinate along voxel axis p per column
    cy = base[q] + ay[q] * ys  # along q per row
    cz = np.array([base[r]])
    ins_x, x0, wx = _axis_weights(cx, shape_ijk[p], order)
    ins_y, y0, wy = _axis_weights(cy, shape_ijk[q], order)
    ins_z, z0, wz = _axis_weights(cz, shape_ijk[r], order)
    H, W = len(ys), len(xs)
    if not ins_z[0] or not ins_x.any() or not ins_y.any():
        return np.full((H, W), fill, np.float32 if order else src.dtype)
    # the slice (through-plane index fixed), as a 2D array (rows = axis q, columns = axis p)
    def plane(zi: int) -> np.ndarray:
        idx = [slice(None)] * 3
        idx[2 - r] = zi
        sl = src[tuple(idx)]
        return sl if (2 - q) < (2 - p) else sl.T

    if order == 0:
        out = plane(int(z0[0]))[y0[:, None], x0[None, :]]
    else:
        # separable: along z (skipped when the plane lies on a voxel plane), then rows, then
        # columns, only over the columns the view samples
        c0, c1 = int(x0.min()), min(int(x0.max()) + 2, shape_ijk[p])
        y1 = np.minimum(y0 + 1, shape_ijk[q] - 1)
        rows = None
        for dz, fz in ((0, 1.0 - wz[0]), (1, wz[0])):
            if fz < 1e-12:
                continue
            sl = plane(min(int(z0[0]) + dz, shape_ijk[r] - 1))[:, c0:c1]
            part = sl[y0] * (1.0 - wy)[:, None] + sl[y1] * wy[:, None]
            rows = part * fz if rows is None else rows + part * fz
        xi0 = x0 - c0
        xi1 = np.minimum(x0 + 1, shape_ijk[p] - 1) - c0
        out = rows[:, xi0] * (1.0 - wx)[None, :] + rows[:, xi1] * wx[None, :]
        if src.dtype.kind in "iu":  # as map_coordinates writes an integer output
            out = np.trunc(out + np.where(out >= 0, 0.5, -0.5))
        out = out.astype(np.float32)
    inside = ins_y[:, None] & ins_x[None, :]
    if not inside.all():
        out = np.where(inside, out, np.asarray(fill).astype(out.dtype))
    return out


def window_to_gray(img: np.ndarray, level: float, width: float) -> np.ndarray:
    """Apply a window (level, width) to uint8 grey."""
    lo = level - width / 2.0
    g = (img - lo) * (255.0 / max(width, 1e-6))
    return np.clip(g, 0, 255).astype(np.uint8)


def _make_colors() -> np.ndarray:
    """RGBA overlay table: the labels' palette (``segmentation.labels.LABEL_RGB``) with an
    opacity per kind (discs a little more opaque, the canal less)."""
    lut = np.zeros((len(L.LABEL_RGB), 4), np.uint8)
    lut[:, :3] = L.LABEL_RGB
    lut[1:, 3] = 110
    lut[[v for v in range(100, 130) if L.is_disc(v)], 3] = 140
    lut[L.CANAL, 3] = 90
    lut[L.CORD, 3] = 120
    return lut


LABEL_COLORS = _make_colors()


def label_rgba(lab: np.ndarray) -> np.ndarray:
    """RGBA overlay (H, W, 4) for a label slice."""
    idx = np.clip(lab.astype(np.int64), 0, len(LABEL_COLORS) - 1)
    return LABEL_COLORS[idx]


def blend_labels(gray: np.ndarray, lab: np.ndarray | None) -> np.ndarray:
    """(H, W, 3) uint8: a grey slice with its label slice blended over it (None: grey only)."""
    if lab is None or not lab.any():  # nothing to blend: the grey itself, no float copy
        return np.repeat(gray[:, :, None], 3, axis=2)
    rgb = np.repeat(gray[:, :, None], 3, axis=2).astype(np.float32)
    if lab is not None:
        rgba = label_rgba(lab).astype(np.float32)
        a = rgba[:, :, 3:4] / 255.0
        rgb = rgb * (1 - a) + rgba[:, :, :3] * a
    return np.ascontiguousarray(rgb.clip(0, 255).astype(np.uint8))
