"""Running a cohort: cases out to the engine's workers, records and the table back.

Output folder::

    cohort.csv, cohort.json       the table: a row per case and per motor unit
    cases/<id>.labels.nii.gz      each case's label map
    cases/<id>.json               each case's record (levels, flags, motor units, seconds)
    identity.csv                  case id -> input path, only with ``identify`` (owner-only)
    .cohort-key                   the secret key of the case ids (owner-only)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..atomic import atomic_write_bytes, atomic_write_text
from ..errors import InvalidInputError, OutputError
from ..tasks import CancelFn, Cancelled, ProgressFn
from .cases import (CASE_FORMAT, CASES_DIR, CaseStatus, CaseTask, FailureKind, case_json_path,
                    case_labels_path, discover_cases, failure_record, run_case, tasks_for,
                    write_case_record)
from .engines import WorkerLost, get_engine
from .table import TABLE_JSON, write_table

__all__ = ["run_cohort", "CohortResult", "CohortInterrupted", "KEY_FILE", "IDENTITY_FILE"]

KEY_FILE = ".cohort-key"
IDENTITY_FILE = "identity.csv"


@dataclass
class CohortResult:
    """What a cohort run did. ``records`` are the case records in cohort order."""

    records: list[dict]
    summary: dict
    engine: str
    workers: int
    table_csv: Path
    table_json: Path
    seconds: float = 0.0
    resumed_ids: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] == CaseStatus.FAILED.value]


class CohortInterrupted(Cancelled):
    """The run was cancelled (Ctrl-C, ``cancel()``): the cases done are kept and in the table
    (``result``), the others are ``not_run`` rows; ``--resume`` continues it."""

    def __init__(self, result: CohortResult) -> None:
        super().__init__("interrupted")
        self.result = result


def _prepare(out: Path, resume: bool) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or type(exc).__name__}") from None
    if not out.is_dir():
        raise OutputError(f"cannot write {out}: not a folder")
    if not resume and any((out / n).exists() for n in (TABLE_JSON, KEY_FILE, CASES_DIR)):
        raise InvalidInputError(f"{out} already holds a cohort: pass --resume to continue it, "
                                "or choose a new output folder")


def _key(out: Path) -> bytes:
    """The cohort's secret key (created on the first run, kept for --resume)."""
    p = out / KEY_FILE
    if p.is_file():
        try:
            key = bytes.fromhex(p.read_text().strip())
        except (ValueError, UnicodeDecodeError):
            key = b""
        if len(key) >= 16:
            return key
        raise InvalidInputError(f"{p} is damaged: run the cohort into a new output folder")
    key = secrets.token_bytes(32)
    atomic_write_text(p, key.hex() + "\n", mode=0o600)
    return key


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary files of writes that a killed worker left (atomic.py names them ``.NAME.*.tmp*``)."""
    for p in folder.glob(".*.tmp*"):
        with contextlib.suppress(OSError):
            p.unlink()


def _done_record(out: Path, task: CaseTask) -> dict | None:
    """The stored record of a case done before with the same input and settings, else None."""
    try:
        rec = json.loads(case_json_path(out, task.case_id).read_text())
    except (OSError, ValueError):
        return None
    ok = (isinstance(rec, dict) and rec.get("format") == CASE_FORMAT
          and rec.get("status") == CaseStatus.OK.value and rec.get("fingerprint") == task.fingerprint
          and case_labels_path(out, task.case_id).is_file())
    return rec if ok else None


def _write_identity(out: Path, tasks: Sequence[CaseTask]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["case_id", "input"])
    for t in tasks:
        w.writerow([t.case_id, t.path])
    atomic_write_text(out / IDENTITY_FILE, buf.getvalue(), mode=0o600)


def _summary(records: Sequence[dict], resumed: int) -> dict:
    n = {s.value: sum(r["status"] == s.value for r in records) for s in CaseStatus}
    return {"cases": len(records), "ok": n["ok"], "failed": n["failed"], "not_run": n["not_run"],
            "resumed": resumed,
            "needs_confirmation": sum(bool(r.get("needs_confirmation")) for r in records)}


def run_cohort(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
               workers: int | None = None, modality: str | None = None, resume: bool = False,
               identify: bool = False, engine: str = "auto", scheduler: str | None = None,
               progress: ProgressFn = None, cancel: CancelFn = None) -> CohortResult:
    """Segment and measure every case of ``inputs`` on ``workers`` processes; write per case
    its labels and JSON, and the cohort table.

    Parameters
    ----------
    inputs : paths
        Image files, DICOM files/folders/zips, or folders of cases.
    out_dir : path
        Created if needed; one that already holds a cohort needs ``resume``.
    workers : int
        Worker processes (default: the number of cores).
    modality : "CT" or "MR"
        For image files that carry none (NIfTI, NRRD, MHA); a DICOM series that says otherwise
        fails.
    resume : bool
        Skip the cases done before (same input and settings); failed cases are run again.
    identify : bool
        Write ``identity.csv`` (case id -> input path). Nothing else names a case.
    engine : "auto", "dask" or "processes"
        "auto": Dask when installed, else a local process pool.
    scheduler : str
        Address of an existing Dask scheduler (instead of a LocalCluster).
    progress, cancel :
        ``progress(fraction of the cases to run, "k of n cases done ...")``; ``cancel()``.

    Returns
    -------
    CohortResult

    Raises
    ------
    InvalidInputError, OutputError
        Bad inputs or an unusable output folder (before any case runs).
    CohortInterrupted
        Cancelled; the table is written with the cases not run.
    """
    from spineplan import __version__

    t0 = time.perf_counter()
    out = Path(out_dir)
    if modality not in (None, "", "CT", "MR"):
        raise InvalidInputError(f"unknown modality '{modality}': use CT or MR")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise InvalidInputError(f"--workers must be at least 1, not {workers}")
    eng = get_engine(engine, scheduler=scheduler)
    cases = discover_cases(inputs, exclude=out)
    _prepare(out, resume)
    key = _key(out)
    (out / CASES_DIR).mkdir(exist_ok=True)
    _remove_stale_temporaries(out / CASES_DIR)
    settings = {"modality": modality or "", "backend": "auto", "spineplan_version": __version__}
    threads = max((os.cpu_count() or 1) // workers, 1)
    tasks = tasks_for(cases, key, out, settings, threads)
    if identify:
        _write_identity(out, tasks)
    records: list[dict | None] = [None] * len(tasks)
    if resume:
        for i, t in enumerate(tasks):
            records[i] = _done_record(out, t)
    resumed = [tasks[i].case_id for i, r in enumerate(records) if r is not None]
    todo = [i for i, r in enumerate(records) if r is None]
    n_workers = min(workers, len(todo)) if todo else 0

    def finish() -> CohortResult:
        nonlocal n_workers
        n_workers = getattr(eng, "n_workers", None) or n_workers  # an existing cluster's own
        recs = [r if r is not None else {"case_id": t.case_id, "status": CaseStatus.NOT_RUN.value}
                for r, t in zip(records, tasks)]
        summary = _summary(recs, len(resumed))
        csv_path, json_path = write_table(out, recs, summary=summary,
                                          engine={"name": eng.name, "workers": n_workers})
        return CohortResult(recs, summary, eng.name, n_workers, csv_path, json_path,
                            time.perf_counter() - t0, resumed)

    def report(done: int, failed: int) -> None:
        if progress is not None:
            total_done = len(resumed) + done
            msg = f"{total_done} of {len(tasks)} cases done"
            extra = [f"{failed} failed"] if failed else []
            if resumed:
                extra.append(f"{len(resumed)} resumed")
            progress(done / len(todo) if todo else 1.0, msg + (f" ({', '.join(extra)})" if extra else ""))

    done = failed = 0
    report(0, 0)
    try:
        if todo:
            for j, result in eng.map_unordered(run_case, [tasks[i] for i in todo], workers=n_workers,
                                               cancel=cancel, threads=threads):
                i = todo[j]
                if isinstance(result, WorkerLost):
                    result = failure_record(tasks[i], FailureKind.WORKER_LOST, result.message)
                    with contextlib.suppress(OutputError, OSError):
                        write_case_record(out, result)
                records[i] = result
                done += 1
                failed += result["status"] == CaseStatus.FAILED.value
                report(done, failed)
    except (KeyboardInterrupt, Cancelled):
        raise CohortInterrupted(finish()) from None
    return finish()
