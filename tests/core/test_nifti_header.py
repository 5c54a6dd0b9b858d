"""The NIfTI-1 header spineplan writes without ITK is ITK's header: every field the same
number for every axis order and sign, voxel type, spacing and origin (a zero may carry the
other sign bit: -0.0 where ITK writes 0.0 or the reverse);
and a converted series reads back with the same geometry through SimpleITK and nibabel."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import SimpleITK as sitk

from spineplan.core.dicom.load import read_image_file, write_volume
from spineplan.core.dicom.nifti_header import NIFTI_DATATYPES, nifti1_header
from spineplan.core.volume import Volume

# (offset, struct format) of every field of the 348-byte header and the extension flag
_FIELDS = [(0, "<i"), (4, "10s"), (14, "18s"), (32, "<i"), (36, "<h"), (38, "c"), (39, "B"),
           (40, "<8h"), (56, "<3f"), (68, "<h"), (70, "<h"), (72, "<h"), (74, "<h"),
           (76, "<8f"), (108, "<f"), (112, "<f"), (116, "<f"), (120, "<h"), (122, "B"),
           (123, "B"), (124, "<f"), (128, "<f"), (132, "<f"), (136, "<f"), (140, "<i"),
           (144, "<i"), (148, "80s"), (228, "24s"), (252, "<h"), (254, "<h"), (256, "<6f"),
           (280, "<12f"), (328, "16s"), (344, "4s"), (348, "4s")]


def _fields(h: bytes):
    return [struct.unpack_from(fmt, h, off) for off, fmt in _FIELDS]


def _itk_header(shape_kji, dtype, spacing, origin, direction, tmp_path) -> bytes:
    img = sitk.GetImageFromArray(np.zeros((1, 1, 1), dtype))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(tuple(np.asarray(direction, float).ravel()))
    f = tmp_path / "itk.nii"
    sitk.WriteImage(img, str(f), useCompression=False)
    h = bytearray(f.read_bytes()[:352])
    nk, nj, ni = shape_kji
    struct.pack_into("<3h", h, 42, ni, nj, nk)  # ITK's header depends on the size only here
    return bytes(h)


@pytest.mark.parametrize("dtype", sorted(NIFTI_DATATYPES, key=str))
def test_header_is_itks_for_every_axis_order_and_sign(dtype, tmp_path):
    rng = np.random.default_rng(abs(hash(str(dtype))) % 1000)
    perms = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    for perm in perms:
        for signs in ((1, 1, 1), (-1, 1, 1), (1, -1, -1), (-1, -1, -1), (1, 1, -1)):
            d = np.eye(3)[:, perm] * np.array(signs, float)
            spacing = tuple(float(x) for x in rng.uniform(0.3, 5.0, 3))
            origin = tuple(float(x) for x in rng.uniform(-400, 400, 3) * rng.integers(0, 2, 3))
            shape = tuple(int(x) for x in rng.integers(1, 600, 3))
            mine = nifti1_header(shape, dtype, spacing, origin, d)
            assert mine is not None and len(mine) == 352
            ref = _itk_header(shape, dtype, spacing, origin, d, tmp_path)
            assert _fields(mine) == _fields(ref), (perm, signs)  # -0.0 == 0.0 here
            # the bytes differ at most in the sign bit of a zero
            assert all(a == b or (a ^ b) == 0x80 for a, b in zip(mine, ref))


def test_rotated_grid_is_left_to_itk():
    c, s = np.cos(0.3), np.sin(0.3)
    d = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    assert nifti1_header((4, 5, 6), np.int16, (1, 1, 1), (0, 0, 0), d) is None
    assert nifti1_header((4, 5, 6), np.int64, (1, 1, 1), (0, 0, 0), np.eye(3)) is None


@pytest.mark.parametrize("rotated", [False, True])
def test_written_file_reads_back_with_the_same_geometry(rotated, tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(3)
    arr = rng.integers(-1000, 2000, (7, 9, 11)).astype(np.int16)
    d = np.eye(3)[:, [2, 0, 1]] * np.array([1, -1, -1.0])  # a sagittal-like grid
    if rotated:
        c, s = np.cos(0.2), np.sin(0.2)
        d = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ d
    vol = Volume(arr, spacing=(0.8, 1.1, 2.5), origin=(-12.5, 30.25, 101.0), direction=d)
    for name in ("v.nii", "v.nii.gz"):
        out = write_volume(vol, tmp_path / name)
        back = read_image_file(out)
        np.testing.assert_array_equal(back.array, arr)
        np.testing.assert_allclose(back.lps_from_ijk(), vol.lps_from_ijk(), atol=1e-5)
        itk = sitk.ReadImage(str(out))
        np.testing.assert_allclose(np.array(itk.GetDirection()).reshape(3, 3), d, atol=1e-6)
        ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ vol.lps_from_ijk()
        np.testing.assert_allclose(nib.load(str(out)).affine, ras, atol=1e-4)
