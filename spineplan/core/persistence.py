"""Plan files: versioned, checksummed, validated on load, written atomically; autosave.

A plan file is JSON (see docs/ARCHITECTURE.md). ``checksum`` is the SHA-256 of the
canonical JSON of every other key, so that a value edited outside spineplan is
refused on load instead of silently planned with.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PlanFileError
from .segmentation.labels import parse_motor_unit
from .volume import Volume

__all__ = ["FORMAT_VERSION", "save_plan", "load_plan", "checksum", "atomic_write_text",
           "Autosaver", "find_recovery", "autosave_path"]

FORMAT_VERSION = 1


def _canonical(d: dict) -> bytes:
    body = {k: v for k, v in d.items() if k != "checksum"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def checksum(d: dict) -> str:
    """SHA-256 of the canonical JSON of the plan without its checksum."""
    return hashlib.sha256(_canonical(d)).hexdigest()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def save_plan(plan: dict, path: str | os.PathLike, *, identity: dict | None = None) -> Path:
    """Save a plan dict (``Plan.to_dict()``) with version and checksum, atomically.

    Patient identity is written only when ``identity`` is given.
    """
    d = json.loads(json.dumps(plan, default=_jsonable))  # deep copy, numpy -> lists
    d.pop("identity", None)
    d.setdefault("format_version", FORMAT_VERSION)
    if identity:
        d["identity"] = {k: str(v) for k, v in identity.items()}
    d["checksum"] = checksum(d)
    out = atomic_write_text(path, json.dumps(d, indent=1, sort_keys=True) + "\n")
    a = autosave_path(out)
    if a.exists():
        a.unlink()  # a clean save supersedes the autosave
    return out


def _jsonable(x: Any):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    raise TypeError(f"cannot store {type(x).__name__} in a plan file")


def _vec3(d: dict, key: str) -> None:
    v = d.get(key)
    if (not isinstance(v, list) or len(v) != 3
            or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)):
        raise PlanFileError(f"plan field '{key}' must be three finite numbers (LPS mm)")


def load_plan(path: str | os.PathLike, *, volume: Volume | None = None) -> dict:
    """Read and validate a plan file.

    Raises
    ------
    PlanFileError
        Not JSON / not a plan; unsupported version; missing or ill-typed fields; checksum
        mismatch (edited outside spineplan); or, with ``volume``, a plan for another series.
    """
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanFileError(f"{p} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise PlanFileError(f"{p.name} is not a spineplan plan file (not JSON)") from None
    if not isinstance(d, dict) or "format_version" not in d or "procedure" not in d:
        raise PlanFileError(f"{p.name} is not a spineplan plan file")
    v = d["format_version"]
    if not isinstance(v, int) or v > FORMAT_VERSION:
        raise PlanFileError(f"{p.name} was written by a newer spineplan (format {v}); update spineplan")
    if v < 1:
        raise PlanFileError(f"{p.name} has an unsupported format version {v}")
    for key in ("level", "side", "procedure", "entry_lps", "target_lps", "checks", "source"):
        if key not in d:
            raise PlanFileError(f"{p.name} lacks the field '{key}'")
    _vec3(d, "entry_lps")
    _vec3(d, "target_lps")
    if d["side"] not in ("left", "right"):
        raise PlanFileError(f"{p.name}: side must be left or right, not {d['side']!r}")
    if d["procedure"] not in ("needle", "tube", "cage"):
        raise PlanFileError(f"{p.name}: unknown procedure {d['procedure']!r}")
    try:
        parse_motor_unit(str(d["level"]))
    except ValueError as exc:
        raise PlanFileError(f"{p.name}: {exc}") from None
    if "checksum" not in d:
        raise PlanFileError(f"{p.name} has no checksum; it was not saved by spineplan")
    if d["checksum"] != checksum(d):
        raise PlanFileError(f"{p.name} was edited outside spineplan (checksum mismatch); "
                            "re-plan instead of editing the file")
    if volume is not None:
        _check_source(d, volume, p.name)
    return d


def _check_source(d: dict, volume: Volume, name: str) -> None:
    src = d.get("source") or {}
    uid = volume.meta.get("series_uid", "")
    if src.get("series_uid") and uid and src["series_uid"] != uid:
        raise PlanFileError(f"{name} was made on another series ({src['series_uid']}), "
                            f"not the open one ({uid})")
    try:
        same = (list(src["size"]) == list(volume.size_ijk)
                and np.allclose(src["spacing"], volume.spacing, atol=0.01)
                and np.allclose(src["origin"], volume.origin, atol=0.01)
                and np.allclose(src["direction"], volume.direction.ravel(), atol=1e-4))
    except (KeyError, TypeError, ValueError):
        raise PlanFileError(f"{name} does not record the geometry of its series") from None
    if not same:
        raise PlanFileError(f"{name} was made on an image with another geometry "
                            "(size, spacing, origin or orientation differ)")


def autosave_path(plan_path: str | os.PathLike) -> Path:
    p = Path(plan_path)
    return p.with_name(p.name + ".autosave.json")


class Autosaver:
    """Writes ``<plan>.autosave.json`` atomically, at most every ``interval_s`` seconds."""

    def __init__(self, plan_path: str | os.PathLike, interval_s: float = 5.0):
        self.path = autosave_path(plan_path)
        self.interval_s = interval_s
        self._last = -math.inf

    def changed(self, plan: dict, *, force: bool = False) -> bool:
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return False
        d = json.loads(json.dumps(plan, default=_jsonable))
        d.pop("identity", None)
        d.setdefault("format_version", FORMAT_VERSION)
        d["checksum"] = checksum(d)
        atomic_write_text(self.path, json.dumps(d, sort_keys=True))
        self._last = now
        return True


def find_recovery(plan_path: str | os.PathLike) -> dict | None:
    """The autosaved plan when it is newer than the saved one (after a crash), else None."""
    a = autosave_path(plan_path)
    p = Path(plan_path)
    if not a.exists():
        return None
    if p.exists() and p.stat().st_mtime >= a.stat().st_mtime:
        return None
    try:
        return load_plan(a)
    except PlanFileError:
        return None
