"""Background work: run a core function off the GUI thread with progress and cancel."""

from __future__ import annotations

import threading
import traceback

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from ..core.errors import SpineplanError
from ..core.tasks import Cancelled

__all__ = ["Worker", "run_in_background", "LatestJob"]


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


class LatestJob:
    """Jobs of which only the newest counts (results derived from the current labels): each
    ``start(fn)`` runs ``fn`` in the thread pool and supersedes the jobs started before it,
    whose results are dropped; ``on_done(result, error)`` gets the newest one's result (error:
    the message, result None). Running workers stay referenced until they finish; after
    ``close()`` nothing is delivered."""

    def __init__(self, on_done):
        self._on_done = on_done
        self._generation = 0
        self.running: list[Worker] = []
        self.pending = False
        self._closed = False

    def start(self, fn) -> Worker:
        self._generation += 1
        gen = self._generation
        self.pending = True
        w = run_in_background(fn)
        self.running.append(w)
        w.signals.finished.connect(lambda res, g=gen, w=w: self._done(g, w, res, None))
        w.signals.failed.connect(lambda msg, g=gen, w=w: self._done(g, w, None, msg))
        return w

    def supersede(self):
        """Drop the results of the jobs started so far (nothing new to compute)."""
        self._generation += 1
        self.pending = False

    def close(self):
        self._closed = True

    def _done(self, gen: int, worker: Worker, result, error):
        if worker in self.running:
            self.running.remove(worker)
        if self._closed or gen != self._generation:
            return
        self.pending = False
        self._on_done(result, error)
