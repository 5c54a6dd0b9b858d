"""Load one image series (DICOM) or image file (NIfTI/NRRD/MHA) into a Volume.

Geometry rules (a mirrored or shifted volume is a wrong-side operation):
slices are sorted by their position along the slice normal (never by file name
or InstanceNumber); rescale slope/intercept are applied per slice (CT in HU);
missing slices, non-uniform spacing and gantry tilt are detected, warned about,
and corrected by resampling onto a uniform orthogonal grid. Source files are
opened read-only and never written.
"""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..atomic import atomic_output_path
from ..errors import DicomError, InvalidInputError, OutputError, TooLargeError
from ..memory import available_bytes
from .load_warnings import LoadWarning, LoadWarningKind as K, warning_kind
from ..tasks import Reporter
from ..volume import Volume
from .scan import ScanResult, SeriesInfo, is_image_file, scan

__all__ = ["load_volume", "load_series", "read_image_file", "read_image_header", "write_volume",
           "select_series",
           "check_nifti_file", "check_declared_size"]

_UNCOMPRESSED_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


def _raw_pixel_offset(fh, fmt: tuple) -> int | None:
    """Offset of the pixels when the PixelData element is the file's last element (checked)."""
    rows, cols, dt, explicit = fmt
    n = rows * cols * np.dtype(dt).itemsize
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    head = 12 if explicit else 8
    if size < n + head + 132:
        return None
    fh.seek(size - n - head)
    hdr = fh.read(head)
    if hdr[:4] != b"\xe0\x7f\x10\x00":
        return None
    length = int.from_bytes(hdr[8:12] if explicit else hdr[4:8], "little")
    if length != n or (explicit and hdr[4:6] not in (b"OW", b"OB")):
        return None
    return size - n


def _read_raw(path: Path, fmt: tuple) -> np.ndarray | None:
    """Fast path: the PixelData element is the file's last element (checked), read it directly."""
    rows, cols, dt, _ = fmt
    out = np.empty((rows, cols), dtype=dt)
    return out if _read_raw_into(path, fmt, out) else None


def _read_raw_into(path: Path, fmt: tuple, out: np.ndarray) -> bool:
    """Read the uncompressed pixels of ``path`` straight into ``out`` (no copy); False if not possible."""
    with open(path, "rb") as fh:
        offset = _raw_pixel_offset(fh, fmt)
        if offset is None:
            return False
        fh.seek(offset)
        view = memoryview(out).cast("B")
        return fh.readinto(view) == len(view)


def _decode_file(path: Path, frames: list[int | None],
                 fmt: tuple | None = None) -> dict[int | None, np.ndarray]:
    if fmt is not None and frames == [None]:
        try:
            arr = _read_raw(path, fmt)
        except OSError:
            arr = None
        if arr is not None:
            return {None: arr}
    import pydicom  # compressed or unusual files only: a plain series is read without it

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is bad input here
        raise DicomError(f"{path.name}: cannot be read ({type(exc).__name__})") from None
    if "PixelData" not in ds:
        raise DicomError(f"{path.name}: has no pixel data")
    missing = [t for t in ("Rows", "Columns", "BitsAllocated") if t not in ds]
    if missing:
        raise DicomError(f"{path.name}: the pixel description is incomplete (no {', '.join(missing)})")
    try:
        return _decode_dataset(ds, path, frames)
    except (AttributeError, TypeError, ValueError, OverflowError):
        raise DicomError(f"{path.name}: the pixel description (rows, columns, bits, frames) "
                         "is invalid") from None


def _decode_dataset(ds, path: Path, frames: list[int | None]) -> dict[int | None, np.ndarray]:
    ts = str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))
    nf = int(ds.get("NumberOfFrames", 1) or 1)
    if (ts in _UNCOMPRESSED_LE and int(ds.get("SamplesPerPixel", 1)) == 1
            and int(ds.BitsAllocated) in (8, 16, 32)):
        dt = {8: "u1", 16: "u2", 32: "u4"}[int(ds.BitsAllocated)]
        if int(ds.get("PixelRepresentation", 0)) == 1:
            dt = dt.replace("u", "i")
        dt = "<" + dt
        n = int(ds.Rows) * int(ds.Columns) * nf
        if len(ds.PixelData) < n * np.dtype(dt).itemsize:
            raise DicomError(f"{path.name}: pixel data is truncated")
        raw = np.frombuffer(ds.PixelData, dtype=dt, count=n)
        bits_stored = int(ds.get("BitsStored", ds.BitsAllocated))
        if bits_stored < int(ds.BitsAllocated):
            raw = _mask_bits(raw, bits_stored, int(ds.get("PixelRepresentation", 0)) == 1)
        arr = raw.reshape(nf, int(ds.Rows), int(ds.Columns))
    else:
        try:
            arr = ds.pixel_array
        except Exception as exc:  # noqa: BLE001 - decoder plugins raise many types
            import pydicom.uid

            name = pydicom.uid.UID(ts).name if ts else "unknown"
            raise DicomError(f"{path.name}: cannot decode pixel data in transfer syntax {name} "
                             f"({exc.__class__.__name__}: install the pylibjpeg plugins or GDCM)"
                             ) from None
        arr = np.asarray(arr)
        if arr.ndim == 2:
            arr = arr[None]
    if arr.ndim != 3:
        raise DicomError(f"{path.name}: colour or unusual pixel data is not supported for planning")
    return {f: arr[0 if f is None else f] for f in frames}


