"""`spineplan cohort`: a cohort of 3 phantom CTs at 3 mm (2 NIfTI, 1 DICOM series with a
distinctive patient identity) and one corrupt file, on Dask with 2 workers.

Exit codes (documented in cli_handlers/cohort.py and the README): 0 every case ok, 4 some
cases failed (rows with their error), 2 bad input or interrupted.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spineplan.core.cohort import COLUMNS, CaseStatus, FailureKind, RowKind, get_engine, run_cohort
from spineplan.core.cohort.cases import Scrubber, case_id, discover_cases, fingerprint
from spineplan.core.cohort.engines import DaskEngine, ProcessPoolEngine
from spineplan.core.dicom.load import read_image_file, write_volume
from spineplan.core.dicom.write import write_series
from spineplan.core.errors import InvalidInputError
from spineplan.core.phantom import make_phantom

ROOT = Path(__file__).resolve().parents[2]
PATIENT_NAME = "ZZTOPSECRET^WILHELMINA"
PATIENT_ID = "PID-98765-X"
DESCRIPTION = "CONFIDENTIAL LUMBAR STUDY"
DICOM_FOLDER = "Zztopsecret_Wilhelmina_1950"
LEVELS = {"a.nii.gz": ("T12", "L1", "L2", "L3", "L4", "L5"),
          "b.nii.gz": ("L2", "L3", "L4", "L5"),
          DICOM_FOLDER: ("L1", "L2", "L3", "L4", "L5")}


def _cli(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "spineplan", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """The input folder, the phantoms, and the first run of `spineplan cohort` on it."""
    base = tmp_path_factory.mktemp("cohort")
    cases = base / "cases"
    cases.mkdir()
    phantoms = {}
    for name, levels in LEVELS.items():
        ph = phantoms[name] = make_phantom(levels=levels, spacing=3.0)
        if name.endswith(".nii.gz"):
            write_volume(ph.ct, cases / name)
        else:
            write_series(ph.ct, cases / name, patient_name=PATIENT_NAME, patient_id=PATIENT_ID,
                         description=DESCRIPTION, uid_seed="cohort-test")
    (cases / "broken.nii.gz").write_bytes(gzip.compress(b"\x5c\x01" * 100)[:60])  # truncated
    out = base / "out"
    r = _cli("cohort", cases, "-o", out, "--workers", 2)
    return dict(cases=cases, out=out, run=r, phantoms=phantoms)


def _key(out: Path) -> bytes:
    return bytes.fromhex((out / ".cohort-key").read_text().strip())


def _ids(cohort) -> dict[str, str]:
    key = _key(cohort["out"])
    return {name: case_id(key, (cohort["cases"] / name).resolve())
            for name in [*LEVELS, "broken.nii.gz"]}


def _csv_rows(out: Path) -> list[dict]:
    with open(out / "cohort.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_table_has_a_row_per_case_and_per_motor_unit(cohort):
    r, out = cohort["run"], cohort["out"]
    assert r.returncode == 4, r.stderr  # some cases failed
    assert "Traceback" not in r.stderr, r.stderr
    assert "4 of 4 cases done (1 failed)" in r.stderr, r.stderr  # progress on stderr
    assert "4 cases: 3 ok, 1 failed" in r.stdout, r.stdout
    rows = _csv_rows(out)
    assert list(rows[0]) == list(COLUMNS)
    ids = _ids(cohort)
    case_rows = {x["case_id"]: x for x in rows if x["row"] == RowKind.CASE.value}
    assert set(case_rows) == set(ids.values())
    for name, levels in LEVELS.items():
        units = [x["level"] for x in rows if x["case_id"] == ids[name] and x["row"] == "motor_unit"]
        names = [*levels, "S1"]
        assert units == [f"{u}-{v}" for u, v in zip(names, names[1:])]
    doc = json.loads((out / "cohort.json").read_text())
    assert doc["complete"] is True and doc["engine"] == {"name": "dask", "workers": 2}, doc["engine"]
    assert doc["summary"] == {"cases": 4, "ok": 3, "failed": 1, "not_run": 0, "resumed": 0,
                              "needs_confirmation": 0}
    assert [(x["case_id"], x["level"]) for x in doc["rows"]] == [
        (x["case_id"], x["level"] or None) for x in rows]


def test_levels_and_measurements_match_the_phantoms(cohort):
    out, ids = cohort["out"], _ids(cohort)
    rows = _csv_rows(out)
    for name, ph in cohort["phantoms"].items():
        row = next(x for x in rows if x["case_id"] == ids[name] and x["row"] == "case")
        assert row["status"] == "ok" and row["levels"].split() == ph.truth["levels"]
        assert row["needs_confirmation"] == "false"
        rec = json.loads((out / "cases" / f"{ids[name]}.json").read_text())
        assert rec["levels"] == ph.truth["levels"] and rec["modality"] == "CT"
        assert rec["flags"] == [] and rec["evidence"]["anchor"] == "sacrum"
        for u in rec["motor_units"]:  # the phantom's exact disc heights, within a 3 mm grid's error
            truth = ph.truth["discs"][u["level"]]["middle_height_mm"]
            assert abs(u["measurements"]["disc_height_middle_mm"] - truth) < 2.0, (name, u)
            table = next(x for x in rows if x["case_id"] == ids[name] and x["level"] == u["level"])
            assert float(table["disc_height_middle_mm"]) == u["measurements"]["disc_height_middle_mm"]
        labels = read_image_file(out / "cases" / rec["labels_file"])
        assert labels.array.shape == ph.ct.array.shape
        assert np.allclose(labels.origin, ph.ct.origin, atol=1e-3)
        vertebrae = {int(v) for v in np.unique(labels.array) if 0 < v < 100}
        assert vertebrae == {int(v) for v in np.unique(ph.labels.array) if 0 < v < 100}


def test_a_worker_gives_the_same_labels_as_a_local_run(cohort):
    from spineplan.core.dicom.load import load_volume
    from spineplan.core.modality import settle_modality
    from spineplan.core.segmentation.base import segment_volume

    vol = load_volume(cohort["cases"] / "b.nii.gz")
    res, _ = segment_volume(vol, assumed=settle_modality(vol))
    labels = read_image_file(cohort["out"] / "cases" / f"{_ids(cohort)['b.nii.gz']}.labels.nii.gz")
    assert np.array_equal(labels.array, res.labels.array)


def test_the_corrupt_case_is_a_row_with_its_error(cohort):
    out, cid = cohort["out"], _ids(cohort)["broken.nii.gz"]
    row = next(x for x in _csv_rows(out) if x["case_id"] == cid)
    assert row["status"] == CaseStatus.FAILED.value and row["error_kind"] == FailureKind.INVALID_INPUT.value
    assert "not a NIfTI file" in row["error"] and "broken" not in row["error"]
    assert "\n" not in row["error"]
    assert not (out / "cases" / f"{cid}.labels.nii.gz").exists()
    assert f"{cid} failed (invalid_input)" in cohort["run"].stdout


def _output_text(out: Path) -> str:
    parts = []
    for p in sorted(out.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            parts.append(p.name)
            parts.append((gzip.decompress(data) if p.name.endswith(".gz") else data).decode("latin-1"))
    return "\n".join(parts)


def test_no_patient_identity_in_any_output(cohort):
    import pydicom

    ds = pydicom.dcmread(next((cohort["cases"] / DICOM_FOLDER).iterdir()), stop_before_pixels=True)
    forbidden = [PATIENT_NAME, "ZZTOPSECRET", "WILHELMINA", PATIENT_ID, DESCRIPTION, DICOM_FOLDER,
                 str(ds.StudyDate), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                 str(cohort["cases"]), "broken", "a.nii"]
    text = _output_text(cohort["out"]).lower() + cohort["run"].stdout.lower() + cohort["run"].stderr.lower()
    for word in forbidden:
        assert word.lower() not in text, word
    assert not (cohort["out"] / "identity.csv").exists()  # only with --identify


def test_resume_skips_done_cases_and_identify_writes_the_mapping(cohort, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(cohort["out"], out)
    r = _cli("cohort", cohort["cases"], "-o", out)  # a second run needs --resume
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--resume" in r.stderr
    ids = _ids(cohort)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "cases").iterdir()}
    r = _cli("cohort", cohort["cases"], "-o", out, "--workers", 2, "--resume", "--identify")
    assert r.returncode == 4, r.stderr
    assert "4 cases: 3 ok, 3 of them resumed, 1 failed" in r.stdout
    for name in LEVELS:  # neither redone nor rewritten
        for suffix in (".json", ".labels.nii.gz"):
            f = f"{ids[name]}{suffix}"
            assert (out / "cases" / f).stat().st_mtime_ns == before[f][0]
            assert (out / "cases" / f).read_bytes() == before[f][1]
    broken = f"{ids['broken.nii.gz']}.json"  # a failed case is run again
    assert (out / "cases" / broken).stat().st_mtime_ns > before[broken][0]
    assert json.loads((out / "cohort.json").read_text())["summary"]["resumed"] == 3
    assert len(_csv_rows(out)) == len(_csv_rows(cohort["out"]))
    mapping = out / "identity.csv"
    assert stat.S_IMODE(mapping.stat().st_mode) == 0o600
    with open(mapping, newline="") as f:
        got = {x["case_id"]: x["input"] for x in csv.DictReader(f)}
    assert got == {cid: str((cohort["cases"] / name).resolve()) for name, cid in ids.items()}


def test_a_changed_input_or_setting_is_run_again(tmp_path):
    f = tmp_path / "x.nii.gz"
    f.write_bytes(b"one")
    key = b"k" * 32
    a = fingerprint(key, f, {"modality": ""})
    assert fingerprint(key, f, {"modality": ""}) == a
    assert fingerprint(key, f, {"modality": "MR"}) != a
    f.write_bytes(b"other")
    os.utime(f, ns=(1, 1))
    assert fingerprint(key, f, {"modality": ""}) != a
    assert case_id(key, f) == case_id(key, f) != case_id(b"j" * 32, f)  # keyed


def test_discovery_and_scrubbing(tmp_path):
    ph = make_phantom(spacing=6.0)
    (tmp_path / "in").mkdir()
    write_volume(ph.ct, tmp_path / "in" / "one.nii.gz")
    write_series(ph.ct, tmp_path / "in" / "Doe_Jane", patient_name="DOE^JANE")
    (tmp_path / "in" / "notes.txt").write_text("not a case")
    (tmp_path / "in" / "out").mkdir()
    cases = discover_cases([tmp_path / "in", tmp_path / "in" / "one.nii.gz"], exclude=tmp_path / "in" / "out")
    assert [(c.path.name, c.kind.value) for c in cases] == [("Doe_Jane", "dicom"), ("one.nii.gz", "image_file")]
    # a DICOM folder given directly is one case, not a folder of cases
    assert [c.path.name for c in discover_cases([tmp_path / "in" / "Doe_Jane"])] == ["Doe_Jane"]
    with pytest.raises(InvalidInputError, match="does not exist"):
        discover_cases([tmp_path / "nowhere"])
    s = Scrubber(tmp_path / "in" / "Doe_Jane")
    s.add_identity({"patient_name": "DOE^JANE"})
    msg = s(f"{tmp_path}/in/Doe_Jane/IM1.dcm of DOE^JANE (JANE), series 1.2.826.0.1.3680043.8.498.1")
    assert "Doe_Jane" not in msg and "JANE" not in msg and "1.2.826" not in msg


def test_without_dask_the_process_pool_runs_the_cohort(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    assert not DaskEngine().is_available() and "distributed" in DaskEngine().missing_dependencies[0]
    assert isinstance(get_engine("auto"), ProcessPoolEngine)
    with pytest.raises(InvalidInputError, match="dask engine is not available"):
        get_engine("dask")
    ph = make_phantom(levels=("L3", "L4", "L5"), spacing=3.0)
    write_volume(ph.ct, tmp_path / "c.nii.gz")
    (tmp_path / "bad.nii.gz").write_bytes(b"junk")
    seen = []
    res = run_cohort([tmp_path / "c.nii.gz", tmp_path / "bad.nii.gz"], tmp_path / "out", workers=2,
                     progress=lambda f, m: seen.append(m))
    assert res.engine == "processes" and res.workers == 2
    assert [r["status"] for r in res.records] == ["ok", "failed"]
    assert res.records[0]["levels"] == ph.truth["levels"]
    assert seen[-1] == "2 of 2 cases done (1 failed)"


def test_bad_requests_are_one_line_errors(tmp_path):
    for args, what in ((["cohort", tmp_path / "nowhere", "-o", tmp_path / "o"], "does not exist"),
                       (["cohort", tmp_path, "-o", tmp_path / "o", "--workers", "0"], "--workers"),
                       (["cohort", tmp_path, "-o", tmp_path / "o", "--engine", "processes",
                         "--scheduler", "tcp://127.0.0.1:1"], "--scheduler")):
        r = _cli(*args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and what in r.stderr, r.stderr


@pytest.mark.slow
def test_ctrl_c_cancels_cleanly_and_resume_finishes(tmp_path):
    ph = make_phantom(spacing=3.0)
    (tmp_path / "in").mkdir()
    for n in range(6):
        write_volume(ph.ct, tmp_path / "in" / f"c{n}.nii.gz")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "spineplan", "cohort", tmp_path / "in", "-o", out,
                          "--workers", "2"], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env=env, start_new_session=True)
    lines = []
    for line in p.stderr:  # wait for the first case done
        lines.append(line)
        if "1 of 6 cases done" in line:
            break
    os.killpg(p.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole process group
    t = time.perf_counter()
    _, rest = p.communicate(timeout=60)
    assert time.perf_counter() - t < 20
    err = "".join(lines) + rest
    assert p.returncode == 2, err
    assert "Traceback" not in err and "spineplan: error: interrupted" in err
    for _ in range(20):  # no worker left running (a zombie awaiting its reaper is not running)
        ps = subprocess.run(["ps", "-o", "stat=,args=", "-s", str(p.pid)], capture_output=True, text=True)
        running = [x for x in ps.stdout.splitlines() if x.strip() and not x.lstrip().startswith("Z")]
        if not running:
            break
        time.sleep(0.25)  # a process already exiting (empty command line) is given a moment
    assert running == []
    doc = json.loads((out / "cohort.json").read_text())
    assert doc["complete"] is False and doc["summary"]["ok"] >= 1 and doc["summary"]["not_run"] >= 1
    done = doc["summary"]["ok"]
    r = _cli("cohort", tmp_path / "in", "-o", out, "--workers", 2, "--resume")
    assert r.returncode == 0, r.stderr
    assert "6 cases: 6 ok," in r.stdout and ", 0 failed" in r.stdout
    # the cases done before the interruption, and those a worker finished while stopping
    resumed = json.loads((out / "cohort.json").read_text())["summary"]["resumed"]
    assert done <= resumed < 6
    assert not list((out / "cases").glob(".*tmp*"))


def test_progress_is_a_bar_with_eta_on_a_terminal_and_lines_otherwise():
    import io

    from spineplan.cli_handlers.cohort import _Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    for stream, tty in ((Tty(), True), (io.StringIO(), False)):
        p = _Progress(stream)
        p.t0 -= 10.0  # 10 s elapsed for the first of 4 cases: 30 s to go
        p(0.25, "1 of 4 cases done")
        p(1.0, "4 of 4 cases done")
        p.end()
        text = stream.getvalue()
        assert "1 of 4 cases done, ETA 0:30" in text
        if tty:
            assert text.startswith("\rcohort [######------------------] 1 of 4")
            assert text.count("\n") == 1 and text.endswith("\n")
        else:
            assert text.splitlines() == ["cohort: 1 of 4 cases done, ETA 0:30", "cohort: 4 of 4 cases done"]


def test_an_existing_dask_scheduler_runs_the_cases(tmp_path):
    from distributed import LocalCluster

    ph = make_phantom(levels=("L3", "L4", "L5"), spacing=3.0)
    write_volume(ph.ct, tmp_path / "c.nii.gz")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = run_cohort([tmp_path / "c.nii.gz"], tmp_path / "out", scheduler=cluster.scheduler_address)
    assert res.engine == "dask" and res.workers == 1  # the cluster's own workers
    assert res.records[0]["status"] == "ok" and res.records[0]["levels"] == ph.truth["levels"]
