"""Background work (qt/workers.py, issue 15 item 6): outcomes are delivered on the GUI thread
even to late connections, nothing crosses threads inside a Qt signal, workers do not leak,
and the installed PySide6 keeps its reference counts (6.12.0 does not: none_dealloc)."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
import weakref

import pytest

pytest.importorskip("PySide6")

from spineplan.core.errors import InvalidInputError  # noqa: E402
from spineplan.core.tasks import Cancelled  # noqa: E402
from spineplan.qt import workers  # noqa: E402
from spineplan.qt.pyside_check import PAD, lost_references  # noqa: E402
from spineplan.qt.workers import LatestJob, run_in_background, running_workers, wait_for_workers  # noqa: E402

MAIN = threading.main_thread().ident


def test_pyside_keeps_reference_counts(qapp):
    # 6.12.0 on Python 3.11: -1 True per emit, -1 None per processEvents -> none_dealloc
    assert lost_references(2000) == {"None": 0, "True": 0, "False": 0}


def test_guard_pads_a_faulty_binding_in_a_fresh_process():
    code = ("import sys\nfrom spineplan.qt import pyside_check as c\n"
            "before = sys.getrefcount(True)\n"
            "assert c.guard_reference_counts({'None': 0, 'True': 200, 'False': 0})\n"
            "assert not c.guard_reference_counts({'None': 0, 'True': 200, 'False': 0})  # once\n"
            "print(sys.getrefcount(True) - before, sys.getrefcount(None) > c.PAD)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    if sys.version_info < (3, 12):
        grown, none_padded = r.stdout.split()
        assert int(grown) >= PAD and none_padded == "True"
        assert "loses references" in r.stderr


def test_outcome_reaches_a_connection_made_after_the_job_ended(qtbot):
    # before: the signal was emitted on the worker thread, possibly before the caller
    # connected, and lost (Propose stayed disabled for ever)
    got = []
    w = run_in_background(lambda progress=None, cancel=None: 42)
    time.sleep(0.3)  # the job has long finished on its thread
    w.signals.finished.connect(got.append)
    qtbot.waitUntil(lambda: got == [42], timeout=5000)
    assert w.done and running_workers() == 0


def test_slots_run_and_results_are_released_on_the_gui_thread(qtbot):
    seen = {}

    class Result:
        def __del__(self):
            seen["freed_on"] = threading.get_ident()

    def job(progress=None, cancel=None):
        seen["job_on"] = threading.get_ident()
        progress(0.5, "half")
        time.sleep(0.1)  # the progress is polled before the end
        return Result()

    w = run_in_background(job)
    w.signals.progress.connect(lambda f, m: seen.setdefault("progress", (f, m, threading.get_ident())))
    w.signals.finished.connect(lambda res: seen.setdefault("finished_on", threading.get_ident()))
    qtbot.waitUntil(lambda: "finished_on" in seen, timeout=5000)
    del w
    gc.collect()
    qtbot.waitUntil(lambda: "freed_on" in seen, timeout=5000)
    assert seen["job_on"] != MAIN
    assert seen["progress"] == (0.5, "half", MAIN)
    assert seen["finished_on"] == MAIN and seen["freed_on"] == MAIN


def test_failure_cancel_and_bug_are_delivered(qtbot):
    def bad(progress=None, cancel=None):
        raise InvalidInputError("no such level")

    def stopped(progress=None, cancel=None):
        raise Cancelled()

    def bug(progress=None, cancel=None):
        return 1 / 0

    out = []
    for fn in (bad, stopped, bug):
        w = run_in_background(fn)
        w.signals.failed.connect(lambda m: out.append(("failed", m)))
        w.signals.cancelled.connect(lambda: out.append(("cancelled", None)))
        w.signals.finished.connect(lambda r: out.append(("finished", r)))
    qtbot.waitUntil(lambda: len(out) == 3, timeout=5000)
    assert ("failed", "no such level") in out and ("cancelled", None) in out
    assert ("failed", "unexpected error: ZeroDivisionError: division by zero") in out


def test_many_jobs_neither_leak_workers_nor_threads(qtbot):
    assert wait_for_workers(30)
    threads_before = threading.active_count()
    refs, results = [], []
    latest = LatestJob(lambda res, err: results.append(res))
    for i in range(300):
        def job(progress=None, cancel=None, i=i):
            for k in range(5):
                progress(k / 5, "")
            return i
        w = latest.start(job) if i % 2 else run_in_background(job)
        w.signals.finished.connect(lambda r, w=w: None)  # a cycle through a lambda
        refs.append(weakref.ref(w))
        del w
        if i % 50 == 0:
            qtbot.wait(1)
    assert wait_for_workers(60), f"{running_workers()} workers never delivered"
    assert results and results[-1] == 299  # the newest LatestJob's result
    assert not latest.running and not latest.pending
    qtbot.wait(50)
    gc.collect()
    alive = [r for r in refs if r() is not None]
    assert not alive, f"{len(alive)} finished workers still referenced"
    assert threading.active_count() <= max(threads_before, 1 + workers.POOL.size)


def test_a_worker_dropped_by_its_caller_lives_until_delivered(qtbot, capfd):
    # the window replaces or drops its reference (self._worker = ..., teardown) while a job
    # runs: this module keeps the worker (and so its signals' QObject) until delivery
    got = []

    def job(progress=None, cancel=None):
        time.sleep(0.3)
        progress(1.0, "done")
        return "result"

    w = run_in_background(job)
    w.signals.finished.connect(got.append)
    ref = weakref.ref(w)
    del w
    gc.collect()
    assert ref() is not None  # held until its outcome is delivered
    qtbot.waitUntil(lambda: got == ["result"], timeout=5000)
    qtbot.wait(20)
    gc.collect()
    assert ref() is None
    assert "has been deleted" not in capfd.readouterr().err
