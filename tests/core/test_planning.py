"""Motor units and the three planners on the phantom (exact anatomy) and on the real CT."""

from __future__ import annotations

import numpy as np
import pytest

from spineplan.core.errors import PlanningError
from spineplan.core.phantom import make_phantom
from spineplan.core.planning.safety import CheckId
from spineplan.core.planning import cage, needle, tube
from spineplan.core.planning.case import Case, concordance
from spineplan.core.planning.plan import Anatomy, Plan
from spineplan.core.planning.planner import evaluate, make_plan
from spineplan.core.segmentation.motor_units import compute_motor_units


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(spacing=1.5)


@pytest.fixture(scope="module")
def anatomy(phantom):
    return Anatomy(phantom.ct, phantom.labels)


# --------------------------------------------------------------------------- motor units
def test_motor_units_match_phantom_truth():
    ph = make_phantom(spacing=1.0, slip_mm={"L4-L5": 5.0})
    units = compute_motor_units(ph.labels)
    assert [u.name for u in units] == ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    for u in units:
        t = ph.truth["discs"][u.name]
        g = u.disc_geometry
        assert abs(g.anterior_height_mm - t["anterior_height_mm"]) <= 1.0, u.name
        assert abs(g.middle_height_mm - t["middle_height_mm"]) <= 1.0, u.name
        assert abs(g.posterior_height_mm - t["posterior_height_mm"]) <= 1.0, u.name
        assert abs(u.segmental_angle_deg - t["angle_deg"]) <= 2.0, u.name
        if not t["slip_mm"]:  # a slipped disc's "centre" depends on the definition
            assert np.allclose(g.center_lps, t["center_lps"], atol=1.5)
        for side in ("left", "right"):
            assert np.linalg.norm(np.subtract(u.facet_lps(side), ph.truth["facets"][u.name][side])) <= 3.0
        assert u.facet_left_lps[0] > g.center_lps[0] > u.facet_right_lps[0]  # left is +x
    l45 = next(u for u in units if u.name == "L4-L5")
    assert abs(l45.slip_mm - 5.0) <= 1.0 and l45.meyerding == 1
    l34 = next(u for u in units if u.name == "L3-L4")
    assert abs(l34.slip_mm) <= 1.0
    assert abs(l34.canal_ap_mm - ph.truth["canal_ap_mm"]) <= 1.5
    assert l45.canal_ap_mm < l34.canal_ap_mm - 3  # the slip narrows the canal


