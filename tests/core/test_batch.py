"""`spineplan batch` (issue 19's name for `spineplan cohort`) with `--table PATH`: three small
phantom CTs (one of them a corrupt file) on a Dask LocalCluster of 2 workers, then a resume."""

from __future__ import annotations

import csv
import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spineplan.core.cohort import COLUMNS, RowKind
from spineplan.core.dicom.load import write_volume
from spineplan.core.phantom import make_phantom

ROOT = Path(__file__).resolve().parents[2]
LEVELS = {"a.nii.gz": ("L3", "L4", "L5"), "b.nii.gz": ("L2", "L3", "L4", "L5")}


def _cli(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "spineplan", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    base = tmp_path_factory.mktemp("batch")
    cases = base / "cases"
    cases.mkdir()
    for name, levels in LEVELS.items():
        write_volume(make_phantom(levels=levels, spacing=3.0).ct, cases / name)
    (cases / "broken.nii.gz").write_bytes(gzip.compress(b"\x5c\x01" * 100)[:60])  # truncated
    out, table = base / "out", base / "measurements.csv"
    r = _cli("batch", cases, "-o", out, "--table", table, "--workers", 2, "--engine", "dask")
    return dict(cases=cases, out=out, table=table, run=r, base=base)


def test_batch_writes_the_table_at_the_given_path(batch):
    r, out, table = batch["run"], batch["out"], batch["table"]
    assert r.returncode == 4, r.stderr  # the corrupt study failed, the batch went on
    assert "Traceback" not in r.stderr
    assert "3 cases: 2 ok, 1 failed" in r.stdout and "(dask, 2 workers)" in r.stdout, r.stdout
    assert table.read_bytes() == (out / "cohort.csv").read_bytes()
    rows = _rows(table)
    assert list(rows[0]) == list(COLUMNS)
    cases = [x for x in rows if x["row"] == RowKind.CASE.value]
    assert sorted(x["status"] for x in cases) == ["failed", "ok", "ok"]
    units = [x for x in rows if x["row"] == RowKind.MOTOR_UNIT.value]
    # one row per motor unit: 3 + 4 vertebrae above the sacrum -> 3 + 4 units
    assert len(units) == 7
    for u in units:
        assert 3.0 < float(u["disc_height_middle_mm"]) < 20.0
        assert float(u["seconds"]) > 0


def test_batch_resume_skips_done_studies(batch):
    table2 = batch["base"] / "again.csv"
    r = _cli("batch", batch["cases"], "-o", batch["out"], "--table", table2, "--resume",
             "--workers", 2, "--engine", "dask")
    assert r.returncode == 4, r.stderr
    assert "3 cases: 2 ok, 2 of them resumed, 1 failed" in r.stdout, r.stdout
    assert len(_rows(table2)) == len(_rows(batch["table"]))


def test_batch_table_that_is_a_folder_is_bad_input(tmp_path):
    f = tmp_path / "x.nii.gz"
    write_volume(make_phantom(levels=("L4", "L5"), spacing=3.0).ct, f)
    r = _cli("batch", f, "-o", tmp_path / "out", "--table", tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--table" in r.stderr, r.stderr
    assert not (tmp_path / "out" / "cohort.csv").exists()
