"""Teaching sets: cases with their reference plans as a folder or a zip with a versioned
``manifest.json`` (written atomically), and the resident's view of a plan.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Sequence

from ..atomic import atomic_output_path
from ..errors import InvalidInputError, PlanFileError
from .anonymise import IDENTITY_KEYS, _norm_key
from .plans import check_plan

__all__ = [
    "DICOM_IDENTITY_ATTRIBUTES", "RESIDENT_KEYS", "TEACHING_SET_FORMAT",
    "TEACHING_SET_VERSION", "TeachingCase", "TeachingSet", "read_teaching_set",
    "resident_view", "write_teaching_set",
]


TEACHING_SET_FORMAT = "spineplan-teaching-set"
TEACHING_SET_VERSION = 1
_MANIFEST = "manifest.json"
#: Plan keys a resident may see in practice mode (the case, never the answer).
RESIDENT_KEYS = ("format_version", "generator", "source", "level", "side", "procedure", "case")


def resident_view(plan: dict) -> dict:
    """The reference plan as a resident may see it: the case without the answer.

    Keeps only :data:`RESIDENT_KEYS` (level, side, procedure, clinical case, source
    geometry); entry, target, parameters, metrics, checks and motor units are removed,
    and so is any identity.
    """
    out = {k: copy.deepcopy(plan[k]) for k in RESIDENT_KEYS if k in plan}
    if isinstance(out.get("source"), dict):
        out["source"] = {k: v for k, v in out["source"].items() if _norm_key(k) not in IDENTITY_KEYS}
    return out


@dataclass
class TeachingCase:
    """One case of a teaching set; paths are absolute (extracted for a zip)."""

    id: str
    title: str
    image_path: Path
    labels_path: Path | None
    reference_plan: dict

    def resident_view(self) -> dict:
        """The case as shown to a resident (see :func:`resident_view`), with its title."""
        v = resident_view(self.reference_plan)
        v["case_title"] = self.title
        return v


@dataclass
class TeachingSet:
    """A set of teaching cases read by :func:`read_teaching_set`."""

    title: str
    cases: list[TeachingCase] = field(default_factory=list)
    root: Path | None = None
    manifest: dict = field(default_factory=dict)


#: DICOM attributes that must be empty in images put into a (shared) teaching set.
# (a subset of privacy.DICOM_IDENTITY_ATTRIBUTES: the ones that block putting an image in a set)
DICOM_IDENTITY_ATTRIBUTES = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs",
                             "OtherPatientNames", "PatientAddress", "AccessionNumber")


def _dicom_identity_found(src: Path) -> bool:
    """True when a DICOM file, or any DICOM file in a folder, carries patient identity."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    files = [src] if src.is_file() else [f for f in sorted(src.rglob("*")) if f.is_file()]
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True,
                                 specific_tags=list(DICOM_IDENTITY_ATTRIBUTES))
        except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError):
            continue  # not DICOM (NIfTI, NRRD, a README): nothing to check here
        for attr in DICOM_IDENTITY_ATTRIBUTES:
            if str(ds.get(attr, "") or "").strip():
                return True
    return False


def _copy_into(src: Path, dst_dir: Path, name: str) -> str:
    """Copy a file or a folder (DICOM series) into ``dst_dir``; return the relative name."""
    if src.is_dir():
        shutil.copytree(src, dst_dir / name)
        return name
    if not src.is_file():
        raise InvalidInputError(f"teaching-set image not found: {src}")
    suffix = "".join(src.suffixes[-2:]) if src.name.endswith(".nii.gz") else src.suffix
    fname = name + suffix
    shutil.copy2(src, dst_dir / fname)
    return fname


