"""Checks: stable ids, 'not evaluated' instead of silent omissions, red/amber/green counts, and
`spineplan plan` exit 3 when the plan it wrote has a red check (issue 15, Checks)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from spineplan.core.dicom.load import write_volume
from spineplan.core.persistence import load_plan
from spineplan.core.phantom import make_phantom
from spineplan.core.planning.plan import Anatomy, Plan
from spineplan.core.planning.planner import make_plan
from spineplan.core.planning.safety import CHECK_NAMES, Check, CheckId, CheckStatus, check_counts
from spineplan.core.segmentation import labels as L


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(spacing=2.0)


@pytest.fixture(scope="module")
def no_sac(phantom):
    """The phantom's labels without the dural sac (as many imported label maps are)."""
    arr = phantom.labels.array.copy()
    arr[arr == L.CANAL] = 0
    return Anatomy(phantom.ct, phantom.labels.with_array(arr))


def test_every_check_has_a_stable_id_and_its_name(phantom):
    anat = Anatomy(phantom.ct, phantom.labels)
    for proc in ("needle", "tube", "cage"):
        plan = make_plan(anat, "L4-L5", proc, "left")
        ids = [c.id for c in plan.checks]
        assert all(i in CheckId._value2member_map_ for i in ids), ids
        assert len(set(ids)) == len(ids)
        for c in plan.checks:
            assert c.name == CHECK_NAMES[CheckId(c.id)]
            assert plan.check(CheckId(c.id)) is c
    with pytest.raises(KeyError):  # found by id, never by the text
        plan.check("motor units touched")


@pytest.mark.parametrize("procedure,check_id", [("tube", CheckId.DURAL_SAC_CLEARANCE),
                                                ("cage", CheckId.DURAL_SAC_CLEARANCE),
                                                ("needle", CheckId.CANAL_CLEARANCE)])
def test_check_without_its_anatomy_is_listed_not_evaluated(no_sac, procedure, check_id):
    plan = make_plan(no_sac, "L4-L5", procedure, "left")
    c = plan.check(check_id)
    assert c.status == CheckStatus.NOT_EVALUATED and c.severity == "warning" and not c.ok
    assert c.detail.startswith("not evaluated:") and "dural sac" in c.detail
    counts = plan.check_counts()
    assert counts["not_evaluated"] >= 1 and counts["amber"] >= counts["not_evaluated"]
    assert counts["red"] + counts["amber"] + counts["green"] == len(plan.checks)
    d = plan.to_dict()
    assert d["check_summary"] == counts
    back = Plan.from_dict(json.loads(json.dumps(d)))
    assert back.check(check_id).status == CheckStatus.NOT_EVALUATED  # round-trips


def test_not_evaluated_check_in_the_report(no_sac, tmp_path):
    from pypdf import PdfReader

    from spineplan.core.export.report import write_report

    d = make_plan(no_sac, "L4-L5", "tube", "left").to_dict()
    text = " ".join(" ".join((p.extract_text() or "").split()) for p in PdfReader(
        str(write_report(d, tmp_path / "r.pdf"))).pages)
    assert "All checks passed" not in text
    assert "NOT EVALUATED" in text and "not evaluated: no dural sac" in text
    c = d["check_summary"]
    assert f"{c['red']} red, {c['amber']} amber ({c['not_evaluated']} not evaluated), {c['green']} green" in text


def test_counts_and_not_evaluated_are_typed():
    cs = [Check(CheckId.ENTRY_SIDE, True, "ok", ""), Check(CheckId.NEEDLE_BONE, False, "error", "bone"),
          Check.not_evaluated(CheckId.CANAL_CLEARANCE, "no sac")]
    assert check_counts(cs) == {"red": 1, "amber": 1, "green": 1, "not_evaluated": 1}
    assert check_counts([c.to_dict() for c in cs]) == check_counts(cs)
    assert [c.light for c in cs] == ["green", "red", "amber"]
    with pytest.raises(ValueError):  # a not-evaluated check is amber, never green or red
        Check(CheckId.CANAL_CLEARANCE, True, "ok", "", status="not_evaluated")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "spineplan", *map(str, args)], capture_output=True, text=True)


def test_cli_plan_exits_3_when_the_plan_has_a_red_check(phantom, tmp_path):
    # a plate of unlabelled bone across the back: every tube bore goes through it
    ct = phantom.ct.array.copy()
    y = phantom.ct.lps_points_from_ijk(np.array([[0, j, 0] for j in range(ct.shape[1])], float))[:, 1]
    ct[:, (y > 85) & (y < 100), :] = 800
    write_volume(phantom.ct.with_array(ct), tmp_path / "ct.nii.gz")
    write_volume(phantom.labels, tmp_path / "labels.nii.gz")
    args = ("--labels", tmp_path / "labels.nii.gz", "--level", "L4-L5", "--procedure", "tube", "--side", "left")
    r = _cli("plan", tmp_path / "ct.nii.gz", *args, "-o", tmp_path / "p.json", "--json")
    assert r.returncode == 3, r.stderr
    doc = json.loads(r.stdout)
    assert CheckId.UNLABELLED_BONE.value in doc["error_ids"] and doc["check_summary"]["red"] >= 1
    d = load_plan(tmp_path / "p.json")  # the plan was written
    assert d["check_summary"]["red"] >= 1
    # the same request on the clean CT: exit 0, all green
    write_volume(phantom.ct, tmp_path / "clean.nii.gz")
    r = _cli("plan", tmp_path / "clean.nii.gz", *args, "-o", tmp_path / "q.json")
    assert r.returncode == 0, r.stderr
    assert "checks: 0 red, 0 amber (0 not evaluated)" in r.stdout


def test_check_status_values_match_the_plan_file_schema(tmp_path, phantom):
    from spineplan.core import persistence as P
    from spineplan.core.errors import PlanFileError

    d = make_plan(Anatomy(phantom.ct, phantom.labels), "L4-L5", "needle", "left").to_dict()
    d["checks"][0]["status"] = "maybe"
    with pytest.raises(PlanFileError, match="status must be one of"):
        P.validate_plan(d)
