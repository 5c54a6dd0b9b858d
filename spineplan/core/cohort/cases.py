"""The cases of a cohort: finding them, their anonymous ids, and running one.

A case is one image file (NIfTI/NRRD/MHA), one DICOM file, zip or folder (one series). A folder
that holds DICOM files itself is one case; any other folder is a folder of cases (each image
file, zip and sub-folder in it one case). A case is keyed by an anonymous id, an HMAC of its
resolved path under the cohort's secret key (``case-`` + 12 hex digits): stable for
``--resume`` in the same output folder, and not recomputable from a guessed name or path
without the key. Nothing a case writes names its path or its patient.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import InvalidInputError, OutputError, SegmentationError, SpineplanError

__all__ = ["InputKind", "CaseStatus", "FailureKind", "CaseInput", "CaseTask", "discover_cases",
           "case_id", "fingerprint", "run_case", "failure_kind", "Scrubber", "case_json_path",
           "case_labels_path", "tasks_for", "failure_record", "write_case_record", "CASES_DIR",
           "CASE_FORMAT"]

CASES_DIR = "cases"
CASE_FORMAT = "spineplan-cohort-case"
CASE_FORMAT_VERSION = 1


class InputKind(str, enum.Enum):
    IMAGE_FILE = "image_file"   # NIfTI / NRRD / MHA
    DICOM = "dicom"             # a DICOM file, folder, DICOMDIR or zip


class CaseStatus(str, enum.Enum):
    OK = "ok"
    FAILED = "failed"
    NOT_RUN = "not_run"         # the run was interrupted before this case finished


class FailureKind(str, enum.Enum):
    INVALID_INPUT = "invalid_input"    # unreadable, inconsistent or unsupported input
    SEGMENTATION = "segmentation"      # the segmenter did not find the anatomy it needs
    OUTPUT = "output"                  # a result that could not be written
    OUT_OF_MEMORY = "out_of_memory"
    WORKER_LOST = "worker_lost"        # the worker process died
    INTERNAL = "internal"              # a bug in spineplan: please report it


def failure_kind(exc: BaseException) -> FailureKind:
    """The kind of failure an exception of a case means."""
    if isinstance(exc, OutputError):
        return FailureKind.OUTPUT
    if isinstance(exc, (InvalidInputError, OSError)):  # OSError: an input that cannot be read
        return FailureKind.INVALID_INPUT
    if isinstance(exc, SegmentationError):
        return FailureKind.SEGMENTATION
    if isinstance(exc, MemoryError):
        return FailureKind.OUT_OF_MEMORY
    if isinstance(exc, SpineplanError):
        return FailureKind.INVALID_INPUT
    return FailureKind.INTERNAL


@dataclass(frozen=True)
class CaseInput:
    """One case found among the inputs."""

    path: Path          # resolved
    kind: InputKind


def _is_dicom_file(p: Path) -> bool:
    if p.suffix.lower() == ".dcm":
        return True
    try:
        with open(p, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _case_of_file(p: Path) -> CaseInput:
    from ..dicom.scan import is_image_file

    return CaseInput(p, InputKind.IMAGE_FILE if is_image_file(p) else InputKind.DICOM)


def _holds_dicom(folder: Path) -> bool:
    """A folder that is itself one DICOM case: a DICOMDIR or DICOM files directly in it."""
    for child in folder.iterdir():
        if child.is_file() and (child.name.upper() == "DICOMDIR" or _is_dicom_file(child)):
            return True
    return False


def _cases_in_folder(folder: Path, exclude: Path | None) -> list[CaseInput]:
    from ..dicom.scan import is_image_file

    out = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):
            continue
        r = child.resolve()
        if exclude is not None and (r == exclude or exclude in r.parents):
            continue  # the cohort's own output folder
        if child.is_dir():
            out.append(CaseInput(r, InputKind.DICOM))
        elif is_image_file(child) or child.suffix.lower() == ".zip":
            out.append(_case_of_file(r))
    return out


def discover_cases(inputs: Iterable[str | os.PathLike], *, exclude: str | os.PathLike | None = None
                   ) -> list[CaseInput]:
    """The cases among ``inputs`` (files, DICOM folders, folders of cases), in the order given,
    each once; ``exclude`` (the output folder) is never a case.

    Raises
    ------
    InvalidInputError
        An input that does not exist, or no case at all.
    """
    ex = Path(exclude).resolve() if exclude is not None else None
    found: dict[Path, CaseInput] = {}
    for x in inputs:
        p = Path(x)
        if not p.exists():
            raise InvalidInputError(f"{p} does not exist")
        if p.is_file():
            cases = [_case_of_file(p.resolve())]
        elif _holds_dicom(p):
            cases = [CaseInput(p.resolve(), InputKind.DICOM)]
        else:
            # a folder of cases; one without any is taken as one DICOM case (its load says why not)
            cases = _cases_in_folder(p, ex) or [CaseInput(p.resolve(), InputKind.DICOM)]
        for c in cases:
            found.setdefault(c.path, c)
    if not found:
        raise InvalidInputError("no cases found in the inputs")
    return list(found.values())


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def case_id(key: bytes, path: Path) -> str:
    """The anonymous id of the case at ``path`` (resolved) under the cohort's ``key``."""
    return "case-" + _mac(key, str(path))[:12]


