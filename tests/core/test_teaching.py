"""Teaching core: rehearsal steps and playback, practice scoring, teaching sets, anonymising."""

from __future__ import annotations

import copy
import json
import zipfile

import numpy as np
import pytest

from spineplan.core import teaching as T
from spineplan.core.errors import InvalidInputError, PlanFileError, SpineplanError
from spineplan.core.phantom import make_phantom


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(spacing=2.0)


def make_plan(phantom, procedure="needle", side="left", level="L4-L5"):
    """A hand-built plan dict on the phantom (PLAN_SCHEMA.md), left side = +x (LPS)."""
    c = np.array(phantom.truth["discs"][level]["center_lps"])
    sgn = 1.0 if side == "left" else -1.0
    if procedure == "needle":
        entry, target = c + [sgn * 80.0, 85.0, 0.0], c
        params = {"diameter_mm": 1.5}
        inc = 0.0
    elif procedure == "tube":
        target = c + [sgn * 9.0, 44.0, 4.0]
        entry = target + [sgn * 12.0, 62.0, 0.0]
        params = {"diameter_mm": 18.0, "length_mm": 60.0, "contralateral_tilt_deg": 0.0}
        inc = 18.0
    else:
        target = c + [0.0, -4.0, 0.0]
        entry = c + [sgn * 70.0, 90.0, 0.0]
        axis = (target - entry) / np.linalg.norm(target - entry)
        params = {"cage_id": "T-26-10-11-5", "length_mm": 26.0, "width_mm": 10.0, "height_mm": 11.0,
                  "lordosis_deg": 5.0, "center_lps": target.tolist(), "axis_lps": axis.tolist(),
                  "facetectomy_side": side}
        inc = 22.0
    d = target - entry
    return {
        "format_version": 1, "generator": "test",
        "source": {"series_uid": "phantom", "modality": "CT", "description": "phantom"},
        "level": level, "side": side, "procedure": procedure,
        "entry_lps": entry.tolist(), "target_lps": target.tolist(), "incision_mm": inc,
        "parameters": params,
        "metrics": {"entry_midline_distance_mm": abs(entry[0]),
                    "angle_to_sagittal_deg": float(np.degrees(np.arctan2(abs(d[0]), abs(d[1])))),
                    "depth_mm": float(np.linalg.norm(d))},
        "motor_units_touched": [level],
        "checks": [{"name": "single motor unit", "ok": True, "severity": "ok", "detail": ""},
                   {"name": "canal clearance", "ok": True, "severity": "ok", "detail": ""}],
    }


EXPECTED_KEYS = {
    "needle": ["entry", "kambin", "nucleus"],
    "tube": ["incision", "dilators", "docking", "laminotomy", "decompression"],
    "cage": ["facetectomy", "disc_preparation", "cage_insertion"],
}


def _line_distance(p, entry, d):
    v = np.asarray(p) - entry
    return float(np.linalg.norm(v - (v @ d) * d))


# ----------------------------------------------------------------------------- steps
@pytest.mark.parametrize("procedure", ["needle", "tube", "cage"])
def test_steps_follow_trajectory_and_end_at_target(phantom, procedure):
    plan = make_plan(phantom, procedure)
    steps = T.rehearsal_steps(plan, phantom.labels)
    assert [s.key for s in steps] == EXPECTED_KEYS[procedure]
    entry, target = np.array(plan["entry_lps"]), np.array(plan["target_lps"])
    d = (target - entry) / np.linalg.norm(target - entry)
    depths = []
    for s in steps:
        assert s.narration and s.title
        assert _line_distance(s.tip_lps, entry, d) < 1e-6
        depths.append(float((np.asarray(s.tip_lps) - entry) @ d))
        assert np.allclose(s.camera.focal_point, s.tip_lps)
        assert set(s.layers) == {"skin", "soft_tissue", "bone"}
    assert all(b >= a - 1e-9 for a, b in zip(depths, depths[1:]))
    assert 0.0 <= depths[0] and depths[-1] <= np.linalg.norm(target - entry) + 1e-9
    assert np.linalg.norm(np.asarray(steps[-1].tip_lps) - target) < 0.5
    # the skin is shown first and peeled away by the last step
    assert steps[0].layers["skin"] > 0 and steps[-1].layers["skin"] == 0


