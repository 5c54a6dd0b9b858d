"""Where a cohort's cases run: Dask (``dask.distributed``) or a local process pool.

An engine has a ``name``, ``is_available()`` and ``missing_dependencies`` (like the segmenter
registry, ``segmentation/base.py``) and ``map_unordered(fn, tasks, workers=, cancel=)``, which
yields ``(index, result)`` as the cases finish, in any order; a case whose worker died yields
a :class:`WorkerLost` instead of a result. Leaving the iteration (end, error, Ctrl-C, cancel)
shuts the workers down. Workers ignore SIGINT (Ctrl-C reaches the parent, which stops them)
and run their numeric libraries single-threaded per worker (the cores are the workers').
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

from ..errors import InvalidInputError
from ..tasks import CancelFn, Cancelled

__all__ = ["Engine", "WorkerLost", "DaskEngine", "ProcessPoolEngine", "ENGINES", "get_engine",
           "default_engine", "thread_env"]

POLL_S = 0.25  # how often a waiting engine looks at cancel()


@dataclass(frozen=True)
class WorkerLost:
    """A case whose worker process died (killed, out of memory) before it returned."""

    message: str


class Engine(Protocol):
    name: str

    def is_available(self) -> bool: ...

    @property
    def missing_dependencies(self) -> list[str]: ...

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Sequence[Any], *, workers: int,
                      cancel: CancelFn = None) -> Iterator[tuple[int, Any]]: ...


def thread_env(threads: int) -> dict[str, str]:
    """Environment that keeps BLAS/OpenMP and ITK at ``threads`` threads in a worker."""
    n = str(max(int(threads), 1))
    return {k: n for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                           "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")}


@contextlib.contextmanager
def _spawning(env: dict[str, str]):
    """While worker processes are started: SIGINT ignored (a spawned Python keeps an ignored
    SIGINT, so Ctrl-C reaches only the parent) and ``env`` in the environment they copy."""
    main = threading.current_thread() is threading.main_thread()
    old_handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    old_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if main:
            signal.signal(signal.SIGINT, old_handler)


def _check(cancel: CancelFn) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False


class DaskEngine:
    """``dask.distributed``: a LocalCluster of ``workers`` processes with one thread each, or
    the existing scheduler at ``scheduler`` (``tcp://host:port``; its workers must see the
    input and output paths and have spineplan installed)."""

    name = "dask"

    def __init__(self, scheduler: str | None = None) -> None:
        self.scheduler = scheduler
        self.n_workers: int | None = None  # the workers an existing scheduler has, once connected

    @property
    def missing_dependencies(self) -> list[str]:
        missing = [m for m in ("dask", "distributed") if not _has_module(m)]
        return [f"{m} is not installed (pip install 'dask[distributed]')" for m in missing]

    def is_available(self) -> bool:
        return not self.missing_dependencies

    def _client(self, workers: int, threads: int):
        from distributed import Client, LocalCluster

        if self.scheduler:
            try:
                return Client(self.scheduler, timeout="10s"), None
            except (OSError, TimeoutError, ValueError) as exc:
                raise InvalidInputError(f"cannot reach the Dask scheduler at {self.scheduler} "
                                        f"({type(exc).__name__}); check --scheduler") from None
        with _spawning(thread_env(threads)):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.CRITICAL,
                                   memory_limit=0)  # no nanny kill at a share of the RAM
            return Client(cluster), cluster

    def map_unordered(self, fn, tasks, *, workers: int, cancel: CancelFn = None,
                      threads: int = 1) -> Iterator[tuple[int, Any]]:
        from distributed import wait

        client, cluster = self._client(workers, threads)
        futures: list = []
        try:
            if self.scheduler:
                self.n_workers = len(client.scheduler_info().get("workers", {}))
            futures = client.map(fn, list(tasks), pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            pending = set(futures)
            while pending:
                _check(cancel)
                try:
                    done = wait(pending, timeout=POLL_S, return_when="FIRST_COMPLETED").done
                except TimeoutError:
                    continue
                for f in done:
                    pending.discard(f)
                    try:
                        result = f.result()
                    except Exception as exc:  # noqa: BLE001 - KilledWorker, a lost worker
                        result = WorkerLost(f"the worker running this case died ({type(exc).__name__}; "
                                            "out of memory? try fewer --workers)")
                    yield index[f.key], result
        finally:
            # shutting the cluster down (after Ctrl-C above all) makes tornado and distributed
            # log callback tracebacks that say nothing to the user: the outcome is reported
            for name in ("tornado", "tornado.application", "tornado.general", "asyncio", "distributed"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
            with contextlib.suppress(Exception):
                client.cancel(futures)
            with contextlib.suppress(Exception):
                client.close()
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.close()


class ProcessPoolEngine:
    """``concurrent.futures.ProcessPoolExecutor`` with ``workers`` spawned processes: the
    fallback when Dask is not installed (always available)."""

    name = "processes"
    missing_dependencies: list[str] = []

    def is_available(self) -> bool:
        return True

    def map_unordered(self, fn, tasks, *, workers: int, cancel: CancelFn = None,
                      threads: int = 1) -> Iterator[tuple[int, Any]]:
        import concurrent.futures as cf
        import multiprocessing
        from concurrent.futures.process import BrokenProcessPool

        ex = cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            with _spawning(thread_env(threads)):  # the processes start on the first submits
                index = {ex.submit(fn, t): i for i, t in enumerate(tasks)}
            pending = set(index)
            while pending:
                _check(cancel)
                done, pending = cf.wait(pending, timeout=POLL_S, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    try:
                        result = f.result()
                    except BrokenProcessPool:
                        result = WorkerLost("a worker process died (out of memory? try fewer "
                                            "--workers); the cases it shared the pool with stopped too")
                    yield index[f], result
        finally:
            ex.shutdown(wait=False, cancel_futures=True)
            # a running case is stopped, not awaited (its outputs are written atomically)
            for p in list((getattr(ex, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    p.terminate()
            for p in list((getattr(ex, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    p.join(5)


ENGINES = ("dask", "processes")


def get_engine(name: str = "auto", *, scheduler: str | None = None) -> Engine:
    """The engine called ``name`` (``"auto"``: Dask when installed, else the process pool).

    Raises
    ------
    InvalidInputError
        An unknown or unavailable engine, or ``scheduler`` without Dask.
    """
    if name not in ("auto", *ENGINES):
        raise InvalidInputError(f"unknown engine '{name}'; known: auto, {', '.join(ENGINES)}")
    dask = DaskEngine(scheduler)
    if name == "processes":
        if scheduler:
            raise InvalidInputError("--scheduler needs the dask engine")
        return ProcessPoolEngine()
    if dask.is_available():
        return dask
    if name == "dask" or scheduler:
        raise InvalidInputError(f"the dask engine is not available: {'; '.join(dask.missing_dependencies)}")
    return ProcessPoolEngine()


def default_engine() -> Engine:
    """Dask when installed, else the local process pool."""
    return get_engine("auto")
