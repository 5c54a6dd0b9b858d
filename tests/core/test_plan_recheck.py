"""Issue 20, finding 8: a plan edited outside spineplan, its checksum recomputed, is re-checked.

The forged file loads (its checksum is right), but every check is recomputed from the anatomy
on load and each stored result that differs is reported by kind, in the report PDF (red), by
rehearse (warnings) and in the GUI.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from spineplan.core.segmentation.importers import read_labels  # noqa: F401  (import check)
from spineplan.core.persistence import compute_checksum, load_plan, save_plan
from spineplan.core.phantom import make_phantom
from spineplan.core.planning.plan import Anatomy
from spineplan.core.planning.planner import make_plan
from spineplan.core.planning.recheck import DifferenceKind, RecheckStatus, recheck_plan


@pytest.fixture(scope="module")
def anatomy():
    ph = make_phantom(spacing=1.5)
    return Anatomy(ph.ct, ph.labels)


@pytest.fixture(scope="module")
def good_plan(anatomy):
    return make_plan(anatomy, "L4-L5", "needle", "left").to_dict()


def forge(plan: dict, path, edit) -> dict:
    """Edit a saved plan outside spineplan and recompute its checksum, as a forger would."""
    doc = save_plan(plan, path)
    doc = json.loads(json.dumps(doc))
    edit(doc)
    doc["checksum"] = compute_checksum(doc)
    path.write_text(json.dumps(doc))
    return load_plan(path)  # the checksum is right: it loads


def _mirror_entry(doc):
    # the entry moved to the other side: mirrored in x about the target
    e, t = doc["entry_lps"], doc["target_lps"]
    doc["entry_lps"] = [2 * t[0] - e[0], e[1], e[2]]


def _other_level(anatomy):
    def edit(doc):
        doc["level"] = "L3-L4"
        doc["case"]["level"] = "L3-L4"
    return edit


def test_untouched_plan_agrees(anatomy, good_plan, tmp_path):
    doc = forge(good_plan, tmp_path / "p.json", lambda d: None)
    r = recheck_plan(doc, anatomy)
    assert r.status is RecheckStatus.RECOMPUTED and r.agrees, [d.describe() for d in r.differences]
    assert all(c.severity == "ok" for c in r.checks)


def test_entry_moved_to_the_other_side_is_reported(anatomy, good_plan, tmp_path):
    doc = forge(good_plan, tmp_path / "p.json", _mirror_entry)
    assert all(c["severity"] == "ok" for c in doc["checks"]), "the forged file claims all passed"
    r = recheck_plan(doc, anatomy)
    assert not r.agrees
    side = [d for d in r.differences if d.name == "entry on planned side"]
    assert len(side) == 1 and side[0].kind is DifferenceKind.OUTCOME
    assert side[0].stored["severity"] == "ok" and side[0].recomputed["severity"] == "error"


def test_level_changed_is_reported(anatomy, good_plan, tmp_path):
    doc = forge(good_plan, tmp_path / "p.json", _other_level(anatomy))
    r = recheck_plan(doc, anatomy)
    assert r.motor_units_touched == ["L4-L5"]  # the needle still ends in L4-L5, not L3-L4
    changed = {d.name: d for d in r.differences if d.kind is DifferenceKind.OUTCOME}
    assert changed["motor units touched"].recomputed["severity"] == "error"
    assert changed["motor units touched"].stored["severity"] == "ok"
    # a forger who also rewrites motor_units_touched is caught by its own kind
    doc2 = forge(good_plan, tmp_path / "q.json",
                 lambda d: (_other_level(anatomy)(d), d.update(motor_units_touched=["L3-L4"])))
    mu = [d for d in recheck_plan(doc2, anatomy).differences if d.kind is DifferenceKind.MOTOR_UNITS]
    assert len(mu) == 1 and mu[0].stored["units"] == ["L3-L4"] and mu[0].recomputed["units"] == ["L4-L5"]


def test_level_missing_from_anatomy_is_a_status(anatomy, good_plan, tmp_path):
    doc = forge(good_plan, tmp_path / "p.json", lambda d: d.update(level="C5-C6"))
    r = recheck_plan(doc, anatomy)
    assert r.status is RecheckStatus.LEVEL_NOT_FOUND and not r.agrees


# ------------------------------------------------------------------ on the command line
def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "spineplan", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def _pdf_text(path) -> str:
    from pypdf import PdfReader

    return " ".join(" ".join((p.extract_text() or "").split()) for p in PdfReader(str(path)).pages)


@pytest.fixture(scope="module")
def sample_plan_file(sample_dicom, tmp_path_factory):
    d = tmp_path_factory.mktemp("sampleplan")
    r = run_cli("plan", sample_dicom, "--level", "L4-L5", "--procedure", "needle", "--side",
                "left", "-o", d / "p.json")
    assert r.returncode == 0, r.stderr
    return d / "p.json"


def _forge_file(src, dest, edit):
    doc = json.loads(src.read_text())
    edit(doc)
    doc["checksum"] = compute_checksum(doc)
    dest.write_text(json.dumps(doc))
    return dest


def test_report_of_a_forged_plan_shows_the_recomputed_result_in_red(sample_plan_file, sample_dicom,
                                                                      tmp_path):
    forged = _forge_file(sample_plan_file, tmp_path / "forged.json", _mirror_entry)
    r = run_cli("report", forged, "-o", tmp_path / "r.pdf", "--image", sample_dicom)
    assert r.returncode == 0, r.stderr
    assert "stored result differs from the recomputed check: entry on planned side: file says ok, " \
           "recomputed error" in r.stderr
    text = _pdf_text(tmp_path / "r.pdf")
    assert "DIFFER FROM THE CHECKS RECOMPUTED" in text
    assert "PLAN HAS ERRORS" in text and "All checks passed" not in text
    # the untouched plan: recomputed, agrees
    r = run_cli("report", sample_plan_file, "-o", tmp_path / "ok.pdf", "--image", sample_dicom)
    assert r.returncode == 0 and "differs" not in r.stderr, r.stderr
    text = _pdf_text(tmp_path / "ok.pdf")
    assert "the results agree with the file" in text and "All checks passed" in text


def test_report_without_image_says_checks_unverified(sample_plan_file, tmp_path):
    r = run_cli("report", sample_plan_file, "-o", tmp_path / "r.pdf")
    assert r.returncode == 0 and "not recomputed" in r.stderr
    assert "CHECKS NOT RECOMPUTED" in _pdf_text(tmp_path / "r.pdf")


def test_rehearse_warns_about_a_forged_level(sample_plan_file, sample_dicom, tmp_path):
    def edit(doc):
        doc["level"] = "L3-L4"
        doc["case"]["level"] = "L3-L4"
    forged = _forge_file(sample_plan_file, tmp_path / "lvl.json", edit)
    r = run_cli("rehearse", forged, "-o", tmp_path / "r.gif", "--image", sample_dicom,
                "--frames-per-step", "1", "--size", "160x120")
    assert r.returncode == 0, r.stderr
    assert "stored result differs from the recomputed check: motor units touched: file says ok, " \
           "recomputed error" in r.stderr
