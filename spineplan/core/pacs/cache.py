"""The local case cache: retrieved series by UID, a size limit, least-recently-used eviction.

Layout under ``root``: ``series/<SeriesUID>/`` complete series, ``partial/<SeriesUID>/`` transfers
in progress or interrupted (resumed by the next fetch), ``index.json`` the complete series (with
image count, bytes and last use), rewritten atomically. A series is complete only once it is in
the index; a cached series opens without any network request.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import InvalidInputError
from .model import SeriesRecord, check_uid
from .transfer import PacsClient, download_series

__all__ = ["CaseCache", "CacheEntry", "DEFAULT_CACHE_BYTES"]

DEFAULT_CACHE_BYTES = 20 * 1024 ** 3
INDEX_VERSION = 1


@dataclass
class CacheEntry:
    """One complete series in the cache."""

    series_uid: str
    study_uid: str
    n_images: int
    n_bytes: int
    last_used: float
    source: str = ""
    modality: str = ""
    description: str = ""


class CaseCache:
    """Retrieved series in ``root``, at most ``max_bytes`` of them (the newest fetch always stays)."""

    def __init__(self, root, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.root = Path(root)
        if int(max_bytes) <= 0:
            raise InvalidInputError(f"cache size limit must be positive, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        (self.root / "series").mkdir(parents=True, exist_ok=True)
        (self.root / "partial").mkdir(parents=True, exist_ok=True)

    # -- index -------------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        return self.root / "index.json"

    def entries(self) -> dict[str, CacheEntry]:
        """The complete series, by series UID (entries whose folder went missing are dropped)."""
        try:
            raw = json.loads(self.index_path.read_text())
            items = raw.get("series", {}) if raw.get("version") == INDEX_VERSION else {}
        except (OSError, ValueError, AttributeError):
            items = {}
        out = {}
        for uid, e in items.items():
            try:
                entry = CacheEntry(**e)
            except TypeError:
                continue
            if self.series_dir(uid).is_dir():
                out[uid] = entry
        return out

    def _write(self, entries: dict[str, CacheEntry]) -> None:
        data = {"version": INDEX_VERSION, "series": {u: asdict(e) for u, e in entries.items()}}
        atomic_write_text(self.index_path, json.dumps(data, indent=1))

    def series_dir(self, series_uid: str) -> Path:
        return self.root / "series" / check_uid(series_uid, "series UID")

    def partial_dir(self, series_uid: str) -> Path:
        return self.root / "partial" / check_uid(series_uid, "series UID")

    def total_bytes(self) -> int:
        return sum(e.n_bytes for e in self.entries().values())

    # -- use -----------------------------------------------------------------------------------
    def lookup(self, series_uid: str) -> Path | None:
        """The folder of a complete cached series (marked as just used), or None."""
        entries = self.entries()
        e = entries.get(check_uid(series_uid, "series UID"))
        if e is None:
            return None
        e.last_used = time.time()
        self._write(entries)
        return self.series_dir(series_uid)

    def partial_count(self, series_uid: str) -> int:
        """Images of an interrupted transfer waiting to be resumed."""
        d = self.partial_dir(series_uid)
        return len(list(d.glob("*.dcm"))) if d.is_dir() else 0

    def fetch(self, client: PacsClient, series: SeriesRecord, *, progress=None, cancel=None) -> Path:
        """The series folder: from the cache when complete there, else retrieved (resuming).

        Raises the route's PacsError (the partial folder is kept for a resume) or Cancelled.
        """
        hit = self.lookup(series.series_uid)
        if hit is not None:
            if progress is not None:
                e = self.entries()[series.series_uid]
                progress(1.0, f"in cache: {e.n_images} images")
            return hit
        final = self.series_dir(series.series_uid)
        download_series(client, series, final, self.partial_dir(series.series_uid),
                        progress=progress, cancel=cancel)
        files = list(final.glob("*.dcm"))
        entries = self.entries()
        entries[series.series_uid] = CacheEntry(
            series.series_uid, series.study_uid, len(files), sum(f.stat().st_size for f in files),
            time.time(), client.describe(), series.modality, series.description)
        self._write(entries)
        self.evict(keep=series.series_uid)
        return final

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least-recently-used series until the cache fits; returns the removed UIDs."""
        entries = self.entries()
        total = sum(e.n_bytes for e in entries.values())
        removed = []
        for e in sorted(entries.values(), key=lambda e: e.last_used):
            if total <= self.max_bytes:
                break
            if e.series_uid == keep:
                continue
            del entries[e.series_uid]
            self._write(entries)           # out of the index first: never listed half-deleted
            shutil.rmtree(self.series_dir(e.series_uid), ignore_errors=True)
            total -= e.n_bytes
            removed.append(e.series_uid)
        return removed

    def remove(self, series_uid: str) -> None:
        """Forget one series (complete and partial)."""
        entries = self.entries()
        entries.pop(series_uid, None)
        self._write(entries)
        shutil.rmtree(self.series_dir(series_uid), ignore_errors=True)
        shutil.rmtree(self.partial_dir(series_uid), ignore_errors=True)