def _files_of(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        files.extend(Path(root) / n for n in sorted(names))
    return files


def fingerprint(key: bytes, path: Path, settings: dict) -> str:
    """A keyed digest of the case's files (names, sizes, modification times) and of the
    settings it runs with: a resumed case whose input or settings changed is run again."""
    parts = [repr(sorted(settings.items()))]
    for f in _files_of(path):
        try:
            st = f.stat()
        except OSError:
            continue
        parts.append(f"{f.relative_to(path) if f != path else f.name}\0{st.st_size}\0{st.st_mtime_ns}")
    return _mac(key, "\n".join(parts))


_UID = re.compile(r"\b\d+(?:\.\d+){3,}\b")


class Scrubber:
    """Removes a case's identity from a message: its path, the names of its files and folders,
    the patient's name, ID and dates and the series description once loaded, and DICOM UIDs."""

    def __init__(self, path: Path) -> None:
        words = {str(path), path.name}
        if len(path.stem) >= 4:
            words.add(path.stem.split(".")[0])
        if path.is_dir():
            for f in _files_of(path):
                for part in f.relative_to(path).parts:
                    words.add(part)
        self.words = words

    def add_identity(self, identity: dict) -> None:
        for v in (identity or {}).values():
            v = str(v or "").strip()
            if len(v) >= 2:
                self.words.add(v)
                self.words.update(w for w in re.split(r"[\^ ,]+", v) if len(w) >= 3)

    def __call__(self, message: str) -> str:
        s = str(message)
        for w in sorted(self.words, key=len, reverse=True):
            if len(w) >= 3 and w in s:
                s = s.replace(w, "<input>")
        return _UID.sub("<uid>", s)


def case_json_path(out_dir: Path, cid: str) -> Path:
    """``OUT_DIR/cases/<id>.json``: the case's record."""
    return Path(out_dir) / CASES_DIR / f"{cid}.json"


def case_labels_path(out_dir: Path, cid: str) -> Path:
    """``OUT_DIR/cases/<id>.labels.nii.gz``: the case's label map."""
    return Path(out_dir) / CASES_DIR / f"{cid}.labels.nii.gz"


@dataclass(frozen=True)
class CaseTask:
    """Everything a worker needs to run one case (picklable)."""

    case_id: str
    path: str
    kind: InputKind
    out_dir: str
    fingerprint: str
    modality: str | None = None     # --modality: for image files that do not say
    threads: int | None = None      # ITK threads in the worker (None: leave as is)


def _limit_threads(threads: int | None) -> None:
    if threads:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))


def _unit_confidence(name: str, confidence: dict) -> float | None:
    vals = [confidence[n] for n in name.split("-") if n in confidence]
    return round(min(vals), 2) if vals else None


