"""DICOM SEG export and import (highdicom), referencing the source series.

Each label value present becomes one segment named by its level ("L4", "L4/L5", "spinal
canal"), coded with SNOMED CT. Import maps segments back to our numbering by those names
and resamples onto the image grid through world (LPS) coordinates.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom

from ... import __version__
from ..errors import InvalidInputError
from ..labelmaps import labels_on_grid
from ..persistence import atomic_output_path
from ..segmentation import labels as L
from ..volume import Volume

__all__ = ["write_dicom_seg", "read_dicom_seg", "segment_name", "label_from_segment_name"]

_VERTEBRA = ("51282000", "Vertebra")
_SACRUM = ("54735007", "Sacrum")
_DISC = ("360499006", "Intervertebral disc structure")
_CANAL = ("61496007", "Vertebral canal structure")
_CORD = ("2748008", "Spinal cord")
_CATEGORY = ("91723000", "Anatomical Structure")


def segment_name(label: int) -> str:
    if label == L.CANAL:
        return "spinal canal"
    if label == L.CORD:
        return "spinal cord"
    if L.is_disc(label):
        return L.disc_name(label)
    return L.vertebra_name(label)


def label_from_segment_name(name: str) -> int | None:
    n = name.strip()
    if n == "spinal canal":
        return L.CANAL
    if n == "spinal cord":
        return L.CORD
    if "/" in n:
        up = n.split("/")[0].upper()
        return L.disc_label(L.vertebra_label(up)) if up in L.LABEL_FROM_NAME else None
    return L.LABEL_FROM_NAME.get(n.upper())


def _code(label: int):
    from pydicom.sr.coding import Code

    if label == L.SACRUM:
        v, m = _SACRUM
    elif L.is_vertebra(label):
        v, m = _VERTEBRA
    elif L.is_disc(label):
        v, m = _DISC
    elif label == L.CANAL:
        v, m = _CANAL
    else:
        v, m = _CORD
    return Code(v, "SCT", m)


def write_dicom_seg(labels: Volume, source_files, path: str | os.PathLike, *, manual: bool = False,
                    identity: bool = False) -> Path:
    """Write ``labels`` (on the grid of the series ``source_files``) as a DICOM SEG, atomically.

    The SEG references the source series by UID. Unless ``identity`` is True, it carries no
    patient identity (name, ID, birth date, accession number, referring physician,
    institution, study/series descriptions: :func:`privacy.anonymise_dataset`); with
    ``identity`` they are copied from the source images, as highdicom does.
    """
    import highdicom as hd
    from pydicom.sr.coding import Code

    sources = [pydicom.dcmread(f) for f in source_files]
    if not sources:
        raise InvalidInputError("DICOM SEG needs the source DICOM series")
    iop = np.array(sources[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    sources.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, float), normal)))
    k, j, i = labels.array.shape
    if len(sources) != k or int(sources[0].Rows) != j or int(sources[0].Columns) != i:
        raise InvalidInputError(f"the label map ({i}x{j}x{k}) is not on the grid of the series "
                                f"({sources[0].Columns}x{sources[0].Rows}x{len(sources)})")
    present = [int(v) for v in np.unique(labels.array) if v]
    if not present:
        raise InvalidInputError("the label map is empty")
    lut = np.zeros(int(labels.array.max()) + 1, np.uint16)
    descriptions = []
    algo = None if manual else hd.AlgorithmIdentificationSequence(
        name="spineplan", version=__version__, family=Code("123109", "DCM", "Manual Processing"))
    for n, v in enumerate(present, start=1):
        lut[v] = n
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=n, segment_label=segment_name(v),
            segmented_property_category=Code(_CATEGORY[0], "SCT", _CATEGORY[1]),
            segmented_property_type=_code(v),
            algorithm_type=(hd.seg.SegmentAlgorithmTypeValues.MANUAL if manual
                            else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC),
            algorithm_identification=algo, tracking_uid=hd.UID(), tracking_id=segment_name(v)))
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=lut[labels.array.astype(np.int64)],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=900,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="spineplan",
        manufacturer_model_name="spineplan", software_versions=__version__, device_serial_number="0",
        series_description="spineplan spine labels")
    if not identity:
        from ..privacy import anonymise_dataset

        anonymise_dataset(seg, keep_series_description="spineplan spine labels")
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output_path(dest) as tmp:
        seg.save_as(tmp)
    return dest


def read_dicom_seg(path: str | os.PathLike, reference: Volume) -> Volume:
    """Read a DICOM SEG into our numbering on ``reference``'s grid (through LPS coordinates)."""
    import highdicom as hd

    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:  # noqa: BLE001
        raise InvalidInputError(f"{Path(path).name} is not a readable DICOM SEG ({type(exc).__name__})") from None
    mapping = {}
    for d in seg.SegmentSequence:
        lab = label_from_segment_name(str(d.SegmentLabel))
        if lab is not None:
            mapping[int(d.SegmentNumber)] = lab
    if not mapping:
        raise InvalidInputError(f"{Path(path).name}: no segment names a vertebra, disc or the canal")
    vol = seg.get_volume(combine_segments=True, relabel=False)
    arr = np.asarray(vol.array)  # (slices, rows, columns)
    A = np.asarray(vol.affine, float)  # (slice, row, column, 1) -> LPS
    m = np.stack([A[:3, 2], A[:3, 1], A[:3, 0]], axis=1)  # columns: i (column), j (row), k (slice)
    spacing = np.linalg.norm(m, axis=0)
    lut = np.zeros(int(arr.max()) + 1, np.uint16)
    for n, lab in mapping.items():
        if n < len(lut):
            lut[n] = lab
    ours = Volume(lut[arr.astype(np.int64)], spacing=tuple(spacing), origin=tuple(A[:3, 3]),
                  direction=m / spacing, modality="SEG")
    return labels_on_grid(ours, reference)
