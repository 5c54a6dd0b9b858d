"""Orientation safety: whatever the acquisition, the patient's left loads at +x (LPS).

An asymmetric object is sampled in many acquisition geometries (axial, sagittal,
coronal, flipped rows/columns, feet-first, oblique, gantry tilt), written as DICOM
with shuffled file names and misleading InstanceNumbers, and loaded back.
"""

from __future__ import annotations

import numpy as np
import pytest

from spineplan.core.dicom.load import load_volume
from spineplan.core.dicom.write import write_series
from spineplan.core.volume import Volume

LEFT = np.array([30.0, 0.0, 0.0])       # patient's left (+x)
SUPERIOR = np.array([0.0, 0.0, 25.0])   # head (+z)
ANTERIOR = np.array([0.0, -20.0, 0.0])  # front (-y)


def world_value(p: np.ndarray) -> np.ndarray:
    """The object, as a function of LPS position (N, 3)."""
    v = np.full(len(p), -1000.0)
    body = (np.abs(p[:, 0]) < 42) & (np.abs(p[:, 1]) < 32) & (np.abs(p[:, 2]) < 36)
    v[body] = 0
    for c, val in ((LEFT, 1000), (SUPERIOR, 500), (ANTERIOR, 300)):
        v[np.linalg.norm(p - c, axis=1) <= 5.0] = val
    return v


def rot(axis: str, deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def sampled(direction: np.ndarray, spacing=(2.0, 2.0, 2.5), n=(52, 48, 44)) -> Volume:
    """Sample the object on a grid centred at the origin with the given direction."""
    d = np.asarray(direction, float)
    sp = np.array(spacing)
    centre_offset = d @ ((np.array(n) - 1) / 2 * sp)
    vol = Volume(np.zeros(n[::-1], np.int16), spacing=spacing, origin=tuple(-centre_offset),
                 direction=d, modality="CT")
    kk, jj, ii = np.meshgrid(*[np.arange(x) for x in n[::-1]], indexing="ij")
    ijk = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], 1)
    vol.array = world_value(vol.lps_points_from_ijk(ijk)).reshape(vol.array.shape).astype(np.int16)
    return vol


GEOMETRIES = {
    "axial": np.eye(3),
    "axial_flipped_rows_cols": np.diag([-1.0, -1.0, 1.0]),
    "axial_feet_first": np.array([[-1.0, 0, 0], [0, 1, 0], [0, 0, -1]]),
    "sagittal": np.array([[0, 0, -1.0], [1, 0, 0], [0, -1, 0]]),
    "sagittal_flipped": np.array([[0, 0, 1.0], [-1, 0, 0], [0, -1, 0]]),
    "coronal": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
    "coronal_flipped": np.array([[-1.0, 0, 0], [0, 0, -1], [0, -1, 0]]),
    "oblique": rot("z", 15) @ rot("x", 20) @ rot("y", -10),
}


def centroid_lps(vol: Volume, value: int) -> np.ndarray:
    kji = np.argwhere(vol.array == value)
    assert len(kji) > 10, f"marker {value} not found"
    return vol.lps_points_from_ijk(kji[:, ::-1].astype(float)).mean(0)


def write_scrambled(vol: Volume, folder, seed=0, **kw):
    rng = np.random.default_rng(seed)
    nk = vol.array.shape[0]
    order = rng.permutation(nk)
    names = [f"{rng.integers(1e9):09d}" for _ in range(nk)]  # no extension, random
    misleading = rng.permutation(nk) + 1
    return write_series(vol, folder, slice_order=order, file_names=names,
                        instance_numbers=misleading, uid_seed=f"orient-{seed}", **kw)


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_left_is_left_in_every_acquisition(name, tmp_path):
    d = GEOMETRIES[name]
    assert np.isclose(np.linalg.det(d), 1.0)
    vol = sampled(d)
    write_scrambled(vol, tmp_path)
    got = load_volume(tmp_path)
    # geometry written == geometry loaded, to 0.01 mm at every corner
    for ijk in [(0, 0, 0), (51, 0, 0), (0, 47, 0), (0, 0, 43), (51, 47, 43)]:
        assert np.allclose(got.lps_points_from_ijk(ijk), vol.lps_points_from_ijk(ijk), atol=0.01), name
    assert np.array_equal(got.array, vol.array)
    left, sup, ant = centroid_lps(got, 1000), centroid_lps(got, 500), centroid_lps(got, 300)
    assert left[0] > 25 and np.allclose(left, LEFT, atol=1.0)
    assert sup[2] > 20 and np.allclose(sup, SUPERIOR, atol=1.0)
    assert ant[1] < -15 and np.allclose(ant, ANTERIOR, atol=1.0)


def test_gantry_tilt_is_corrected_with_warning(tmp_path):
    vol = sampled(np.eye(3), spacing=(2.0, 2.0, 2.0), n=(52, 52, 44))
    tilt = np.deg2rad(15)
    nk = vol.array.shape[0]
    # a tilted gantry: slice k is shifted along y by k*dz*tan(tilt); resample the object there
    pos = np.array([np.array(vol.origin) + [0, k * 2.0 * np.tan(tilt), k * 2.0] for k in range(nk)])
    kk, jj, ii = np.meshgrid(np.arange(nk), np.arange(52), np.arange(52), indexing="ij")
    pts = np.stack([pos[kk, 0] + ii * 2.0, pos[kk, 1] + jj * 2.0, pos[kk, 2]], -1).reshape(-1, 3)
    vol.array = world_value(pts).reshape(vol.array.shape).astype(np.int16)
    write_scrambled(vol, tmp_path, positions_lps=pos)
    got = load_volume(tmp_path)
    assert any("gantry tilt" in w for w in got.warnings)
    assert np.allclose(got.direction.T @ got.direction, np.eye(3), atol=1e-6)
    # markers at the right LPS positions after correction (within a voxel)
    assert np.allclose(centroid_lps_thresh(got, 900), LEFT, atol=1.5)
    assert np.allclose(centroid_lps_thresh(got, 450, 550), SUPERIOR, atol=1.5)


def centroid_lps_thresh(vol, lo, hi=10_000):
    kji = np.argwhere((vol.array >= lo) & (vol.array <= hi))
    return vol.lps_points_from_ijk(kji[:, ::-1].astype(float)).mean(0)


def test_missing_slice_and_nonuniform_spacing_are_resampled_with_warning(tmp_path):
    vol = sampled(np.eye(3), spacing=(2.0, 2.0, 2.0), n=(40, 40, 40))
    files = write_scrambled(vol, tmp_path)
    files[20].unlink()  # one slice lost in transfer
    got = load_volume(tmp_path)
    assert any("missing slice" in w for w in got.warnings)
    assert got.array.shape[0] == 40 and np.isclose(got.spacing[2], 2.0)
    assert np.allclose(got.lps_from_ijk(), vol.lps_from_ijk(), atol=0.01)
    assert np.allclose(centroid_lps(got, 1000), LEFT, atol=1.0)


def test_source_files_are_not_modified(tmp_path):
    import hashlib

    vol = sampled(np.eye(3), n=(20, 20, 10))
    files = write_scrambled(vol, tmp_path)
    before = {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    load_volume(tmp_path)
    assert before == {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    assert mtimes == {f: f.stat().st_mtime_ns for f in files}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files)
