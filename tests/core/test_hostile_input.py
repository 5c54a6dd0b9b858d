"""Hostile input: refused with one clear line by every command, the source left unchanged.

Also the loader-level findings of issue 20: truncated / header-only NIfTI, negative, zero and
NaN pixdim, NaN quaternion, declared sizes checked before allocating, Siemens MOSAIC.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from spineplan.core.dicom.load import check_nifti_file, load_volume, read_image_file
from spineplan.core.errors import InvalidInputError

from .hostile import CASES, nifti

COMMANDS = {
    "info": lambda src, out: ["info", str(src)],
    "convert": lambda src, out: ["convert", str(src), "-o", str(out / "o.nii.gz")],
    "segment": lambda src, out: ["segment", str(src), "-o", str(out / "l.nii.gz")],
    "plan": lambda src, out: ["plan", str(src), "--level", "L4-L5", "--procedure", "needle",
                              "--side", "left", "-o", str(out / "p.json")],
}


def _tree_hash(path: Path) -> str:
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_refused_with_one_line(case, command, tmp_path):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = CASES[case](src_dir)
    out = tmp_path / "out"
    out.mkdir()
    before = _tree_hash(src)
    r = subprocess.run([sys.executable, "-m", "spineplan", *COMMANDS[command](src, out)],
                       capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert len(lines) == 1 and lines[0].startswith("spineplan: error:"), r.stderr
    assert _tree_hash(src) == before
    assert not any(out.iterdir()), "nothing may be written for refused input"


# --------------------------------------------------------------------- NIfTI header checks
def test_valid_nifti_still_loads_with_its_geometry(tmp_path):
    p = nifti(tmp_path / "ok.nii.gz")
    v = read_image_file(p)
    assert v.size_ijk == (24, 20, 12)
    assert np.allclose(v.spacing, (1.5, 1.5, 3.0))
    # qform identity quaternion, offset (10, 20, 30) RAS -> LPS (-10, -20, 30)
    assert np.allclose(v.origin, (-10.0, -20.0, 30.0))
    # written value at (i, j, k) is (240 i + 12 j + k) % 1000
    assert (v.array[0, 0, 1], v.array[0, 1, 0], v.array[1, 0, 0]) == (240, 12, 1)
    assert v.warnings == []


@pytest.mark.parametrize("case,needle", [
    ("nifti_truncated_gz", "truncated"),
    ("nifti_header_only", "truncated"),
    ("nifti_negative_pixdim", "negative voxel spacing"),
    ("nifti_zero_pixdim", "zero"),
    ("nifti_nan_pixdim", "not a number"),
    ("nifti_nan_quaternion", "qform"),
    ("nifti_nan_sform", "sform"),
])
def test_bad_nifti_refused_by_the_loader(case, needle, tmp_path):
    p = CASES[case](tmp_path)
    with pytest.raises(InvalidInputError, match=needle):
        load_volume(p)


def test_nifti_without_orientation_warns(tmp_path):
    p = nifti(tmp_path / "noorient.nii.gz", qform_code=0, sform_code=0)
    v = read_image_file(p)
    assert any("no orientation" in w for w in v.warnings)


def test_declared_size_refused_without_allocating(tmp_path):
    p = CASES["nifti_huge_declared"](tmp_path)  # 50 000 x 50 000 int16 = 5 GB declared
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError, match="declares 4.7 GB"):
            load_volume(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20  # nothing near the declared size was allocated


def test_mosaic_refused_by_name(tmp_path):
    folder = CASES["dicom_mosaic"](tmp_path)
    with pytest.raises(InvalidInputError, match="MOSAIC"):
        load_volume(folder)