@pytest.mark.parametrize("procedure", ["needle", "tube", "cage"])
def test_playback_visits_every_step_and_camera_moves_toward_target(phantom, procedure):
    plan = make_plan(phantom, procedure)
    steps = T.rehearsal_steps(plan)
    fps = 4
    frames = T.playback_frames(steps, fps)
    assert len(frames) == len(steps) * fps
    assert [f.step_index for f in frames] == [i for i in range(len(steps)) for _ in range(fps)]
    entry, target = np.array(plan["entry_lps"]), np.array(plan["target_lps"])
    d = (target - entry) / np.linalg.norm(target - entry)
    to_target = [np.linalg.norm(np.asarray(f.camera.focal_point) - target) for f in frames]
    for f in frames:  # the focal point runs along the trajectory
        assert _line_distance(f.camera.focal_point, entry, d) < 1e-6
        assert np.allclose(f.camera.focal_point, f.tip_lps)
    assert all(b <= a + 1e-9 for a, b in zip(to_target, to_target[1:]))
    assert to_target[0] > to_target[-1]
    assert to_target[-1] < 0.5
    # the last frame of each step is exactly the step's state
    for i, s in enumerate(steps):
        last = frames[(i + 1) * fps - 1]
        assert np.allclose(last.camera.position, s.camera.position)
        assert np.allclose(last.tip_lps, s.tip_lps)
    # camera distance shrinks while approaching (zoom in)
    dist = [np.linalg.norm(np.subtract(f.camera.position, f.camera.focal_point)) for f in frames]
    assert dist[-1] < dist[0]


def test_instrument_view_camera_looks_along_the_trajectory(phantom):
    plan = make_plan(phantom, "needle")
    entry, target = np.array(plan["entry_lps"]), np.array(plan["target_lps"])
    d = (target - entry) / np.linalg.norm(target - entry)
    for st in T.rehearsal_steps(plan):
        cam = T.instrument_view_camera(plan, st.tip_lps, 70.0)
        sight = np.subtract(cam.focal_point, cam.position)
        assert np.linalg.norm(sight) == pytest.approx(70.0)
        assert np.allclose(sight / 70.0, d) and np.allclose(cam.focal_point, st.tip_lps)
        assert abs(np.dot(cam.view_up, d)) < 1e-9 and cam.view_up[2] > 0  # head up


def test_kambin_step_found_in_label_map(phantom):
    plan = make_plan(phantom, "needle")
    # a path aimed through the left L4-L5 facet joint region meets bone before the disc
    facet = np.array(phantom.truth["facets"]["L4-L5"]["left"])
    plan["entry_lps"] = (np.array(plan["target_lps"]) + 2.5 * (facet - plan["target_lps"])).tolist()
    entry, target = np.array(plan["entry_lps"]), np.array(plan["target_lps"])
    d = (target - entry) / np.linalg.norm(target - entry)
    kambin = next(s for s in T.rehearsal_steps(plan, phantom.labels) if s.key == "kambin")
    tip = np.asarray(kambin.tip_lps)
    assert phantom.labels.value_at_lps(tip) == 123          # inside the L4/L5 disc ...
    assert phantom.labels.value_at_lps(tip - 1.0 * d) != 123  # ... having just entered it
    # the narration names the first bone on the path, at the depth where the label map shows it
    ts = np.arange(0.0, np.linalg.norm(target - entry), 0.5)
    first = next(t for t in ts if phantom.labels.value_at_lps(entry + d * t) in (23, 24))
    name = {23: "L4", 24: "L5"}[int(phantom.labels.value_at_lps(entry + d * first))]
    assert f"meets {name} bone at {first:.0f} mm" in kambin.narration
    clean = make_plan(phantom, "needle")
    clean["entry_lps"] = (target + [100.0, 50.0, 0.0]).tolist()  # a steeper path clears the bone
    k2 = next(s for s in T.rehearsal_steps(clean, phantom.labels) if s.key == "kambin")
    assert "Caution" not in k2.narration and phantom.labels.value_at_lps(k2.tip_lps) == 123
    # plan checks with warnings/errors are announced at the first step
    warned = make_plan(phantom, "needle")
    warned["checks"][0].update(ok=False, severity="error", name="bone contact")
    assert "error: bone contact" in T.rehearsal_steps(warned)[0].narration
    assert "Plan checks" not in T.rehearsal_steps(make_plan(phantom, "needle"))[0].narration
    # without labels the documented default distance before the target is used
    default = next(s for s in T.rehearsal_steps(plan) if s.key == "kambin")
    assert np.linalg.norm(target - np.asarray(default.tip_lps)) == pytest.approx(
        T.DISC_ENTRY_BEFORE_TARGET_MM, abs=1e-6)


