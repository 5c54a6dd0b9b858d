"""Plan and case files: versioned JSON, validated on load, written atomically.

A plan file is the dict described in ``docs/PLAN_SCHEMA`` (``Plan.to_dict()``) plus
``format_version``, ``generator``, ``created`` and a ``checksum``: the SHA-256 of the
canonical JSON (sorted keys, compact separators, UTF-8) of every other key. Any edit
made outside spineplan therefore fails to load ("tampered"). Patient identity is
written only when the caller passes it explicitly.

Every write is atomic (``core.atomic``): a crash or an error mid-way never leaves a
partial file and the previous file survives.

Autosave: :class:`Autosaver` writes ``<name>.autosave.json`` beside the case/plan
path (throttled); :func:`find_recovery` returns its content when it is newer than the
saved file; a clean save removes it.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .atomic import atomic_write_text
from .errors import InvalidInputError, PlanFileError
from .planning.kinds import PROCEDURES, SEVERITIES, SIDES
from .planning.safety import CheckStatus
from .registration.fusion import validate_fusion_record
from .volume import geometry_differences, grid_corners_lps
from .segmentation.labels import parse_motor_unit

__all__ = [
    "FORMAT_VERSION", "GENERATOR",
    "canonical_json", "compute_checksum", "save_plan", "load_plan", "validate_plan", "check_plan_matches_volume",
    "save_case", "load_case", "autosave_path", "Autosaver",
    "find_recovery", "discard_autosave", "as_plan_dict",
]

FORMAT_VERSION = 2
GENERATOR = "spineplan 0.1.0"
CASE_KIND = "spineplan-case"
MAX_FILE_BYTES = 64 * 2**20  # a plan/case is a few kB; refuse to parse anything huge
MAX_COORD_MM = 1.0e4  # |LPS coordinate| of any point of a plan: 10 m is outside every scanner
IMAGE_MARGIN_MM = 300.0  # entry and target lie within the source image grown by this much

def _v1_to_v2(doc: dict) -> dict:
    """Format 2 adds the optional marked ``lesion`` (planning/lesion.py): none in a v1 plan."""
    doc = dict(doc)
    if "procedure" in doc:  # a plan (case files share the versioning and carry no lesion)
        doc.setdefault("lesion", None)
    return doc


# Migrations from an older format_version to the next one: {old_version: fn(doc) -> doc}.
_MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _v1_to_v2}


# --------------------------------------------------------------------------- JSON helpers
def as_plan_dict(plan: Any) -> dict:
    """A plan dict from a dict or from an object with ``to_dict()`` (e.g. ``Plan``)."""
    if isinstance(plan, dict):
        return plan
    to_dict = getattr(plan, "to_dict", None)
    if callable(to_dict):
        d = to_dict()
        if isinstance(d, dict):
            return d
    raise TypeError(f"expected a plan dict or an object with to_dict(), got {type(plan).__name__}")


def _jsonable(obj: Any) -> Any:
    """Plain-JSON copy of ``obj`` (numpy scalars/arrays and tuples become float/int/list)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def canonical_json(doc: dict) -> str:
    """Canonical JSON of ``doc`` without its ``checksum`` key (the text that is hashed)."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    try:
        return json.dumps(_jsonable(body), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False)
    except ValueError as exc:  # NaN / inf
        raise PlanFileError(f"plan contains a non-finite number and cannot be saved ({exc})") from None


def compute_checksum(doc: dict) -> str:
    """SHA-256 hex digest of :func:`canonical_json` of ``doc``."""
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- documents
def _now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp(doc: dict, identity: dict | None) -> dict:
    out = _jsonable(copy.deepcopy(doc))
    out.pop("checksum", None)
    out.pop("identity", None)  # identity is written only when the caller passes it
    out.setdefault("format_version", FORMAT_VERSION)
    out.setdefault("generator", GENERATOR)
    out.setdefault("created", _now_utc())
    if identity is not None:
        if not isinstance(identity, dict):
            raise PlanFileError("identity must be a dict such as {'patient_name': ..., 'patient_id': ...}")
        out["identity"] = _jsonable(dict(identity))
    out["checksum"] = compute_checksum(out)
    return out


def _write_document(doc: dict, path: str | os.PathLike) -> None:
    text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


def _read_document(path: str | os.PathLike, what: str = "plan") -> dict:
    """Read a versioned, checksummed document; migrate older versions.

    Raises PlanFileError for unreadable/non-JSON files, unsupported versions and
    checksum mismatches.
    """
    p = Path(path)
    name = p.name
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise PlanFileError(f"{name} is too large ({p.stat().st_size // 2**20} MB) to be a "
                                f"spineplan {what} file")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise PlanFileError(f"{what} file {name} does not exist") from None
    except IsADirectoryError:
        raise PlanFileError(f"{name} is a folder, not a {what} file") from None
    except OSError as exc:
        raise PlanFileError(f"cannot read {what} file {name}: {exc.strerror}") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PlanFileError(f"{name} is not a spineplan {what} file (not UTF-8 JSON text)") from None
    except json.JSONDecodeError as exc:
        raise PlanFileError(f"{name} is not a spineplan {what} file (invalid JSON at line "
                            f"{exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise PlanFileError(f"{name} is not a spineplan {what} file (JSON nested too "
                            f"deeply)") from None
    if not isinstance(doc, dict) or "format_version" not in doc:
        raise PlanFileError(f"{name} is not a spineplan {what} file (no format_version)")
    version = doc["format_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise PlanFileError(f"{name}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise PlanFileError(f"{name} was written by a newer spineplan (format {version}; this "
                            f"version reads up to {FORMAT_VERSION}): update spineplan to open it")
    checksum = doc.get("checksum")
    if not isinstance(checksum, str):
        raise PlanFileError(f"{name} has no checksum: it was not saved by spineplan or was "
                            f"edited outside spineplan (tampered); re-plan and save again")
    if checksum != compute_checksum(doc):
        raise PlanFileError(f"{name} was edited outside spineplan (tampered): its checksum does "
                            f"not match its content; re-plan and save again")
    while doc["format_version"] < FORMAT_VERSION:
        v = doc["format_version"]
        if v not in _MIGRATIONS:
            raise PlanFileError(f"{name} uses format {v}, which this spineplan cannot migrate "
                                f"(supported: {min(_MIGRATIONS, default=FORMAT_VERSION)}.."
                                f"{FORMAT_VERSION}); re-plan the case")
        doc = _MIGRATIONS[v](doc)
        doc["format_version"] = v + 1
    return doc


# --------------------------------------------------------------------------- validation
def _finite_vec(v: Any, n: int) -> bool:
    return (isinstance(v, list) and len(v) == n
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                    for x in v))


def _finite_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _level_ok(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        parse_motor_unit(v)
    except ValueError:
        return False
    return True




_CHECK_STATUSES = {s.value for s in CheckStatus}


def _check_ok(c: Any) -> bool:
    return (isinstance(c, dict) and isinstance(c.get("name"), str)
            and isinstance(c.get("ok"), bool) and c.get("severity") in SEVERITIES
            and isinstance(c.get("detail", ""), str))


def _validate_lesion(les: Any, bad: Callable[[str], PlanFileError]) -> None:
    """The plan's ``lesion``: centre, extent, and its computed zone/side/migration/level."""
    from .planning.case import ZONES
    from .planning.lesion import LesionKind

    if not isinstance(les, dict):
        raise bad("lesion must be an object (centre_lps, radius_mm, zone, side, migration_mm)")
    if not _finite_vec(les.get("centre_lps"), 3) or max(abs(x) for x in les["centre_lps"]) > MAX_COORD_MM:
        raise bad("lesion.centre_lps must be 3 finite numbers (LPS mm)")
    if not _finite_num(les.get("radius_mm")) or not 0 < les["radius_mm"] <= MAX_COORD_MM:
        raise bad("lesion.radius_mm must be a positive number")
    if les.get("kind", "herniation") not in tuple(k.value for k in LesionKind):
        raise bad(f"lesion.kind must be one of {', '.join(k.value for k in LesionKind)}")
    if "zone" in les and (not isinstance(les["zone"], str) or les["zone"] not in ZONES):
        raise bad(f"lesion.zone must be one of {', '.join(ZONES)}")
    if "side" in les and (not isinstance(les["side"], str) or les["side"] not in SIDES + ("midline",)):
        raise bad("lesion.side must be left, right or midline")
    if "migration_mm" in les and not _finite_num(les["migration_mm"]):
        raise bad("lesion.migration_mm must be a finite number")
    if "level" in les and not _level_ok(les["level"]):
        raise bad("lesion.level must be a motor-unit name such as L4-L5")
    if les.get("semi_axes_mm") is not None and not (
            _finite_vec(les["semi_axes_mm"], 3) and min(les["semi_axes_mm"]) > 0):
        raise bad("lesion.semi_axes_mm must be 3 positive numbers")
    if les.get("mask") is not None and not isinstance(les["mask"], dict):
        raise bad("lesion.mask must be an object (voxels, volume_mm3, bbox)")