def write_teaching_set(path: str | os.PathLike, cases: Sequence[dict], title: str = "Teaching set",
                       allow_identified_images: bool = False) -> Path:
    """Bundle cases and their reference plans as a folder or (``.zip``) a zip file.

    Parameters
    ----------
    path : path
        Destination folder (must not exist or be empty) or ``*.zip`` file.
    cases : sequence of dict
        ``{"title", "image_path", "labels_path" (optional), "reference_plan"}``; the
        reference plan is a plan dict or the path of a plan JSON file.
    title : str
        Title of the set.
    allow_identified_images : bool
        By default a DICOM image carrying patient identity (name, ID, birth date, ...)
        is refused: teaching sets are shared. Set True only for internal use.

    Returns
    -------
    Path
        The written folder or zip. Images are copied as given (use de-identified images,
        e.g. NIfTI); reference plans are stored without identity. Written atomically.
    """
    path = Path(path)
    if not cases:
        raise InvalidInputError("a teaching set needs at least one case")
    as_zip = path.suffix.lower() == ".zip"
    if not as_zip and path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InvalidInputError(f"teaching-set folder {path} exists and is not empty; choose a new folder")
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".teach-", dir=parent))
    os.chmod(tmp, 0o755)  # mkdtemp creates 0700; the set is meant to be shared
    try:
        entries = []
        for n, c in enumerate(cases, start=1):
            cid = f"case{n:02d}"
            if "title" not in c or "image_path" not in c or "reference_plan" not in c:
                raise InvalidInputError(f"teaching case {n} needs title, image_path and reference_plan")
            plan = c["reference_plan"]
            if not isinstance(plan, dict):
                try:
                    plan = json.loads(Path(plan).read_text())
                except (OSError, ValueError) as exc:
                    raise InvalidInputError(f"reference plan of case {n} unreadable: {exc}") from None
            check_plan(plan)  # procedure, side, level, entry/target, side vs geometry
            src = Path(c["image_path"])
            if not src.exists():
                raise InvalidInputError(f"teaching-set image of case {n} not found: {src}")
            if not allow_identified_images and _dicom_identity_found(src):
                raise InvalidInputError(f"the image of case {n} carries patient identity (DICOM "
                                        f"name/ID); anonymise it or export it as NIfTI first")
            cdir = tmp / cid
            cdir.mkdir()
            image = _copy_into(src, cdir, "image")
            labels = None
            if c.get("labels_path"):
                labels = _copy_into(Path(c["labels_path"]), cdir, "labels")
            from ..privacy import without_identity

            clean = {k: v for k, v in without_identity(plan).items() if k != "checksum"}
            (cdir / "reference_plan.json").write_text(json.dumps(clean, indent=2, sort_keys=True))
            entries.append({"id": cid, "title": str(c["title"]),
                            "image": f"{cid}/{image}",
                            "labels": f"{cid}/{labels}" if labels else None,
                            "reference_plan": f"{cid}/reference_plan.json",
                            "level": plan.get("level"), "procedure": plan.get("procedure")})
        manifest = {"format": TEACHING_SET_FORMAT, "format_version": TEACHING_SET_VERSION,
                    "title": str(title),
                    "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "cases": entries}
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2))
        if as_zip:
            with atomic_output_path(path) as tmpzip, zipfile.ZipFile(tmpzip, "w", zipfile.ZIP_DEFLATED) as zf:
                for f in sorted(tmp.rglob("*")):
                    if f.is_file():
                        zf.write(f, f.relative_to(tmp).as_posix())
        else:
            if path.exists():
                path.rmdir()
            os.replace(tmp, path)
            tmp = None  # moved
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _safe_member(name: str) -> str:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not name:
        raise InvalidInputError(f"teaching set contains an unsafe path {name!r}")
    return name


def read_teaching_set(path: str | os.PathLike, extract_to: str | os.PathLike | None = None) -> TeachingSet:
    """Read a teaching set folder or zip written by :func:`write_teaching_set`.

    A zip is extracted to ``extract_to`` (default: a new temporary folder) so the images
    can be loaded from files. Raises :class:`PlanFileError` for an unknown format or a
    newer format version, :class:`InvalidInputError` for missing files or unsafe paths.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"teaching set not found: {path}")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise InvalidInputError(f"{path} is neither a teaching-set folder nor a zip")
        root = Path(extract_to) if extract_to else Path(tempfile.mkdtemp(prefix="spineplan-teach-"))
        root.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path) as zf:
            for m in zf.namelist():
                _safe_member(m)
            zf.extractall(root)
    else:
        root = path
    mf = root / _MANIFEST
    try:
        manifest = json.loads(mf.read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"teaching set {path} has no {_MANIFEST}") from None
    except ValueError:
        raise PlanFileError(f"teaching set {path}: {_MANIFEST} is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != TEACHING_SET_FORMAT:
        raise PlanFileError(f"{path} is not a spineplan teaching set")
    ver = manifest.get("format_version")
    if not isinstance(ver, int) or ver < 1 or ver > TEACHING_SET_VERSION:
        raise PlanFileError(f"teaching set format version {ver!r} is not supported "
                            f"(this spineplan reads up to {TEACHING_SET_VERSION}); update spineplan")
    cases = []
    for e in manifest.get("cases") or []:
        try:
            img = root / _safe_member(e["image"])
            lab = root / _safe_member(e["labels"]) if e.get("labels") else None
            plan_file = root / _safe_member(e["reference_plan"])
            plan = json.loads(plan_file.read_text())
        except (KeyError, TypeError):
            raise PlanFileError(f"teaching set {path}: a case entry is incomplete") from None
        except FileNotFoundError as exc:
            raise InvalidInputError(f"teaching set {path} is missing {exc.filename}") from None
        except ValueError:
            raise PlanFileError(f"teaching set {path}: a reference plan is not valid JSON") from None
        if not img.exists() or (lab is not None and not lab.exists()):
            raise InvalidInputError(f"teaching set {path} is missing the files of case {e.get('id')}")
        cases.append(TeachingCase(id=str(e.get("id")), title=str(e.get("title", "")), image_path=img,
                                  labels_path=lab, reference_plan=plan))
    if not cases:
        raise PlanFileError(f"teaching set {path} has no cases")
    return TeachingSet(title=str(manifest.get("title", "")), cases=cases, root=root, manifest=manifest)