def _mask_bits(raw: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    u = raw.view(raw.dtype.str.replace("i", "u")) & ((1 << bits) - 1)
    if signed:
        sign = 1 << (bits - 1)
        return (u.astype(np.int64) ^ sign) - sign
    return u


def _read_slices(info: SeriesInfo, rep: Reporter) -> np.ndarray:
    """The raw (stored) pixels of ``info.slices`` as one [k, j, i] array, in slice order.

    Files are decoded in a thread pool (file reads and numpy release the GIL). When every
    slice is uncompressed with the same layout, the pixels are read straight into one
    preallocated stack (no per-slice arrays, no stacking copy).
    """
    by_file: dict[Path, list[int | None]] = defaultdict(list)
    fmt: dict[Path, tuple | None] = {}
    for r in info.slices:
        by_file[r.path].append(r.frame)
        fmt[r.path] = r.raw_format
    files = list(by_file)
    fmts = {r.raw_format for r in info.slices}
    direct = (len(fmts) == 1 and None not in fmts and len(files) == len(info.slices))
    stack = None
    index: dict[Path, int] = {}
    if direct:
        rows, cols, dt, _ = next(iter(fmts))
        stack = np.empty((len(info.slices), rows, cols), dtype=dt)
        index = {r.path: k for k, r in enumerate(info.slices)}

    def work(f: Path) -> dict[int | None, np.ndarray]:
        if stack is not None:
            try:
                if _read_raw_into(f, fmt[f], stack[index[f]]):
                    return {}
            except OSError:
                pass
        return _decode_file(f, by_file[f], fmt[f])

    decoded: dict[tuple[Path, int | None], np.ndarray] = {}
    in_stack: set[Path] = set()
    workers = min(8, (os.cpu_count() or 2) * 2)
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [(f, pool.submit(work, f)) for f in files]
        for n, (f, fut) in enumerate(futures):
            try:
                arrays = fut.result()
                if not arrays:
                    in_stack.add(f)
                for frame, a in arrays.items():
                    decoded[(f, frame)] = a
            except DicomError as exc:
                failed.append(str(exc))
            if n % 16 == 0:
                rep.step(n / len(futures), "reading pixels")
    if not decoded and not in_stack:
        raise DicomError(f"no slice of the series could be decoded: {failed[0]}")
    shapes = {a.shape for a in decoded.values()} | ({stack.shape[1:]} if in_stack else set())
    if len(shapes) != 1:
        raise DicomError(f"series mixes image sizes {sorted(shapes)}")
    if stack is not None and all(a.dtype == stack.dtype for a in decoded.values()):
        for (f, _), a in decoded.items():
            stack[index[f]] = a
            in_stack.add(f)
        decoded.clear()
    elif stack is not None:  # a slice decoded to another dtype: stack them all as before
        for f in in_stack:
            decoded[(f, None)] = stack[index[f]]
        in_stack.clear()
        stack = None
    if failed:
        info.warnings.extend(LoadWarning(K.SLICE_SKIPPED, f"{msg}; slice skipped") for msg in failed)
        keep = [k for k, r in enumerate(info.slices) if r.path in in_stack or (r.path, r.frame) in decoded]
        if stack is not None:
            stack = stack[keep]
        info.slices = [info.slices[k] for k in keep]
        _remeasure(info)
    if stack is not None:
        return stack
    return np.stack([decoded[(r.path, r.frame)] for r in info.slices])


def _remeasure(info: SeriesInfo) -> None:
    from .scan import _sort_and_measure

    remeasured = (K.MISSING_SLICES, K.NONUNIFORM_SPACING, K.DUPLICATE_POSITIONS, K.GANTRY_TILT,
                  K.TOO_FEW_SLICES)
    kept = [w for w in info.warnings if warning_kind(w) not in remeasured]
    info.warnings = kept
    info.unloadable = ""
    _sort_and_measure(info, info.size[1], info.size[0])


def _rescaled_stack(info: SeriesInfo, stack: np.ndarray) -> np.ndarray:
    """Stored values -> modality values (HU on CT); rescales ``stack`` in place when the type allows."""
    slopes = np.array([r.slope for r in info.slices])
    icpts = np.array([r.intercept for r in info.slices])
    integral = np.all(slopes == np.round(slopes)) and np.all(icpts == np.round(icpts))
    if integral:
        lo = float(stack.min()) * slopes.max() + icpts.min() if stack.size else 0
        hi = float(stack.max()) * slopes.max() + icpts.max() if stack.size else 0
        dt = np.int16 if -32768 <= min(lo, hi) and max(lo, hi) <= 32767 else np.int32
        if stack.dtype == dt:
            out = stack
        elif (stack.dtype == np.uint16 and dt == np.int16 and stack.size
              and int(stack.max()) <= 32767):
            out = stack.view(np.int16)  # the same values: no second full-size array
        else:
            out = stack.astype(dt)
        if np.all(slopes == 1) and np.all(icpts == icpts[0]):
            out += dt(icpts[0])
        else:  # slice by slice, in the same integer arithmetic: no full-size temporaries
            for k in range(out.shape[0]):
                np.multiply(out[k], dt(slopes[k]), out=out[k])
                np.add(out[k], dt(icpts[k]), out=out[k])
        return out
    out = np.empty(stack.shape, np.float32)
    for k in range(stack.shape[0]):  # slice by slice: one float32 array, no temporaries
        np.multiply(stack[k], np.float32(slopes[k]), out=out[k], dtype=np.float32)
        np.add(out[k], np.float32(icpts[k]), out=out[k])
    return out


def load_series(info: SeriesInfo, *, progress=None, cancel=None) -> Volume:
    """Decode one scanned series into a Volume in LPS geometry.

    Non-uniform spacing, missing slices and gantry tilt are resampled onto a uniform
    orthogonal grid (linear interpolation) and reported in ``Volume.warnings``.
    """
    rep = Reporter(progress, cancel)
    if not info.slices:
        raise DicomError("the series has no image slices")
    if info.unloadable:
        raise DicomError(info.unloadable)
    fmt0 = info.slices[0].raw_format
    itemsize = np.dtype(fmt0[2]).itemsize if fmt0 else 2
    check_declared_size(int(info.size[0]) * int(info.size[1]) * len(info.slices) * max(itemsize, 2),
                        f"series {info.uid or '(no UID)'}")
    raw = _read_slices(info, rep.sub(0.0, 0.85))
    if info.unloadable:  # skipped slices left a gap too long to interpolate
        raise DicomError(info.unloadable)
    stack = _rescaled_stack(info, raw)
    del raw
    rep.step(0.9, "building geometry")
    iop = info.slices[0].iop
    row_dir, col_dir = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    normal = np.cross(row_dir, col_dir)
    sj, si = info.slices[0].pixel_spacing
    p0 = info.slices[0].position
    rel = np.array([r.position - p0 for r in info.slices])
    a, b, d = rel @ row_dir, rel @ col_dir, rel @ normal
    uniform = True
    sk = float(info.spacing[2]) if len(info.slices) > 1 else float(sj)
    if len(d) > 1:
        gaps = np.diff(d)
        uniform = (np.max(np.abs(gaps - sk)) <= max(0.01 * sk, 0.01)
                   and np.max(np.abs(a)) < 0.01 and np.max(np.abs(b)) < 0.01)
    meta = {"series_uid": info.uid, "description": info.description,
            "frame_of_reference": info.frame_of_reference, "n_files": info.n_files}
    direction = np.stack([row_dir, col_dir, normal], axis=1)
    if uniform:
        vol = Volume(stack, spacing=(si, sj, sk), origin=tuple(p0), direction=direction,
                     modality=info.modality, meta=meta, warnings=list(info.warnings))
    else:
        vol = _resample_stack(stack, a, b, d, si, sj, sk, p0, direction, rep)
        vol.modality, vol.meta, vol.warnings = info.modality, meta, list(info.warnings)
    _read_identity(info, vol)
    rep.step(1.0, "loaded")
    return vol


def _read_identity(info: SeriesInfo, vol: Volume) -> None:
    """Patient identity goes to meta['identity'] only (reports use it when asked)."""
    tags = ["PatientName", "PatientID", "StudyDate", "SeriesDescription"]
    try:
        from .fastheader import read_header

        ds = read_header(info.slices[0].path, tags + ["SpecificCharacterSet"])
        if ds is None:
            import pydicom

            ds = pydicom.dcmread(info.slices[0].path, stop_before_pixels=True, specific_tags=tags)
        vol.meta["identity"] = {"patient_name": str(ds.get("PatientName", "")),
                                "patient_id": str(ds.get("PatientID", "")),
                                "study_date": str(ds.get("StudyDate", "")),
                                "series_description": str(ds.get("SeriesDescription", "") or "")}
    except Exception:  # noqa: BLE001 - identity is optional
        vol.meta["identity"] = {}


def _resample_stack(stack, a, b, d, si, sj, sk, p0, direction, rep: Reporter) -> Volume:
    """Resample slices at in-plane offsets (a, b) and normal positions d onto a regular grid."""
    nk_src, nj, ni = stack.shape
    oa, ob = float(min(a.min(), 0)), float(min(b.min(), 0))
    ni_out = ni + int(np.ceil((a.max() - oa) / si - 1e-6))
    nj_out = nj + int(np.ceil((b.max() - ob) / sj - 1e-6))
    nk_out = int(round((d[-1] - d[0]) / sk)) + 1
    from scipy import ndimage  # only for tilt/gaps: keeps scipy off the plain load path

    cval = float(stack.min())
    out = np.empty((nk_out, nj_out, ni_out), dtype=np.float32)
    for k in range(nk_out):
        if k % 16 == 0:
            rep.step(k / nk_out, "resampling to a regular grid")
        dk = d[0] + k * sk
        n = int(np.clip(np.searchsorted(d, dk, side="right") - 1, 0, nk_src - 2)) if nk_src > 1 else 0
        t = float(np.clip((dk - d[n]) / (d[n + 1] - d[n]), 0, 1)) if nk_src > 1 else 0.0
        acc = np.zeros((nj_out, ni_out), np.float32)
        for m, w in ((n, 1 - t), (n + 1, t)):
            if w <= 1e-6 or m >= nk_src:
                continue
            # output pixel (i', j') sits at in-plane (oa + i' si, ob + j' sj); in slice m that
            # is pixel ((x - a_m) / si, (y - b_m) / sj)
            shifted = ndimage.affine_transform(
                stack[m].astype(np.float32), np.eye(2),
                offset=((ob - b[m]) / sj, (oa - a[m]) / si), output_shape=(nj_out, ni_out),
                order=1, mode="constant", cval=cval)
            acc += np.float32(w) * shifted
        out[k] = acc
    if np.issubdtype(stack.dtype, np.integer):
        out = np.rint(out).astype(stack.dtype)
    origin = p0 + oa * direction[:, 0] + ob * direction[:, 1]
    return Volume(out, spacing=(si, sj, sk), origin=tuple(origin), direction=direction)

_NIFTI_BYTES_PER_VOXEL = {2: 1, 4: 2, 8: 4, 16: 4, 64: 8, 256: 1, 512: 2, 768: 4, 1024: 8,
                          1280: 8, 32: 8, 128: 3, 1536: 16, 1792: 16, 2048: 32, 2304: 4}


MAX_IMAGE_BYTES = 4 << 30
"""Largest raw image spineplan loads (4 GB: 2048 x 2048 x 1000 at 16 bits)."""


def check_declared_size(n_bytes: int, what: str, *, peak_factor: float = 2.5) -> None:
    """Refuse, before allocating, an image whose declared size cannot be loaded.

    Parameters
    ----------
    n_bytes : int
        Raw size the header declares (voxels x bytes per voxel).
    what : str
        Name of the file or series (for the message).
    peak_factor : float
        Peak memory of loading relative to the raw array (bench/bench_memory.py).

    Raises
    ------
    TooLargeError
        When ``n_bytes`` exceeds :data:`MAX_IMAGE_BYTES`, or ``n_bytes * peak_factor`` the
        memory available now (:func:`spineplan.core.memory.available_bytes`, capped by
        ``$SPINEPLAN_MEMORY_LIMIT_MB``).
    """
    if n_bytes > MAX_IMAGE_BYTES:
        raise TooLargeError(
            f"{what}: declares {n_bytes / 2**30:.1f} GB of voxels, more than the "
            f"{MAX_IMAGE_BYTES / 2**30:.0f} GB spineplan loads; crop or downsample it first")
    avail = available_bytes()
    if n_bytes * peak_factor > avail:
        raise TooLargeError(
            f"{what}: declares {_size_text(n_bytes)} of voxels, which needs about "
            f"{_size_text(n_bytes * peak_factor)} to load, and {_size_text(avail)} of memory "
            "is available; free memory, or crop or downsample the image first")


def _size_text(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def _gz_length_at_least(path: Path, n: int) -> bool:
    """True when the gzip stream decompresses to at least ``n`` bytes (False if cut short)."""
    import gzip
    import zlib

    got = 0
    try:
        with gzip.open(path, "rb") as fh:
            while got < n:
                chunk = fh.read(min(16 << 20, n - got))
                if not chunk:
                    return False
                got += len(chunk)
    except (EOFError, OSError, zlib.error):
        return False
    return True


def check_nifti_file(path: str | os.PathLike) -> list[str]:
    """Validate a NIfTI-1/2 header and data length before reading voxels.

    Convention for ambiguous headers (readers disagree, so spineplan refuses rather than
    guess a side): a negative, zero or non-finite pixdim[1..3] is refused (ITK ignores the
    sign, other readers mirror the axis); a qform with a non-finite or out-of-range
    quaternion, or a non-finite/singular sform, is refused; a file with neither qform nor
    sform loads with a warning (its orientation is a guess).

    Returns
    -------
    list of str
        Warnings to attach to the loaded volume.

    Raises
    ------
    InvalidInputError
        Truncated or header-only files, bad spacing or orientation, impossible sizes.
    """
    import gzip
    import io

    import nibabel as nib
    from nibabel.spatialimages import HeaderDataError

    p = Path(path)
    gz = p.name.lower().endswith(".gz")
    try:
        with (gzip.open(p, "rb") if gz else open(p, "rb")) as fh:
            raw = fh.read(540)
    except PermissionError:
        raise InvalidInputError(f"file {p.name} is unreadable (permission denied)") from None
    except (EOFError, OSError):
        raise InvalidInputError(f"{p.name}: not a readable NIfTI file (damaged compression)") from None
    hdr = None
    for cls in (nib.Nifti1Header, nib.Nifti2Header):
        if len(raw) < cls.template_dtype.itemsize:
            continue
        try:
            hdr = cls.from_fileobj(io.BytesIO(raw[:cls.template_dtype.itemsize]), check=False)
        except (HeaderDataError, ValueError):
            continue
        if int(hdr["sizeof_hdr"]) == cls.template_dtype.itemsize and \
                bytes(hdr["magic"]).rstrip(b"\0") in (b"n+1", b"ni1", b"n+2", b"ni2"):
            break
        hdr = None
    if hdr is None:
        raise InvalidInputError(f"{p.name}: not a NIfTI file (header too short or no NIfTI magic)")
    dim = [int(x) for x in hdr["dim"]]
    nd = dim[0]
    if not 1 <= nd <= 7 or any(d < 1 for d in dim[1:nd + 1]):
        raise InvalidInputError(f"{p.name}: invalid image dimensions {dim[1:max(nd, 0) + 1]} in the header")
    datatype = int(hdr["datatype"])
    bpv = _NIFTI_BYTES_PER_VOXEL.get(datatype)
    if bpv is None:
        raise InvalidInputError(f"{p.name}: unsupported NIfTI datatype code {datatype}")
    nvox = int(np.prod(np.array(dim[1:nd + 1], dtype=object)))
    check_declared_size(nvox * bpv, p.name)
    pixdim = np.asarray(hdr["pixdim"], float)
    used = pixdim[1:min(nd, 3) + 1]
    if not np.all(np.isfinite(used)):
        raise InvalidInputError(f"{p.name}: voxel spacing (pixdim) is not a number: {used.tolist()}")
    if np.any(used == 0):
        raise InvalidInputError(f"{p.name}: voxel spacing (pixdim) is zero: {used.tolist()}")
    if np.any(used < 0):
        raise InvalidInputError(
            f"{p.name}: negative voxel spacing (pixdim {used.tolist()}): readers disagree whether "
            "that mirrors the image, so it could open left-right flipped; rewrite it with "
            "positive pixdim and the orientation in the qform/sform")
    warnings: list[str] = []
    qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    if not (0 <= qcode <= 5 and 0 <= scode <= 5):
        # readers disagree on an invalid code (one drops the qform, another still uses it)
        raise InvalidInputError(f"{p.name}: invalid orientation codes in the header (qform_code "
                                f"{qcode}, sform_code {scode}; valid are 0 to 5)")
    if qcode > 0:
        q = np.array([hdr["quatern_b"], hdr["quatern_c"], hdr["quatern_d"],
                      hdr["qoffset_x"], hdr["qoffset_y"], hdr["qoffset_z"]], float)
        if not np.all(np.isfinite(q)):
            raise InvalidInputError(f"{p.name}: the qform orientation (quaternion/offset) is not a number")
        if float(np.sum(q[:3] ** 2)) > 1.0 + 1e-4:
            raise InvalidInputError(f"{p.name}: the qform quaternion is not a rotation "
                                    f"(b^2+c^2+d^2 = {float(np.sum(q[:3] ** 2)):.3f} > 1)")
    if scode > 0:
        srow = np.array([hdr["srow_x"], hdr["srow_y"], hdr["srow_z"]], float)
        if not np.all(np.isfinite(srow)):
            raise InvalidInputError(f"{p.name}: the sform affine is not a number")
        if abs(np.linalg.det(srow[:, :3])) < 1e-9:
            raise InvalidInputError(f"{p.name}: the sform affine is singular (no orientation)")
    if qcode == 0 and scode == 0:
        warnings.append("the NIfTI header holds no orientation (qform_code = sform_code = 0): "
                        "left and right are a guess; check the side on the images")
    offset = int(hdr["vox_offset"])
    need = offset + nvox * bpv
    if gz:
        ok = _gz_length_at_least(p, need)
    else:
        ok = p.stat().st_size >= need
    if not ok:
        raise InvalidInputError(f"{p.name}: the file is truncated (the header declares "
                                f"{'x'.join(map(str, dim[1:nd + 1]))} voxels, fewer are stored)")
    return warnings


def _open_image(p: Path):
    """An ITK reader of ``p`` with its header read (voxels not read), and the header warnings."""
    import SimpleITK as sitk

    if not p.is_file():
        raise InvalidInputError(f"{p} does not exist")
    header_warnings = []
    if p.name.lower().endswith((".nii", ".nii.gz")):
        header_warnings = check_nifti_file(p)
    # ITK prints its warnings (several lines, C++ file names) straight to the terminal; what
    # matters is checked here and said in one line instead
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InvalidInputError(f"{p.name}: cannot be read as a NIfTI/NRRD/MHA image") from None
    dim = reader.GetDimension()
    if not (dim == 3 or dim == 4 and reader.GetSize()[3] == 1):
        raise InvalidInputError(f"{p.name}: expected a 3D image, got {dim if dim != 4 else 4}D")
    if reader.GetNumberOfComponents() != 1:
        raise InvalidInputError(f"{p.name}: colour/vector images are not supported")
    return reader, header_warnings


def _checked_direction(direction: np.ndarray, name: str) -> None:
    if abs(abs(np.linalg.det(direction)) - 1) > 1e-3 or not np.allclose(
            direction.T @ direction, np.eye(3), atol=1e-3):
        raise InvalidInputError(f"{name}: non-orthogonal direction matrix")


def _nifti_voxels_direct(p: Path, reader) -> np.ndarray | None:
    """The voxels of an unscaled 3D NIfTI read straight into one array, or None when ITK
    must read them (scaled values, other byte order, a type ITK converts).

    The NIfTI's voxel order (i fastest) is the [k, j, i] order of ``GetArrayFromImage``;
    reading in chunks into the one array avoids ITK's buffer and its copy (2x the raw size).
    """
    import gzip
    import io

    import nibabel as nib
    import SimpleITK as sitk

    if reader.GetDimension() != 3:
        return None
    gz = p.name.lower().endswith(".gz")
    with (gzip.open(p, "rb") if gz else open(p, "rb")) as fh:
        raw = fh.read(540)
        cls = {348: nib.Nifti1Header, 540: nib.Nifti2Header}.get(int.from_bytes(raw[:4], "little"))
        if cls is None:  # big-endian or unusual: ITK reads it
            return None
        try:
            hdr = cls.from_fileobj(io.BytesIO(raw[:cls.template_dtype.itemsize]), check=False)
        except Exception:  # noqa: BLE001 - ITK reads it instead
            return None
        slope, inter = float(hdr["scl_slope"]), float(hdr["scl_inter"])
        if not (slope in (0.0, 1.0) and inter == 0.0):
            return None
        dt = hdr.get_data_dtype()
        if not dt.isnative or dt.kind not in "uif" or dt.itemsize > 8:
            return None
        want = sitk.GetArrayViewFromImage(sitk.Image([1, 1, 1], reader.GetPixelID())).dtype
        if np.dtype(want) != dt:
            return None
        dims = [int(x) for x in hdr["dim"][1:4]]
        if int(hdr["dim"][0]) != 3 or tuple(dims) != tuple(reader.GetSize()):
            return None
        out = np.empty(dims[::-1], dtype=dt)
        view = memoryview(out).cast("B")
        fh.seek(int(hdr["vox_offset"]))
        got, step = 0, 16 << 20
        while got < len(view):
            n = fh.readinto(view[got:got + step])
            if not n:
                raise InvalidInputError(f"{p.name}: the file is truncated")
            got += n
    return out


def read_image_header(path: str | os.PathLike) -> dict:
    """Size, spacing, origin and direction (LPS) of a NIfTI / NRRD / MetaImage file, from its
    header only (the voxels are not read), checked as :func:`read_image_file` checks them.

    Returns
    -------
    dict
        ``size`` (i, j, k), ``spacing``, ``origin``, ``direction`` (9 numbers, columns = i, j,
        k) and ``warnings``.
    """
    p = Path(path)
    reader, warnings = _open_image(p)
    spacing, origin = reader.GetSpacing()[:3], reader.GetOrigin()[:3]
    d = np.array(reader.GetDirection(), float).reshape(reader.GetDimension(), -1)[:3, :3]
    if reader.GetDimension() == 4:  # one volume of 4D: read as read_image_file does
        v = read_image_file(p)
        spacing, origin, d = v.spacing, v.origin, v.direction
    elif not (all(np.isfinite(x) and x > 0 for x in spacing) and np.all(np.isfinite(origin))
              and np.all(np.isfinite(d))):
        raise InvalidInputError(f"{p.name}: spacing must be positive and origin and direction "
                                "finite numbers")
    _checked_direction(d, p.name)
    return {"size": [int(x) for x in reader.GetSize()[:3]], "spacing": [float(x) for x in spacing],
            "origin": [float(x) for x in origin], "direction": [float(x) for x in d.ravel()],
            "warnings": list(warnings)}


def read_image_file(path: str | os.PathLike) -> Volume:
    """Read NIfTI / NRRD / MetaImage through SimpleITK (geometry converted to LPS by ITK)."""
    import SimpleITK as sitk

    p = Path(path)
    reader, header_warnings = _open_image(p)
    arr = _nifti_voxels_direct(p, reader) if p.name.lower().endswith((".nii", ".nii.gz")) else None
    try:
        if arr is not None:  # geometry from ITK's own reading of the header
            vol = Volume(arr, spacing=reader.GetSpacing(), origin=reader.GetOrigin(),
                         direction=np.array(reader.GetDirection()).reshape(3, 3))
        else:
            try:
                img = reader.Execute()
            except RuntimeError:
                raise InvalidInputError(f"{p.name}: cannot be read as a NIfTI/NRRD/MHA image") from None
            if img.GetDimension() == 4:
                img = img[:, :, :, 0]
            vol = Volume.from_sitk(img)
            del img
    except ValueError as exc:  # zero/NaN spacing, non-finite origin or direction
        raise InvalidInputError(f"{p.name}: {exc}") from None
    _checked_direction(vol.direction, p.name)
    arr = vol.array
    modality = "CT" if arr.min() < -500 and arr.max() > 300 else ""
    vol.modality = modality
    vol.meta = {"series_uid": "", "description": p.name, "source_file": p.name}
    vol.warnings.extend(header_warnings)
    return vol


def select_series(result: ScanResult, series_uid: str | None = None) -> SeriesInfo:
    """The series to load: the one with ``series_uid``, or the only image series."""
    if not result.series:
        hint = f" ({'; '.join(result.warnings[:3])})" if result.warnings else ""
        raise DicomError(f"no loadable DICOM image series found{hint}")
    if series_uid:
        for s in result.series:
            if s.uid == series_uid:
                return s
        raise DicomError(f"series {series_uid} not found; found: "
                         + ", ".join(s.uid or "(no UID)" for s in result.series))
    if len(result.series) > 1:
        raise DicomError(f"{len(result.series)} image series found; choose one with --series: "
                         + ", ".join(f"{s.uid or '(no UID)'} [{s.modality} {s.size[2]} slices]"
                                     for s in result.series))
    return result.series[0]


def load_volume(path: str | os.PathLike, series_uid: str | None = None, *,
                progress=None, cancel=None) -> Volume:
    """Load what the user opened: an image file, or a DICOM folder/file/DICOMDIR/zip.

    Raises
    ------
    InvalidInputError / DicomError
        With a one-line message when nothing loadable is found or the choice is ambiguous.
    """
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"{p} does not exist")
    if p.is_file() and is_image_file(p):
        return read_image_file(p)
    rep = Reporter(progress, cancel)
    result = scan(p, progress=rep.sub(0, 0.2).callback(), cancel=cancel)
    info = select_series(result, series_uid)
    vol = load_series(info, progress=rep.sub(0.2, 1.0).callback(), cancel=cancel)
    vol.warnings.extend(w for w in result.warnings if w not in vol.warnings)
    return vol


def write_volume(volume: Volume, path: str | os.PathLike) -> Path:
    """Write a Volume as NIfTI (.nii/.nii.gz), NRRD (.nrrd) or MetaImage (.mha), atomically.

    A NIfTI of an unrotated grid is written straight from the array after the header ITK
    would write (``nifti_header.nifti1_header``: SimpleITK is not even imported); other
    NIfTIs after ITK's own header; NRRD and MHA by ITK.
    """
    p = Path(path)
    name = p.name.lower()
    if not name.endswith((".nii", ".nii.gz", ".nrrd", ".mha")):
        raise InvalidInputError(f"{p.name}: output must end in .nii.gz, .nii, .nrrd or .mha")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {p}: {exc.strerror or type(exc).__name__} "
                          f"({p.parent} is not a folder)") from None
    with atomic_output_path(p) as tmp:
        try:
            header = None
            if name.endswith((".nii", ".nii.gz")):
                header = _direct_nifti_header(volume)
                if header is None:
                    header = _itk_nifti_header(volume, tmp)
            if header is not None:
                _write_nifti_voxels(header, volume.array, tmp, gz=name.endswith(".gz"))
            else:
                import SimpleITK as sitk

                sitk.WriteImage(volume.to_sitk(), str(tmp),
                                useCompression=name.endswith((".gz", ".nrrd", ".mha")))
        except (RuntimeError, OSError):
            raise OutputError(f"cannot write {p}: the image writer failed (disk full?)") from None
    return p