def validate_plan(plan: dict, name: str = "plan") -> None:
    """Check the keys and types of a plan dict; raise PlanFileError naming the first problem."""
    def bad(msg: str) -> PlanFileError:
        return PlanFileError(f"{name}: {msg}")

    if not isinstance(plan, dict):
        raise bad("is not a plan (expected a JSON object)")
    required = ("source", "level", "side", "procedure", "entry_lps", "target_lps", "incision_mm",
                "parameters", "metrics", "motor_units_touched", "checks")
    missing = [k for k in required if k not in plan]
    if missing:
        raise bad(f"is missing {', '.join(missing)}: not a complete spineplan plan")
    src = plan["source"]
    if not isinstance(src, dict):
        raise bad("source must be an object with series_uid and geometry")
    if not isinstance(src.get("series_uid"), str):
        raise bad("source.series_uid must be a string")
    if "size" in src and not (isinstance(src["size"], list) and len(src["size"]) == 3
                              and all(isinstance(x, int) and not isinstance(x, bool) and x > 0
                                      for x in src["size"])):
        raise bad("source.size must be 3 positive integers")
    for key, n in (("spacing", 3), ("origin", 3), ("direction", 9)):
        if key in src and not _finite_vec(src[key], n):
            raise bad(f"source.{key} must be {n} finite numbers")
    if "spacing" in src and any(s <= 0 for s in src["spacing"]):
        raise bad("source.spacing must be positive")
    if not _level_ok(plan["level"]):
        raise bad(f"level {plan['level']!r} is not a motor-unit name such as L4-L5 or L5-S1")
    if plan["side"] not in SIDES:
        raise bad(f"side must be {' or '.join(repr(s) for s in SIDES)}, got {plan['side']!r}")
    if plan["procedure"] not in PROCEDURES:
        raise bad(f"procedure must be one of {', '.join(PROCEDURES)}, got {plan['procedure']!r}")
    for key in ("entry_lps", "target_lps"):
        if not _finite_vec(plan[key], 3):
            raise bad(f"{key} must be 3 finite numbers (LPS mm)")
        if max(abs(x) for x in plan[key]) > MAX_COORD_MM:
            raise bad(f"{key} lies {max(abs(x) for x in plan[key]):.3g} mm from the scanner "
                      f"origin: not a point of a patient")
    if all(k in src for k in ("size", "spacing", "origin", "direction")):
        if max(abs(x) for x in src["origin"]) > MAX_COORD_MM:
            raise bad("source.origin lies outside any scanner")
        corners = grid_corners_lps(src["size"], src["spacing"], src["origin"], src["direction"])
        lo, hi = corners.min(axis=0) - IMAGE_MARGIN_MM, corners.max(axis=0) + IMAGE_MARGIN_MM
        for key in ("entry_lps", "target_lps"):
            if np.any(np.asarray(plan[key]) < lo) or np.any(np.asarray(plan[key]) > hi):
                raise bad(f"{key} lies more than {IMAGE_MARGIN_MM:.0f} mm outside the image the "
                          f"plan was made on")
    if np.linalg.norm(np.subtract(plan["entry_lps"], plan["target_lps"])) < 1e-6:
        raise bad("entry_lps and target_lps are the same point")
    if not _finite_num(plan["incision_mm"]) or plan["incision_mm"] < 0:
        raise bad("incision_mm must be a finite number >= 0")
    for key in ("parameters", "metrics"):
        if not isinstance(plan[key], dict):
            raise bad(f"{key} must be an object")
    for k, v in plan["metrics"].items():
        if v is not None and not isinstance(v, (str, list, dict)) and not _finite_num(v):
            raise bad(f"metrics.{k} must be a finite number")
    mut = plan["motor_units_touched"]
    if not isinstance(mut, list) or not all(_level_ok(x) for x in mut):
        raise bad("motor_units_touched must be a list of motor-unit names such as L4-L5")
    checks = plan["checks"]
    if not isinstance(checks, list):
        raise bad("checks must be a list")
    for n, c in enumerate(checks):
        if not _check_ok(c):
            raise bad(f"checks[{n}] must be {{name, ok, severity (ok/warning/error), detail}}")
        if c.get("status", "passed") not in _CHECK_STATUSES:
            raise bad(f"checks[{n}].status must be one of {', '.join(sorted(_CHECK_STATUSES))}")
    seg = plan.get("segmentation", {})
    if not isinstance(seg, dict) or not isinstance(seg.get("flags", []), list) or not all(
            isinstance(f, dict) and isinstance(f.get("kind"), str) and isinstance(f.get("message", ""), str)
            for f in seg.get("flags", [])):
        raise bad("segmentation must be an object whose flags are {kind, levels, message}")
    lesion = plan.get("lesion")
    if lesion is not None:
        _validate_lesion(lesion, bad)
    if "identity" in plan and not isinstance(plan["identity"], dict):
        raise bad("identity must be an object")
    case = plan.get("case")
    if case is not None:
        if not isinstance(case, dict):
            raise bad("case must be an object (level, side, pathology, zone, notes, ...)")
        for k, v in case.items():
            if k == "concordance":
                if not isinstance(v, list) or not all(_check_ok(c) for c in v):
                    raise bad("case.concordance must be a list of {name, ok, severity, detail}")
            elif k == "signs":
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise bad("case.signs must be a list of texts")
            elif v is not None and not isinstance(v, str):
                raise bad(f"case.{k} must be a text")
    for k, v in plan["parameters"].items():
        nums = v if isinstance(v, list) else [v]
        if any(isinstance(x, (int, float)) and not isinstance(x, bool)
               and not (math.isfinite(x) and abs(x) <= MAX_COORD_MM) for x in nums):
            raise bad(f"parameters.{k} must be finite numbers of at most {MAX_COORD_MM:.0f}")
    if plan["incision_mm"] > MAX_COORD_MM:
        raise bad("incision_mm is larger than a patient")
    if plan["procedure"] == "cage":
        par = plan["parameters"]
        for key in ("center_lps", "axis_lps"):
            if key in par and not _finite_vec(par[key], 3):
                raise bad(f"parameters.{key} must be 3 finite numbers (LPS)")


