"""Plan files, Slicer markups, PDF report and the plan/report command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from spineplan.core.errors import PlanFileError
from spineplan.core.export.report import overview_images, write_report
from spineplan.core.export.slicer_markups import markups_dict, write_markups
from spineplan.core.persistence import (Autosaver, find_recovery, load_plan, save_plan)
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


def test_round_trip_and_identity_only_when_asked(left_tube, tmp_path, phantom):
    p = save_plan(left_tube, tmp_path / "plan.json")
    back = load_plan(p, volume=phantom.ct)
    assert {k: v for k, v in back.items() if k != "checksum"} == json.loads(json.dumps(left_tube))
    assert "identity" not in back
    p2 = save_plan(left_tube, tmp_path / "plan_id.json", identity={"patient_name": "DOE^JANE"})
    assert load_plan(p2)["identity"]["patient_name"] == "DOE^JANE"
    assert "DOE" not in p.read_text()


def test_refuses_tampered_other_series_and_newer_version(left_tube, tmp_path, phantom):
    p = save_plan(left_tube, tmp_path / "plan.json")
    d = json.loads(p.read_text())
    d["entry_lps"][0] -= 60.0  # move the entry to the other side, outside spineplan
    (tmp_path / "tampered.json").write_text(json.dumps(d))
    with pytest.raises(PlanFileError, match="edited outside"):
        load_plan(tmp_path / "tampered.json")
    other = phantom.ct.with_array(phantom.ct.array, origin=(0.0, 0.0, 0.0))
    with pytest.raises(PlanFileError, match="another geometry"):
        load_plan(p, volume=other)
    other_uid = phantom.ct.with_array(phantom.ct.array)
    other_uid.meta["series_uid"] = "1.2.3.4"
    with pytest.raises(PlanFileError, match="another series"):
        load_plan(p, volume=other_uid)
    d = json.loads(p.read_text())
    d["format_version"] = 99
    (tmp_path / "new.json").write_text(json.dumps(d))
    with pytest.raises(PlanFileError, match="newer spineplan"):
        load_plan(tmp_path / "new.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(PlanFileError, match="not JSON"):
        load_plan(tmp_path / "junk.json")


def test_atomic_save_keeps_previous_file_on_failure(left_tube, tmp_path, monkeypatch):
    p = save_plan(left_tube, tmp_path / "plan.json")
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        save_plan(dict(left_tube, level="L3-L4"), p)
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["plan.json"]  # no partial files left


def test_autosave_and_recovery(left_tube, tmp_path):
    plan_path = tmp_path / "case.json"
    save_plan(left_tube, plan_path)
    assert find_recovery(plan_path) is None
    a = Autosaver(plan_path, interval_s=0)
    edited = dict(left_tube, incision_mm=16.0)
    import time

    time.sleep(0.01)
    assert a.changed(edited)
    os.utime(a.path, (plan_path.stat().st_mtime + 5,) * 2)
    rec = find_recovery(plan_path)  # after a crash: the newer autosave is offered
    assert rec is not None and rec["incision_mm"] == 16.0
    save_plan(edited, plan_path)  # a clean save removes it
    assert find_recovery(plan_path) is None and not a.path.exists()


def test_markups_left_plan_is_patient_left(left_tube, tmp_path):
    doc = markups_dict(left_tube)
    assert doc["@schema"].endswith("markups-schema-v1.0.3.json#")
    line = doc["markups"][0]
    assert line["type"] in ("Fiducial", "Line", "Angle", "Curve", "ClosedCurve", "Plane", "ROI")
    assert line["type"] == "Line" and line["coordinateSystem"] in ("LPS", "RAS")
    entry, target = (np.array(cp["position"]) for cp in line["controlPoints"])
    assert np.allclose(entry, left_tube["entry_lps"]) and np.allclose(target, left_tube["target_lps"])
    # Slicer reads LPS and shows RAS = (-x, -y, z): a left entry has R < midline there
    ras = entry * [-1, -1, 1]
    assert entry[0] > target[0] - 20 and ras[0] < 0 < entry[0]
    p = write_markups(left_tube, tmp_path / "plan.mrk.json")
    again = json.loads(p.read_text())
    assert again == doc


def test_report_first_page_has_check_summary(left_tube, phantom, tmp_path):
    from pypdf import PdfReader

    bad = json.loads(json.dumps(left_tube))
    bad["checks"].insert(0, {"name": "motor units touched", "ok": False, "severity": "error",
                             "detail": "touches L3-L4, L4-L5"})
    bad["identity"] = {"patient_name": "DOE^JANE", "patient_id": "123"}
    imgs = overview_images(bad, phantom.ct, phantom.labels, size_px=128)
    assert imgs[0].shape == (128, 128, 3) and (imgs[0][..., 1] > 200).any()  # the trajectory is drawn
    p = write_report(bad, tmp_path / "r.pdf", images=imgs)
    first = PdfReader(str(p)).pages[0].extract_text()
    assert "PLAN HAS ERRORS" in first and "motor units touched" in first and "Check summary" in first
    assert "DOE" not in "".join(pg.extract_text() for pg in PdfReader(str(p)).pages)
    p2 = write_report(bad, tmp_path / "r_id.pdf", identity=True)
    assert "DOE^JANE" in PdfReader(str(p2)).pages[0].extract_text()


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
