"""Cohorts: segmentation and motor-unit measurements over many studies, on Dask workers (or a
local process pool), resumable, one failed case never stopping the run, no patient identity in
any output. ``cases.py`` (finding cases, anonymous ids, one case), ``engines.py`` (where they
run), ``table.py`` (the cohort table), ``run.py`` (``run_cohort``)."""

from .cases import CaseStatus, FailureKind, InputKind, discover_cases, run_case
from .engines import DaskEngine, ProcessPoolEngine, get_engine
from .run import IDENTITY_FILE, KEY_FILE, CohortInterrupted, CohortResult, run_cohort
from .table import COLUMNS, TABLE_CSV, TABLE_JSON, RowKind

__all__ = ["run_cohort", "CohortResult", "CohortInterrupted", "CaseStatus", "FailureKind",
           "InputKind", "RowKind", "discover_cases", "run_case", "get_engine", "DaskEngine",
           "ProcessPoolEngine", "COLUMNS", "TABLE_CSV", "TABLE_JSON", "KEY_FILE", "IDENTITY_FILE"]