def check_plan_matches_volume(plan: dict, volume, name: str = "plan") -> None:
    """Refuse a plan made on another series: UID or geometry (``volume.geometry_differences``,
    beyond ``GEOMETRY_TOL_MM``) differ. The one check of a plan against an image: loading
    a plan or case onto the loaded series, and ``rehearse``.

    Raises PlanFileError saying which of series UID, size, spacing, origin or
    direction differs.
    """
    src = plan.get("source") or {}
    uid, here = src.get("series_uid", ""), str(volume.meta.get("series_uid", ""))
    if uid and here and uid != here:
        raise PlanFileError(f"{name} was made on another series (series UID differs from the "
                            f"loaded one): open the series it was planned on")
    problems = geometry_differences(src, volume)
    if problems:
        raise PlanFileError(f"{name} does not match the loaded series geometry ("
                            + "; ".join(problems) + "): open the series it was planned on")


# --------------------------------------------------------------------------- plans
def autosave_path(path: str | os.PathLike) -> Path:
    """``case.json -> case.autosave.json`` (same folder)."""
    p = Path(path)
    stem = p.name[:-5] if p.name.endswith(".json") else p.name
    return p.with_name(f"{stem}.autosave.json")


def discard_autosave(path: str | os.PathLike) -> None:
    """Remove the autosave file of ``path`` if there is one."""
    with contextlib.suppress(FileNotFoundError):
        autosave_path(path).unlink()


