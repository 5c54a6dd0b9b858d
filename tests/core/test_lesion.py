"""The marked lesion: location on the phantom's herniation, "lesion reached", plan files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spineplan.core import persistence as P
from spineplan.core.errors import InvalidInputError, PlanFileError
from spineplan.core.phantom import make_phantom
from spineplan.core.planning.case import Case
from spineplan.core.planning.lesion import (Lesion, LesionKind, lesion_from_mask, locate_lesion,
                                            parse_lesion_arg)
from spineplan.core.planning.plan import Anatomy, Plan
from spineplan.core.planning.planner import make_plan
from spineplan.core.planning.recheck import recheck_plan
from spineplan.core.planning.safety import CheckId

OLD_PLAN = Path(__file__).resolve().parents[1] / "data" / "plan_v1_tube_l4l5_phantom.json"
HERNIATION = {"level": "L4-L5", "side": "left", "zone": "paracentral", "size_mm": 6.0}


@pytest.fixture(scope="module")
def herniated():
    ph = make_phantom(spacing=1.5, herniation=HERNIATION)
    return ph, Anatomy(ph.ct, ph.labels)


def _truth_lesion(ph, shift=(0.0, 0.0, 0.0)):
    t = ph.truth["herniation"]
    return Lesion(np.add(t["center_lps"], shift), t["size_mm"])


# ------------------------------------------------------------------------------ location
@pytest.mark.parametrize("zone,side,migration", [
    ("central", "left", 0.0), ("paracentral", "left", 4.0), ("subarticular", "right", -5.0),
    ("foraminal", "right", 0.0), ("extraforaminal", "left", -6.0)])
def test_zone_side_and_migration_match_the_phantom_truth(zone, side, migration):
    ph = make_phantom(spacing=1.5, herniation={"level": "L4-L5", "side": side, "zone": zone,
                                               "size_mm": 6.0, "migration_mm": migration})
    loc = locate_lesion(Anatomy(ph.ct, ph.labels), _truth_lesion(ph))
    assert loc.level == "L4-L5"
    assert loc.zone == zone
    assert loc.side == ("midline" if zone == "central" else side)
    # the disc plane is refitted without the herniated material (labelled as disc): within a
    # voxel (1.5 mm) of the truth; a fit of the whole label was 1.6 mm off at 6 mm migration
    assert abs(loc.migration_mm - ph.truth["herniation"]["migration_mm"]) <= 1.0
    assert loc.migration == ("none" if abs(migration) <= 3.0 else "cranial" if migration > 0 else "caudal")
    assert not loc.estimated  # sac, facets and SAP edge were all measured from the labels


def test_lesion_from_a_painted_mask_locates_like_the_truth(herniated):
    ph, anat = herniated
    plain = make_phantom(spacing=1.5)
    disc = ph.truth["discs"]["L4-L5"]["label"]
    painted = (ph.labels.array == disc) & (plain.labels.array != disc)  # the herniated voxels
    les = lesion_from_mask(ph.labels.with_array(painted.astype(np.uint8)), ph.ct)
    assert les.mask["voxels"] == int(painted.sum())
    assert np.linalg.norm(les.centre_lps - ph.truth["herniation"]["center_lps"]) <= 3.0
    loc = locate_lesion(anat, les)
    assert (loc.level, loc.zone, loc.side) == ("L4-L5", "paracentral", "left")


def test_lesion_arguments_are_checked():
    les = parse_lesion_arg("1,2.5,-3")
    assert les.radius_mm == 5.0 and np.allclose(les.centre_lps, [1, 2.5, -3])
    assert parse_lesion_arg("1,2,3,7").radius_mm == 7.0
    for bad in ("1,2", "a,b,c", "1,2,3,0", "1,2,3,4,5", "1,nan,3"):
        with pytest.raises(InvalidInputError):
            parse_lesion_arg(bad)
    with pytest.raises(InvalidInputError):
        lesion_from_mask(make_phantom(spacing=3.0).labels.with_array(
            np.zeros(make_phantom(spacing=3.0).labels.array.shape, np.uint8)))


# ----------------------------------------------------------------------- lesion reached
@pytest.mark.parametrize("procedure", ["needle", "tube", "cage"])
def test_lesion_reached_passes_for_every_procedure(herniated, procedure):
    ph, anat = herniated
    plan = make_plan(anat, "L4-L5", procedure, "left", lesion=_truth_lesion(ph))
    c = plan.check(CheckId.LESION_REACHED)
    assert c.ok and c.severity == "ok", c.detail
    assert plan.metrics["lesion_distance_mm"] == 0.0
    assert plan.motor_units_touched == ["L4-L5"]
    assert not plan.errors(), [(x.id, x.detail) for x in plan.errors()]
    assert plan.lesion["zone"] == "paracentral" and plan.lesion["level"] == "L4-L5"
    assert plan.case["zone"] == "paracentral"


@pytest.mark.parametrize("procedure", ["needle", "tube", "cage"])
def test_lesion_one_level_up_is_not_reached_and_motor_units_say_why(herniated, procedure):
    ph, anat = herniated
    up = np.subtract(ph.truth["discs"]["L3-L4"]["center_lps"], ph.truth["discs"]["L4-L5"]["center_lps"])
    plan = make_plan(anat, "L4-L5", procedure, "left", lesion=_truth_lesion(ph, up))
    c = plan.check(CheckId.LESION_REACHED)
    assert not c.ok and c.severity == "error"
    assert plan.metrics["lesion_distance_mm"] > 10.0  # a whole vertebra away
    assert plan.lesion["level"] == "L3-L4"
    assert "L3-L4" not in plan.motor_units_touched  # the plan stays in its unit ...
    mu = plan.check(CheckId.MOTOR_UNITS_TOUCHED)
    assert mu.ok and "lesion is at L3-L4" in mu.detail  # ... and says the lesion is elsewhere


def test_the_tube_aims_at_a_lesion_beside_its_default_dock(herniated):
    ph, anat = herniated
    # subarticular and 6 mm cranial: the default dock (6 mm lateral, 2 mm up) leaves it out
    lesion = _truth_lesion(ph, (5.0, 0.0, 6.0))
    plan = make_plan(anat, "L4-L5", "tube", "left", lesion=Lesion(lesion.centre_lps, 3.0))
    assert plan.check(CheckId.LESION_REACHED).ok, plan.check(CheckId.LESION_REACHED).detail
    assert not plan.errors()


def test_no_lesion_plans_as_before(herniated):
    ph, anat = herniated
    plain = make_phantom(spacing=1.5)
    plan = make_plan(Anatomy(plain.ct, plain.labels), "L4-L5", "tube", "left")
    assert plan.lesion == {} and plan.to_dict()["lesion"] is None
    assert CheckId.LESION_REACHED.value not in [c.id for c in plan.checks]
    old = json.loads(OLD_PLAN.read_text())  # written by the planner before lesions existed
    assert np.allclose(plan.entry_lps, old["entry_lps"]) and np.allclose(plan.target_lps, old["target_lps"])
    assert [c.to_dict() for c in plan.checks] == old["checks"]


def test_concordance_uses_the_computed_zone(herniated):
    ph, anat = herniated
    # typed "foraminal" at L4-L5 explains L4, not the L5 signs; the marked lesion is paracentral
    case = Case(level="L4-L5", side="left", zone="foraminal", suspected_root="L5")
    typed = make_plan(anat, "L4-L5", "tube", "left", case=case)
    assert typed.check(CheckId.ROOT_CONCORDANCE).severity == "warning"
    case = Case(level="L4-L5", side="left", zone="foraminal", suspected_root="L5")
    marked = make_plan(anat, "L4-L5", "tube", "left", case=case, lesion=_truth_lesion(ph))
    assert marked.check(CheckId.ROOT_CONCORDANCE).ok
    assert marked.case["zone"] == "paracentral"


def test_needle_warns_for_a_sequestrum_or_a_migrated_fragment(herniated):
    ph, anat = herniated
    t = ph.truth["herniation"]
    seq = make_plan(anat, "L4-L5", "needle", "left",
                    lesion=Lesion(t["center_lps"], 5.0, kind=LesionKind.SEQUESTRUM))
    assert seq.check(CheckId.INDICATION_SEQUESTRATION).severity == "warning"
    assert seq.check(CheckId.INDICATION_MIGRATION).ok
    n = ph.truth["discs"]["L4-L5"]["normal_lps"]
    mig = make_plan(anat, "L4-L5", "needle", "left", lesion=Lesion(np.add(t["center_lps"], np.multiply(n, -9.0)), 4.0))
    c = mig.check(CheckId.INDICATION_MIGRATION)
    assert c.severity == "warning" and mig.lesion["migration"] == "caudal"
    assert mig.lesion["migration_mm"] < -7.5


# ---------------------------------------------------------------------------- plan files
def test_old_format_1_plan_file_loads_and_rechecks():
    old = json.loads(OLD_PLAN.read_text())
    assert old["format_version"] == 1 and "lesion" not in old
    back = P.load_plan(OLD_PLAN)
    assert back["format_version"] == P.FORMAT_VERSION == 2
    assert back["lesion"] is None
    plan = Plan.from_dict(back)
    assert plan.lesion == {} and plan.level == "L4-L5"
    ph = make_phantom(spacing=1.5)
    rc = recheck_plan(back, Anatomy(ph.ct, ph.labels))
    assert rc.agrees, [d.describe() for d in rc.differences]


def test_plan_with_lesion_round_trips_and_bad_lesions_are_refused(herniated, tmp_path):
    ph, anat = herniated
    plan = make_plan(anat, "L4-L5", "tube", "left", lesion=_truth_lesion(ph))
    f = tmp_path / "p.json"
    P.save_plan(plan.to_dict(), f)
    back = P.load_plan(f)
    assert back["lesion"]["zone"] == "paracentral"
    assert back["lesion"]["centre_lps"] == pytest.approx(ph.truth["herniation"]["center_lps"])
    assert Plan.from_dict(back).lesion["level"] == "L4-L5"
    assert recheck_plan(back, anat).agrees
    for edit, match in ((lambda d: d["lesion"].update(zone="lumbar"), "lesion.zone"),
                        (lambda d: d["lesion"].update(radius_mm=-1), "lesion.radius_mm"),
                        (lambda d: d["lesion"].update(centre_lps=[1, 2]), "lesion.centre_lps"),
                        (lambda d: d["lesion"].update(kind=[]), "lesion.kind"),
                        (lambda d: d["lesion"].update(zone=["central"]), "lesion.zone"),
                        (lambda d: d["lesion"].update(side={}), "lesion.side"),
                        (lambda d: d.update(lesion=[1, 2, 3]), "lesion must be an object")):
        d = json.loads(f.read_text())
        edit(d)
        d.pop("checksum")
        d["checksum"] = P.compute_checksum(d)
        g = tmp_path / "bad.json"
        g.write_text(json.dumps(d))
        with pytest.raises(PlanFileError, match=match):
            P.load_plan(g)


def test_report_page_one_carries_the_lesion_zone_and_migration(herniated, tmp_path):
    from pypdf import PdfReader

    from spineplan.core.export.report import write_report

    def first_page(plan_dict, name):
        f = write_report(plan_dict, tmp_path / name)
        return " ".join((PdfReader(str(f)).pages[0].extract_text() or "").split())

    ph, anat = herniated
    n = ph.truth["discs"]["L4-L5"]["normal_lps"]
    les = Lesion(np.add(ph.truth["herniation"]["center_lps"], np.multiply(n, 4.0)), 5.0)
    plan = make_plan(anat, "L4-L5", "tube", "left", lesion=les)
    text = first_page(plan.to_dict(), "with.pdf")
    mig = plan.lesion["migration_mm"]
    assert 3.0 < mig < 5.0
    assert "Lesion: herniation at L4-L5, paracentral left" in text
    assert f"migrated {abs(mig):.1f} mm up" in text and f"migration {mig:+.1f} mm" in text
    plain = make_phantom(spacing=2.0)
    text = first_page(make_plan(Anatomy(plain.ct, plain.labels), "L4-L5", "tube", "left").to_dict(), "no.pdf")
    assert "Lesion: no lesion marked" in text


# --------------------------------------------------------------------- candidate herniations
@pytest.mark.parametrize("herniation", [
    {"level": "L4-L5", "side": "left", "zone": "paracentral", "size_mm": 6.0},
    {"level": "L3-L4", "side": "right", "zone": "foraminal", "size_mm": 5.0, "migration_mm": -4.0},
    {"level": "L5-S1", "side": "right", "zone": "central", "size_mm": 4.0}])
def test_candidate_herniations_find_the_phantom_herniation(herniation):
    from spineplan.core.planning.lesion import candidate_herniations

    ph = make_phantom(spacing=1.5, herniation=herniation)
    anat = Anatomy(ph.ct, ph.labels)
    found = candidate_herniations(anat)
    assert [lv for lv, _ in found] == [herniation["level"]]
    les = found[0][1]
    # the candidate is the part behind the bodies' posterior line, so its centroid lies behind
    # the truth's centre: within half the herniation's size plus one voxel (1.5 mm)
    assert np.linalg.norm(les.centre_lps - ph.truth["herniation"]["center_lps"]) <= herniation["size_mm"] / 2 + 1.5
    loc = locate_lesion(anat, les)
    assert (loc.level, loc.zone) == (herniation["level"], herniation["zone"])
    assert les.mask["volume_mm3"] >= 20.0


def test_no_candidates_on_normal_discs(sample_dicom):
    from spineplan.core.dicom.load import load_volume
    from spineplan.core.planning.lesion import candidate_herniations
    from spineplan.core.segmentation.importers import read_labels

    ph = make_phantom(spacing=1.5)
    assert candidate_herniations(Anatomy(ph.ct, ph.labels)) == []
    vol = load_volume(sample_dicom)  # the dev CT: no herniation in its reference labels
    ref = sample_dicom / "reference"
    lab = read_labels([ref / "vertebrae_verse.nii.gz", ref / "discs_verse.nii.gz"], vol)
    assert candidate_herniations(Anatomy(vol, lab)) == []


@pytest.mark.parametrize("zone,procedure,side,reached", [
    ("foraminal", "tube", "left", True), ("foraminal", "tube", "right", False),  # contralateral foramen
    ("extraforaminal", "tube", "left", False),  # beyond the interlaminar window
    ("foraminal", "needle", "left", True), ("foraminal", "needle", "right", False),
    ("subarticular", "cage", "right", True),  # the contralateral decompression's recess
    ("extraforaminal", "cage", "right", False)])  # but not the far side beyond the foramen
def test_what_each_instrument_reaches_by_zone(zone, procedure, side, reached):
    ph = make_phantom(spacing=1.5, herniation={"level": "L4-L5", "side": "left", "zone": zone, "size_mm": 5.0})
    plan = make_plan(Anatomy(ph.ct, ph.labels), "L4-L5", procedure, side, lesion=_truth_lesion(ph))
    c = plan.check(CheckId.LESION_REACHED)
    assert c.ok is reached, c.detail
    assert (plan.metrics["lesion_distance_mm"] == 0.0) is reached
