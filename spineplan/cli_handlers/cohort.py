"""``spineplan cohort INPUTS... -o OUT_DIR [--table PATH] [--workers N] [--modality CT|MR]
[--resume] [--identify] [--engine auto|dask|processes] [--scheduler tcp://HOST:PORT]``
(``spineplan batch`` is the same command, ``cli_handlers/batch.py``).

Exit 0 when every case succeeded, :data:`EXIT_SOME_FAILED` (4) when some failed (each is a
row of the table with its one-line error), 2 on bad input or when interrupted (the table then
holds the cases done; ``--resume`` continues).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..core.atomic import atomic_write_bytes
from ..core.cohort import CohortInterrupted, run_cohort
from ..core.errors import InvalidInputError

EXIT_SOME_FAILED = 4


class _Progress:
    """Cases done of total on stderr: a bar with ETA on a terminal, a line per case otherwise."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self.last = ""
        self.open_line = False  # a bar drawn on the terminal without its newline yet

    def __call__(self, fraction: float, message: str) -> None:
        elapsed = time.perf_counter() - self.t0
        eta = ""
        if 0 < fraction < 1:
            s = int(elapsed * (1 - fraction) / fraction)
            eta = f", ETA {s // 60}:{s % 60:02d}"
        if message == self.last:
            return
        self.last = message
        if self.tty:
            n = 24
            bar = "#" * int(round(fraction * n)) + "-" * (n - int(round(fraction * n)))
            self.stream.write(f"\rcohort [{bar}] {message}{eta}\033[K")
            self.open_line = True
        else:
            self.stream.write(f"cohort: {message}{eta}\n")
        self.stream.flush()

    def end(self) -> None:
        """End the bar's line (before the summary or the error line)."""
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False


def _print_summary(result) -> None:
    s = result.summary
    parts = [f"{s['ok']} ok"]
    if s["resumed"]:
        parts.append(f"{s['resumed']} of them resumed")
    parts.append(f"{s['failed']} failed")
    if s["needs_confirmation"]:
        parts.append(f"{s['needs_confirmation']} with levels to confirm")
    print(f"cohort: {s['cases']} cases: {', '.join(parts)} in {result.seconds:.1f} s "
          f"({result.engine}, {result.workers} workers) -> {result.table_csv}")
    for r in result.failed:
        print(f"  {r['case_id']} failed ({r['error']['kind']}): {r['error']['message']}")


def _table_path(args) -> Path | None:
    """``--table PATH``, checked before any case runs (a folder or a missing parent is bad input)."""
    if not getattr(args, "table", None):
        return None
    p = Path(args.table)
    if p.is_dir():
        raise InvalidInputError(f"--table {p} is a folder: give a file name, e.g. measurements.csv")
    if not p.parent.is_dir():
        raise InvalidInputError(f"--table {p}: folder {p.parent} does not exist")
    return p


def _copy_table(result, table: Path | None) -> None:
    """The cohort's CSV table, also at ``--table PATH`` (atomically, the same bytes)."""
    if table is not None:
        atomic_write_bytes(table, Path(result.table_csv).read_bytes())


def run(args) -> int:
    table = _table_path(args)
    progress = _Progress()
    try:
        result = run_cohort(args.inputs, args.output, workers=args.workers, modality=args.modality,
                            resume=args.resume, identify=args.identify, engine=args.engine,
                            scheduler=args.scheduler, progress=progress)
    except CohortInterrupted as exc:
        progress.end()
        _copy_table(exc.result, table)
        s = exc.result.summary
        print(f"spineplan: error: interrupted: {s['ok'] + s['failed']} of {s['cases']} cases done "
              f"(table in {exc.result.table_csv}); run again with --resume to continue", file=sys.stderr)
        return 2
    progress.end()
    _copy_table(result, table)
    _print_summary(result)
    return EXIT_SOME_FAILED if result.failed else 0
