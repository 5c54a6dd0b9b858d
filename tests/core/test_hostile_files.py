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
