"""The cohort table: one row per case and one per motor unit, as CSV and JSON."""

from __future__ import annotations

import csv
import enum
import io
import json
from pathlib import Path
from typing import Sequence

from ..atomic import atomic_write_text

__all__ = ["RowKind", "COLUMNS", "MEASUREMENT_COLUMNS", "table_rows", "write_table",
           "TABLE_CSV", "TABLE_JSON", "TABLE_FORMAT"]

TABLE_CSV = "cohort.csv"
TABLE_JSON = "cohort.json"
TABLE_FORMAT = "spineplan-cohort"
TABLE_FORMAT_VERSION = 1

#: the motor-unit measurements by their contract names (``MotorUnit.measurements``)
MEASUREMENT_COLUMNS = ("disc_height_anterior_mm", "disc_height_middle_mm", "disc_height_posterior_mm",
                       "segmental_angle_deg", "slip_mm", "canal_ap_mm", "sac_area_mm2")

COLUMNS = ("case_id", "row", "status", "error_kind", "error", "modality", "modality_assumed",
           "levels", "needs_confirmation", "min_confidence", "flags", "level", "confidence",
           *MEASUREMENT_COLUMNS, "implausible", "seconds")


class RowKind(str, enum.Enum):
    CASE = "case"
    MOTOR_UNIT = "motor_unit"


def _case_row(rec: dict) -> dict:
    err = rec.get("error") or {}
    return {"case_id": rec["case_id"], "row": RowKind.CASE.value, "status": rec["status"],
            "error_kind": err.get("kind"), "error": err.get("message"),
            "modality": rec.get("modality"), "modality_assumed": rec.get("modality_assumed"),
            "levels": rec.get("levels"), "needs_confirmation": rec.get("needs_confirmation"),
            "min_confidence": rec.get("min_confidence"),
            "flags": [f["kind"] for f in rec["flags"]] if "flags" in rec else None,
            "seconds": (rec.get("seconds") or {}).get("total")}


def table_rows(records: Sequence[dict]) -> list[dict]:
    """The rows of ``records`` (case records in cohort order): each case's row, then one per
    motor unit. A measurement outside its plausible range is left empty and named under
    ``implausible`` (never shown as a plain number)."""
    rows = []
    for rec in records:
        case = _case_row(rec)
        rows.append({c: case.get(c) for c in COLUMNS})
        for u in rec.get("motor_units") or []:
            bad = list(u.get("implausible") or [])
            row = {c: None for c in COLUMNS}
            row.update({k: case[k] for k in ("case_id", "status", "modality", "modality_assumed",
                                              "needs_confirmation", "flags", "seconds")})
            row.update(row=RowKind.MOTOR_UNIT.value, level=u["level"], confidence=u.get("confidence"),
                       implausible=bad)
            for k in MEASUREMENT_COLUMNS:
                v = (u.get("measurements") or {}).get(k)
                row[k] = None if (v is None or k in bad) else v
            rows.append(row)
    return rows


def _csv_value(column: str, v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return (" " if column == "levels" else ";").join(str(x) for x in v)
    return str(v)


def write_table(out_dir: Path, records: Sequence[dict], *, summary: dict, engine: dict) -> tuple[Path, Path]:
    """Write ``cohort.csv`` and ``cohort.json`` in ``out_dir`` atomically; returns their paths."""
    from spineplan import __version__

    rows = table_rows(records)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_csv_value(c, r[c]) for c in COLUMNS])
    csv_path = atomic_write_text(Path(out_dir) / TABLE_CSV, buf.getvalue())
    doc = {"format": TABLE_FORMAT, "format_version": TABLE_FORMAT_VERSION,
           "spineplan_version": __version__, "complete": summary.get("not_run", 0) == 0,
           "summary": summary, "engine": engine, "columns": list(COLUMNS), "rows": rows}
    json_path = atomic_write_text(Path(out_dir) / TABLE_JSON, json.dumps(doc, indent=1) + "\n")
    return csv_path, json_path
