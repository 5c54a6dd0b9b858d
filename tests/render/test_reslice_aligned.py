"""The grid-aligned reslice (axial/coronal/sagittal views of an unrotated grid, the scroll path)
gives exactly the values of scipy's map_coordinates, which oblique planes still use."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import spineplan.render.slicing as slicing
from spineplan.core.volume import Volume
from spineplan.render.slicing import SliceRequest, plane_axes, reslice


def _map_coordinates(volume, req, order, cval):
    """The reference: every pixel's (i, j, k) through scipy, as reslice did before."""
    xs = (np.arange(req.width) - (req.width - 1) / 2) * req.mm_per_px
    ys = (np.arange(req.height) - (req.height - 1) / 2) * req.mm_per_px
    m = volume.ijk_from_lps()
    A, b = m[:3, :3], m[:3, 3]
    base, ax, ay = A @ req.center_lps + b, A @ req.right, A @ req.down
    coords = (base[:, None, None] + ax[:, None, None] * xs[None, None, :]
              + ay[:, None, None] * ys[None, :, None])
    out = ndimage.map_coordinates(volume.array, coords[::-1], order=order, mode="constant",
                                  cval=cval, prefilter=False)
    return out.astype(np.float32) if order else out


def test_aligned_reslice_equals_map_coordinates(monkeypatch):
    calls = []
    fast = slicing._reslice_grid_aligned
    monkeypatch.setattr(slicing, "_reslice_grid_aligned",
                        lambda *a, **k: calls.append(1) or fast(*a, **k))
    rng = np.random.default_rng(1)
    n = 0
    for trial in range(240):
        dt = (np.int16, np.uint8, np.float32, np.uint16)[trial % 4]
        shape = tuple(int(x) for x in rng.integers(1, 40, 3))
        arr = (rng.random(shape) * 200 - (50 if dt in (np.int16, np.float32) else 0)).astype(dt)
        d = np.eye(3)[:, rng.permutation(3)] * rng.choice([-1, 1], 3)  # any axis order and sign
        vol = Volume(arr, spacing=tuple(rng.uniform(0.5, 3, 3)), origin=tuple(rng.uniform(-50, 50, 3)),
                     direction=d)
        lo, hi = vol.bounds_lps()
        right, down, _ = plane_axes(("axial", "coronal", "sagittal")[trial % 3],
                                    ("radiological", "neurological")[trial % 2])
        c = lo + (hi - lo) * rng.uniform(-0.1, 1.1, 3)  # also planes outside the grid
        if trial % 5 == 0:  # exactly on a voxel plane (the scroll snaps there)
            c = vol.lps_points_from_ijk(np.round(vol.ijk_points_from_lps(c[None])))[0]
        req = SliceRequest(c, right, down, float(rng.uniform(0.2, 3)), int(rng.integers(2, 60)),
                           int(rng.integers(2, 60)))
        for order in (0, 1):
            cval = float(arr.min()) if order else 0
            got, want = reslice(vol, req, order=order, cval=cval), _map_coordinates(vol, req, order, cval)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
            n += 1
    assert len(calls) == n  # every one of them took the aligned path


def test_oblique_plane_still_goes_through_map_coordinates():
    rng = np.random.default_rng(2)
    vol = Volume(rng.integers(-100, 100, (20, 30, 25)).astype(np.int16), spacing=(1.0, 1.2, 2.0))
    r = np.array([1.0, 0.3, 0.0]) / np.hypot(1, 0.3)
    req = SliceRequest(vol.lps_points_from_ijk(np.array([[12.0, 15.0, 10.0]]))[0], r,
                       np.array([0, 0, -1.0]), 0.8, 40, 30)
    ax_ijk = np.array([1.0, 0.3, 0.0])  # the view's x runs along i and j at once
    assert slicing._reslice_grid_aligned(vol.array, np.zeros(3), ax_ijk, np.array([0, 0, -1.0]),
                                         np.arange(3.0), np.arange(3.0), 1, 0.0) is None
    np.testing.assert_array_equal(reslice(vol, req, order=1, cval=-100),
                                  _map_coordinates(vol, req, 1, -100))
