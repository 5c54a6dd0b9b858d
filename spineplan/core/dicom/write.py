"""Write a Volume as a standards-conformant single-frame DICOM image series.

Used to build the bundled sample series (tools/make_sample_dicom.py) and by the
orientation-safety tests, which write phantoms in many acquisition geometries.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, PYDICOM_IMPLEMENTATION_UID,
                         generate_uid)

from ..atomic import atomic_output_path
from ..volume import Volume

__all__ = ["write_series"]


def _ds_str(values: Sequence[float]) -> list[str]:
    # DS values are at most 16 characters
    return [f"{float(v):.10g}"[:16] for v in values]


def write_series(volume: Volume, folder: str | os.PathLike, *,
                 patient_name: str = "ANONYMOUS", patient_id: str = "ANON",
                 description: str = "", uid_seed: str | None = None,
                 modality: str | None = None, slice_order: Sequence[int] | None = None,
                 instance_numbers: Sequence[int] | None = None,
                 positions_lps: np.ndarray | None = None,
                 file_names: Sequence[str] | None = None,
                 rescale_intercept: float | None = None) -> list[Path]:
    """Write ``volume`` as one DICOM file per k-slice.

    Parameters
    ----------
    volume : Volume
        Geometry and voxel values (HU for CT). The i axis becomes the row direction
        (ImageOrientationPatient[:3]), j the column direction, k the slice stack.
    folder : path
        Created if needed. Files are written atomically.
    uid_seed : str, optional
        Makes all UIDs deterministic (``generate_uid(entropy_srcs=[seed, ...])``).
    slice_order, instance_numbers, positions_lps, file_names :
        Overrides used by tests: the order files are written/named in, misleading
        InstanceNumbers, per-slice ImagePositionPatient (e.g. gantry tilt or gaps).
    rescale_intercept : float
        Stored value = value - intercept (CT default -1024 so air stays non-negative).

    Returns
    -------
    list of Path
        The written files, in slice (k) order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    modality = modality or volume.modality or "CT"
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage

    def uid(*parts: str) -> str:
        if uid_seed is None:
            return generate_uid()
        return generate_uid(entropy_srcs=[uid_seed, *parts])

    study_uid, series_uid, frame_uid = uid("study"), uid("series"), uid("frame")
    nk = volume.array.shape[0]
    si, sj, sk = volume.spacing
    d = volume.direction
    row_dir, col_dir, normal = d[:, 0], d[:, 1], d[:, 2]
    if positions_lps is None:
        positions_lps = volume.lps_points_from_ijk(np.stack([np.zeros(nk), np.zeros(nk),
                                                             np.arange(nk)], axis=1))
    intercept = (-1024.0 if modality == "CT" else 0.0) if rescale_intercept is None \
        else rescale_intercept
    arr = np.asarray(volume.array)
    stored = np.rint(arr.astype(np.float64) - intercept)
    if stored.min() < -32768 or stored.max() > 32767:
        raise ValueError("values do not fit 16-bit signed storage")
    stored = stored.astype(np.int16)
    now = _dt.datetime(2000, 1, 1) if uid_seed else _dt.datetime.now()
    order = list(range(nk)) if slice_order is None else list(slice_order)
    written: dict[int, Path] = {}
    for n, k in enumerate(order):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.SOPInstanceUID = uid("instance", str(k))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SOPClassUID = sop_class
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.AccessionNumber = ""
        ds.Modality = modality
        ds.Manufacturer = "spineplan"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = description
        ds.SeriesDescription = description
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = int(instance_numbers[k]) if instance_numbers is not None else k + 1
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = _ds_str(positions_lps[k])
        ds.ImageOrientationPatient = _ds_str(list(row_dir) + list(col_dir))
        ds.SliceLocation = _ds_str([float(np.dot(positions_lps[k], normal))])[0]
        ds.PixelSpacing = _ds_str([sj, si])  # row spacing (between rows = j), column spacing (i)
        ds.SliceThickness = _ds_str([sk])[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = arr.shape[1], arr.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept = _ds_str([intercept])[0]
        ds.RescaleSlope = "1"
        if modality == "CT":
            ds.RescaleType = "HU"
            ds.KVP = "120"
            ds.WindowCenter, ds.WindowWidth = "400", "1800"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        name = file_names[n] if file_names is not None else f"IM{n + 1:04d}.dcm"
        path = folder / name
        with atomic_output_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        written[k] = path
    return [written[k] for k in sorted(written)]
