"""Series discovery: find DICOM image series under a path, reading metadata only.

Groups files by SeriesInstanceUID and splits a UID further where it mixes
orientations, image sizes, echoes, or acquisitions that overlap in space.
Localizers/scouts and non-image objects (SR, RTSTRUCT, SEG, presentation states)
are kept out of image series but listed. No pixel data is decoded, and warnings
name files, never patients.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DicomError
from ..zipcache import clean_zip_cache, register_cleanup, zip_cache_dir
from .load_warnings import (MAX_MISSING_IN_A_GAP, MIN_VOLUME_SLICES, LoadWarning,
                            LoadWarningKind as K, warning_kind)
from ..tasks import Reporter
from .fastheader import read_header

__all__ = ["SliceRef", "SeriesInfo", "OtherObject", "ScanResult", "scan", "is_image_file",
           "zip_cache_dir", "clean_zip_cache", "ZIP_MAX_BYTES", "ZIP_MAX_RATIO"]

IMAGE_FILE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

_TAGS = ["SOPClassUID", "SOPInstanceUID", "Modality", "SeriesInstanceUID", "StudyInstanceUID",
         "ImageType", "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows",
         "Columns", "EchoNumbers", "AcquisitionNumber", "SeriesDescription", "NumberOfFrames",
         "SliceThickness", "InstanceNumber", "SeriesNumber", "RescaleSlope", "RescaleIntercept",
         "FrameOfReferenceUID", "SharedFunctionalGroupsSequence",
         "PerFrameFunctionalGroupsSequence", "BitsAllocated", "SamplesPerPixel", "BitsStored",
         "PixelRepresentation", "SpecificCharacterSet"]

# SOP classes that never carry an image volume.
_NON_IMAGE_PREFIXES = {
    "1.2.840.10008.5.1.4.1.1.88.": "structured report",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT structure set",
    "1.2.840.10008.5.1.4.1.1.66.4": "segmentation",
    "1.2.840.10008.5.1.4.1.1.66": "registration/segmentation object",
    "1.2.840.10008.5.1.4.1.1.11.": "presentation state",
    "1.2.840.10008.5.1.4.1.1.104.": "encapsulated document",
    "1.2.840.10008.1.3.10": "media storage directory",
    "1.2.840.10008.5.1.4.1.1.481.": "RT object",
}


@dataclass
class SliceRef:
    """One 2D image: a file, and the frame within it for multi-frame files."""

    path: Path
    frame: int | None
    position: np.ndarray          # ImagePositionPatient (LPS mm)
    iop: np.ndarray               # 6 direction cosines
    pixel_spacing: tuple[float, float]  # (between rows, between columns)
    slope: float = 1.0
    intercept: float = 0.0
    instance: int = 0
    raw_format: tuple | None = None  # (rows, cols, numpy dtype str, explicit_vr) when uncompressed


@dataclass
class SeriesInfo:
    """A loadable image series (metadata only). Geometry is that of the sorted stack."""

    uid: str
    modality: str
    description: str
    slices: list[SliceRef]
    size: list[int] = field(default_factory=list)         # [i, j, k]
    spacing: list[float] = field(default_factory=list)    # [i, j, k] mm
    origin: list[float] = field(default_factory=list)     # LPS of the first voxel
    direction: list[float] = field(default_factory=list)  # 9, row-major, columns = i, j, k
    warnings: list[str] = field(default_factory=list)
    series_number: int | None = None
    frame_of_reference: str = ""
    unloadable: str = ""  # why load_series refuses it (a gap too long to interpolate), or ""

    @property
    def files(self) -> list[Path]:
        return sorted({s.path for s in self.slices})

    @property
    def n_files(self) -> int:
        return len(self.files)

    def to_json(self) -> dict[str, Any]:
        """The ``info --json`` record (non-identifying)."""
        return {"uid": self.uid, "modality": self.modality, "description": self.description,
                "size": self.size, "spacing": self.spacing, "origin": self.origin,
                "direction": self.direction, "n_files": self.n_files,
                "warnings": [str(w) for w in self.warnings],
                "warning_kinds": [warning_kind(w).value for w in self.warnings],
                "unloadable": self.unloadable}


@dataclass
class OtherObject:
    """A DICOM object that is not part of an image series (SR, SEG, localizer, ...)."""

    path: Path
    kind: str
    modality: str
    series_uid: str


@dataclass
class ScanResult:
    series: list[SeriesInfo]
    other_objects: list[OtherObject]
    warnings: list[str]


def is_image_file(path: str | os.PathLike) -> bool:
    """True for NIfTI/NRRD/MetaImage files (read through SimpleITK, not as DICOM)."""
    return str(path).lower().endswith(IMAGE_FILE_SUFFIXES)


_SKIP_SUFFIXES = (".json", ".txt", ".md", ".pdf", ".png", ".jpg", ".jpeg", ".csv", ".xml", ".html")
_SKIP_NAMES = {"NOTICE", "README", "LICENSE", "LICENCE", "DICOMDIR"}


def _known_other(name: str) -> bool:
    """Files that are obviously not DICOM images and need no warning."""
    low = name.lower()
    return name.upper() in _SKIP_NAMES or low.endswith(_SKIP_SUFFIXES) or is_image_file(low)


def _candidate_files(root: Path, warnings: list[str]) -> list[Path]:
    """The files under ``root`` that may be DICOM; unreadable subfolders are warned about.

    Raises DicomError when ``root`` itself cannot be listed (said as such, not as "no series").
    """
    if root.is_file():
        return [root]
    out = []
    denied: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=denied.append):
        dirnames.sort()
        for f in sorted(filenames):
            if f.startswith(".") or f.endswith(".part") or _known_other(f):
                continue
            out.append(Path(dirpath) / f)
    for exc in denied:
        why = exc.strerror or type(exc).__name__
        if Path(exc.filename or "") == root:
            raise DicomError(f"folder {root} is unreadable ({why.lower()})")
        rel = os.path.relpath(exc.filename, root) if exc.filename else "a subfolder"
        warnings.append(f"subfolder {rel} is unreadable ({why.lower()}); skipped")
    return out


ZIP_MAX_BYTES = 8 << 30
"""Most bytes a zip may unpack to (two of the largest images spineplan loads)."""
ZIP_MAX_RATIO = 100.0
"""Most a zip may expand (uncompressed / compressed) beyond 64 MB: DICOM compresses 2-10x; a
zip bomb (9 MB -> 2.1 GB, 230x) is refused before anything is extracted."""
_ZIP_SMALL = 64 << 20


def _check_zip_size(path: Path, infos) -> int:
    """Refuse, before extracting, a zip that would unpack to too much (a zip bomb)."""
    total = sum(m.file_size for m in infos)
    packed = sum(m.compress_size for m in infos)
    if total > ZIP_MAX_BYTES:
        raise DicomError(f"{path.name} would unpack to {total / 2**30:.1f} GB (limit "
                         f"{ZIP_MAX_BYTES / 2**30:.0f} GB): not extracted")
    if total > _ZIP_SMALL and total > ZIP_MAX_RATIO * max(packed, 1):
        raise DicomError(f"{path.name} would expand {total / max(packed, 1):.0f}-fold to "
                         f"{total / 2**20:.0f} MB (a zip bomb?): not extracted")
    return total


def _unzip(path: Path) -> Path:
    """Extract a zip into a private cache folder, removed at exit (the zip is not modified).

    The declared sizes are checked before anything is written, and each member is copied
    with a byte count, so a header that lies about its size cannot fill the disk.
    """
    import shutil

    register_cleanup()
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DicomError(f"{path.name}: not a readable zip file ({type(exc).__name__})") from None
    with z:
        infos = [m for m in z.infolist() if not m.is_dir()]
        total = _check_zip_size(path, infos)
        root = zip_cache_dir()
        if shutil.disk_usage(root).free < total + (256 << 20):
            raise DicomError(f"{path.name} needs {total / 2**20:.0f} MB to unpack and the cache "
                             f"folder's disk has less free")
        dest = Path(tempfile.mkdtemp(prefix=f"x-{os.getpid()}-", dir=root))
        try:
            for m in infos:
                target = (dest / m.filename).resolve()
                if not str(target).startswith(str(dest.resolve()) + os.sep):
                    raise DicomError(f"{path.name}: unsafe path inside zip ({m.filename})")
            for m in infos:
                target = dest / m.filename
                target.parent.mkdir(parents=True, exist_ok=True)
                written = 0
                with z.open(m) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > m.file_size:
                            raise DicomError(f"{path.name}: {m.filename} holds more than its "
                                             "declared size (a zip bomb?): not extracted")
                        out.write(chunk)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
            shutil.rmtree(dest, ignore_errors=True)
            raise DicomError(f"{path.name}: cannot be extracted ({type(exc).__name__})") from None
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    return dest


def _raw_format(ds) -> tuple | None:
    """How to read uncompressed little-endian pixels directly, or None."""
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    if ts not in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"):
        return None
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or bits not in (8, 16):
        return None
    if int(ds.get("BitsStored", bits) or bits) != bits:
        return None
    dt = ("<i" if int(ds.get("PixelRepresentation", 0) or 0) else "<u") + str(bits // 8)
    return (int(ds.Rows), int(ds.Columns), dt, ts == "1.2.840.10008.1.2.1")


def _non_image_kind(ds) -> str | None:
    sop = str(ds.get("SOPClassUID", ""))
    for prefix, kind in _NON_IMAGE_PREFIXES.items():
        if sop.startswith(prefix):
            return kind
    if "Rows" not in ds or "Columns" not in ds:
        return "non-image object"
    return None


def _unsupported_image(ds, image_type: list[str]) -> str | None:
    """Why an image cannot be stacked with correct geometry, or None.

    A Siemens MOSAIC packs many slices into one tiled image: stacked as one slice it would be
    a single plane many times wider than the field of view (refused; convert it with
    dcm2niix first). Zero or negative pixel spacing has no geometry.
    """
    if "MOSAIC" in image_type or (0x0019, 0x100A) in ds:
        return ("Siemens MOSAIC image (slices tiled in one image) is not supported: "
                "convert it with dcm2niix and open the NIfTI")
    ps = _floats(ds.get("PixelSpacing"), 2)
    if ps is not None and np.any(ps <= 0):
        return f"pixel spacing {ps.tolist()} mm is not positive; image ignored"
    return None


def _floats(v, n: int) -> np.ndarray | None:
    try:
        a = np.array([float(x) for x in v], float)
    except (TypeError, ValueError):
        return None
    return a if a.size == n and np.all(np.isfinite(a)) else None


def _frame_refs(ds, path: Path) -> list[SliceRef]:
    """SliceRefs of every frame of an enhanced multi-frame image."""
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
    per = ds.get("PerFrameFunctionalGroupsSequence", [])
    nf = int(ds.get("NumberOfFrames", 1))

    def item(group, seq):
        if group is not None and seq in group and len(group[seq].value):
            return group[seq][0]
        return None

    refs = []
    for f in range(nf):
        g = per[f] if f < len(per) else None
        pos = item(g, "PlanePositionSequence") or item(shared, "PlanePositionSequence")
        ori = item(g, "PlaneOrientationSequence") or item(shared, "PlaneOrientationSequence")
        mea = item(g, "PixelMeasuresSequence") or item(shared, "PixelMeasuresSequence")
        pvt = item(g, "PixelValueTransformationSequence") or item(shared, "PixelValueTransformationSequence")
        if pos is None or ori is None or mea is None:
            raise DicomError(f"{path.name}: multi-frame file without plane position/orientation")
        ipp = _floats(pos.ImagePositionPatient, 3)
        iop = _floats(ori.ImageOrientationPatient, 6)
        ps = _floats(mea.PixelSpacing, 2)
        if ipp is None or iop is None or ps is None:
            raise DicomError(f"{path.name}: frame {f + 1} has invalid geometry")
        slope = float(pvt.get("RescaleSlope", 1.0)) if pvt is not None else float(ds.get("RescaleSlope", 1.0))
        icpt = float(pvt.get("RescaleIntercept", 0.0)) if pvt is not None else float(ds.get("RescaleIntercept", 0.0))
        refs.append(SliceRef(path, f, ipp, iop, (float(ps[0]), float(ps[1])), slope, icpt, f + 1))
    return refs


def scan(path: str | os.PathLike, *, progress=None, cancel=None) -> ScanResult:
    """Find the image series under ``path`` (folder, file, DICOMDIR or .zip).

    Parameters
    ----------
    path : path-like
        What the user opened.

    Returns
    -------
    ScanResult
        Image series (sorted and with geometry), other objects, and warnings naming
        unreadable files.

    Raises
    ------
    DicomError
        When ``path`` does not exist.
    """
    rep = Reporter(progress, cancel)
    root = Path(path)
    if not root.exists():
        raise DicomError(f"{root} does not exist")
    if root.is_file() and zipfile.is_zipfile(root) and not is_image_file(root):
        root = _unzip(root)
    elif root.is_file() and root.name.upper() == "DICOMDIR":
        root = root.parent
    warnings: list[str] = []
    files = _candidate_files(root, warnings)
    n_denied = 0
    others: list[OtherObject] = []
    groups: dict[tuple, list[tuple[SliceRef, Any]]] = defaultdict(list)
    meta: dict[tuple, dict] = {}
    for n, f in enumerate(files):
        if n % 64 == 0:
            rep.step(n / max(len(files), 1), "reading headers")
        try:
            ds = read_header(f, _TAGS)  # the usual file, without pydicom (5x faster)
            if ds is None:  # anything unusual: pydicom, as before
                import pydicom

                ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=_TAGS)
        except _header_errors() as exc:
            n_denied += isinstance(exc, PermissionError)
            warnings.append(f"{f.name}: {_header_error_text(exc)}")
            continue
        try:
            _add_file(f, ds, groups, meta, others, warnings)
        except DicomError as exc:
            warnings.append(str(exc))
        except _header_errors() as exc:
            # a header that parsed but holds values of the wrong shape or type (a multi-valued
            # Rows, a sequence nested too deep to follow, ...): the file is skipped, by name
            warnings.append(f"{f.name}: {_header_error_text(exc)}")
    if files and n_denied == len(files):
        what = f"file {root}" if root.is_file() else f"the files in {root}"
        raise DicomError(f"{what} are unreadable (permission denied)" if not root.is_file()
                         else f"{what} is unreadable (permission denied)")
    rep.step(0.95, "grouping series")
    series = _build_series(groups, meta, others)
    # sub-series that share a UID with a larger one and hold 1-3 slices of another
    # orientation are localizers in disguise
    by_uid: dict[str, list[SeriesInfo]] = defaultdict(list)
    for s in series:
        by_uid[s.uid].append(s)
    final = []
    for s in series:
        siblings = by_uid[s.uid]
        if len(siblings) > 1 and len(s.slices) <= 3 and any(len(o.slices) > 3 * len(s.slices)
                                                           for o in siblings if o is not s):
            for r in s.slices:
                others.append(OtherObject(r.path, "localizer", s.modality, s.uid))
            continue
        final.append(s)
    if len([1 for s in final if s.uid]) != len({s.uid for s in final if s.uid}):
        for s in final:
            if len(by_uid[s.uid]) > 1:
                s.warnings.append(LoadWarning(K.SPLIT_SERIES,
                                              "this series UID mixes orientations, sizes, echoes "
                                              "or acquisitions; it was split into separate series"))
    final.sort(key=lambda s: (-len(s.slices), s.uid))
    rep.step(1.0, "done")
    return ScanResult(final, others, warnings)


_HEADER_ERRORS = (OSError, EOFError, ValueError, KeyError, TypeError,
                  AttributeError, IndexError, RecursionError, OverflowError, MemoryError)


def _header_errors() -> tuple:
    """The errors of an unreadable header: with pydicom's own once pydicom is loaded (it is
    imported only for the files the fast reader leaves to it)."""
    import sys

    mod = sys.modules.get("pydicom.errors")
    return _HEADER_ERRORS + ((mod.InvalidDicomError,) if mod is not None else ())


def _header_error_text(exc: BaseException) -> str:
    """Why a file's header could not be read, in words (no library text, no paths)."""
    if isinstance(exc, RecursionError):
        return "not a readable DICOM file (sequences nested too deeply)"
    if isinstance(exc, PermissionError):
        return "not readable (permission denied)"
    if isinstance(exc, MemoryError):
        return "not a readable DICOM file (declares elements too large to read)"
    return f"not a readable DICOM file ({type(exc).__name__})"


