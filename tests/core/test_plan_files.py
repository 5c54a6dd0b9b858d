"""Plan files, Slicer markups, PDF report and the plan/report command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from spineplan.core.errors import PlanFileError
from spineplan.core.export.report import write_report
from spineplan.core.export.slicer_markups import write_markups
from spineplan.core.persistence import load_plan, save_plan
from spineplan.core.phantom import make_phantom
from spineplan.core.planning.plan import Anatomy
from spineplan.core.planning.planner import make_plan


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(spacing=2.0)


@pytest.fixture(scope="module")
def left_tube(phantom):
    return make_plan(Anatomy(phantom.ct, phantom.labels), "L4-L5", "tube", "left").to_dict()


def cli(*args):
    return subprocess.run([sys.executable, "-m", "spineplan", *map(str, args)], capture_output=True, text=True)


def test_planner_plans_round_trip_through_plan_files(left_tube, tmp_path, phantom):
    save_plan(left_tube, tmp_path / "plan.json")
    back = load_plan(tmp_path / "plan.json", volume=phantom.ct)
    for key in ("level", "side", "procedure", "entry_lps", "target_lps", "checks", "motor_units_touched"):
        assert back[key] == json.loads(json.dumps(left_tube))[key]
    d = json.loads((tmp_path / "plan.json").read_text())
    d["entry_lps"][0] -= 60.0  # the entry moved to the other side, outside spineplan
    (tmp_path / "t.json").write_text(json.dumps(d))
    with pytest.raises(PlanFileError):
        load_plan(tmp_path / "t.json")


def test_markups_of_a_planned_left_tube(left_tube, tmp_path):
    p = write_markups(left_tube, tmp_path / "plan.mrk.json")
    doc = json.loads(p.read_text())
    line = next(m for m in doc["markups"] if m["type"] == "Line")
    entry = np.array(line["controlPoints"][0]["position"])
    assert line["coordinateSystem"] == "LPS" and np.allclose(entry, left_tube["entry_lps"])
    assert entry[0] > 0 and (entry * [-1, -1, 1])[0] < 0  # LPS +x = Slicer R < 0 = patient left


def test_report_of_a_plan_with_images(left_tube, phantom, tmp_path):
    from pypdf import PdfReader

    p = write_report(left_tube, tmp_path / "r.pdf", volume=phantom.ct, labels=phantom.labels)
    first = PdfReader(str(p)).pages[0].extract_text()
    assert "L4-L5" in first and "LEFT" in first


def test_cli_plan_and_report_on_phantom(phantom, tmp_path):
    from spineplan.core.dicom.load import write_volume

    write_volume(phantom.ct, tmp_path / "ct.nii.gz")
    write_volume(phantom.labels, tmp_path / "labels.nii.gz")
    r = cli("plan", tmp_path / "ct.nii.gz", "--labels", tmp_path / "labels.nii.gz", "--level", "L4-L5",
            "--procedure", "needle", "--side", "left", "-o", tmp_path / "p.json",
            "--markups", tmp_path / "p.mrk.json", "--report", tmp_path / "p.pdf", "--json")
    assert r.returncode == 0, r.stderr
    d = load_plan(tmp_path / "p.json")
    assert d["motor_units_touched"] == ["L4-L5"] and d["side"] == "left"
    assert d["entry_lps"][0] > 50  # left = +x
    assert (tmp_path / "p.pdf").stat().st_size > 1000 and (tmp_path / "p.mrk.json").exists()
    r = cli("report", tmp_path / "p.json", "-o", tmp_path / "r.pdf")
    assert r.returncode == 0 and (tmp_path / "r.pdf").exists()
    d["entry_lps"][0] = -d["entry_lps"][0]
    (tmp_path / "t.json").write_text(json.dumps(d))
    r = cli("report", tmp_path / "t.json", "-o", tmp_path / "r2.pdf")
    assert r.returncode == 2 and r.stderr.startswith("spineplan: error:") and "Traceback" not in r.stderr
    r = cli("plan", tmp_path / "ct.nii.gz", "--labels", tmp_path / "labels.nii.gz", "--level", "L2-L4",
            "--procedure", "needle", "--side", "left", "-o", tmp_path / "x.json")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_cli_plans_on_sample_ct(sample_dicom, tmp_path):
    ref = sample_dicom / "reference"
    for level, proc, side in (("L4-L5", "tube", "left"), ("L5-S1", "needle", "right"), ("L4-L5", "cage", "left")):
        out = tmp_path / f"{proc}.json"
        r = cli("plan", sample_dicom, "--labels", ref / "vertebrae_verse.nii.gz", "--labels",
                ref / "discs_verse.nii.gz", "--level", level, "--procedure", proc, "--side", side, "-o", out)
        assert r.returncode == 0, r.stderr
        d = load_plan(out)
        assert d["motor_units_touched"] == [level]
        assert d["source"]["spacing"] == [3.0, 3.0, 3.0]
        for c in d["checks"]:
            if c["severity"] != "ok":
                assert c["detail"]  # a failing check says why
        x_mid = d["target_lps"][0]
        assert (d["entry_lps"][0] > x_mid) == (side == "left")
