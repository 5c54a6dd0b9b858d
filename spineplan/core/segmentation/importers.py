"""Import label maps made elsewhere, mapped to our convention and onto the image grid.

Supported: our/VerSe numbering, TotalSegmentator v2 "total" numbering (one multi-label
file) or a TotalSegmentator folder of per-class masks (``vertebrae_L4.nii.gz``, ...), and
DICOM SEG (``.dcm``, segments named by level, ``labels.segment_name``).
Resampling onto the image always goes through world coordinates (never array indices,
``labelmaps.labels_on_grid``). :func:`read_labels` merges several files: what the command
line's and the GUI's ``--labels`` read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..dicom.load import read_image_file
from ..errors import InvalidInputError
from ..labelmaps import labels_on_grid
from ..volume import Volume
from . import labels as L

__all__ = ["TOTALSEG_TO_VERSE", "TOTALSEG_CLASS_NAMES", "detect_numbering", "renumber",
           "import_labels", "read_labels", "read_dicom_seg"]

# TotalSegmentator v2 "total" task: vertebrae_S1 = 26, L5 = 27 ... T1 = 43, C7 = 44 ... C1 = 50;
# sacrum = 25; spinal_cord = 79.
_TS_ORDER = (["S1", "L5", "L4", "L3", "L2", "L1"] + [f"T{n}" for n in range(12, 0, -1)]
             + [f"C{n}" for n in range(7, 0, -1)])
TOTALSEG_CLASS_NAMES = {26 + n: f"vertebrae_{name}" for n, name in enumerate(_TS_ORDER)}
TOTALSEG_CLASS_NAMES[25] = "sacrum"
TOTALSEG_CLASS_NAMES[79] = "spinal_cord"
TOTALSEG_TO_VERSE = {26 + n: (L.SACRUM if name == "S1" else L.vertebra_label(name))
                     for n, name in enumerate(_TS_ORDER)}
TOTALSEG_TO_VERSE[25] = L.SACRUM
TOTALSEG_TO_VERSE[79] = L.CORD


def detect_numbering(values) -> str:
    """"totalseg" when class numbers only TotalSegmentator uses are present, else "verse".

    Our/VerSe numbering never uses 29..99; TotalSegmentator's "total" task puts the lumbar and
    thoracic vertebrae (27..50), organs and vessels (51..), the cord (79) there. A full
    TotalSegmentator map also holds organs at 1..24 and ribs at 92+, so this test must come
    first: reading such a map as VerSe would turn organs into vertebrae.
    """
    v = {int(x) for x in values if x}
    if v & set(range(29, 100)):
        return "totalseg"
    return "verse"


def renumber(arr: np.ndarray, numbering: str) -> np.ndarray:
    """Map a label array to our numbering; unknown classes become 0."""
    if numbering == "verse":
        known = set(L.VERTEBRA_NAMES) | {L.CANAL, L.CORD} | {d for d in range(100, 130) if L.is_disc(d)}
        lut_size = max(int(arr.max()) + 1, 400)
        lut = np.zeros(lut_size, np.uint16)
        for k in known:
            if k < lut_size:
                lut[k] = k
        return lut[arr.astype(np.int64)]
    if numbering == "totalseg":
        lut = np.zeros(max(int(arr.max()) + 1, 128), np.uint16)
        for src, dst in TOTALSEG_TO_VERSE.items():
            if src < len(lut):
                lut[src] = dst
        return lut[arr.astype(np.int64)]
    raise InvalidInputError(f"unknown label numbering '{numbering}' (use verse or totalseg)")


def _from_mask_folder(folder: Path, reference: Volume) -> Volume:
    out = None
    name_to_label = {v: TOTALSEG_TO_VERSE[k] for k, v in TOTALSEG_CLASS_NAMES.items()}
    found = 0
    for f in sorted(folder.iterdir()):
        m = re.match(r"(.+?)\.(nii(\.gz)?|nrrd|mha)$", f.name)
        if not m or m.group(1) not in name_to_label:
            continue
        mask = labels_on_grid(read_image_file(f), reference)
        if out is None:
            out = np.zeros(reference.array.shape, np.uint16)
        out[(mask.array > 0) & (out == 0)] = name_to_label[m.group(1)]
        found += 1
    if out is None:
        raise InvalidInputError(f"{folder.name}: no TotalSegmentator masks (vertebrae_*.nii.gz) found")
    return reference.with_array(out, modality="SEG")


def import_labels(path, reference: Volume, numbering: str = "auto") -> Volume:
    """Read a label map (file or TotalSegmentator mask folder) in our numbering on ``reference``'s grid.

    Parameters
    ----------
    path : path
        NIfTI/NRRD/MHA label file, or a folder of TotalSegmentator per-class masks.
    reference : Volume
        The image the labels belong to.
    numbering : {"auto", "verse", "totalseg"}
    """
    p = Path(path)
    if p.is_dir():
        return _from_mask_folder(p, reference)
    if p.suffix.lower() == ".dcm":
        return read_dicom_seg(p, reference)
    lab = read_image_file(p)
    arr = lab.array
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.allclose(arr, np.round(arr)):
            raise InvalidInputError(f"{p.name} is not a label map (non-integer values)")
        arr = np.round(arr).astype(np.int32)
    if arr.min() < 0:
        raise InvalidInputError(f"{p.name} is not a label map (negative values)")
    present = np.unique(arr)
    kind = detect_numbering(present) if numbering == "auto" else numbering
    new = renumber(arr, kind)
    if not new.any():
        raise InvalidInputError(f"{p.name}: no vertebra, disc or canal labels in {kind} numbering")
    mapped = lab.with_array(new, modality="SEG")
    out = labels_on_grid(mapped, reference)
    if kind == "verse":  # our numbering: say which values were not ours (they are dropped)
        unknown = sorted(int(x) for x in present if x and not renumber(np.array([x]), "verse")[0])
        if unknown:
            out.warnings.append(f"{p.name}: ignored label values not in the VerSe convention: "
                                f"{', '.join(map(str, unknown[:10]))}{' ...' if len(unknown) > 10 else ''}")
    return out


def read_labels(paths, image: Volume) -> Volume:
    """Read one or more label files (our/VerSe or TotalSegmentator numbering, DICOM SEG) and
    merge them onto ``image``'s grid (later files win where non-zero)."""
    out = None
    for p in paths:
        lab = import_labels(p, image)
        if out is None:
            out = lab
        else:
            out.array = np.where(lab.array > 0, lab.array, out.array)
    if out is None:
        raise InvalidInputError("no label file given")
    return out


def read_dicom_seg(path: str | os.PathLike, reference: Volume) -> Volume:
    """Read a DICOM SEG into our numbering on ``reference``'s grid (through LPS coordinates).

    Segments are mapped by their names (``labels.label_from_segment_name``), as
    ``export.dicom_seg.write_dicom_seg`` names them.
    """
    import highdicom as hd

    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:  # noqa: BLE001
        raise InvalidInputError(f"{Path(path).name} is not a readable DICOM SEG ({type(exc).__name__})") from None
    mapping = {}
    for d in seg.SegmentSequence:
        lab = L.label_from_segment_name(str(d.SegmentLabel))
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