@pytest.mark.parametrize("side", ["left", "right"])
def test_camera_on_the_approach_side(phantom, side):
    plan = make_plan(phantom, "needle", side=side)
    steps = T.rehearsal_steps(plan)
    target = np.array(plan["target_lps"])
    for s in steps:  # LPS: the patient's left is +x; the camera looks from the approach side
        dx = s.camera.position[0] - target[0]
        assert (dx > 20.0) if side == "left" else (dx < -20.0)
        assert s.camera.position[1] > target[1]  # from posterior
    assert ("LEFT" if side == "left" else "RIGHT") in steps[0].narration


def test_structures_at_risk(phantom):
    needle = T.rehearsal_steps(make_plan(phantom, "needle"))
    kambin = next(s for s in needle if s.key == "kambin")
    labels = {lab for s in kambin.at_risk for lab in s.labels}
    assert {300, 122, 124} <= labels  # dural sac, L3/L4 and L5/S1 discs
    assert 123 not in labels and kambin.target_labels == (123,)
    root = next(s for s in kambin.at_risk if "exiting L4 root" in s.name)
    assert root.schematic and root.center_lps is not None
    tube = T.rehearsal_steps(make_plan(phantom, "tube"))
    assert any(300 in s.labels for s in next(x for x in tube if x.key == "decompression").at_risk)
    assert "L3-L4 facet joints" in next(x for x in tube if x.key == "docking").narration
    # L5-S1: only the disc above is a neighbour; the exiting root is L5
    low = T.rehearsal_steps(make_plan(phantom, "needle", level="L5-S1"))
    labs = {lab for s in low for r in s.at_risk for lab in r.labels}
    assert 123 in labs and not labs & {125, 126}
    assert any("exiting L5 root" in r.name for s in low for r in s.at_risk)


def test_bad_plans_raise_one_line_errors(phantom):
    plan = make_plan(phantom)
    for key, value in (("target_lps", None), ("procedure", "laser"), ("side", "both"),
                       ("level", "L3-L5"), ("entry_lps", plan["target_lps"])):
        bad = copy.deepcopy(plan)
        bad[key] = value
        with pytest.raises(SpineplanError) as exc:
            T.rehearsal_steps(bad)
        assert "\n" not in str(exc.value)
    with pytest.raises(InvalidInputError):
        T.playback_frames(T.rehearsal_steps(plan), 0)


def test_declared_side_must_match_geometry(phantom):
    """A plan labelled LEFT whose entry is on the patient's right (-x) is a wrong-side plan."""
    plan = make_plan(phantom, "needle", side="right")  # entry at -x
    assert T.side_matches_geometry(plan)
    mislabeled = dict(plan, side="left")
    assert not T.side_matches_geometry(mislabeled)
    with pytest.raises(PlanFileError, match="says LEFT but its entry lies on the patient's right"):
        T.rehearsal_steps(mislabeled)
    # a straight-down tube (entry x == target x) is consistent with either side
    tube = make_plan(phantom, "tube")
    tube["entry_lps"][0] = tube["target_lps"][0]
    assert T.side_matches_geometry(tube) and T.side_matches_geometry(dict(tube, side="right"))
    # scoring does not refuse a resident's mislabeled attempt: it scores it 0 with the reason
    ref = make_plan(phantom, "needle", side="left")
    s = T.score_attempt(ref, dict(plan, side="left"))
    assert s.overall == 0.0 and any("other side" in r for r in s.remarks)


# ----------------------------------------------------------------------------- scoring
def test_score_of_reference_itself_is_perfect(phantom):
    ref = make_plan(phantom, "needle")
    s = T.score_attempt(ref, copy.deepcopy(ref))
    assert s.entry_error_mm == 0.0 and s.target_error_mm == 0.0
    assert s.angle_difference_deg == pytest.approx(0.0, abs=1e-6)
    assert s.checks_failed == () and len(s.checks_passed) == 2
    assert s.motor_units_match and s.same_side and s.same_level
    assert s.overall == pytest.approx(100.0)


def test_score_known_offset(phantom):
    ref = make_plan(phantom, "needle")
    att = copy.deepcopy(ref)
    att["entry_lps"] = (np.array(ref["entry_lps"]) + [10.0, 0.0, 0.0]).tolist()
    s = T.score_attempt(ref, att)
    assert s.entry_error_mm == pytest.approx(10.0, abs=1e-9)
    assert s.target_error_mm == pytest.approx(0.0, abs=1e-9)
    # independent angle: the two directions in the axial plane, atan of their slopes
    e = np.array(ref["entry_lps"]) - np.array(ref["target_lps"])  # (80, 85, 0)
    expected = np.degrees(np.arctan2(e[0] + 10.0, e[1]) - np.arctan2(e[0], e[1]))
    assert expected == pytest.approx(3.37, abs=0.01)  # atan(90/85) - atan(80/85)
    assert s.angle_difference_deg == pytest.approx(expected, abs=1e-6)
    assert s.components["entry"] == pytest.approx(1 - 10.0 / T.SCORE_TOLERANCES["entry_mm"])
    assert sum(T.SCORE_WEIGHTS.values()) == pytest.approx(1.0)
    assert 0 < s.overall < 100
    lines = T.score_summary(s)
    assert "Entry point 10.0 mm off" in lines and f"Score {s.overall:.0f}/100" in lines
    assert "Checks passed 2/2" in lines and "Motor units L4-L5 (match)" in lines


