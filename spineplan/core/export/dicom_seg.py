"""DICOM SEG export (highdicom), referencing the source series.

Each label value present becomes one segment named by its level (``labels.segment_name``:
"L4", "L4/L5", "spinal canal"), coded with SNOMED CT. Reading a DICOM SEG back is an import
(``segmentation.importers.read_dicom_seg``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom

from ... import __version__
from ..atomic import atomic_output_path
from ..errors import InvalidInputError
from ..segmentation import labels as L
from ..volume import Volume

__all__ = ["write_dicom_seg"]

_VERTEBRA = ("51282000", "Vertebra")
_SACRUM = ("54735007", "Sacrum")
_DISC = ("360499006", "Intervertebral disc structure")
_CANAL = ("61496007", "Vertebral canal structure")
_CORD = ("2748008", "Spinal cord")
_CATEGORY = ("91723000", "Anatomical Structure")


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
            segment_number=n, segment_label=L.segment_name(v),
            segmented_property_category=Code(_CATEGORY[0], "SCT", _CATEGORY[1]),
            segmented_property_type=_code(v),
            algorithm_type=(hd.seg.SegmentAlgorithmTypeValues.MANUAL if manual
                            else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC),
            algorithm_identification=algo, tracking_uid=hd.UID(), tracking_id=L.segment_name(v)))
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
