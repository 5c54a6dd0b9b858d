"""Issue 20, findings 10 and 11: hostile DICOM headers and plan files give one clear line, exit 2.

Every hostile file is generated here in ``tmp_path``. Each CLI run must exit 2 with a single
``spineplan: error:`` line on stderr (no traceback, no library text), and write nothing.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from spineplan.core.dicom.scan import scan
from spineplan.core.dicom.write import write_series
from spineplan.core.errors import PlanFileError
from spineplan.core.persistence import compute_checksum, load_plan, save_plan

from .hostile import small_ct
from .plan_dicts import make_plan


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "spineplan", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_refusal(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert len(lines) == 1 and lines[0].startswith("spineplan: error:"), r.stderr
    return lines[0]


# ------------------------------------------------------------------ DICOM headers (info)
def _series(tmp: Path, name: str, edit=None) -> Path:
    folder = tmp / name
    files = write_series(small_ct(n=(8, 8, 2)), folder, uid_seed=name)
    if edit is not None:
        for f in files:
            ds = pydicom.dcmread(f)
            edit(ds)
            ds.save_as(f)
    return folder


def _large_rows_element(ds):
    # a bulk-data-sized Rows element: 1 MB of US values where one is expected
    ds["Rows"].value = [8] * 500_000


def _deep_in_functional_groups(tmp: Path) -> Path:
    """Undefined-length sequences nested 5000 deep in a tag the header scan reads."""
    folder = _series(tmp, "deepfg")
    seq = struct.pack("<HH2sHI", 0x5200, 0x9229, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    ends = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    blob = (seq + item) * 5000 + ends * 5000
    for f in sorted(folder.iterdir()):
        raw = f.read_bytes()
        at = raw.rfind(b"\xe0\x7f\x10\x00")
        f.write_bytes(raw[:at] + blob + raw[at:])
    return folder


@pytest.mark.parametrize("make,said", [
    (lambda t: _series(t, "rows", _large_rows_element), "Rows is not one integer"),
    (_deep_in_functional_groups, "nested too deeply"),
])
@pytest.mark.parametrize("command", ["info", "convert"])
def test_info_on_bad_header_is_one_line(make, said, command, tmp_path):
    src = make(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    args = [command, src] + (["-o", out / "o.nii.gz"] if command == "convert" else [])
    line = assert_one_line_refusal(run_cli(*args))
    assert said in line
    assert not any(out.iterdir())


def test_large_private_bulk_element_still_loads(tmp_path):
    def big(ds):
        ds.add_new(0x00091001, "OB", b"\0" * (8 << 20))
    src = _series(tmp_path, "bulk", big)
    res = scan(src)
    assert len(res.series) == 1 and res.series[0].size == [8, 8, 2]
    r = run_cli("info", src)
    assert r.returncode == 0, r.stderr


def test_one_bad_file_is_skipped_by_name_the_rest_loads(tmp_path):
    src = _series(tmp_path, "mixed")
    first = sorted(src.iterdir())[0]
    ds = pydicom.dcmread(first)
    _large_rows_element(ds)
    ds.save_as(first)
    res = scan(src)
    assert [s.size for s in res.series] == [[8, 8, 1]]
    assert any(w.startswith(first.name) and "Rows" in w for w in res.warnings)


# ------------------------------------------------------------------ plan files
def _forged(tmp: Path, name: str, edit) -> Path:
    """A plan file with ``edit`` applied and its checksum recomputed (a forged file)."""
    doc = save_plan(make_plan(), tmp / "good.json")
    doc = json.loads(json.dumps(doc))
    edit(doc)
    doc["checksum"] = compute_checksum(doc)
    p = tmp / name
    p.write_text(json.dumps(doc))
    return p


def _deep_plan(tmp: Path) -> Path:
    doc = save_plan(make_plan(), tmp / "good.json")
    text = json.dumps(dict(doc, checksum="0"))
    text = text.replace('"metrics": {', '"metrics": {"deep": ' + "[" * 200_000 + "]" * 200_000
                        + ", ", 1)
    p = tmp / "deep.json"
    p.write_text(text)
    return p


PLAN_CASES = {
    "deep": (_deep_plan, "nested too deeply"),
    "case_x": (lambda t: _forged(t, "case_x.json", lambda d: d.update(case="x")),
               "case must be an object"),
    "entry_1e300": (lambda t: _forged(t, "far.json",
                                      lambda d: d.update(entry_lps=[1e300, 0.0, 0.0])),
                    "entry_lps"),
    "target_far_outside_image": (
        lambda t: _forged(t, "outside.json",
                          lambda d: d.update(target_lps=[d["target_lps"][0] + 2000.0,
                                                         *d["target_lps"][1:]])),
        "outside the image"),
    "cage_param_1e300": (lambda t: _forged(t, "param.json",
                                           lambda d: d["parameters"].update(diameter_mm=1e300)),
                         "parameters.diameter_mm"),
}


@pytest.mark.parametrize("case", sorted(PLAN_CASES))
def test_plan_loader_refuses_hostile_plan(case, tmp_path):
    make, said = PLAN_CASES[case]
    with pytest.raises(PlanFileError, match=said):
        load_plan(make(tmp_path))


@pytest.mark.parametrize("command", ["report", "rehearse"])
@pytest.mark.parametrize("case", ["deep", "case_x", "entry_1e300"])
def test_report_and_rehearse_refuse_hostile_plan_in_one_line(case, command, tmp_path):
    make, said = PLAN_CASES[case]
    plan = make(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    target = out / ("r.pdf" if command == "report" else "r.gif")
    line = assert_one_line_refusal(run_cli(command, plan, "-o", target))
    assert said in line
    assert not any(out.iterdir())


def test_untouched_plan_still_loads(tmp_path):
    p = tmp_path / "p.json"
    save_plan(make_plan(), p)
    assert load_plan(p)["level"] == "L4-L5"


# ------------------------------------------------------------------ finding 11: one line
def _without_file_permission_override() -> list[str]:
    """Prefix that runs a command subject to file permissions (root ignores them)."""
    import os
    import shutil

    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: file permissions cannot be exercised")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def run_cli_unprivileged(*args):
    return subprocess.run([*_without_file_permission_override(), sys.executable, "-m", "spineplan",
                           *map(str, args)], capture_output=True, text=True, timeout=120)


def _implicit_vr_series(tmp: Path, spacing) -> Path:
    """Files whose meta says explicit VR but whose data set is implicit: pydicom warns."""
    folder = _series(tmp, f"vr{spacing}")
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        ds.PixelSpacing = [spacing, spacing]
        pydicom.dcmwrite(f, ds, implicit_vr=True, little_endian=True, force_encoding=True)
    return folder


def test_pydicom_warning_never_printed_before_the_error(tmp_path):
    src = _implicit_vr_series(tmp_path, 0)
    line = assert_one_line_refusal(run_cli("convert", src, "-o", tmp_path / "o.nii.gz"))
    assert "UserWarning" not in line and "not positive" in line
    # on success the library's warning comes after the work, as a spineplan warning line
    ok = run_cli("convert", _implicit_vr_series(tmp_path, 1.5), "-o", tmp_path / "o.nii.gz")
    assert ok.returncode == 0, ok.stderr
    assert "UserWarning" not in ok.stderr
    assert all(ln.startswith("spineplan: warning:") for ln in ok.stderr.strip().splitlines())


def test_nan_affine_gives_no_itk_text(tmp_path):
    import numpy as np

    from .hostile import nifti

    bad = nifti(tmp_path / "nan.nii.gz", qform_code=0, sform_code=1,
                srow=([np.nan, 0, 0, 0], [0, 1.5, 0, 0], [0, 0, 3, 0]))
    sheared = nifti(tmp_path / "shear.nii.gz", qform_code=0, sform_code=1,
                    srow=([1.5, 0.5, 0, 0], [0, 1.5, 0, 0], [0, 0, 3, 0]))
    plan = tmp_path / "p.json"
    save_plan(make_plan(), plan)
    gif = tmp_path / "r.gif"
    for args in (["rehearse", plan, "-o", gif, "--image", bad],
                 ["rehearse", plan, "-o", gif, "--labels", bad],
                 ["info", bad], ["info", sheared]):
        line = assert_one_line_refusal(run_cli(*args))
        assert "vnl" not in line.lower() and "itk" not in line.lower()
    assert not gif.exists()


@pytest.mark.parametrize("command", ["convert", "report", "plan-report"])
def test_output_errors_name_the_destination_not_a_temp_file(command, tmp_path, sample_dicom):
    plan = tmp_path / "p.json"
    save_plan(make_plan(), plan)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    dest = blocker / ("o.nii.gz" if command == "convert" else "o.pdf")
    args = {"convert": ["convert", sample_dicom, "-o", dest],
            "report": ["report", plan, "-o", dest],
            "plan-report": ["plan", sample_dicom, "--level", "L4-L5", "--procedure", "needle",
                            "--side", "left", "-o", tmp_path / "q.json", "--report", dest]}[command]
    line = assert_one_line_refusal(run_cli(*args))
    assert str(dest) in line
    assert "/." not in line and ".tmp" not in line  # no hidden temporary file named


def test_read_only_folder_named_as_the_destination(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    plan = tmp_path / "p.json"
    save_plan(make_plan(), plan)
    ro.chmod(0o555)
    try:
        line = assert_one_line_refusal(run_cli_unprivileged("report", plan, "-o", ro / "r.pdf"))
    finally:
        ro.chmod(0o755)
    assert f"cannot write {ro / 'r.pdf'}: Permission denied" in line
    assert not any(ro.iterdir())


def test_unreadable_folder_said_as_such(tmp_path, sample_dicom):
    import shutil

    locked = tmp_path / "locked"
    shutil.copytree(sample_dicom, locked)
    files = tmp_path / "files"
    shutil.copytree(sample_dicom, files)
    mixed = tmp_path / "mixed"
    shutil.copytree(sample_dicom, mixed / "a")
    (mixed / "b").mkdir()
    for f in files.iterdir():
        f.chmod(0)
    locked.chmod(0)
    (mixed / "b").chmod(0)
    try:
        r1 = run_cli_unprivileged("info", locked)
        r2 = run_cli_unprivileged("info", files)
        r3 = run_cli_unprivileged("info", mixed)
    finally:
        locked.chmod(0o755)
        (mixed / "b").chmod(0o755)
        for f in files.iterdir():
            f.chmod(0o644)
    assert assert_one_line_refusal(r1) == f"spineplan: error: folder {locked} is unreadable " \
                                          "(permission denied)"
    assert assert_one_line_refusal(r2) == f"spineplan: error: the files in {files} are " \
                                          "unreadable (permission denied)"
    assert r3.returncode == 0 and "subfolder b is unreadable (permission denied)" in r3.stdout


# ------------------------------------------------------------------ every field, every bad value
HOSTILE_VALUES = [None, "x", "", 0, -1, 1e300, -1e300, True, [], [1e300, 0, 0], [None, None, None],
                  {}, {"a": [1, 2]}, ["L4-L5"], "L9-L7", [[[[[]]]]]]


def _mutations():
    plan = make_plan()
    for key in sorted(plan):
        for v in HOSTILE_VALUES:
            yield key, None, v
    for key in ("source", "case", "parameters", "metrics"):
        for sub in sorted(plan.get(key) or {}):
            for v in HOSTILE_VALUES:
                yield key, sub, v
    for n in range(len(plan["checks"][:2])):
        for sub in ("name", "ok", "severity", "detail"):
            for v in HOSTILE_VALUES:
                yield "checks", (n, sub), v


def test_every_field_with_a_bad_value_loads_right_or_is_refused(tmp_path):
    """A plan file with any one field set to a hostile value (checksum recomputed): either it
    is refused with a PlanFileError, or the report and the recheck of it run without crashing."""
    from spineplan.core.errors import SpineplanError
    from spineplan.core.export.report import report_pdf_bytes
    from spineplan.core.planning.plan import Anatomy
    from spineplan.core.planning.recheck import recheck_plan

    from .plan_dicts import phantom

    ph = phantom()
    anatomy = Anatomy(ph.ct, ph.labels)
    good = save_plan(make_plan(), tmp_path / "good.json")
    loaded = refused = 0
    crashes = []
    for key, sub, v in _mutations():
        doc = json.loads(json.dumps(good))
        if sub is None:
            doc[key] = v
        elif isinstance(sub, tuple):
            doc[key][sub[0]][sub[1]] = v
        else:
            doc[key][sub] = v
        doc["checksum"] = compute_checksum(doc)
        p = tmp_path / "m.json"
        p.write_text(json.dumps(doc))
        try:
            plan = load_plan(p)
        except PlanFileError:
            refused += 1
            continue
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            crashes.append((key, sub, v, f"load: {type(exc).__name__}: {exc}"))
            continue
        loaded += 1
        for what, fn in (("report", lambda: report_pdf_bytes(plan)),
                         ("recheck", lambda: recheck_plan(plan, anatomy))):
            try:
                fn()
            except SpineplanError:
                pass
            except Exception as exc:  # noqa: BLE001
                crashes.append((key, sub, v, f"{what}: {type(exc).__name__}: {exc}"))
    assert not crashes, "\n".join(map(str, crashes))
    assert refused > 100 and loaded > 0
