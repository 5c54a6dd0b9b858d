"""The PACS query model shared by DIMSE (C-FIND) and DICOMweb (QIDO-RS), and typed PACS errors.

A :class:`Query` becomes one identifier :class:`~pydicom.dataset.Dataset` per level
(:func:`query_dataset`); C-FIND sends it as is and QIDO-RS turns it into search filters and
include fields. Answers of both come back as Datasets and are read by the same
:func:`study_from_dataset` / :func:`series_from_dataset`.
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from ..errors import InvalidInputError, SpineplanError

__all__ = ["PacsErrorKind", "PacsError", "Level", "Query", "StudyRecord", "SeriesRecord",
           "parse_date_range", "query_dataset", "study_from_dataset", "series_from_dataset",
           "check_uid"]

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class PacsErrorKind(enum.Enum):
    """Why a PACS request failed (test and branch on this, never on the message)."""

    UNREACHABLE = "unreachable"          # connection refused, unknown host
    TIMEOUT = "timeout"
    CALLED_AET = "called_aet"            # the node does not know the AE title we called
    CALLING_AET = "calling_aet"          # the node does not know our AE title
    REJECTED = "rejected"                # association rejected for another reason
    REFUSED = "refused"                  # a failure status for a query or retrieve
    NO_SUCH_SERIES = "no_such_series"
    ABORTED = "aborted"                  # connection lost during a transfer
    INCOMPLETE = "incomplete"            # fewer images than expected arrived
    STORE_PORT = "store_port"            # our C-MOVE storage port cannot be opened
    AUTH = "auth"                        # DICOMweb 401/403
    HTTP = "http"                        # another DICOMweb HTTP error


class PacsError(SpineplanError):
    """A PACS could not be reached or refused a request; ``kind`` says which."""

    def __init__(self, kind: PacsErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Level(enum.Enum):
    """Query/retrieve level."""

    STUDY = "STUDY"
    SERIES = "SERIES"


def check_uid(uid: str, what: str = "UID") -> str:
    """Return ``uid`` stripped when it is a DICOM UID (digits and dots), else InvalidInputError."""
    u = str(uid or "").strip()
    if not _UID_RE.match(u) or len(u) > 64:
        raise InvalidInputError(f"{what} '{u[:70]}' is not a DICOM UID (digits and dots, at most 64)")
    return u


def _parse_date(s: str) -> _dt.date:
    try:
        return _dt.datetime.strptime(s, "%Y%m%d").date()
    except ValueError:
        raise InvalidInputError(f"'{s}' is not a date YYYYMMDD") from None


def parse_date_range(text: str | None) -> tuple[_dt.date | None, _dt.date | None]:
    """Parse ``YYYYMMDD``, ``YYYYMMDD-YYYYMMDD``, ``-YYYYMMDD`` or ``YYYYMMDD-`` into (from, to)."""
    if not text:
        return None, None
    t = text.strip()
    if "-" not in t:
        d = _parse_date(t)
        return d, d
    a, _, b = t.partition("-")
    lo = _parse_date(a) if a else None
    hi = _parse_date(b) if b else None
    if lo is None and hi is None:
        raise InvalidInputError(f"study date range '{text}' has no date (use YYYYMMDD-YYYYMMDD)")
    if lo and hi and lo > hi:
        raise InvalidInputError(f"study date range '{text}' ends before it starts")
    return lo, hi


@dataclass(frozen=True)
class Query:
    """What the user looks for. Empty fields match anything; names may use ``*`` wildcards."""

    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    date_from: _dt.date | None = None
    date_to: _dt.date | None = None
    modality: str = ""
    study_uid: str = ""
    series_uid: str = ""

    def date_range(self) -> str:
        """The DICOM range matching string of the study date (``''`` when open)."""
        if self.date_from is None and self.date_to is None:
            return ""
        f = self.date_from.strftime("%Y%m%d") if self.date_from else ""
        t = self.date_to.strftime("%Y%m%d") if self.date_to else ""
        return f if f == t else f"{f}-{t}"


@dataclass
class SeriesRecord:
    """One series as a PACS describes it."""

    study_uid: str
    series_uid: str
    modality: str = ""
    description: str = ""
    body_part: str = ""
    number: int | None = None
    n_images: int | None = None
    date: str = ""


@dataclass
class StudyRecord:
    """One study and (after :func:`~spineplan.core.pacs.search`) its series."""

    study_uid: str
    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    date: str = ""
    description: str = ""
    modalities: list[str] = field(default_factory=list)
    n_series: int | None = None
    n_images: int | None = None
    series: list[SeriesRecord] = field(default_factory=list)


_STUDY_RETURN_KEYS = ("StudyInstanceUID", "PatientName", "PatientID", "AccessionNumber", "StudyDate",
                      "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                      "NumberOfStudyRelatedInstances")
_SERIES_RETURN_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription",
                       "BodyPartExamined", "SeriesNumber", "SeriesDate",
                       "NumberOfSeriesRelatedInstances")


def query_dataset(query: Query, level: Level) -> Dataset:
    """The C-FIND identifier for ``query`` at ``level``: matching keys set, return keys empty."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level.value
    keys = _STUDY_RETURN_KEYS if level is Level.STUDY else _SERIES_RETURN_KEYS
    for k in keys:
        setattr(ds, k, "")
    if level is Level.STUDY:
        ds.PatientName = query.patient_name or ""
        ds.PatientID = query.patient_id or ""
        ds.AccessionNumber = query.accession or ""
        ds.StudyDate = query.date_range()
        ds.ModalitiesInStudy = query.modality or ""
        ds.StudyInstanceUID = query.study_uid or ""
    else:
        ds.StudyInstanceUID = query.study_uid or ""
        ds.SeriesInstanceUID = query.series_uid or ""
        ds.Modality = query.modality or ""
    return ds


def _int(v) -> int | None:
    try:
        return int(str(v).strip()) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _multi(v) -> list[str]:
    if v in (None, ""):
        return []
    if isinstance(v, (list, tuple)) or hasattr(v, "__iter__") and not isinstance(v, str):
        return [str(x) for x in v if str(x)]
    return [x for x in str(v).split("\\") if x]


def study_from_dataset(ds: Dataset) -> StudyRecord:
    """A :class:`StudyRecord` from a C-FIND or QIDO-RS study answer."""
    return StudyRecord(
        study_uid=str(ds.get("StudyInstanceUID", "")), patient_name=str(ds.get("PatientName", "") or ""),
        patient_id=str(ds.get("PatientID", "") or ""), accession=str(ds.get("AccessionNumber", "") or ""),
        date=str(ds.get("StudyDate", "") or ""), description=str(ds.get("StudyDescription", "") or ""),
        modalities=_multi(ds.get("ModalitiesInStudy")),
        n_series=_int(ds.get("NumberOfStudyRelatedSeries")),
        n_images=_int(ds.get("NumberOfStudyRelatedInstances")))


def series_from_dataset(ds: Dataset, study_uid: str = "") -> SeriesRecord:
    """A :class:`SeriesRecord` from a C-FIND or QIDO-RS series answer."""
    return SeriesRecord(
        study_uid=str(ds.get("StudyInstanceUID", "") or study_uid),
        series_uid=str(ds.get("SeriesInstanceUID", "")), modality=str(ds.get("Modality", "") or ""),
        description=str(ds.get("SeriesDescription", "") or ""),
        body_part=str(ds.get("BodyPartExamined", "") or ""), number=_int(ds.get("SeriesNumber")),
        n_images=_int(ds.get("NumberOfSeriesRelatedInstances")),
        date=str(ds.get("SeriesDate", "") or ""))
