"""Background work: run a core function off the GUI thread with progress and cancel.

Thread rules (the ``none_dealloc`` crash and the Propose hang of issue 15):

- **No Qt in a worker thread.** With PySide6 6.12, a Python ``QRunnable`` run by
  ``QThreadPool``, and a Qt signal emitted from a thread Qt did not start, corrupt the
  reference counts of ``None``/``True``/``False`` under load: the process dies with
  ``Fatal Python error: none_dealloc`` (or ``bool_dealloc``); tests/qt/test_workers.py
  ``test_pyside_cross_thread_use_is_unsafe_here`` keeps the reproduction. The jobs therefore
  run on plain Python daemon threads (a small pool, one thread per core), which only set
  Python attributes (the latest progress, then the outcome); a ``QTimer`` on the GUI thread
  polls them and emits the worker's public signals there. Every slot (lambdas included)
  runs on the GUI thread, and what a job captured and returned is released there.
- **No lost result.** Nothing is delivered before the GUI thread handles events again, so
  callers may connect to ``worker.signals`` after ``run_in_background`` returned (before,
  a quick job could finish before the connection: Propose stayed disabled for ever).
- **No leak.** A worker is referenced here until its outcome was delivered; then the callers'
  connections are dropped (no cycle through a lambda keeps it alive).
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
import warnings

from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

from ..core.errors import SpineplanError
from ..core.tasks import Cancelled
from .pyside_check import guard_reference_counts

guard_reference_counts()  # a PySide6 that loses references to None/True/False (6.12.0)

__all__ = ["Worker", "run_in_background", "LatestJob", "running_workers", "wait_for_workers",
           "POLL_MS"]

POLL_MS = 10  # how often the GUI thread looks for progress and finished jobs

_RUNNING: list["Worker"] = []  # started, outcome not yet delivered (GUI thread only)
_POLLER: QTimer | None = None


class _Pool:
    """Daemon threads taking jobs from a queue (as many as cores; started on demand)."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, worker: "Worker") -> None:
        with self._lock:
            if self._idle <= 0 and len(self._threads) < self.size:
                t = threading.Thread(target=self._loop, name=f"spineplan-worker-{len(self._threads)}",
                                     daemon=True)
                self._threads.append(t)
                self._idle += 1
                t.start()
            self._idle -= 1
        self._jobs.put(worker)

    def _loop(self) -> None:
        while True:
            worker = self._jobs.get()
            try:
                worker._run()
            finally:
                del worker
                with self._lock:
                    self._idle += 1

    @property
    def threads(self) -> int:
        return len(self._threads)


POOL = _Pool(os.cpu_count() or 2)


class _Signals(QObject):
    """The worker's signals; emitted on the GUI thread only."""

    progress = Signal(float, str)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()


class Worker:
    """Calls ``fn(progress=..., cancel=...)`` on a pool thread; its outcome comes back as
    ``signals.finished(result)``, ``failed(message)`` or ``cancelled()``, and its progress as
    ``progress(fraction, message)``, all emitted on the GUI thread."""

    def __init__(self, fn):
        self.fn = fn
        self.signals = _Signals()
        self._cancel = threading.Event()
        self._progress: tuple[float, str] | None = None  # latest, set by the pool thread
        self._outcome: tuple[str, object] | None = None  # set once by the pool thread
        self.done = False  # outcome delivered

    def cancel(self):
        self._cancel.set()

    def _run(self):
        """On the pool thread: Python only, no Qt."""
        fn = self.fn

        def progress(f, m=""):
            self._progress = (float(f), str(m))

        try:
            outcome = ("finished", fn(progress=progress, cancel=self._cancel.is_set))
        except Cancelled:
            outcome = ("cancelled", None)
        except SpineplanError as exc:
            outcome = ("failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - shown as a dialog, logged with its traceback
            traceback.print_exc()
            outcome = ("failed", f"unexpected error: {type(exc).__name__}: {exc}")
        del fn
        self._outcome = outcome

    def _poll(self) -> bool:
        """On the GUI thread: relay progress; deliver the outcome. True once delivered."""
        outcome = self._outcome  # read first: once it is set, the job's last progress is too
        p, self._progress = self._progress, None
        if p is not None:  # the last progress (e.g. 100 %) comes before the outcome, as it was sent
            self.signals.progress.emit(*p)
        if outcome is None:
            return False
        self._outcome = None
        self.fn = None  # what the job captured goes, on the GUI thread
        self.done = True
        kind, payload = outcome
        del outcome
        sig = self.signals
        try:
            if kind == "finished":
                sig.finished.emit(payload)
            elif kind == "failed":
                sig.failed.emit(payload)
            else:
                sig.cancelled.emit()
        finally:
            del payload
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # "failed to disconnect": none
                for s in (sig.progress, sig.finished, sig.failed, sig.cancelled):
                    try:
                        s.disconnect()
                    except (RuntimeError, TypeError):
                        pass
        return True


def _poll_all():
    for w in list(_RUNNING):
        try:
            delivered = w._poll()
        except Exception:  # noqa: BLE001 - a failing slot must not stop the other deliveries
            traceback.print_exc()
            delivered = w.done
        if delivered and w in _RUNNING:
            _RUNNING.remove(w)
    if not _RUNNING and _POLLER is not None:
        _POLLER.stop()


def run_in_background(fn) -> Worker:
    """Start ``fn(progress=, cancel=)`` on a pool thread (call on the GUI thread). Connect to
    the returned worker's ``signals``, also after this call returned: nothing is delivered
    before the GUI thread handles events again."""
    global _POLLER
    w = Worker(fn)
    _RUNNING.append(w)
    if _POLLER is None:
        _POLLER = QTimer()
        _POLLER.setInterval(POLL_MS)
        _POLLER.timeout.connect(_poll_all)
    if not _POLLER.isActive():
        _POLLER.start()
    POOL.submit(w)
    return w


def running_workers() -> int:
    """Workers started whose outcome has not been delivered yet."""
    return len(_RUNNING)


def wait_for_workers(timeout_s: float = 60.0) -> bool:
    """Process events until every started worker has delivered its outcome (tests, scripts).

    Returns
    -------
    bool
        False when some worker was still running after ``timeout_s``.
    """
    end = time.monotonic() + timeout_s
    while _RUNNING:
        if time.monotonic() > end:
            return False
        QCoreApplication.processEvents()
        time.sleep(0.005)
    return True


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
        w.signals.cancelled.connect(lambda g=gen, w=w: self._done(g, w, None, "cancelled"))
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