def save_plan(plan: dict, path: str | os.PathLike, *, identity: dict | None = None) -> dict:
    """Validate and write a plan file atomically; return the dict written.

    Parameters
    ----------
    plan : dict
        ``Plan.to_dict()`` (PLAN_SCHEMA). ``format_version``, ``generator`` and
        ``created`` are added when missing; any ``checksum`` is recomputed and any
        ``identity`` key is dropped unless ``identity`` is given.
    path : path
        Destination (``.json``). Its autosave file is removed after a clean save.
    identity : dict, optional
        ``{"patient_name", "patient_id"}``, written only when given.
    """
    doc = _stamp(as_plan_dict(plan), identity)
    if doc.get("kind") == CASE_KIND:
        raise PlanFileError("save_plan got a case document; use save_case")
    validate_plan(doc, Path(path).name)
    _write_document(doc, path)
    discard_autosave(path)
    return doc


def load_plan(path: str | os.PathLike, *, volume=None) -> dict:
    """Read and validate a plan file.

    Raises PlanFileError when the file is not a plan, is of an unsupported version,
    has missing or ill-typed keys, was edited outside spineplan, or (when ``volume``
    is given) belongs to another series.
    """
    name = Path(path).name
    doc = _read_document(path, "plan")
    if doc.get("kind") == CASE_KIND:
        raise PlanFileError(f"{name} is a case file, not a plan file; open it as a case")
    validate_plan(doc, name)
    if volume is not None:
        check_plan_matches_volume(doc, volume, name)
    return doc


