"""The fused 2D view (numpy, no Qt): the MRI resliced through the fusion transform on a CT
view plane, and its display over the CT slice (blend, checkerboard, MRI in colour)."""

from __future__ import annotations

import numpy as np

from ..core.registration.transform import RigidTransform
from ..core.volume import Volume
from .slicing import SliceRequest, reslice

__all__ = ["mri_request", "mri_gray_on_view", "fused_rgb", "hot_rgb"]


def mri_request(req: SliceRequest, transform: RigidTransform) -> SliceRequest:
    """The CT view ``req`` carried into the MRI's frame (a rigid map keeps the plane a plane)."""
    R = transform.rotation
    c = transform.mri_points_from_ct(req.center_lps)[0]
    return SliceRequest(c, R @ req.right, R @ req.down, req.mm_per_px, req.width, req.height)


def mri_gray_on_view(mri: Volume, transform: RigidTransform, req: SliceRequest,
                     window: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(grey uint8 (H, W), inside mask (H, W) bool) of the MRI on the CT view ``req``."""
    mreq = mri_request(req, transform)
    data = reslice(mri, mreq, order=1, cval=np.nan if mri.array.dtype.kind == "f" else -1.0)
    if mri.array.dtype.kind == "f":
        inside = np.isfinite(data)
    else:
        inside = reslice(mri.with_array(np.ones(mri.array.shape, np.uint8)), mreq, order=0, cval=0) > 0
    level, width = window
    g = np.clip((np.nan_to_num(data, nan=level - width) - (level - width / 2)) * (255.0 / width), 0, 255)
    return g.astype(np.uint8), inside


def hot_rgb(gray: np.ndarray) -> np.ndarray:
    """A black-red-yellow-white colour map of a uint8 image, (H, W, 3) float32."""
    g = gray.astype(np.float32) / 255.0
    return np.stack([np.clip(3 * g, 0, 1), np.clip(3 * g - 1, 0, 1), np.clip(3 * g - 2, 0, 1)], -1) * 255.0


def fused_rgb(ct_rgb: np.ndarray, mri_gray: np.ndarray, inside: np.ndarray, display: str,
              opacity: float, checker_px: int = 32) -> np.ndarray:
    """The CT view's pixels with the MRI shown over them (only where the MRI has data).

    ``blend``: MRI grey at ``opacity``; ``checkerboard``: tiles of ``checker_px`` alternate
    CT and MRI; ``colour``: the MRI in a hot colour map at ``opacity`` x its brightness.
    """
    out = ct_rgb.astype(np.float32)
    m = inside[..., None]
    mri = np.repeat(mri_gray[..., None], 3, axis=2).astype(np.float32)
    if display == "blend":
        out = np.where(m, (1 - opacity) * out + opacity * mri, out)
    elif display == "checkerboard":
        h, w = mri_gray.shape
        yy, xx = np.indices((h, w))
        tile = (((yy // max(checker_px, 1)) + (xx // max(checker_px, 1))) % 2 == 1)[..., None]
        out = np.where(m & tile, mri, out)
    elif display == "colour":
        a = opacity * (mri_gray.astype(np.float32) / 255.0)[..., None]
        out = np.where(m, (1 - a) * out + a * hot_rgb(mri_gray), out)
    else:
        raise ValueError(display)
    return np.ascontiguousarray(out.clip(0, 255).astype(np.uint8))
