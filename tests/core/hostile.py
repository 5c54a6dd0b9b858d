"""Hostile-input corpus: each bad file generated in a temporary folder at test time.

``CASES`` maps a case name to ``make(tmp_path) -> Path``; every case must be refused by
``spineplan info|convert|segment|plan`` with exit 2 and one ``spineplan: error:`` line.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from spineplan.core.dicom.write import write_series
from spineplan.core.volume import Volume

__all__ = ["CASES", "nifti", "small_ct"]


def small_ct(n=(24, 20, 12)) -> Volume:
    """A small CT-like volume (int16, HU range) with LPS-identity geometry."""
    rng = np.random.default_rng(0)
    a = rng.integers(-1000, 1500, size=n[::-1]).astype(np.int16)
    return Volume(a, spacing=(1.5, 1.5, 3.0), origin=(-20.0, -15.0, 30.0), modality="CT")


def nifti(path: Path, *, pixdim=(1.5, 1.5, 3.0), quatern=(0.0, 0.0, 0.0), qform_code=1,
          sform_code=0, srow=None, shape=(24, 20, 12), keep=None, data=True,
          version=1) -> Path:
    """Write a NIfTI-1 file with the given (possibly invalid) header fields, byte by byte.

    ``keep`` cuts the written (compressed, for .gz) file to that many bytes; ``data=False``
    writes the header only; ``version=2`` writes NIfTI-2 (64-bit dimensions).
    """
    import nibabel as nib

    hdr = nib.Nifti1Header() if version == 1 else nib.Nifti2Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.int16)
    hdr["pixdim"][1:4] = pixdim
    hdr["pixdim"][0] = 1.0
    hdr["qform_code"] = qform_code
    hdr["sform_code"] = sform_code
    hdr["quatern_b"], hdr["quatern_c"], hdr["quatern_d"] = quatern
    hdr["qoffset_x"], hdr["qoffset_y"], hdr["qoffset_z"] = (10.0, 20.0, 30.0)
    if srow is not None:
        hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = srow
    hdr["vox_offset"] = len(hdr.binaryblock) + 4
    raw = hdr.binaryblock + b"\0" * 4
    if data:
        arr = np.arange(int(np.prod(shape)), dtype=np.int16).reshape(shape) % 1000
        raw += arr.tobytes(order="F")
    if path.name.endswith(".gz"):
        raw = gzip.compress(raw)
    if keep is not None:
        raw = raw[:keep]
    path.write_bytes(raw)
    return path


def _truncated_gz(tmp: Path) -> Path:
    full = nifti(tmp / "full.nii.gz")
    p = tmp / "half.nii.gz"
    p.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    return p


def _huge_declared(tmp: Path) -> Path:
    # 50 000 x 50 000 (x1) int16 declared, header only: must be refused before allocating 5 GB
    return nifti(tmp / "huge.nii", shape=(50000, 50000, 1), data=False, version=2)


def _dicom_series(tmp: Path, edit) -> Path:
    folder = tmp / "series"
    files = write_series(small_ct(), folder, uid_seed="hostile")
    for f in files:
        ds = pydicom.dcmread(f)
        edit(ds)
        ds.save_as(f)
    return folder


def _zero_spacing(ds):
    ds.PixelSpacing = ["0", "0"]


def _nan_spacing(ds):
    ds.PixelSpacing = ["NaN", "1.5"]


def _mosaic(tmp: Path) -> Path:
    """A Siemens MOSAIC-style MR image: 6x6 tiles of 64x64 in one 384x384 frame."""
    folder = tmp / "mosaic"
    folder.mkdir()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Manufacturer = "SIEMENS"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    ds.SeriesInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-780.0, -780.0, 0.0]
    ds.PixelSpacing = [3.25, 3.25]
    ds.SliceThickness = 3.0
    ds.Rows = ds.Columns = 384
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.add_new(0x00190010, "LO", "SIEMENS MR HEADER")
    ds.add_new(0x0019100A, "US", 35)
    ds.PixelData = (np.arange(384 * 384, dtype=np.uint16) % 4000).tobytes()
    ds.save_as(folder / "mosaic.dcm", enforce_file_format=True)
    return folder


def _deep_sequence(tmp: Path) -> Path:
    """A DICOM file whose (undefined-length) sequences nest 5000 deep."""
    folder = tmp / "deep"
    files = write_series(small_ct(n=(8, 8, 2)), folder, uid_seed="deep")
    seq = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    seq_end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    depth = 5000
    blob = (seq + item) * depth + (item_end + seq_end) * depth
    for f in files:
        raw = f.read_bytes()
        # insert before PixelData (7FE0,0010) so the header read meets it
        at = raw.rfind(b"\xe0\x7f\x10\x00")
        f.write_bytes(raw[:at] + blob + raw[at:])
    return folder


def _not_dicom(tmp: Path) -> Path:
    folder = tmp / "fake"
    folder.mkdir()
    (folder / "IM0001.dcm").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    return folder


CASES = {
    "nifti_truncated_gz": _truncated_gz,
    "nifti_header_only": lambda t: nifti(t / "hdr.nii", data=False),
    "nifti_negative_pixdim": lambda t: nifti(t / "neg.nii.gz", pixdim=(-1.5, 1.5, 3.0)),
    "nifti_zero_pixdim": lambda t: nifti(t / "zero.nii.gz", pixdim=(1.5, 0.0, 3.0)),
    "nifti_nan_pixdim": lambda t: nifti(t / "nanpix.nii.gz", pixdim=(1.5, float("nan"), 3.0)),
    "nifti_nan_quaternion": lambda t: nifti(t / "nanq.nii.gz", quatern=(float("nan"), 0.0, 0.0)),
    "nifti_nan_sform": lambda t: nifti(t / "nans.nii.gz", qform_code=0, sform_code=1,
                                       srow=([np.nan, 0, 0, 0], [0, 1.5, 0, 0], [0, 0, 3, 0])),
    "nifti_huge_declared": _huge_declared,
    "dicom_zero_spacing": lambda t: _dicom_series(t, _zero_spacing),
    "dicom_nan_spacing": lambda t: _dicom_series(t, _nan_spacing),
    "dicom_mosaic": _mosaic,
    "dicom_deep_sequence": _deep_sequence,
    "dicom_not_dicom": _not_dicom,
}
