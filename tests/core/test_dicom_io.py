"""DICOM discovery and loading: mixed folders, transfer syntaxes, multi-frame, real data, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, JPEG2000Lossless,
                         RLELossless, generate_uid)

from spineplan.core.dicom.load import load_volume, read_image_file
from spineplan.core.dicom.scan import scan
from spineplan.core.dicom.write import write_series
from spineplan.core.errors import DicomError, InvalidInputError
from spineplan.core.volume import Volume


def small_volume(seed=0, n=(24, 20, 12), direction=None, origin=(-20.0, -15.0, 30.0)):
    rng = np.random.default_rng(seed)
    a = rng.integers(-1000, 1500, size=n[::-1]).astype(np.int16)
    return Volume(a, spacing=(1.5, 1.5, 3.0), origin=origin,
                  direction=np.eye(3) if direction is None else direction, modality="CT")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "spineplan", *args], capture_output=True, text=True)


# ----------------------------------------------------------------------- mixed folders
def _sr(path):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.SeriesInstanceUID = generate_uid()
    ds.save_as(path, enforce_file_format=True)


def test_mixed_folder(tmp_path):
    a = small_volume(1)
    b = small_volume(2, n=(16, 16, 8), direction=np.array([[0, 0, -1.0], [1, 0, 0], [0, -1, 0]]))
    write_series(a, tmp_path / "a", uid_seed="A", description="series A")
    write_series(b, tmp_path / "b", uid_seed="B", description="series B")
    # a localizer in series A's folder (ImageType LOCALIZER)
    loc = small_volume(3, n=(24, 20, 1))
    f = write_series(loc, tmp_path / "loc", uid_seed="L")[0]
    ds = pydicom.dcmread(f)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.save_as(tmp_path / "a" / "scout.dcm")
    _sr(tmp_path / "report.dcm")
    (tmp_path / "notes.bin").write_bytes(b"this is not dicom at all" * 10)
    good = (tmp_path / "a" / "IM0003.dcm").read_bytes()
    (tmp_path / "truncated.dcm").write_bytes(good[:300])
    import shutil

    shutil.rmtree(tmp_path / "loc")
    res = scan(tmp_path)
    descs = sorted(s.description for s in res.series)
    assert descs == ["series A", "series B"]
    sizes = {s.description: s.size for s in res.series}
    assert sizes["series A"] == [24, 20, 12] and sizes["series B"] == [16, 16, 8]
    kinds = sorted(o.kind for o in res.other_objects)
    assert "localizer" in kinds and "structured report" in kinds
    text = " ".join(res.warnings)
    assert "notes.bin" in text and "truncated.dcm" in text
    # ambiguous load asks for a series; choosing one works and matches the written data
    with pytest.raises(DicomError, match="choose one"):
        load_volume(tmp_path)
    uid_a = next(s.uid for s in res.series if s.description == "series A")
    got = load_volume(tmp_path, series_uid=uid_a)
    assert np.array_equal(got.array, a.array)
    r = cli("info", str(tmp_path), "--json")
    assert r.returncode == 0
    assert len(json.loads(r.stdout)["series"]) == 2


def test_one_uid_with_two_orientations_is_split(tmp_path):
    a = small_volume(1)
    b = small_volume(2, direction=np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]))
    write_series(a, tmp_path, uid_seed="same", file_names=[f"a{k}.dcm" for k in range(12)])
    write_series(b, tmp_path, uid_seed="same", file_names=[f"b{k}.dcm" for k in range(12)])
    res = scan(tmp_path)
    assert len(res.series) == 2 and res.series[0].uid == res.series[1].uid
    assert all(any("split" in w for w in s.warnings) for s in res.series)


def test_truncated_slice_is_named_and_skipped(tmp_path):
    v = small_volume(4)
    files = write_series(v, tmp_path, uid_seed="T")
    raw = files[5].read_bytes()
    files[5].write_bytes(raw[: len(raw) - 200])
    got = load_volume(tmp_path)
    assert any(files[5].name in w for w in got.warnings)
    assert any("missing slice" in w for w in got.warnings)
    assert got.array.shape == v.array.shape


def test_empty_folder_and_garbage_are_bad_input(tmp_path):
    with pytest.raises(DicomError):
        load_volume(tmp_path)
    (tmp_path / "x.dcm").write_bytes(b"\0" * 50)
    with pytest.raises(DicomError, match="no loadable"):
        load_volume(tmp_path)
    r = cli("info", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("spineplan: error:")
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("convert", str(tmp_path), "-o", str(tmp_path / "o.nii.gz"))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_zip_input(tmp_path):
    v = small_volume(5)
    files = write_series(v, tmp_path / "s", uid_seed="Z")
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as z:
        for f in files:
            z.write(f, f"series/{f.name}")
    got = load_volume(tmp_path / "s.zip")
    assert np.array_equal(got.array, v.array)


# --------------------------------------------------------------------- transfer syntaxes
def _recode(files, how):
    for f in files:
        ds = pydicom.dcmread(f)
        if how == "deflate":
            ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
            ds.save_as(f, enforce_file_format=True)
        else:
            if how == JPEG2000Lossless:  # the openjpeg encoder wants unsigned samples
                arr = np.frombuffer(ds.PixelData, "<i2").astype(np.uint16)
                ds.PixelRepresentation = 0
                ds.PixelData = arr.tobytes()
            ds.compress(how)
            ds.save_as(f, enforce_file_format=True)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, "deflate"])
def test_transfer_syntaxes_decode_identically(syntax, tmp_path):
    v = small_volume(6)
    files = write_series(v, tmp_path, uid_seed="TS")
    try:
        _recode(files, syntax)
    except (RuntimeError, NotImplementedError, ValueError) as exc:
        pytest.skip(f"no encoder for {syntax} here ({exc})")
    ts = pydicom.dcmread(files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert ts != ExplicitVRLittleEndian
    got = load_volume(tmp_path)
    assert np.array_equal(got.array, v.array)


def test_big_endian_decodes(tmp_path):
    v = small_volume(7)
    files = write_series(v, tmp_path, uid_seed="BE")
    for f in files:
        ds = pydicom.dcmread(f)
        arr = np.frombuffer(ds.PixelData, "<i2")
        ds.PixelData = arr.astype(">i2").tobytes()
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.2"
        try:
            pydicom.dcmwrite(f, ds, implicit_vr=False, little_endian=False, force_encoding=True)
        except Exception as exc:  # noqa: BLE001
            pytest.skip(f"pydicom cannot write big endian here ({exc})")
    got = load_volume(tmp_path)
    assert np.array_equal(got.array, v.array)


def test_enhanced_multiframe_geometry(tmp_path):
    v = small_volume(8, direction=np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]))  # coronal
    nk = v.array.shape[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = "CT", generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.Rows, ds.Columns, ds.NumberOfFrames = v.array.shape[1], v.array.shape[2], nk
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [v.spacing[1], v.spacing[0]]
    pm.SliceThickness = v.spacing[2]
    po = Dataset()
    po.ImageOrientationPatient = list(v.direction[:, 0]) + list(v.direction[:, 1])
    pvt = Dataset()
    pvt.RescaleIntercept, pvt.RescaleSlope, pvt.RescaleType = -1024, 1, "HU"
    shared.PixelMeasuresSequence = [pm]
    shared.PlaneOrientationSequence = [po]
    shared.PixelValueTransformationSequence = [pvt]
    ds.SharedFunctionalGroupsSequence = [shared]
    order = np.random.default_rng(0).permutation(nk)  # frames stored out of order
    per = []
    for k in order:
        fg = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = list(v.lps_points_from_ijk((0, 0, k)))
        fg.PlanePositionSequence = [pp]
        per.append(fg)
    ds.PerFrameFunctionalGroupsSequence = per
    ds.PixelData = (v.array[order].astype(np.int32) + 1024).astype(np.int16).tobytes()
    ds.save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)
    got = load_volume(tmp_path)
    assert np.array_equal(got.array, v.array)
    assert np.allclose(got.lps_from_ijk(), v.lps_from_ijk(), atol=0.01)


# ------------------------------------------------------------------------- real data
def test_real_jpeg2000_series_and_its_labels(shared_data):
    import SimpleITK as sitk

    d = shared_data / "ct_lumbar_totalseg"
    v = load_volume(d / "example_ct_dicom")
    assert v.array.shape == (20, 512, 512) and v.modality == "CT"
    assert np.allclose(v.spacing, (0.9765625, 0.9765625, 2.0))
    assert np.isclose(v.origin[2], -804.5) and np.isclose(v.lps_points_from_ijk((0, 0, 19))[2], -766.5)
    assert v.array.min() == -1024 and 1000 < v.array.max() < 4000
    labels = read_image_file(d / "example_ct_dicom_vertebrae_verse.nii.gz")  # LAS on disk
    on_grid = sitk.Resample(labels.to_sitk(), v.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor)
    lab = sitk.GetArrayFromImage(on_grid)
    assert v.array[lab == 19].mean() > 150  # T12 is bone where the labels say
    raw_index = labels.array  # matching by array index (ignoring LAS vs LPS) puts T12 in air
    assert v.array[raw_index == 19].mean() < 0


def test_sample_dicom_roundtrip_matches_source_nifti(sample_dicom):
    import SimpleITK as sitk

    v = load_volume(sample_dicom)
    src = read_image_file(sample_dicom / "reference" / "source_ct.nii.gz")
    assert np.allclose(sorted(v.bounds_lps()[0]), sorted(v.bounds_lps()[0]))
    back = sitk.Resample(src.to_sitk(), v.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor)
    assert np.array_equal(sitk.GetArrayFromImage(back).astype(np.int16), v.array)
    lo_v, hi_v = v.bounds_lps()
    lo_s, hi_s = src.bounds_lps()
    assert np.allclose(lo_v, lo_s, atol=1e-3) and np.allclose(hi_v, hi_s, atol=1e-3)
    ds = pydicom.dcmread(next(sample_dicom.glob("*.dcm")), stop_before_pixels=True)
    assert str(ds.PatientName) == "SAMPLE^LUMBAR" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"


def test_cli_info_and_convert_sample(sample_dicom, tmp_path):
    r = cli("info", str(sample_dicom), "--json")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert len(doc["series"]) == 1
    s = doc["series"][0]
    assert s["modality"] == "CT" and s["spacing"] == [3.0, 3.0, 3.0] and s["size"] == [122, 101, 112]
    assert set(s) >= {"uid", "modality", "description", "size", "spacing", "origin", "direction",
                      "n_files", "warnings"}
    assert "SAMPLE" not in r.stdout  # no patient identity
    out = tmp_path / "ct.nii.gz"
    r = cli("convert", str(sample_dicom), "-o", str(out))
    assert r.returncode == 0, r.stderr
    back = read_image_file(out)
    v = load_volume(sample_dicom)
    assert np.array_equal(back.array, v.array) and np.allclose(back.lps_from_ijk(), v.lps_from_ijk())
    r = cli("convert", str(sample_dicom), "-o", str(tmp_path / "ct.xyz"))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_image_file_errors(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"nope")
    with pytest.raises(InvalidInputError):
        load_volume(bad)
