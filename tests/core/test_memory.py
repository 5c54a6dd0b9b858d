"""Memory (issue 20, finding 20): NIfTI voxels read without ITK's copy give the same image as
ITK; info reads the header only; what would not fit is refused up front; segment's peak."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from spineplan.core.dicom.load import check_declared_size, load_volume, read_image_file, read_image_header
from spineplan.core.errors import TooLargeError
from spineplan.core.memory import MEMORY_LIMIT_ENV, available_bytes
from spineplan.core.volume import Volume

from .hostile import nifti

ROOT = Path(__file__).resolve().parents[2]


def _itk_volume(p: Path) -> Volume:
    img = sitk.ReadImage(str(p))
    if img.GetDimension() == 4:
        img = img[:, :, :, 0]
    return Volume.from_sitk(img)


def _rotated(arr, dtype):
    a = (arr % 200).astype(dtype)
    v = Volume(a, spacing=(0.7, 0.9, 2.5), origin=(-10.0, 22.5, 301.0),
               direction=np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], float) @ np.diag([1, 1, -1]))
    return v


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.uint16, np.float32, np.float64, np.int32])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_direct_nifti_read_equals_itk(dtype, suffix, tmp_path):
    arr = np.arange(7 * 9 * 11, dtype=np.int64).reshape(11, 9, 7)
    v = _rotated(arr, dtype)
    p = tmp_path / f"v{suffix}"
    sitk.WriteImage(v.to_sitk(), str(p), suffix.endswith(".gz"))
    got, ref = read_image_file(p), _itk_volume(p)
    assert got.array.dtype == ref.array.dtype and np.array_equal(got.array, ref.array)
    assert got.array.flags.writeable and got.array.flags.c_contiguous
    assert np.allclose(got.lps_from_ijk(), ref.lps_from_ijk(), atol=1e-9)
    assert np.allclose(got.lps_from_ijk(), v.lps_from_ijk(), atol=1e-4)


def test_scaled_and_4d_nifti_still_read_by_itk(tmp_path):
    import nibabel as nib

    data = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0]))
    img.header.set_slope_inter(0.5, -3.0)
    nib.save(img, tmp_path / "scaled.nii")
    got, ref = read_image_file(tmp_path / "scaled.nii"), _itk_volume(tmp_path / "scaled.nii")
    assert np.array_equal(got.array, ref.array) and got.array.dtype == ref.array.dtype
    assert got.array.dtype.kind == "f" and float(got.array[0, 0, 1]) == pytest.approx(0.5 * 42 - 3.0)
    four = nib.Nifti1Image(data[..., None], np.diag([2.0, 2.0, 3.0, 1.0]))
    nib.save(four, tmp_path / "four.nii.gz")
    got, ref = read_image_file(tmp_path / "four.nii.gz"), _itk_volume(tmp_path / "four.nii.gz")
    assert np.array_equal(got.array, ref.array) and got.size_ijk == (5, 6, 7)


def _info_peak_mb(p: Path) -> tuple[int, str]:
    code = ("import resource, sys; from spineplan.cli import main; main(['info', sys.argv[1], '--json']); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
    r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip().splitlines()[-1]), r.stdout


def test_info_of_a_nifti_reads_the_header_only(tmp_path):
    # 800x400x400 int16 (244 MB of voxels), a sparse file: info answers from the header, its
    # peak is that of info on a tiny file
    p = nifti(tmp_path / "big.nii", shape=(800, 400, 400), pixdim=(0.5, 0.6, 0.7), data=False)
    os.truncate(p, 352 + 800 * 400 * 400 * 2)
    h = read_image_header(p)
    assert h["size"] == [800, 400, 400] and h["spacing"] == pytest.approx([0.5, 0.6, 0.7])
    assert h["origin"] == pytest.approx([-10.0, -20.0, 30.0])  # qoffset (RAS) in LPS
    big, out = _info_peak_mb(p)
    small, _ = _info_peak_mb(nifti(tmp_path / "small.nii", shape=(8, 8, 8)))
    assert '"size": [800, 400, 400]' in out
    assert big - small < 30, (big, small)


def test_declared_size_refused_by_the_environment_limit(tmp_path, monkeypatch):
    p = nifti(tmp_path / "small.nii.gz", shape=(64, 64, 64))  # 0.5 MB of voxels
    assert read_image_file(p).size_ijk == (64, 64, 64)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1")  # 1 MB available
    assert available_bytes() == 1 << 20
    with pytest.raises(TooLargeError, match=r"needs about 1 MB to load, and 1 MB of memory is available"):
        load_volume(p)
    with pytest.raises(TooLargeError):
        check_declared_size(600 << 10, "x")  # 0.6 MB x 2.5 > 1 MB
    check_declared_size(300 << 10, "x")  # 0.75 MB fits


def test_cli_refuses_with_one_line_under_the_limit(tmp_path, sample_dicom):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{MEMORY_LIMIT_ENV: "1"})
    for args in (["convert", str(sample_dicom), "-o", str(tmp_path / "o.nii.gz")],
                 ["segment", str(sample_dicom), "-o", str(tmp_path / "l.nii.gz")]):
        r = subprocess.run([sys.executable, "-m", "spineplan", *args], capture_output=True,
                           text=True, env=env, timeout=120)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("spineplan: error:") and "memory" in lines[0]
    assert not (tmp_path / "o.nii.gz").exists() and not (tmp_path / "l.nii.gz").exists()


def test_segment_refused_up_front_when_it_would_not_fit(monkeypatch):
    from spineplan.core.phantom import make_phantom
    from spineplan.core.segmentation.ct import segment_ct

    ct = make_phantom(spacing=3.0).ct
    need_mb = 3 * 2 * ct.array.size / 2**20
    monkeypatch.setenv(MEMORY_LIMIT_ENV, f"{need_mb / 2:.3f}")
    with pytest.raises(TooLargeError, match="segmenting this .* needs about"):
        segment_ct(ct)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, f"{need_mb * 2:.3f}")
    assert segment_ct(ct).labels.array.shape == ct.array.shape


@pytest.mark.parametrize("slopes", [None, "integral", "fractional"])
def test_unsigned_and_rescaled_series_load_exactly(slopes, tmp_path):
    """uint16 stored pixels (read in place as int16), per-slice integer and float rescales."""
    import pydicom

    from spineplan.core.dicom.write import write_series
    from .hostile import small_ct

    src = small_ct((10, 8, 5))
    files = write_series(src, tmp_path / "s", uid_seed="u16")
    expect = src.array.astype(np.float64)
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.PixelRepresentation = 0  # stored = HU + 1024 >= 0: the same bytes as uint16
        stored = ds.pixel_array.astype(np.float64)
        if slopes == "integral":
            ds.RescaleSlope, ds.RescaleIntercept = str(1 + k % 2), str(-1024 - 3 * k)
        elif slopes == "fractional":
            ds.RescaleSlope, ds.RescaleIntercept = str(0.5 + 0.25 * k), "-1024"
        expect[k] = stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        ds.save_as(f)
    vol = load_volume(tmp_path / "s")
    assert vol.array.dtype == (np.float32 if slopes == "fractional" else np.int16)
    assert np.array_equal(vol.array.astype(np.float64), expect)
    if slopes is None:
        assert np.array_equal(vol.array, src.array)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.uint8, np.int8, np.float32, np.float64, np.int32, np.uint32])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_written_without_itk_copy_equals_itk_file(dtype, suffix, tmp_path, monkeypatch):
    """write_volume's NIfTI is ITK's file (decompressed for .nii.gz): for a grid along the
    patient's axes (these two) the header is made without ITK at all
    (core/dicom/nifti_header.py), every header field the same number as ITK's and the voxels
    byte for byte; an obliquely rotated grid: next test."""
    from .test_nifti_header import _fields
    import gzip

    from spineplan.core.dicom.load import write_volume

    sizes = []
    real_write = sitk.WriteImage

    def spy(img, *a, **k):
        sizes.append(img.GetSize())
        return real_write(img, *a, **k)

    arr = np.arange(13 * 9 * 7, dtype=np.int64).reshape(7, 9, 13)
    for n, v in enumerate([_rotated(arr, dtype),
                           Volume((arr % 100).astype(dtype), spacing=(0.5, 0.5, 3.0),
                                  origin=(-100.25, 50.0, -7.5))]):
        ours, itk = tmp_path / f"o{n}{suffix}", tmp_path / f"i{n}{suffix}"
        sizes.clear()
        with monkeypatch.context() as m:
            m.setattr(sitk, "WriteImage", spy)
            write_volume(v, ours)
        assert sizes == []  # both grids run along the patient's axes: no ITK at all
        sitk.WriteImage(v.to_sitk(), str(itk), suffix.endswith(".gz"))
        rd = (lambda q: gzip.decompress(q.read_bytes())) if suffix.endswith(".gz") else (lambda q: q.read_bytes())
        a, b = rd(ours), rd(itk)
        assert len(a) == len(b) and a[352:] == b[352:] and _fields(a) == _fields(b)
        back = read_image_file(ours)
        assert np.array_equal(back.array, v.array) and np.allclose(back.lps_from_ijk(), v.lps_from_ijk(), atol=1e-4)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_oblique_nifti_header_still_made_by_itk_from_a_tiny_image(suffix, tmp_path, monkeypatch):
    """An obliquely rotated grid: ITK makes the header from a 1x1x1 image (no copy of the
    volume) and the file is ITK's, byte for byte."""
    import gzip

    from spineplan.core.dicom.load import write_volume

    sizes = []
    real_write = sitk.WriteImage

    def spy(img, *a, **k):
        sizes.append(img.GetSize())
        return real_write(img, *a, **k)

    c, s_ = np.cos(0.25), np.sin(0.25)
    v = Volume((np.arange(7 * 9 * 13) % 300).astype(np.int16).reshape(7, 9, 13), spacing=(0.7, 0.9, 2.5),
               origin=(-10.0, 22.5, 301.0), direction=np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1.0]]))
    ours, itk = tmp_path / f"o{suffix}", tmp_path / f"i{suffix}"
    with monkeypatch.context() as m:
        m.setattr(sitk, "WriteImage", spy)
        write_volume(v, ours)
    assert sizes == [(1, 1, 1)]
    sitk.WriteImage(v.to_sitk(), str(itk), suffix.endswith(".gz"))
    rd = (lambda q: gzip.decompress(q.read_bytes())) if suffix.endswith(".gz") else (lambda q: q.read_bytes())
    assert rd(ours) == rd(itk)