def test_score_failed_checks_units_and_wrong_side(phantom):
    ref = make_plan(phantom, "needle")
    att = copy.deepcopy(ref)
    att["target_lps"] = (np.array(ref["target_lps"]) + [0.0, 0.0, 6.0]).tolist()
    att["checks"][1].update(ok=False, severity="error")
    att["motor_units_touched"] = ["L4-L5", "L3-L4"]
    s = T.score_attempt(ref, att)
    assert s.target_error_mm == pytest.approx(6.0)
    assert s.checks_failed == ("canal clearance",) and s.checks_passed == ("single motor unit",)
    assert not s.motor_units_match and s.components["motor_units"] == 0.0
    assert s.components["checks"] == pytest.approx(0.5)
    wrong = make_plan(phantom, "needle", side="right")
    w = T.score_attempt(ref, wrong)
    assert not w.same_side and w.overall == 0.0 and any("wrong side" in r for r in w.remarks)
    assert w.entry_error_mm == pytest.approx(160.0)


# ----------------------------------------------------------------------------- teaching sets
def _case_files(tmp_path, phantom):
    img = tmp_path / "src" / "ct.nii.gz"
    lab = tmp_path / "src" / "labels.nii.gz"
    img.parent.mkdir()
    img.write_bytes(b"fake-image-bytes")
    lab.write_bytes(b"fake-label-bytes")
    plan = make_plan(phantom, "needle")
    plan["identity"] = {"patient_name": "DOE^JANE", "patient_id": "PID-778"}
    return img, lab, plan


@pytest.mark.parametrize("as_zip", [False, True])
def test_teaching_set_round_trip(tmp_path, phantom, as_zip):
    img, lab, plan = _case_files(tmp_path, phantom)
    dest = tmp_path / ("set.zip" if as_zip else "set")
    T.write_teaching_set(dest, [{"title": "Case 1: L4-L5 herniation", "image_path": img,
                                 "labels_path": lab, "reference_plan": plan},
                                {"title": "Case 2", "image_path": img, "reference_plan": plan}],
                         title="Lumbar course")
    assert zipfile.is_zipfile(dest) if as_zip else (dest / "manifest.json").is_file()
    ts = T.read_teaching_set(dest, extract_to=tmp_path / "x" if as_zip else None)
    assert (dest.stat().st_mode & 0o055) == 0o055 or as_zip  # shareable, not 0700
    assert ts.title == "Lumbar course" and [c.title for c in ts.cases] == ["Case 1: L4-L5 herniation", "Case 2"]
    assert ts.manifest["format_version"] == T.TEACHING_SET_VERSION
    c1 = ts.cases[0]
    assert c1.image_path.read_bytes() == img.read_bytes()
    assert c1.labels_path.read_bytes() == lab.read_bytes() and ts.cases[1].labels_path is None
    assert c1.reference_plan["entry_lps"] == plan["entry_lps"]
    assert "identity" not in c1.reference_plan  # shared material carries no identity
    assert "DOE" not in json.dumps(ts.manifest) + json.dumps(c1.reference_plan)
    rv = c1.resident_view()
    for hidden in ("entry_lps", "target_lps", "metrics", "checks", "parameters", "motor_units_touched"):
        assert hidden not in rv
    assert rv["level"] == "L4-L5" and rv["side"] == "left" and rv["procedure"] == "needle"
    assert rv["case_title"] == "Case 1: L4-L5 herniation"


