"""Plan/case files: round trip, validation on load, atomic writes, autosave and recovery."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from spineplan.core import atomic as A
from spineplan.core import persistence as P
from spineplan.core.errors import PlanFileError
from spineplan.core.volume import Volume

from .plan_dicts import make_plan, phantom


def _rewrite(path, fn, *, fix_checksum=False):
    doc = json.loads(path.read_text())
    fn(doc)
    if fix_checksum:
        doc["checksum"] = P.compute_checksum(doc)
    path.write_text(json.dumps(doc, indent=2))


@pytest.mark.parametrize("procedure,side", [("needle", "left"), ("tube", "right"), ("cage", "left")])
def test_round_trip_equals_input(tmp_path, procedure, side):
    plan = make_plan(procedure, side)
    f = tmp_path / "plan.json"
    written = P.save_plan(plan, f)
    back = P.load_plan(f, volume=phantom().ct)
    for k, v in plan.items():
        assert back[k] == v, k
    assert back == written
    assert back["format_version"] == P.FORMAT_VERSION
    assert back["generator"].startswith("spineplan")
    assert back["checksum"] == P.compute_checksum(back)
    assert "identity" not in back
    # the side survives: a left plan stays at +x (patient's left) of the midline
    sign = 1 if side == "left" else -1
    assert sign * back["entry_lps"][0] > 10


def test_numpy_values_are_saved_as_plain_json(tmp_path):
    plan = make_plan()
    plan["entry_lps"] = np.array(plan["entry_lps"])
    plan["metrics"]["depth_mm"] = np.float32(plan["metrics"]["depth_mm"])
    P.save_plan(plan, tmp_path / "p.json")
    back = P.load_plan(tmp_path / "p.json")
    assert back["entry_lps"] == plan["entry_lps"].tolist()


def test_identity_only_when_given(tmp_path):
    plan = make_plan()
    plan["identity"] = {"patient_name": "DOE^JANE", "patient_id": "123"}
    P.save_plan(plan, tmp_path / "anon.json")
    assert "DOE" not in (tmp_path / "anon.json").read_text()
    P.save_plan(make_plan(), tmp_path / "id.json", identity={"patient_name": "DOE^JANE",
                                                             "patient_id": "123"})
    back = P.load_plan(tmp_path / "id.json")
    assert back["identity"]["patient_name"] == "DOE^JANE"


def test_tampered_value_is_refused(tmp_path):
    f = tmp_path / "plan.json"
    P.save_plan(make_plan(), f)
    text = f.read_text()
    doc = json.loads(text)
    x = doc["entry_lps"][0]
    # edit one number in the file text: move the entry 1 mm
    old = json.dumps(x)
    assert old in text
    f.write_text(text.replace(old, json.dumps(x + 1.0), 1))
    with pytest.raises(PlanFileError, match="tampered"):
        P.load_plan(f)


def test_side_flip_is_tampering(tmp_path):
    f = tmp_path / "plan.json"
    P.save_plan(make_plan(side="left"), f)
    f.write_text(f.read_text().replace('"side": "left"', '"side": "right"'))
    with pytest.raises(PlanFileError, match="edited outside spineplan"):
        P.load_plan(f)


def test_missing_checksum_is_refused(tmp_path):
    f = tmp_path / "plan.json"
    P.save_plan(make_plan(), f)
    _rewrite(f, lambda d: d.pop("checksum"))
    with pytest.raises(PlanFileError, match="no checksum"):
        P.load_plan(f)


def test_newer_and_older_versions(tmp_path):
    f = tmp_path / "plan.json"
    P.save_plan(make_plan(), f)
    _rewrite(f, lambda d: d.update(format_version=P.FORMAT_VERSION + 1), fix_checksum=True)
    with pytest.raises(PlanFileError, match="newer spineplan"):
        P.load_plan(f)
    _rewrite(f, lambda d: d.update(format_version=0), fix_checksum=True)
    with pytest.raises(PlanFileError, match="cannot migrate"):
        P.load_plan(f)
    _rewrite(f, lambda d: d.update(format_version="1"), fix_checksum=True)
    with pytest.raises(PlanFileError, match="integer"):
        P.load_plan(f)


def test_older_version_is_migrated(tmp_path, monkeypatch):
    f = tmp_path / "plan.json"
    P.save_plan(make_plan(), f)

    def rename_back(doc):  # pretend format 0 called the target "tip_lps"
        doc = dict(doc)
        doc["target_lps"] = doc.pop("tip_lps")
        return doc

    def to_v0(d):
        d["format_version"] = 0
        d["tip_lps"] = d.pop("target_lps")

    _rewrite(f, to_v0, fix_checksum=True)
    monkeypatch.setitem(P._MIGRATIONS, 0, rename_back)
    back = P.load_plan(f)
    assert back["format_version"] == P.FORMAT_VERSION  # 0 -> 1 (patched) -> 2 (lesion)
    assert back["target_lps"] == make_plan()["target_lps"]


@pytest.mark.parametrize("edit,match", [
    (lambda d: d.update(entry_lps=[1.0, 2.0]), "entry_lps must be 3 finite"),
    (lambda d: d.update(target_lps=[1.0, "a", 3.0]), "target_lps must be 3 finite"),
    (lambda d: d.update(side="middle"), "side must be"),
    (lambda d: d.update(procedure="screw"), "procedure must be"),
    (lambda d: d.update(level="L3-L5"), "motor-unit name"),
    (lambda d: d.update(level="X9-X10"), "motor-unit name"),
    (lambda d: d.pop("checks"), "missing checks"),
    (lambda d: d.update(checks=[{"name": "x", "ok": "yes", "severity": "ok", "detail": ""}]),
     r"checks\[0\]"),
    (lambda d: d.update(motor_units_touched=["L4-L5", "banana"]), "motor_units_touched"),
    (lambda d: d.update(incision_mm=-1), "incision_mm"),
])
def test_ill_typed_keys_are_refused(tmp_path, edit, match):
    f = tmp_path / "plan.json"
    P.save_plan(make_plan(), f)
    _rewrite(f, edit, fix_checksum=True)  # well-formed checksum: the schema check must catch it
    with pytest.raises(PlanFileError, match=match):
        P.load_plan(f)


def test_save_refuses_invalid_plan_and_nan(tmp_path):
    bad = make_plan()
    bad["side"] = "both"
    with pytest.raises(PlanFileError, match="side"):
        P.save_plan(bad, tmp_path / "p.json")
    nan = make_plan()
    nan["entry_lps"][0] = float("nan")
    with pytest.raises(PlanFileError, match="non-finite"):
        P.save_plan(nan, tmp_path / "p.json")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("content,match", [
    (b"not json {", "invalid JSON"),
    (b"[1, 2, 3]", "not a spineplan plan"),
    (b'{"hello": 1}', "not a spineplan plan"),
    (b"\xff\xfe\x00", "not UTF-8"),
])
def test_not_a_plan(tmp_path, content, match):
    f = tmp_path / "x.json"
    f.write_bytes(content)
    with pytest.raises(PlanFileError, match=match):
        P.load_plan(f)


def test_missing_file(tmp_path):
    with pytest.raises(PlanFileError, match="does not exist"):
        P.load_plan(tmp_path / "nope.json")


def test_refuses_plan_for_another_series(tmp_path):
    ct = phantom().ct
    f = tmp_path / "plan.json"
    P.save_plan(make_plan(), f)
    P.load_plan(f, volume=ct)  # same series: fine

    other = ct.with_array(ct.array, meta={**ct.meta, "series_uid": "1.2.3.other"})
    with pytest.raises(PlanFileError, match="another series"):
        P.load_plan(f, volume=other)

    small = Volume(np.zeros((4, 5, 6), np.int16), spacing=ct.spacing, origin=ct.origin,
                   meta=dict(ct.meta))
    with pytest.raises(PlanFileError, match="size"):
        P.load_plan(f, volume=small)

    shifted = ct.with_array(ct.array, origin=tuple(np.add(ct.origin, [0.0, 0.0, 0.5])))
    with pytest.raises(PlanFileError, match="origin differs by 0.5 mm"):
        P.load_plan(f, volume=shifted)

    flipped = ct.with_array(ct.array, direction=np.diag([-1.0, 1.0, 1.0]))
    with pytest.raises(PlanFileError, match="direction"):
        P.load_plan(f, volume=flipped)

    resampled = ct.with_array(ct.array, spacing=(1.0, 1.0, 1.02))
    with pytest.raises(PlanFileError, match="spacing"):
        P.load_plan(f, volume=resampled)

    tiny = ct.with_array(ct.array, origin=tuple(np.add(ct.origin, [0.004, 0.0, 0.0])))
    P.load_plan(f, volume=tiny)  # within 0.01 mm: same geometry


def test_atomic_save_failure_keeps_previous_file(tmp_path, monkeypatch):
    f = tmp_path / "plan.json"
    first = P.save_plan(make_plan(), f)
    before = f.read_bytes()

    real_fsync = os.fsync

    def boom(fd):  # the write fails mid-way, after some bytes reached the temp file
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(P.os, "fsync", boom)
    changed = make_plan()
    changed["entry_lps"][0] += 5.0
    with pytest.raises(OSError):
        P.save_plan(changed, f)
    monkeypatch.setattr(P.os, "fsync", real_fsync)
    assert f.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]
    assert P.load_plan(f) == first


def test_atomic_write_failure_in_replace(tmp_path, monkeypatch):
    f = tmp_path / "a.bin"
    A.atomic_write_bytes(f, b"old")

    def fail(*a, **k):
        raise OSError("disk vanished")

    monkeypatch.setattr(P.os, "replace", fail)
    with pytest.raises(OSError):
        A.atomic_write_bytes(f, b"new" * 1000)
    assert f.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_atomic_output_path_cleans_up(tmp_path):
    f = tmp_path / "out.stl"
    with pytest.raises(RuntimeError):
        with A.atomic_output_path(f) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("writer crashed")
    assert not list(tmp_path.iterdir())
    with A.atomic_output_path(f) as tmp:
        tmp.write_bytes(b"whole")
    assert f.read_bytes() == b"whole" and len(list(tmp_path.iterdir())) == 1


def test_autosave_and_recovery_cycle(tmp_path):
    case = tmp_path / "case.json"
    t = [0.0]
    saver = P.Autosaver(case, min_interval_s=2.0, clock=lambda: t[0])
    assert P.find_recovery(case) is None

    plan = make_plan()
    assert saver.changed({"plan": plan, "step": 1})          # first change: written at once
    assert P.find_recovery(case)["step"] == 1
    t[0] = 0.5
    assert not saver.changed({"plan": plan, "step": 2})      # throttled
    assert saver.pending and P.find_recovery(case)["step"] == 1
    t[0] = 3.0
    assert saver.changed({"plan": plan, "step": 3})          # interval elapsed
    assert saver.writes == 2 and not saver.pending
    # "crash": the case was never saved -> recovery offers the autosave
    rec = P.find_recovery(case)
    assert rec["step"] == 3 and rec["plan"] == plan

    # clean save removes the autosave
    P.save_case({"plan": plan, "case": plan["case"], "measurements": []}, case)
    assert not P.autosave_path(case).exists()
    assert P.find_recovery(case) is None

    # edits after the save -> recovery again; an older autosave than the save -> none
    t[0] = 10.0
    saver.changed({"plan": plan, "step": 4})
    assert P.find_recovery(case)["step"] == 4
    a = P.autosave_path(case)
    st = case.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    assert P.find_recovery(case) is None


def test_tampered_autosave_is_ignored(tmp_path):
    case = tmp_path / "case.json"
    P.Autosaver(case).changed({"step": 1})
    a = P.autosave_path(case)
    a.write_text(a.read_text().replace('"step": 1', '"step": 2'))
    assert P.find_recovery(case) is None


def test_case_round_trip_and_series_check(tmp_path):
    plan = make_plan("cage", "left")
    state = {"case": plan["case"], "plan": plan, "source": plan["source"],
             "measurements": [{"level": "L4-L5", "disc_height_mm": 10.0}]}
    f = tmp_path / "case.json"
    P.save_case(state, f)
    back = P.load_case(f, volume=phantom().ct)
    assert back["plan"] == plan and back["measurements"] == state["measurements"]
    with pytest.raises(PlanFileError, match="case file"):
        P.load_plan(f)
    ct = phantom().ct
    with pytest.raises(PlanFileError, match="another series"):
        P.load_case(f, volume=ct.with_array(ct.array, meta={"series_uid": "9.9"}))
    bad = dict(state, plan={**plan, "side": "up"})
    with pytest.raises(PlanFileError, match="side"):
        P.save_case(bad, tmp_path / "bad.json")


def test_save_accepts_objects_with_to_dict(tmp_path):
    class FakePlan:
        def to_dict(self):
            return make_plan("cage", "right")

    P.save_plan(FakePlan(), tmp_path / "p.json")
    assert P.load_plan(tmp_path / "p.json")["procedure"] == "cage"
    with pytest.raises(TypeError):
        P.save_plan(42, tmp_path / "q.json")


def test_written_files_have_normal_permissions(tmp_path):
    f = tmp_path / "plan.json"
    P.save_plan(make_plan(), f)
    umask = os.umask(0)
    os.umask(umask)
    assert (f.stat().st_mode & 0o777) == (0o666 & ~umask)
    os.chmod(f, 0o640)
    P.save_plan(make_plan(), f)           # an existing file keeps its mode
    assert (f.stat().st_mode & 0o777) == 0o640


def test_autosave_failure_does_not_raise(tmp_path, monkeypatch):
    case = tmp_path / "case.json"
    saver = P.Autosaver(case, min_interval_s=0.0)

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(P, "atomic_write_text", full)
    assert saver.changed({"step": 1}) is False
    assert saver.pending and "No space left" in saver.last_error
    monkeypatch.undo()
    assert saver.flush() and saver.last_error is None and not saver.pending
    assert P.find_recovery(case) == {"step": 1}


def test_huge_file_is_refused_without_parsing(tmp_path, monkeypatch):
    f = tmp_path / "big.json"
    f.write_text("[" + "0," * 1000 + "0]")
    monkeypatch.setattr(P, "MAX_FILE_BYTES", 100)
    with pytest.raises(PlanFileError, match="too large"):
        P.load_plan(f)