@pytest.mark.parametrize("n_labels", [5, 200])
def test_renumbered_label_resampling_equals_plain_resampling(n_labels):
    """segment's uint8 renumbered nearest-neighbour mapping (with a flag bit) gives what a
    uint16 resample of the labels and a uint8 resample of the flag give, voxel for voxel."""
    from spineplan.core.segmentation.ct import _nearest_on_input_grid

    rng = np.random.default_rng(3)
    values = np.sort(rng.choice(np.arange(1, 1000), n_labels - 1, replace=False))
    lab_w = np.concatenate([[0], values]).astype(np.uint16)[rng.integers(0, n_labels, (20, 22, 24))]
    flag_w = (rng.random(lab_w.shape) < 0.4).astype(np.uint8)
    wimg = sitk.GetImageFromArray(np.zeros(lab_w.shape, np.float32))
    wimg.SetSpacing((1.5, 1.5, 1.5))
    wimg.SetOrigin((-3.0, 2.0, 5.0))
    d = np.array([[0.8, -0.6, 0], [0.6, 0.8, 0], [0, 0, 1.0]])
    ref = ([50, 41, 33], (-1.0, 4.0, 6.0), (0.7, 0.8, 1.1), tuple(d.ravel()))

    def plain(a, ptype):
        img = sitk.GetImageFromArray(a)
        img.CopyInformation(wimg)
        size, origin, spacing, direction = ref
        return sitk.GetArrayFromImage(sitk.Resample(img, size, sitk.Transform(), sitk.sitkNearestNeighbor,
                                                    origin, spacing, direction, 0, ptype))

    want_lab, want_flag = plain(lab_w, sitk.sitkUInt16), plain(flag_w, sitk.sitkUInt8) > 0
    seen = {}

    def cut(sl, lab, flag):
        seen[sl.start] = flag.copy()

    got = _nearest_on_input_grid(lab_w, wimg, ref, flag_w, cut)
    assert got.dtype == np.uint16 and np.array_equal(got, want_lab)
    assert np.array_equal(np.concatenate([seen[k] for k in sorted(seen)]), want_flag)
    assert np.array_equal(_nearest_on_input_grid(lab_w, wimg, ref), want_lab)
    assert len(np.unique(want_lab)) > min(n_labels, 100) // 2  # a real mix of labels was mapped