# ------------------------------------------------------------------------------- planners
@pytest.mark.parametrize("procedure", ["needle", "tube", "cage"])
@pytest.mark.parametrize("level", ["L4-L5", "L5-S1"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_automatic_plans_pass_all_checks(anatomy, phantom, procedure, level, side):
    plan = make_plan(anatomy, level, procedure, side)
    bad = [(c.name, c.detail) for c in plan.checks if c.severity != "ok"]
    assert not bad, bad
    assert plan.motor_units_touched == [level]
    midline_x = np.array(anatomy.by_name[level].disc_geometry.center_lps)[0]
    if side == "left":
        assert plan.entry_lps[0] > midline_x + 10  # patient's left is +x in LPS
    else:
        assert plan.entry_lps[0] < midline_x - 10
    d = plan.to_dict()
    assert d["side"] == side and (d["entry_lps"][0] > midline_x) == (side == "left")


def test_plan_moved_one_level_up_fails_scope(anatomy):
    plan = make_plan(anatomy, "L4-L5", "needle", "left")
    up = np.array(anatomy.by_name["L3-L4"].disc_geometry.center_lps)
    here = np.array(anatomy.by_name["L4-L5"].disc_geometry.center_lps)
    moved = Plan.from_dict(plan.to_dict())
    moved.entry_lps = plan.entry_lps + (up - here)
    moved.target_lps = plan.target_lps + (up - here)
    evaluate(moved, anatomy)
    c = moved.check(CheckId.MOTOR_UNITS_TOUCHED)
    assert not c.ok and c.severity == "error" and "L3-L4" in c.detail


def test_needle_through_facet_fails_collision(anatomy):
    plan = make_plan(anatomy, "L4-L5", "needle", "left")
    facet = np.array(anatomy.by_name["L4-L5"].facet_left_lps)
    forced = Plan.from_dict(plan.to_dict())
    # aim from the entry straight through the left facet joint region into the disc
    forced.entry_lps = plan.target_lps + 2.5 * (facet - plan.target_lps)
    evaluate(forced, anatomy)
    c = forced.check(CheckId.NEEDLE_BONE)
    assert not c.ok and c.severity == "error"


def test_tube_22mm_fails_incision(anatomy):
    plan = make_plan(anatomy, "L4-L5", "tube", "left")
    wide = Plan.from_dict(plan.to_dict())
    wide.parameters["diameter_mm"] = 22.0
    evaluate(wide, anatomy)
    c = wide.check(CheckId.INCISION)
    assert not c.ok and c.severity == "error" and "2.2 cm" in c.detail


def test_cage_too_long_fails_footprint(anatomy):
    plan = make_plan(anatomy, "L4-L5", "cage", "left")
    long = Plan.from_dict(plan.to_dict())
    long.parameters["length_mm"] = 40.0
    evaluate(long, anatomy)
    c = long.check(CheckId.CAGE_FOOTPRINT)
    assert not c.ok and c.severity == "error"


def test_tube_reports_bone_and_facet_preservation(anatomy):
    plan = make_plan(anatomy, "L4-L5", "tube", "left")
    assert plan.parameters["diameter_mm"] in (16.0, 18.0)
    assert plan.parameters["length_mm"] in (40, 50, 60, 70, 80, 90)
    assert plan.parameters["length_mm"] >= plan.metrics["depth_mm"]
    assert 50.0 <= plan.parameters["facet_preservation_pct"] <= 100.0
    assert set(plan.parameters["bone_removed_by_structure_cm3"]) <= {"L4", "L5"}


def test_unknown_or_absent_level_is_planning_error(anatomy):
    with pytest.raises(PlanningError):
        make_plan(anatomy, "L4-L6", "needle", "left")
    with pytest.raises(PlanningError, match="not in the labelled anatomy"):
        make_plan(anatomy, "C5-C6", "needle", "left")


def test_plan_dict_round_trip(anatomy):
    plan = make_plan(anatomy, "L4-L5", "cage", "left", case={"pathology": "instability"})
    d = plan.to_dict()
    back = Plan.from_dict(d)
    assert back.to_dict() == d
    for key in ("format_version", "source", "level", "side", "procedure", "entry_lps", "target_lps",
                "incision_mm", "parameters", "metrics", "motor_units_touched", "checks"):
        assert key in d
    assert d["source"]["size"] == list(anatomy.image.size_ijk)


# ----------------------------------------------------------------------------- concordance
def test_concordance_rules():
    bad = concordance(Case(level="L3-L4", zone="paracentral", suspected_root="L5"))
    assert any(c.id == CheckId.ROOT_CONCORDANCE and c.severity == "warning" for c in bad)
    good = concordance(Case(level="L4-L5", zone="paracentral", suspected_root="L5"))
    assert all(c.ok for c in good)
    foraminal = concordance(Case(level="L4-L5", zone="foraminal", suspected_root="L4"))
    assert all(c.ok for c in foraminal)
    side = concordance(Case(level="L4-L5", side="right", symptom_side="left"))
    assert any(c.id == CheckId.SIDE_CONCORDANCE and not c.ok for c in side)


# -------------------------------------------------------------------------------- real CT
@pytest.fixture(scope="module")
def real_anatomy(shared_data):
    import SimpleITK as sitk

    from spineplan.core.dicom.load import read_image_file

    d = shared_data / "ct_lumbar_totalseg"
    ct = read_image_file(d / "example_ct.nii.gz")
    ct.modality = "CT"
    v = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "example_ct_vertebrae_verse.nii.gz")))
    discs = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "example_ct_discs_verse.nii.gz")))
    lab = np.where(discs > 0, discs, v).astype(np.uint16)
    return Anatomy(ct, ct.with_array(lab))


@pytest.mark.parametrize("level,procedure,side", [("L4-L5", "tube", "left"), ("L5-S1", "needle", "right"),
                                                  ("L4-L5", "cage", "left")])
def test_real_ct_plans_touch_only_their_unit(real_anatomy, level, procedure, side):
    plan = make_plan(real_anatomy, level, procedure, side)
    assert plan.motor_units_touched == [level], plan.check(CheckId.MOTOR_UNITS_TOUCHED).detail
    m = plan.metrics
    if procedure == "needle":
        assert 30 <= m["angle_to_sagittal_deg"] <= 60
        assert 50 <= m["entry_midline_distance_mm"] <= 140
    if procedure == "tube":
        assert 10 <= m["entry_midline_distance_mm"] <= 35
    for c in plan.checks:  # any failing check must say why
        assert c.detail
    x_mid = real_anatomy.by_name[level].disc_geometry.center_lps[0]
    assert (plan.entry_lps[0] > x_mid) == (side == "left")
