"""A check of the installed PySide6 for lost references to ``None``, ``True`` and ``False``.

PySide6-Essentials 6.12.0 (abi3 wheel) on Python 3.11 drops one reference to ``True`` on
every signal emit and one to ``None`` on every ``processEvents()``: from Python 3.12 on these
objects are immortal and nothing happens, on 3.11 their count reaches zero after some
thousand events and the process dies with ``Fatal Python error: none_dealloc`` (or
``bool_dealloc``), the crash of issue 15. pyproject.toml excludes that release; should such a
build be installed anyway, :func:`guard_reference_counts` finds it at start and gives the
three objects a very large reference count (what 3.12's immortality does), so the workstation
survives, and says so on stderr.
"""

from __future__ import annotations

import sys

__all__ = ["lost_references", "guard_reference_counts", "PAD"]

PAD = 1 << 40  # references added to each singleton when the binding loses them
_guarded = False


def lost_references(n: int = 200) -> dict[str, int]:
    """References to ``None``/``True``/``False`` lost by ``n`` signal emits (and ``n``
    ``processEvents()`` calls when an application exists).

    Returns
    -------
    dict
        ``{"None": k, "True": k, "False": k}``: references lost (0 for a sound binding).
    """
    from PySide6.QtCore import QCoreApplication, QObject, Signal

    class _Probe(QObject):
        ping = Signal(object)

    probe = _Probe()
    probe.ping.connect(lambda _x: None)
    objs = {"None": None, "True": True, "False": False}
    before = {k: sys.getrefcount(v) for k, v in objs.items()}
    for _ in range(n):
        probe.ping.emit(1)
    if QCoreApplication.instance() is not None:
        for _ in range(n):
            QCoreApplication.processEvents()
    after = {k: sys.getrefcount(v) for k, v in objs.items()}
    del probe
    # a sound binding may move a count by a few (caches); a leak moves it by about n
    return {k: max(0, before[k] - after[k]) if before[k] - after[k] >= n // 2 else 0 for k in objs}


def guard_reference_counts(lost: dict[str, int] | None = None) -> bool:
    """Pad the reference counts of ``None``/``True``/``False`` when the installed PySide6
    loses them (Python < 3.12 only; once per process).

    Returns
    -------
    bool
        True when the counts were padded (the binding is faulty).
    """
    global _guarded
    if _guarded or sys.version_info >= (3, 12):
        return False
    lost = lost_references() if lost is None else lost
    if not any(lost.values()):
        return False
    import ctypes

    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += PAD  # ob_refcnt: first field in 3.11
    _guarded = True
    try:
        import PySide6

        version = PySide6.__version__
    except Exception:  # noqa: BLE001
        version = "?"
    print(f"spineplan: warning: PySide6 {version} loses references to None/True/False "
          f"({lost}); install PySide6-Essentials<6.12 (guarded for this session)", file=sys.stderr)
    return True