def test_teaching_set_rejects_bad_input(tmp_path, phantom):
    img, lab, plan = _case_files(tmp_path, phantom)
    dest = tmp_path / "set"
    T.write_teaching_set(dest, [{"title": "A", "image_path": img, "reference_plan": plan}])
    with pytest.raises(InvalidInputError):  # not empty any more
        T.write_teaching_set(dest, [{"title": "A", "image_path": img, "reference_plan": plan}])
    m = json.loads((dest / "manifest.json").read_text())
    m["format_version"] = 99
    (dest / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PlanFileError, match="version"):
        T.read_teaching_set(dest)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("manifest.json", "{}")
        zf.writestr("../escape.txt", "x")
    with pytest.raises(InvalidInputError, match="unsafe"):
        T.read_teaching_set(evil, extract_to=tmp_path / "e")
    assert not (tmp_path / "escape.txt").exists()
    with pytest.raises(InvalidInputError):
        T.write_teaching_set(tmp_path / "s2", [{"title": "A", "image_path": tmp_path / "nope.nii",
                                                "reference_plan": plan}])
    assert not (tmp_path / "s2").exists()


# ----------------------------------------------------------------------------- presentation
def test_anonymise_for_presentation_removes_identity(phantom):
    plan = make_plan(phantom, "needle")
    plan["identity"] = {"patient_name": "DOE^JANE", "patient_id": "PID-778"}
    plan["source"].update(description="DOE JANE lumbar", series_uid="1.2.826.0.1.99",
                          path="/data/DOE_JANE/ct")
    plan["case"] = {"level": "L4-L5", "side": "left", "notes": "Mrs Doe, teacher",
                    "suspected_root": "L5"}
    plan["checksum"] = "ab" * 32
    meta = {"PatientName": "DOE^JANE", "patient_id": "PID-778", "PatientBirthDate": "19700101",
            "StudyInstanceUID": "1.2.3.4", "AccessionNumber": "ACC9", "modality": "CT",
            "nested": {"patient_name": "DOE^JANE"}}
    original = copy.deepcopy(plan)
    for src in (plan, meta):
        out = T.anonymise_for_presentation(src, "Case 3: L4-L5 left herniation")
        text = json.dumps(out)
        for secret in ("DOE", "Doe", "PID-778", "19700101", "1.2.3.4", "ACC9", "1.2.826.0.1.99"):
            assert secret not in text
        assert out["case_title"] == "Case 3: L4-L5 left herniation"
    out = T.anonymise_for_presentation(plan, "Case 3")
    assert out["entry_lps"] == plan["entry_lps"] and out["level"] == "L4-L5"
    assert out["case"]["suspected_root"] == "L5" and out["checks"][0]["name"] == "single motor unit"
    assert plan == original  # the source is untouched
    with pytest.raises(InvalidInputError):
        T.anonymise_for_presentation(plan, "  ")


def _tiny_dicom(path, patient_name):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = patient_name
    ds.PatientID = ""
    ds.Modality = "CT"
    ds.save_as(path, enforce_file_format=True)


def test_teaching_set_refuses_identified_dicom(tmp_path, phantom):
    plan = make_plan(phantom, "needle")
    named, blank = tmp_path / "named", tmp_path / "blank"
    named.mkdir()
    blank.mkdir()
    _tiny_dicom(named / "1.dcm", "DOE^JANE")
    _tiny_dicom(blank / "1.dcm", "")
    with pytest.raises(InvalidInputError, match="carries patient identity"):
        T.write_teaching_set(tmp_path / "a.zip", [{"title": "A", "image_path": named,
                                                   "reference_plan": plan}])
    assert not (tmp_path / "a.zip").exists()
    T.write_teaching_set(tmp_path / "b.zip", [{"title": "B", "image_path": blank,
                                               "reference_plan": plan}])
    ts = T.read_teaching_set(tmp_path / "b.zip", extract_to=tmp_path / "bx")
    assert (ts.cases[0].image_path / "1.dcm").is_file()
    # an internal set may keep identified images when asked explicitly
    T.write_teaching_set(tmp_path / "c", [{"title": "C", "image_path": named, "reference_plan": plan}],
                         allow_identified_images=True)


def test_a_red_check_caps_the_score_at_a_fail(phantom):
    """Issue 15: practice mode scored a plan with a red bone-collision check 70/100."""
    ref = make_plan(phantom, "needle")
    att = copy.deepcopy(ref)
    clean = T.score_attempt(ref, att)
    assert clean.overall > T.PASS_SCORE and clean.passed and "Pass" in T.score_summary(clean)
    att["checks"][0].update(ok=False, severity="error")
    s = T.score_attempt(ref, att)
    assert s.overall <= T.RED_CHECK_SCORE_CAP < T.PASS_SCORE and not s.passed
    assert s.red_checks == (att["checks"][0]["name"],)
    assert any("capped" in r for r in s.remarks) and "Pass" not in T.score_summary(s)
    warn = copy.deepcopy(ref)
    warn["checks"][0].update(ok=False, severity="warning")  # amber is not capped
    assert T.score_attempt(ref, warn).overall > T.RED_CHECK_SCORE_CAP
