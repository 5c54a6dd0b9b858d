"""Background work: run a core function off the GUI thread with progress and cancel."""

from __future__ import annotations

import threading
import traceback

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from ..core.errors import SpineplanError
from ..core.tasks import Cancelled

__all__ = ["Worker", "run_in_background"]


class _Signals(QObject):
    progress = Signal(float, str)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()


class Worker(QRunnable):
    """Calls ``fn(progress=..., cancel=...)`` in the thread pool; results come back as signals."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.signals = _Signals()
        self._cancel = threading.Event()
        self.setAutoDelete(False)

    def cancel(self):
        self._cancel.set()

    def run(self):
        try:
            out = self.fn(progress=lambda f, m="": self.signals.progress.emit(float(f), str(m)),
                          cancel=self._cancel.is_set)
        except Cancelled:
            self.signals.cancelled.emit()
        except SpineplanError as exc:
            self.signals.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - shown as a dialog, logged with its traceback
            traceback.print_exc()
            self.signals.failed.emit(f"unexpected error: {type(exc).__name__}: {exc}")
        else:
            self.signals.finished.emit(out)
        finally:
            self.fn = None  # what the job captured (e.g. a label-map snapshot) goes with it


def run_in_background(fn) -> Worker:
    w = Worker(fn)
    QThreadPool.globalInstance().start(w)
    return w
