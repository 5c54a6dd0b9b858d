"""Issue 20, finding 9: a slice-count gap (one step of positions missing) is a named warning.

Decision (the same in every command): a gap of at most ``MAX_MISSING_IN_A_GAP`` consecutive
slices is filled by linear interpolation and *warned* about (kind ``missing_slices``, printed by
info/convert/segment/plan, recorded in the plan's ``source.load_warnings``); a longer gap is
*refused* on load (exit 2), since it would invent anatomy never scanned. The series is the
bundled sample with slices taken out.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from spineplan.core.dicom.load import load_volume
from spineplan.core.dicom.load_warnings import LoadWarningKind, warning_kind
from spineplan.core.dicom.scan import scan
from spineplan.core.errors import DicomError


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "spineplan", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def _without(sample, tmp, numbers):
    d = tmp / "gap"
    shutil.copytree(sample, d)
    for n in numbers:
        (d / f"IM{n:04d}.dcm").unlink()
    return d


def test_one_missing_slice_is_a_named_warning_and_interpolated(sample_dicom, tmp_path):
    full = load_volume(sample_dicom)
    src = _without(sample_dicom, tmp_path, [56])
    info = scan(src).series[0]
    assert [warning_kind(w) for w in info.warnings] == [LoadWarningKind.MISSING_SLICES]
    assert info.size == list(full.size_ijk) and info.n_files == 111
    got = load_volume(src)
    assert LoadWarningKind.MISSING_SLICES in [warning_kind(w) for w in got.warnings]
    # geometry in mm is the full series' exactly; the other slices are untouched
    assert np.allclose(got.lps_from_ijk(), full.lps_from_ijk(), atol=1e-6)
    k = 55  # IM0056 is the 56th slice from the bottom
    keep = [n for n in range(full.array.shape[0]) if n != k]
    assert np.array_equal(got.array[keep], full.array[keep])
    mean = (full.array[k - 1].astype(float) + full.array[k + 1]) / 2
    assert np.max(np.abs(got.array[k] - mean)) <= 1.0


def test_full_sample_has_no_gap_warning(sample_dicom):
    assert not [w for w in load_volume(sample_dicom).warnings
                if warning_kind(w) == LoadWarningKind.MISSING_SLICES]


def test_gap_too_long_to_interpolate_is_refused(sample_dicom, tmp_path):
    src = _without(sample_dicom, tmp_path, [55, 56, 57])
    info = scan(src).series[0]
    assert info.unloadable and "3 consecutive slices missing" in info.unloadable
    with pytest.raises(DicomError, match="too much to interpolate"):
        load_volume(src)
    r = run_cli("info", src)
    assert r.returncode == 0 and "not loadable" in r.stdout
    r = run_cli("convert", src, "-o", tmp_path / "o.nii.gz")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "too much to interpolate" in lines[0]
    assert not (tmp_path / "o.nii.gz").exists()


@pytest.mark.parametrize("command", ["convert", "segment", "plan"])
def test_every_command_warns_about_the_gap(command, sample_dicom, tmp_path):
    src = _without(sample_dicom, tmp_path, [56])
    out = tmp_path / "out"
    out.mkdir()
    args = {"convert": ["convert", src, "-o", out / "v.nii.gz"],
            "segment": ["segment", src, "-o", out / "l.nii.gz"],
            "plan": ["plan", src, "--level", "L4-L5", "--procedure", "needle", "--side", "left",
                     "-o", out / "p.json"]}[command]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    warned = [ln for ln in r.stderr.splitlines()
              if ln.startswith("spineplan: warning:") and "missing slice" in ln]
    assert len(warned) == 1
    if command == "plan":
        src_block = json.loads((out / "p.json").read_text())["source"]
        assert [w["kind"] for w in src_block["load_warnings"]] == ["missing_slices"]


@pytest.mark.parametrize("n,warned", [(1, True), (3, True), (4, False)])
def test_too_few_slices_is_a_named_warning(n, warned, sample_dicom, tmp_path):
    """dicom2nifti's failing/slicecount case: a series of 3 slices or fewer is not a volume."""
    d = tmp_path / "few"
    d.mkdir()
    for k in range(1, n + 1):
        shutil.copy(sample_dicom / f"IM{k:04d}.dcm", d)
    kinds = [warning_kind(w) for w in load_volume(d).warnings]
    assert (LoadWarningKind.TOO_FEW_SLICES in kinds) is warned
    r = run_cli("convert", d, "-o", tmp_path / "o.nii.gz")
    assert r.returncode == 0
    assert ("not a volume" in r.stderr) is warned