def _header_int(ds, name: str, path: Path, default: int | None = None) -> int:
    """A single non-negative integer header value, or DicomError naming the file and tag."""
    v = ds.get(name, default)
    if v is None or v == "":
        if default is not None:
            return default
        raise DicomError(f"{path.name}: {name} is missing")
    try:
        if isinstance(v, (list, tuple)) or hasattr(v, "__len__") and not isinstance(v, (str, bytes)):
            raise TypeError
        out = int(v)
    except (TypeError, ValueError):
        raise DicomError(f"{path.name}: {name} is not one integer ({str(v)[:40]!r}); "
                         "file ignored") from None
    if out < 0:
        raise DicomError(f"{path.name}: {name} is negative ({out}); file ignored")
    return out


def _add_file(f: Path, ds, groups, meta, others, warnings) -> None:
    """Put one file's image slices in their group (or in ``others`` / ``warnings``)."""
    if "SOPClassUID" not in ds and "Modality" not in ds:
        warnings.append(f"{f.name}: not a DICOM object")
        return
    kind = _non_image_kind(ds)
    uid = str(ds.get("SeriesInstanceUID", "") or "")
    modality = str(ds.get("Modality", "") or "")
    if kind is not None:
        others.append(OtherObject(f, kind, modality, uid))
        return
    image_type = [str(x).upper() for x in (ds.get("ImageType") or [])]
    reason = _unsupported_image(ds, image_type)
    if reason:
        warnings.append(f"{f.name}: {reason}")
        return
    if "LOCALIZER" in image_type or "SCOUT" in image_type:
        others.append(OtherObject(f, "localizer", modality, uid))
        return
    rows, cols = _header_int(ds, "Rows", f), _header_int(ds, "Columns", f)
    if rows == 0 or cols == 0:
        raise DicomError(f"{f.name}: image of {rows}x{cols} pixels; file ignored")
    try:
        if _header_int(ds, "NumberOfFrames", f, 1) > 1:
            import pydicom

            full = pydicom.dcmread(f, stop_before_pixels=True)
            refs = _frame_refs(full, f)
        else:
            ipp = _floats(ds.get("ImagePositionPatient"), 3)
            iop = _floats(ds.get("ImageOrientationPatient"), 6)
            ps = _floats(ds.get("PixelSpacing"), 2)
            if ipp is None or iop is None or ps is None:
                warnings.append(f"{f.name}: image without patient geometry, ignored")
                return
            refs = [SliceRef(f, None, ipp, iop, (float(ps[0]), float(ps[1])),
                             float(ds.get("RescaleSlope", 1.0) or 1.0),
                             float(ds.get("RescaleIntercept", 0.0) or 0.0),
                             int(ds.get("InstanceNumber", 0) or 0), _raw_format(ds))]
    except DicomError as exc:
        warnings.append(str(exc))
        return
    for r in refs:
        key = (uid or f"folder:{f.parent}",
               tuple(np.round(r.iop, 3)), rows, cols,
               str(ds.get("EchoNumbers", "")))
        groups[key].append((r, ds.get("AcquisitionNumber", None)))
        meta.setdefault(key, dict(uid=uid, modality=modality,
                                  description=str(ds.get("SeriesDescription", "") or ""),
                                  rows=rows, cols=cols,
                                  number=ds.get("SeriesNumber", None),
                                  frame_of_reference=str(ds.get("FrameOfReferenceUID", "") or "")))


