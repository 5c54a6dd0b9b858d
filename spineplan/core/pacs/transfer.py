"""Receiving one series: atomic per-image files in a staging folder, renamed when complete.

Every retrieve route (C-GET, C-MOVE, WADO-RS) hands each received dataset to a
:class:`SeriesSink`. It writes ``<SOPInstanceUID>.dcm`` atomically, refuses images of another
series, reports ``received of expected`` and keeps what arrived, so that a failed or cancelled
transfer resumes where it stopped. :func:`download_series` renames the staging folder to its
final name only when every expected image is there: nothing half-written is ever complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Protocol

from pydicom.dataset import Dataset

from ..tasks import Reporter
from .model import PacsError, PacsErrorKind, Query, SeriesRecord, StudyRecord, check_uid

__all__ = ["SeriesSink", "PacsClient", "download_series", "search", "locate_series", "PART_SUFFIX"]

PART_SUFFIX = ".part"


class PacsClient(Protocol):
    """What a DIMSE node or a DICOMweb endpoint offers (see dimse.py and web.py)."""

    def describe(self) -> str: ...
    def echo(self) -> None: ...
    def find_studies(self, query: Query) -> list[StudyRecord]: ...
    def find_series(self, query: Query) -> list[SeriesRecord]: ...
    def retrieve(self, series: SeriesRecord, sink: "SeriesSink") -> None: ...


class SeriesSink:
    """Writes the images of one series into ``folder``; thread-safe (stores come from the network).

    Parameters
    ----------
    folder : path
        Staging folder (created). Images already in it count as received (resume).
    series : SeriesRecord
        The requested series; ``n_images`` is the expected count when the PACS said it.
    """

    def __init__(self, folder, series: SeriesRecord, *, progress=None, cancel=None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob("*" + PART_SUFFIX):
            stale.unlink()
        self.series = series
        self.expected = series.n_images
        self.rep = Reporter(progress, cancel)
        self._lock = threading.Lock()
        self._have = {p.stem for p in self.folder.glob("*.dcm")}
        self.refused = 0

    @property
    def received(self) -> int:
        """Distinct images of the series in the staging folder."""
        return len(self._have)

    def has(self, sop_uid: str) -> bool:
        """True when the image ``sop_uid`` is already in the staging folder."""
        with self._lock:
            return sop_uid in self._have

    def set_expected(self, n: int | None) -> None:
        """Record the image count the PACS announced for the retrieve (keeps the largest)."""
        if n and (self.expected is None or n > self.expected):
            self.expected = int(n)

    def cancelled(self) -> bool:
        """True when the caller asked to stop."""
        return bool(self.rep.cancel is not None and self.rep.cancel())

    def accepts(self, ds: Dataset) -> bool:
        """True for an image of the requested series with a valid SOP instance UID."""
        if str(ds.get("SeriesInstanceUID", "")) != self.series.series_uid:
            return False
        try:
            check_uid(str(ds.get("SOPInstanceUID", "")))
        except Exception:
            return False
        return True

    def store(self, ds: Dataset) -> bool:
        """Write ``ds`` (with its ``file_meta``) atomically; False when it is not of the series."""
        if not self.accepts(ds):
            with self._lock:
                self.refused += 1
            return False
        uid = str(ds.SOPInstanceUID)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=PART_SUFFIX)
        os.close(fd)
        try:
            ds.save_as(tmp, enforce_file_format=True)
            os.replace(tmp, self.folder / f"{uid}.dcm")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        with self._lock:
            self._have.add(uid)
            n, e = len(self._have), self.expected
        if self.rep.progress is not None:
            frac = n / e if e else 0.0
            self.rep.progress(min(frac, 1.0), f"received {n} of {e if e else '?'} images")
        return True

    def complete(self) -> bool:
        """True when every expected image is there (and the expected count is known)."""
        return bool(self.expected) and self.received >= self.expected


def search(client: PacsClient, query: Query, *, with_series: bool = True) -> list[StudyRecord]:
    """Studies matching ``query``, each with its series (filtered by the query's modality)."""
    studies = client.find_studies(query)
    if with_series:
        for st in studies:
            st.series = client.find_series(Query(study_uid=st.study_uid, modality=query.modality))
            if query.modality and not st.series:
                # ModalitiesInStudy matched but no series of that modality: show all series
                st.series = client.find_series(Query(study_uid=st.study_uid))
    return studies


def locate_series(client: PacsClient, series_uid: str, study_uid: str = "") -> SeriesRecord:
    """The record of one series (its study and image count), or PacsError NO_SUCH_SERIES."""
    uid = check_uid(series_uid, "series UID")
    if study_uid:
        found = client.find_series(Query(study_uid=check_uid(study_uid, "study UID"), series_uid=uid))
    else:
        found = client.find_series(Query(series_uid=uid))
    found = [s for s in found if s.series_uid == uid]
    if not found:
        raise PacsError(PacsErrorKind.NO_SUCH_SERIES, f"{client.describe()} has no series {uid}")
    return found[0]


def download_series(client: PacsClient, series: SeriesRecord, final_dir, staging_dir, *,
                    progress=None, cancel=None) -> Path:
    """Retrieve ``series`` into ``staging_dir``, then rename it to ``final_dir`` when complete.

    Raises
    ------
    PacsError
        ``INCOMPLETE`` (the staging folder is kept: calling again resumes), or the route's error.
    Cancelled
        When ``cancel()`` became True; what arrived stays in the staging folder.
    """
    final_dir, staging_dir = Path(final_dir), Path(staging_dir)
    sink = SeriesSink(staging_dir, series, progress=progress, cancel=cancel)
    client.retrieve(series, sink)
    if not sink.complete():
        exp = sink.expected if sink.expected else "an unknown number"
        raise PacsError(PacsErrorKind.INCOMPLETE,
                        f"received {sink.received} of {exp} images of series {series.series_uid}"
                        + (f" ({sink.refused} of another series refused)" if sink.refused else "")
                        + "; retrieve again to resume")
    if final_dir.exists():
        shutil.rmtree(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging_dir, final_dir)
    return final_dir