# --------------------------------------------------------------------------- cases
def save_case(state: dict, path: str | os.PathLike, *, identity: dict | None = None) -> dict:
    """Write the whole case state (``case``, ``plan``, ``measurements``, ``source``...) atomically.

    ``fusion`` (optional) is the second series' record (``registration.Fusion.to_record``:
    the CT -> MRI transform, its own ``record_version``).

    Same versioned, checksummed, atomic machinery as :func:`save_plan`; the nested
    ``plan`` (if any) is validated. Returns the dict written.
    """
    body = dict(state)
    if body.get("plan") is not None:
        body["plan"] = as_plan_dict(body["plan"])
    body["kind"] = CASE_KIND
    doc = _stamp(body, identity)
    _validate_case(doc, Path(path).name)
    _write_document(doc, path)
    discard_autosave(path)
    return doc


def _validate_case(doc: dict, name: str) -> None:
    if doc.get("kind") != CASE_KIND:
        raise PlanFileError(f"{name} is not a spineplan case file (it may be a plan file)")
    if doc.get("plan") is not None:
        validate_plan(doc["plan"], f"{name} (plan)")
    if "measurements" in doc and not isinstance(doc["measurements"], (list, dict)):
        raise PlanFileError(f"{name}: measurements must be a list or an object")
    if "case" in doc and doc["case"] is not None and not isinstance(doc["case"], dict):
        raise PlanFileError(f"{name}: case must be an object")
    if doc.get("fusion") is not None:  # optional: case files without a second series lack it
        try:
            validate_fusion_record(doc["fusion"])
        except InvalidInputError as exc:
            raise PlanFileError(f"{name}: {exc}") from None


