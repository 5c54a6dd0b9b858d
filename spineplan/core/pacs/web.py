"""DICOMweb route (dicomweb-client): QIDO-RS queries and WADO-RS retrieve of one series."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pydicom.dataset import Dataset

from ..errors import InvalidInputError
from .model import (Level, PacsError, PacsErrorKind, Query, SeriesRecord, StudyRecord,
                    query_dataset, series_from_dataset, study_from_dataset)
from .transfer import SeriesSink

__all__ = ["AuthKind", "DicomWebEndpoint", "DicomWebClient"]


class AuthKind(enum.Enum):
    """Authentication of a DICOMweb endpoint."""

    NONE = "none"
    BASIC = "basic"
    BEARER = "bearer"


@dataclass
class DicomWebEndpoint:
    """A DICOMweb service: base URL (QIDO-RS and WADO-RS below it), authentication kind, user.

    The password or token is not part of this object (see settings.py); pass it to the client.
    """

    url: str
    auth: AuthKind = AuthKind.NONE
    username: str = ""
    timeout_s: float = 20.0

    def __post_init__(self) -> None:
        self.auth = AuthKind(self.auth)
        if not self.url.startswith(("http://", "https://")):
            raise InvalidInputError(f"DICOMweb URL '{self.url}' must start with http:// or https://")
        self.url = self.url.rstrip("/")

    def describe(self) -> str:
        return self.url


def _session_class():
    import requests

    class Session(requests.Session):
        """Sends QIDO wildcards as ``*``: some servers (Orthanc's plugin 1.7) do not decode %2A."""

        def send(self, request, **kw):
            request.url = request.url.replace("%2A", "*")
            return super().send(request, **kw)

    return Session


def _Session():
    return _session_class()()


class DicomWebClient:
    """QIDO-RS / WADO-RS against one endpoint; ``secret`` is the password or bearer token."""

    def __init__(self, endpoint: DicomWebEndpoint, secret: str | None = None) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient

        self.endpoint = endpoint
        session = _Session()
        if endpoint.auth is AuthKind.BASIC:
            session.auth = (endpoint.username, secret or "")
        elif endpoint.auth is AuthKind.BEARER:
            session.headers["Authorization"] = f"Bearer {secret or ''}"
        self._client = DICOMwebClient(endpoint.url, session=session, timeout=endpoint.timeout_s)
        self._client.set_http_retry_params(retry=False)   # errors surface at once, one line

    def describe(self) -> str:
        return self.endpoint.describe()

    def _call(self, fn, *a, **kw):
        import requests

        try:
            return fn(*a, **kw)
        except requests.exceptions.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if code in (401, 403):
                raise PacsError(PacsErrorKind.AUTH, f"{self.describe()} refused our credentials "
                                f"(HTTP {code})") from None
            if code == 404:
                raise PacsError(PacsErrorKind.NO_SUCH_SERIES,
                                f"{self.describe()} has no such study or series (HTTP 404)") from None
            raise PacsError(PacsErrorKind.HTTP, f"{self.describe()} answered HTTP {code}") from None
        except requests.exceptions.Timeout:
            raise PacsError(PacsErrorKind.TIMEOUT, f"{self.describe()} did not answer within "
                            f"{self.endpoint.timeout_s:g} s") from None
        except requests.exceptions.ConnectionError:
            raise PacsError(PacsErrorKind.UNREACHABLE, f"cannot reach {self.describe()} "
                            "(connection refused or lost); check the URL") from None
        except requests.exceptions.RequestException as exc:
            raise PacsError(PacsErrorKind.HTTP, f"{self.describe()}: {type(exc).__name__}") from None

    @staticmethod
    def _filters(ident: Dataset) -> tuple[dict, list[str]]:
        filters, fields = {}, []
        for elem in ident:
            if elem.keyword == "QueryRetrieveLevel":
                continue
            value = str(elem.value) if elem.value not in (None, "") else ""
            if value:
                filters[elem.keyword] = value
            fields.append(elem.keyword)
        return filters, fields

    def echo(self) -> None:
        """A QIDO-RS study query with limit=1."""
        self._call(self._client.search_for_studies, limit=1)

    def find_studies(self, query: Query) -> list[StudyRecord]:
        """QIDO-RS /studies with the same keys as the study-level C-FIND."""
        filters, fields = self._filters(query_dataset(query, Level.STUDY))
        found = self._call(self._client.search_for_studies, search_filters=filters, fields=fields)
        return [study_from_dataset(Dataset.from_json(j)) for j in found]

    def find_series(self, query: Query) -> list[SeriesRecord]:
        """QIDO-RS /series (within the query's study when it names one)."""
        ident = query_dataset(query, Level.SERIES)
        study = ident.StudyInstanceUID
        del ident.StudyInstanceUID
        filters, fields = self._filters(ident)
        fields.append("StudyInstanceUID")
        found = self._call(self._client.search_for_series, study_instance_uid=study or None,
                           search_filters=filters, fields=fields)
        return [series_from_dataset(Dataset.from_json(j), study) for j in found]

    def retrieve(self, series: SeriesRecord, sink: SeriesSink) -> None:
        """WADO-RS of the series image by image into ``sink``, skipping images it already has."""
        from ..tasks import Cancelled

        found = self._call(self._client.search_for_instances, study_instance_uid=series.study_uid,
                           series_instance_uid=series.series_uid, fields=["SOPInstanceUID"])
        uids = [str(Dataset.from_json(j).get("SOPInstanceUID", "")) for j in found]
        if not uids:
            raise PacsError(PacsErrorKind.NO_SUCH_SERIES,
                            f"{self.describe()} has no images of series {series.series_uid}")
        sink.set_expected(len(uids))
        for uid in uids:
            if sink.has(uid):
                continue
            if sink.cancelled():
                raise Cancelled()
            try:
                ds = self._call(self._client.retrieve_instance, series.study_uid, series.series_uid, uid)
            except PacsError as exc:
                if exc.kind in (PacsErrorKind.UNREACHABLE, PacsErrorKind.TIMEOUT):
                    raise PacsError(PacsErrorKind.ABORTED, f"{self.describe()} stopped during the "
                                    f"WADO-RS retrieve ({sink.received} images kept; retrieve again "
                                    "to resume)") from None
                raise
            sink.store(ds)