_NIFTI_DIRECT_TYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.uint32,
                                             np.int32, np.float32, np.float64)}


def _direct_nifti_header(volume: Volume) -> bytes | None:
    """ITK's NIfTI-1 header for ``volume`` made without ITK, or None (a rotated grid, ...)."""
    from .nifti_header import nifti1_header

    arr = volume.array
    if not arr.flags.c_contiguous:
        return None
    return nifti1_header(arr.shape, arr.dtype, volume.spacing, volume.origin, volume.direction)


def _itk_nifti_header(volume: Volume, tmp: Path) -> bytes | None:
    """The 352 bytes (header and empty extension) ITK writes for ``volume`` as NIfTI-1, made
    by writing a 1x1x1 image of the same pixel type and geometry to ``tmp`` (the output's
    temporary file, overwritten next) and setting its dimensions; None when ITK must write
    the file itself (NIfTI-2 sizes, other types).

    ITK's header depends on the dimensions only through ``dim[1..3]``
    (tests/core/test_memory.py compares whole files): the voxels are then written from the
    array itself, without ITK's copy of the whole image.
    """
    import gzip
    import struct

    import SimpleITK as sitk

    arr = volume.array
    if (arr.dtype not in _NIFTI_DIRECT_TYPES or not arr.dtype.isnative
            or max(arr.shape) > 32767 or not arr.flags.c_contiguous):
        return None
    tiny = sitk.GetImageFromArray(np.zeros((1, 1, 1), arr.dtype))
    tiny.SetSpacing(volume.spacing)
    tiny.SetOrigin(volume.origin)
    tiny.SetDirection(tuple(volume.direction.ravel()))
    sitk.WriteImage(tiny, str(tmp), useCompression=False)
    with (gzip.open(tmp, "rb") if tmp.name.lower().endswith(".gz") else open(tmp, "rb")) as fh:
        raw = fh.read(1024)
    if (len(raw) != 352 + arr.itemsize or struct.unpack_from("<i", raw, 0)[0] != 348
            or struct.unpack_from("<8h", raw, 40) != (3, 1, 1, 1, 1, 1, 1, 1)
            or struct.unpack_from("<f", raw, 108)[0] != 352.0):
        return None
    hdr = bytearray(raw[:352])
    nk, nj, ni = arr.shape
    struct.pack_into("<3h", hdr, 42, ni, nj, nk)
    return bytes(hdr)


def _write_nifti_voxels(header: bytes, arr: np.ndarray, path: Path, *, gz: bool) -> None:
    """``header`` then the voxels of the C-ordered [k, j, i] array (NIfTI order), in chunks."""
    import gzip

    view = memoryview(arr).cast("B")
    step = 16 << 20
    with (gzip.open(path, "wb", compresslevel=6) if gz else open(path, "wb")) as fh:
        fh.write(header)
        for n in range(0, len(view), step):
            fh.write(view[n:n + step])