def load_case(path: str | os.PathLike, *, volume=None) -> dict:
    """Read and validate a case file written by :func:`save_case` (see :func:`load_plan`)."""
    name = Path(path).name
    doc = _read_document(path, "case")
    _validate_case(doc, name)
    if volume is not None:
        src = doc.get("source") or (doc.get("plan") or {}).get("source")
        if src:
            check_plan_matches_volume({"source": src}, volume, name)
    return doc


# --------------------------------------------------------------------------- autosave
class Autosaver:
    """Throttled crash-recovery autosave of a case/plan state beside ``path_for_case``.

    Call :meth:`changed` with the current state dict after each edit: it is written
    at once when the last write is older than ``min_interval_s``, otherwise kept
    pending until :meth:`flush` (call it from a timer or on idle) or the next change
    after the interval. Writes are atomic and checksummed; nothing is ever written
    to ``path_for_case`` itself. A failing autosave (disk full, ...) never raises: the
    state stays pending and ``last_error`` says why.
    """

    def __init__(self, path_for_case: str | os.PathLike, *, min_interval_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self.path = Path(path_for_case)
        self.autosave_path = autosave_path(self.path)
        self.min_interval_s = float(min_interval_s)
        self._clock = clock
        self._last: float | None = None
        self._pending: dict | None = None
        self.writes = 0
        self.last_error: str | None = None

    @property
    def pending(self) -> bool:
        """True when a change has not been written yet."""
        return self._pending is not None

    def changed(self, state: dict) -> bool:
        """Record a new state; return True when it was written now."""
        self._pending = copy.deepcopy(state)
        now = self._clock()
        if self._last is None or now - self._last >= self.min_interval_s:
            return self.flush()
        return False

    def discard(self) -> None:
        """Forget the pending state and remove the autosave file (the work was saved, or the
        user declined to recover it)."""
        self._pending = None
        with contextlib.suppress(FileNotFoundError):
            self.autosave_path.unlink()

    def flush(self) -> bool:
        """Write the pending state, if any; return True when something was written."""
        if self._pending is None:
            return False
        try:
            doc = _stamp({"autosave_of": self.path.name, "state": self._pending}, None)
            _write_document(doc, self.autosave_path)
        except (OSError, PlanFileError) as exc:  # never interrupt the user's work
            self.last_error = f"autosave failed: {exc}"
            self._last = self._clock()
            return False
        self.last_error = None
        self._pending = None
        self._last = self._clock()
        self.writes += 1
        return True

    def discard(self) -> None:
        """Forget pending changes and remove the autosave file (after a clean save)."""
        self._pending = None
        discard_autosave(self.path)


def find_recovery(case_path: str | os.PathLike) -> dict | None:
    """The autosaved state of ``case_path`` when it is newer than the saved file, else None.

    A clean save removes the autosave, so an autosave that exists and is at least as
    new as the saved file holds unsaved work (e.g. after a crash). An unreadable or
    tampered autosave is ignored (None).
    """
    p = Path(case_path)
    a = autosave_path(p)
    if not a.is_file():
        return None
    if p.is_file() and a.stat().st_mtime_ns < p.stat().st_mtime_ns:
        return None
    try:
        doc = _read_document(a, "autosave")
    except PlanFileError:
        return None
    state = doc.get("state")
    return state if isinstance(state, dict) else None
