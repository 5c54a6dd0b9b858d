"""The private cache that opened zips are extracted into, and its cleaning.

Extracted DICOM is fully identified: it goes to a folder only the user can read, one
sub-folder per process (``x-<pid>-...``), removed when the process exits; folders of processes
that are gone (killed, crashed) are removed at the next start. Standard library only, so the
command line can clean at start without importing pydicom.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["zip_cache_dir", "clean_zip_cache", "register_cleanup"]


def _cache_root() -> Path:
    base = os.environ.get("SPINEPLAN_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "spineplan" / "zip"


def zip_cache_dir() -> Path:
    """The private folder (mode 0700) zips are extracted into: ``$SPINEPLAN_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/spineplan/zip``, else ``~/.cache/spineplan/zip``. Not the shared
    system temporary folder: the extracted files are fully identified DICOM."""
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    return root


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_zip_cache(*, own: bool = False) -> int:
    """Remove extractions left by processes that are gone (a kill, a crash); with ``own`` also
    this process's (at exit). Returns the number of folders removed."""
    import shutil

    root = _cache_root()
    if not root.is_dir():
        return 0
    removed = 0
    for d in root.iterdir():
        parts = d.name.split("-")
        if not (len(parts) > 2 and parts[0] == "x" and parts[1].isdigit() and d.is_dir()):
            continue  # not ours: never touched
        pid = int(parts[1])
        if (pid == os.getpid() and own) or (pid != os.getpid() and not _pid_alive(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    return removed


_cleanup_registered = False


def register_cleanup() -> None:
    """Remove this process's extractions at exit, and leftovers of dead processes now."""
    global _cleanup_registered
    if not _cleanup_registered:
        import atexit

        atexit.register(clean_zip_cache, own=True)
        clean_zip_cache()  # leftovers of killed runs, at the first zip of this process
        _cleanup_registered = True