def _build_series(groups, meta, others) -> list[SeriesInfo]:
    out = []
    for key, items in groups.items():
        # split acquisitions that overlap in space (same positions repeated)
        acqs = defaultdict(list)
        for r, acq in items:
            acqs[acq].append(r)
        positions = [tuple(np.round(r.position, 2)) for r, _ in items]
        if len(acqs) > 1 and len(set(positions)) < len(positions):
            parts = list(acqs.values())
        else:
            parts = [[r for r, _ in items]]
        m = meta[key]
        for part in parts:
            info = SeriesInfo(uid=m["uid"], modality=m["modality"], description=m["description"],
                              slices=part, series_number=m["number"],
                              frame_of_reference=m["frame_of_reference"])
            _sort_and_measure(info, m["rows"], m["cols"])
            out.append(info)
    return out


def _sort_and_measure(info: SeriesInfo, rows: int, cols: int) -> None:
    """Sort slices along the normal and fill size/spacing/origin/direction/warnings."""
    iop = info.slices[0].iop
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    info.slices.sort(key=lambda r: float(np.dot(r.position, normal)))
    d = np.array([float(np.dot(r.position, normal)) for r in info.slices])
    dup = np.sum(np.abs(np.diff(d)) < 1e-3) if len(d) > 1 else 0
    if dup:
        info.warnings.append(LoadWarning(K.DUPLICATE_POSITIONS, f"{dup} slice(s) share a position "
                                         "with another; duplicates ignored"))
        keep = [0] + [n for n in range(1, len(d)) if abs(d[n] - d[n - 1]) >= 1e-3]
        info.slices = [info.slices[n] for n in keep]
        d = d[keep]
    ps = info.slices[0].pixel_spacing
    n_slices = len(info.slices)
    k_dir = normal.copy()
    sk = float(info.slices[0].pixel_spacing[0])
    if len(info.slices) > 1:
        gaps = np.diff(d)
        sk = float(np.median(gaps))
        step = info.slices[-1].position - info.slices[0].position
        step_dir = step / np.linalg.norm(step)
        tilt = np.degrees(np.arccos(np.clip(abs(np.dot(step_dir, normal)), -1, 1)))
        if tilt > 0.05:
            info.warnings.append(LoadWarning(K.GANTRY_TILT, f"gantry tilt of {tilt:.1f} degrees: "
                                             "geometry corrected by resampling onto an orthogonal "
                                             "grid"))
            k_dir = step_dir
        if np.any(gaps > 1.5 * sk):
            per_gap = np.round(gaps[gaps > 1.5 * sk] / sk) - 1
            missing = int(np.sum(per_gap))
            at = [float(x) for x in d[:-1][gaps > 1.5 * sk] - d[0]]
            if per_gap.max() > MAX_MISSING_IN_A_GAP:
                info.unloadable = (
                    f"series {info.uid or '(no UID)'} has a gap of {gaps.max():.1f} mm "
                    f"({int(per_gap.max())} consecutive slices missing for {sk:.2f} mm spacing) "
                    f"{at[int(np.argmax(per_gap))]:.0f} mm from its first slice: too much to "
                    f"interpolate (at most {MAX_MISSING_IN_A_GAP}); re-send the complete series")
            n_slices = int(round((d[-1] - d[0]) / sk)) + 1
            info.warnings.append(LoadWarning(
                K.MISSING_SLICES, f"{missing} missing slice(s) in the series (gap of up to "
                f"{gaps.max():.2f} mm for {sk:.2f} mm spacing, "
                + "starting " + ", ".join(f"{x:.0f}" for x in at[:5]) + " mm from the first slice); "
                "filled by linear interpolation between the neighbouring slices"))
        elif np.max(np.abs(gaps - sk)) > max(0.01 * sk, 0.01):
            info.warnings.append(LoadWarning(
                K.NONUNIFORM_SPACING, f"non-uniform slice spacing ({gaps.min():.2f} to "
                f"{gaps.max():.2f} mm); resampled to uniform spacing"))
        if tilt > 0.05:
            sk = float(np.linalg.norm(step) / (len(d) - 1) * abs(np.dot(step_dir, normal))) \
                if not np.any(gaps > 1.5 * sk) else sk
    if len(info.slices) < MIN_VOLUME_SLICES:
        thick = ("the slice spacing is taken from the pixel spacing, a guess"
                 if len(info.slices) == 1 else "too few to plan on")
        info.warnings.append(LoadWarning(K.TOO_FEW_SLICES, f"only {len(info.slices)} slice(s): "
                                         f"not a volume (a localizer or a partial transfer?); "
                                         f"{thick}"))
    # the grid the loader builds: a gap's missing slices are interpolated, so they count
    info.size = [cols, rows, n_slices]
    info.spacing = [float(ps[1]), float(ps[0]), sk]
    info.origin = [float(x) for x in info.slices[0].position]
    direction = np.stack([row_dir, col_dir, normal], axis=1)
    info.direction = [float(x) for x in direction.ravel()]
