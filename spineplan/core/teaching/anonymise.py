"""Presentation anonymising: patient identity replaced by a case title.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import InvalidInputError

__all__ = ["IDENTITY_KEYS", "anonymise_for_presentation"]


#: Keys (compared lower-case without ``_``, ``-`` and spaces) that identify a patient or
#: study and are removed in presentation mode / teaching material.
IDENTITY_KEYS = frozenset({
    "identity", "patientname", "patientid", "patientsname", "patientbirthdate", "birthdate",
    "patientbirthname", "patientmothersbirthname", "otherpatientids", "otherpatientnames",
    "patientaddress", "patienttelephonenumbers", "patientage", "patientsex", "patientweight",
    "patientsize", "accessionnumber", "institutionname", "institutionaddress",
    "referringphysicianname", "performingphysicianname", "operatorsname", "physiciansofrecord",
    "studydate", "seriesdate", "acquisitiondate", "contentdate", "studytime", "seriestime",
    "studyid", "studyinstanceuid", "studyuid", "seriesinstanceuid", "seriesuid",
    "sopinstanceuid", "frameofreferenceuid", "stationname", "deviceserialnumber",
    "studydescription", "seriesdescription", "description", "notes", "checksum",
    "path", "filename", "sourcepath",
})


def _norm_key(k: str) -> str:
    return "".join(ch for ch in str(k).lower() if ch.isalnum())


def _strip_identity(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_identity(v) for k, v in obj.items() if _norm_key(k) not in IDENTITY_KEYS}
    if isinstance(obj, list):
        return [_strip_identity(v) for v in obj]
    return copy.deepcopy(obj)


def anonymise_for_presentation(plan_or_meta: dict, title: str) -> dict:
    """A copy of a plan dict or volume meta with patient identity replaced by a case title.

    Removes every identifying key at any depth (:data:`IDENTITY_KEYS`: identity block,
    names, IDs, dates, UIDs, descriptions, free-text notes, file paths, checksum) and adds
    ``"case_title": title``. Views and reports in presentation mode show the case title
    where they would show the patient. The source dict is not modified.

    Raises
    ------
    InvalidInputError
        When ``plan_or_meta`` is not a dict or ``title`` is empty.
    """
    if not isinstance(plan_or_meta, dict):
        raise InvalidInputError("anonymise_for_presentation expects a plan dict or metadata dict")
    title = str(title or "").strip()
    if not title:
        raise InvalidInputError("a presentation needs a case title (e.g. 'Case 1: L4-L5 herniation')")
    out = _strip_identity(plan_or_meta)
    out["case_title"] = title
    return out
