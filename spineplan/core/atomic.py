"""Atomic file writes: the one way spineplan writes a file.

Every write goes to a temporary file in the destination folder (named like the destination,
so writers that go by the extension still work), is flushed and fsync'ed, given the mode a
normally created file would have, then renamed over the destination with ``os.replace``: a
crash or an error mid-way never leaves a partial file, and the previous file survives.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import OutputError

__all__ = ["atomic_output_path", "atomic_write_bytes", "atomic_write_text", "clean_orphans", "ORPHAN_AGE_S"]


def _cannot_write(dest: Path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write {dest}: {exc.strerror or type(exc).__name__}")


#: A temporary file of ours older than this (seconds) is an orphan of a killed write
#: (a SIGKILL between mkstemp and os.replace), removed before the next write to that file.
ORPHAN_AGE_S = 60.0


def clean_orphans(dest: str | os.PathLike, older_than_s: float = ORPHAN_AGE_S) -> int:
    """Remove the temporary files earlier writes to ``dest`` left behind when they were
    killed (named ``.<dest name>.*.tmp*`` in its folder, older than ``older_than_s``); returns
    how many. They can hold patient data, and after many kills fill the disk."""
    import time

    dest = Path(dest)
    folder = dest.parent if str(dest.parent) else Path(".")
    now, n = time.time(), 0
    with contextlib.suppress(OSError):
        for p in folder.glob(f".{glob.escape(dest.name)}.*.tmp*"):
            with contextlib.suppress(OSError):
                if now - p.stat().st_mtime > older_than_s:
                    p.unlink()
                    n += 1
    return n


def _temp_in_folder(dest: Path) -> tuple[int, str]:
    """A new temporary file beside ``dest``, ending in ``dest``'s extension (``.nii.gz`` too);
    an unwritable folder is said about ``dest``, never the temporary name."""
    name = dest.name.lower()
    ext = ".nii.gz" if name.endswith(".nii.gz") else dest.suffix
    folder = dest.parent if str(dest.parent) else Path(".")
    clean_orphans(dest)
    try:
        return tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp" + ext, dir=folder)
    except OSError as exc:
        raise _cannot_write(dest, exc) from None


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _set_final_mode(tmp: str | os.PathLike, dest: Path, mode: int | None = None) -> None:
    """Give the temp file ``mode``, or the mode a normally created file would have (mkstemp
    uses 0600)."""
    if mode is not None:
        os.chmod(tmp, mode)
        return
    try:
        mode = dest.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_UMASK
    with contextlib.suppress(OSError):
        os.chmod(tmp, mode)


@contextlib.contextmanager
def atomic_output_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``.

    For writers that want a file name (VTK, reportlab). On any exception the
    temporary file is removed and ``path`` is left untouched.
    """
    dest = Path(path)
    folder = dest.parent if str(dest.parent) else Path(".")
    fd, tmp = _temp_in_folder(dest)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        _set_final_mode(tmp_path, dest)
        os.replace(tmp_path, dest)
        _fsync_dir(folder)
    except OutputError:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise _cannot_write(dest, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, os.replace);
    ``mode`` (e.g. 0o600 for a file holding secrets) is set before the file appears."""
    dest = Path(path)
    folder = dest.parent if str(dest.parent) else Path(".")
    fd, tmp = _temp_in_folder(dest)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _set_final_mode(tmp, dest, mode)
        os.replace(tmp, dest)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _cannot_write(dest, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
    return dest


def atomic_write_text(path: str | os.PathLike, text: str, *, mode: int | None = None) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode=mode)