def _segment_case(task: CaseTask, scrub: Scrubber, seconds: dict) -> dict:
    from ..dicom.load import load_volume
    from ..dicom.load_warnings import warning_kind
    from ..export.label_export import write_label_map
    from ..modality import settle_modality
    from ..segmentation.base import segment_volume
    from ..segmentation.motor_units import compute_motor_units

    t = time.perf_counter()
    vol = load_volume(task.path)
    scrub.add_identity(vol.meta.get("identity") or {})
    assumed = settle_modality(vol, task.modality)
    seconds["load"] = time.perf_counter() - t
    t = time.perf_counter()
    res, seg = segment_volume(vol, assumed=assumed)
    seconds["segment"] = time.perf_counter() - t
    labels_path = case_labels_path(Path(task.out_dir), task.case_id)
    write_label_map(res.labels, labels_path)
    t = time.perf_counter()
    units = compute_motor_units(res.labels)
    seconds["motor_units"] = time.perf_counter() - t
    confidence = dict(res.confidence)
    return {
        "modality": vol.modality, "modality_assumed": bool(assumed), "backend": seg.name,
        "grid": {"size": list(vol.size_ijk), "spacing": [round(s, 4) for s in vol.spacing]},
        "load_warnings": [{"kind": warning_kind(w).value, "message": scrub(w)} for w in vol.warnings],
        "levels": list(res.levels), "confidence": confidence,
        "min_confidence": round(res.min_confidence, 2),
        "flags": [{**f.to_dict(), "message": scrub(f.to_dict().get("message", ""))} for f in res.flags],
        "evidence": res.evidence.to_dict(), "needs_confirmation": res.needs_confirmation,
        "motor_units": [{**u.summary_dict(), "confidence": _unit_confidence(u.name, confidence)}
                        for u in units],
        "labels_file": labels_path.name,
    }


def failure_record(task: CaseTask, kind: FailureKind, message: str, seconds: float = 0.0) -> dict:
    """The record of a case that failed (``message``: one line, already scrubbed)."""
    return {"format": CASE_FORMAT, "format_version": CASE_FORMAT_VERSION, "case_id": task.case_id,
            "input_kind": task.kind.value, "fingerprint": task.fingerprint,
            "status": CaseStatus.FAILED.value,
            "error": {"kind": kind.value, "message": message.splitlines()[0] if message else kind.value},
            "seconds": {"total": round(seconds, 3)}}


def write_case_record(out_dir: Path, record: dict) -> None:
    """The case's JSON, written atomically (after its labels: an ``ok`` JSON means both)."""
    import json

    from ..atomic import atomic_write_text

    atomic_write_text(case_json_path(out_dir, record["case_id"]), json.dumps(record, indent=1) + "\n")


def run_case(task: CaseTask) -> dict:
    """Load, segment and measure one case; write its labels and JSON; return its record.

    A worker's function: it never raises for the case's own failure (bad input, segmentation,
    a bug), which becomes a ``failed`` record with a one-line message without identity.
    """
    from spineplan import __version__

    t0, cpu0 = time.perf_counter(), time.process_time()
    seconds: dict = {}
    scrub = Scrubber(Path(task.path))
    try:
        _limit_threads(task.threads)
        body = _segment_case(task, scrub, seconds)
    except Exception as exc:  # noqa: BLE001 - every failure of a case is a row, never a crash
        kind = failure_kind(exc)
        msg = str(exc).splitlines()[0] if str(exc) else ""
        if isinstance(exc, OSError) and not isinstance(exc, OutputError) and exc.strerror:
            msg = exc.strerror + (f": {exc.filename}" if exc.filename else "")
        if kind in (FailureKind.INTERNAL, FailureKind.OUT_OF_MEMORY) or not msg:
            msg = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
        if kind == FailureKind.INTERNAL:
            msg = f"internal error (a bug: please report it): {msg}"
        record = failure_record(task, kind, scrub(msg), time.perf_counter() - t0)
    else:
        seconds["total"] = time.perf_counter() - t0
        seconds["cpu"] = time.process_time() - cpu0  # the worker's CPU time (all its threads)
        record = {"format": CASE_FORMAT, "format_version": CASE_FORMAT_VERSION,
                  "case_id": task.case_id, "input_kind": task.kind.value,
                  "fingerprint": task.fingerprint, "status": CaseStatus.OK.value,
                  "spineplan_version": __version__, **body,
                  "seconds": {k: round(v, 3) for k, v in seconds.items()}}
    record["spineplan_version"] = __version__
    try:
        write_case_record(Path(task.out_dir), record)
    except (OutputError, OSError) as exc:
        record = failure_record(task, FailureKind.OUTPUT, scrub(str(exc).splitlines()[0]),
                                time.perf_counter() - t0)
    return record


def tasks_for(cases: Sequence[CaseInput], key: bytes, out_dir: Path, settings: dict,
              threads: int | None = None) -> list[CaseTask]:
    """One :class:`CaseTask` per case."""
    return [CaseTask(case_id(key, c.path), str(c.path), c.kind, str(out_dir),
                     fingerprint(key, c.path, settings), settings.get("modality"), threads)
            for c in cases]
