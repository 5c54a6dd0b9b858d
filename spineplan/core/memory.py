"""Memory available to a load, and giving freed memory back.

``SPINEPLAN_MEMORY_LIMIT_MB`` caps what spineplan assumes it may use (tests, shared machines);
otherwise the available memory is ``MemAvailable`` of /proc/meminfo (else psutil when present,
else the physical memory from ``os.sysconf``).
"""

from __future__ import annotations

import os

__all__ = ["available_bytes", "release_freed_memory", "MEMORY_LIMIT_ENV"]

MEMORY_LIMIT_ENV = "SPINEPLAN_MEMORY_LIMIT_MB"


def _limit_from_env() -> int | None:
    raw = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not raw:
        return None
    try:
        mb = float(raw)
    except ValueError:
        return None  # an unreadable limit is ignored, not taken as 0
    return int(mb * 2**20) if mb > 0 else None


def _system_available() -> int:
    # /proc/meminfo first: the same number as psutil's, without importing psutil (~0.1 s of
    # every command's start)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # optional

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - not installed or not supported here
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 64 << 30


def available_bytes() -> int:
    """Bytes a load may use now: the smaller of the system's available memory and
    ``$SPINEPLAN_MEMORY_LIMIT_MB`` (when set).

    Returns
    -------
    int
        Available memory in bytes.
    """
    avail = _system_available()
    limit = _limit_from_env()
    return min(avail, limit) if limit is not None else avail


_MALLOC_TRIM = None  # glibc's malloc_trim with its C signature, looked up once


def release_freed_memory() -> None:
    """Return freed heap memory to the system (glibc ``malloc_trim``; nothing elsewhere).

    Many mid-sized numpy arrays freed after a step stay in the process's heap, where a
    following large (mmapped) array cannot reuse them: trimming keeps the peak down
    (``segment`` at 512x512x1000: 3.6x the raw array with it, 4.4x without,
    bench/results/memory_trim.txt). ``malloc_trim`` locks each arena itself, so it is safe
    beside other threads; it is called with its declared signature (``size_t`` in, ``int``
    out), not through ctypes' default int conversion.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            fn = ctypes.CDLL("libc.so.6").malloc_trim
            fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
            _MALLOC_TRIM = fn
        except (OSError, AttributeError):  # not glibc
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)
