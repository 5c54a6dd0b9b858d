"""Query/retrieve from a PACS: DIMSE (pynetdicom) and DICOMweb (dicomweb-client), one query model.

* model.py: :class:`Query`, :class:`StudyRecord`, :class:`SeriesRecord`, typed :class:`PacsError`.
* dimse.py: :class:`PacsNode`, :class:`DimseClient` (C-ECHO, C-FIND, C-GET, C-MOVE with our own
  storage SCP).
* web.py: :class:`DicomWebEndpoint`, :class:`DicomWebClient` (QIDO-RS, WADO-RS).
* transfer.py: :class:`SeriesSink`, :func:`download_series`, :func:`search`.
* cache.py: :class:`CaseCache` (size limit, LRU eviction, index of complete series).
* settings.py: named nodes and endpoints in the user's config folder, secrets in the keyring.

Nothing here logs patient data or secrets.
"""

from .cache import CacheEntry, CaseCache
from .dimse import DimseClient, PacsNode, RetrieveMethod, StorageSCP
from .model import (Level, PacsError, PacsErrorKind, Query, SeriesRecord, StudyRecord,
                    parse_date_range)
from .transfer import SeriesSink, download_series, locate_series, search
from .web import AuthKind, DicomWebClient, DicomWebEndpoint

__all__ = ["CacheEntry", "CaseCache", "DimseClient", "PacsNode", "RetrieveMethod", "StorageSCP", "Level", "PacsError",
           "PacsErrorKind", "Query", "SeriesRecord", "StudyRecord", "parse_date_range", "SeriesSink",
           "download_series", "locate_series", "search", "AuthKind", "DicomWebClient",
           "DicomWebEndpoint"]

from .settings import (NodeSettings, PacsSettings, PlaintextSecretsWarning, SecretBackend,  # noqa: E402
                       SecretStore, config_dir, load_settings, save_settings)

__all__ += ["NodeSettings", "PacsSettings", "PlaintextSecretsWarning", "SecretBackend", "SecretStore",
            "config_dir", "load_settings", "save_settings"]
