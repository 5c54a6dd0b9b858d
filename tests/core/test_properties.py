"""Property-based tests (hypothesis) of the loaders and the plan reader (issue 20, item 1).

A random header mutation of a small valid file either loads with correct geometry or is
refused with a SpineplanError; never another exception, never a silently wrong grid.
"""

from __future__ import annotations

import copy
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spineplan.core.dicom.load import load_volume
from spineplan.core.dicom.write import write_series
from spineplan.core.errors import PlanFileError, SpineplanError
from spineplan.core.persistence import compute_checksum, load_plan, save_plan

from .hostile import nifti, small_ct
from .plan_dicts import make_plan

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

FLOATS = st.one_of(st.sampled_from([0.0, -0.0, -1.5, 1e-12, 1e30, float("nan"), float("inf"),
                                    float("-inf"), 0.5, 3.0]),
                   st.floats(-1e4, 1e4, allow_nan=False))


def _orthonormal(d: np.ndarray) -> bool:
    return bool(np.allclose(d.T @ d, np.eye(3), atol=1e-3))


def _sane(vol) -> None:
    """What every loaded volume must satisfy, whatever its header said."""
    assert vol.array.ndim == 3 and vol.array.size > 0
    assert all(np.isfinite(s) and s > 0 for s in vol.spacing)
    assert np.all(np.isfinite(vol.origin)) and _orthonormal(vol.direction)


# ------------------------------------------------------------------------------- NIfTI
NIFTI_FIELDS = {  # field -> values a hostile header may hold
    "pixdim": st.tuples(FLOATS, FLOATS, FLOATS),
    "quatern": st.tuples(FLOATS, FLOATS, FLOATS),
    "qform_code": st.integers(-3, 5),
    "sform_code": st.integers(-3, 5),
    "srow": st.tuples(*[st.tuples(FLOATS, FLOATS, FLOATS, FLOATS)] * 3),
    "shape": st.tuples(st.integers(1, 30), st.integers(1, 30), st.integers(1, 30)),
    "keep": st.integers(0, 30000),
}


@SETTINGS
@given(st.dictionaries(st.sampled_from(sorted(NIFTI_FIELDS)), st.none(), min_size=1, max_size=3)
       .flatmap(lambda d: st.fixed_dictionaries({k: NIFTI_FIELDS[k] for k in d})),
       st.booleans())
def test_nifti_header_mutations_load_right_or_are_refused(fields, gz):
    import nibabel as nib

    fields = dict(fields)
    if "srow" in fields:
        fields["srow"] = [list(r) for r in fields["srow"]]
    with tempfile.TemporaryDirectory() as tmp:
        p = nifti(Path(tmp) / ("m.nii.gz" if gz else "m.nii"), **fields)
        try:
            vol = load_volume(p)
        except SpineplanError:
            return
        _sane(vol)
        shape = fields.get("shape", (24, 20, 12))
        assert vol.size_ijk == tuple(shape)
        # the voxels are the stored ones (nifti() writes arange(i, j, k) % 1000 in Fortran order)
        want = (np.arange(int(np.prod(shape)), dtype=np.int16).reshape(shape) % 1000).transpose(2, 1, 0)
        assert np.array_equal(vol.array, want)
        import gzip

        with (gzip.open(p) if gz else open(p, "rb")) as fh:  # as stored, not as nibabel mends it
            hdr = nib.Nifti1Header.from_fileobj(fh, check=False)
        if int(hdr["qform_code"]) > 0 and int(hdr["sform_code"]) <= 0:
            # qform only: the grid is nibabel's qform (RAS) in LPS
            lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ hdr.get_qform()
            assert np.allclose(vol.lps_from_ijk(), lps, atol=1e-3)
        elif int(hdr["sform_code"]) <= 0:  # no orientation: said so
            assert any("no orientation" in w for w in vol.warnings)


# ------------------------------------------------------------------------------- DICOM
DICOM_EDITS = {
    "ImagePositionPatient": st.lists(FLOATS, min_size=0, max_size=4),
    "ImageOrientationPatient": st.lists(FLOATS, min_size=0, max_size=7),
    "PixelSpacing": st.lists(FLOATS, min_size=0, max_size=3),
    "SliceThickness": FLOATS,
    "Rows": st.integers(0, 70000),
    "Columns": st.integers(0, 70000),
    "BitsAllocated": st.sampled_from([0, 1, 8, 12, 16, 32, 64]),
    "PixelRepresentation": st.integers(0, 3),
    "RescaleSlope": FLOATS,
    "RescaleIntercept": FLOATS,
    "SamplesPerPixel": st.integers(0, 4),
    "NumberOfFrames": st.integers(0, 5),
}
GEOMETRY_TAGS = {"ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness"}


def _ds_value(v):
    if isinstance(v, list):
        return [f"{x:.6g}"[:16] for x in v]
    if isinstance(v, float):
        return f"{v:.6g}"[:16]
    return v


@SETTINGS
@given(tag=st.sampled_from(sorted(DICOM_EDITS)), data=st.data(),
       which=st.sampled_from(["one", "all"]), delete=st.booleans())
def test_dicom_tag_mutations_load_right_or_are_refused(tag, data, which, delete):
    value = None if delete else data.draw(DICOM_EDITS[tag])
    src = small_ct((8, 6, 4))
    with tempfile.TemporaryDirectory() as tmp:
        files = write_series(src, Path(tmp) / "s", uid_seed="prop")
        for f in (files[1:2] if which == "one" else files):
            ds = pydicom.dcmread(f)
            if delete:
                if tag in ds:
                    delattr(ds, tag)
            else:
                setattr(ds, tag, _ds_value(value))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    ds.save_as(f, enforce_file_format=False)
                except Exception:  # noqa: BLE001 - pydicom cannot write that value: not a case
                    return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vol = load_volume(Path(tmp) / "s")
        except SpineplanError:
            return
        _sane(vol)
        if tag not in GEOMETRY_TAGS and vol.size_ijk == src.size_ijk:
            # geometry untouched: the grid is the written one
            assert np.allclose(vol.lps_from_ijk(), src.lps_from_ijk(), atol=1e-3)


# ------------------------------------------------------------------------------- plans
JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | FLOATS.filter(np.isfinite)
                    | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                    max_leaves=10)


def _paths(doc, prefix=()):
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for n, v in enumerate(doc):
            out += _paths(v, prefix + (n,))
    return out


@pytest.fixture(scope="module")
def good_plan_doc():
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(json.dumps(save_plan(make_plan(), Path(tmp) / "p.json")))


@SETTINGS
@given(data=st.data(), resign=st.booleans())
def test_plan_mutations_load_valid_or_are_refused(good_plan_doc, data, resign):
    doc = copy.deepcopy(good_plan_doc)
    paths = [p for p in _paths(doc) if p != ("checksum",)]
    path = data.draw(st.sampled_from(paths))
    value = data.draw(JSON)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    changed = parent[path[-1]] != value
    parent[path[-1]] = value
    if resign:
        doc["checksum"] = compute_checksum(doc)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "m.json"
        p.write_text(json.dumps(doc))
        try:
            got = load_plan(p)
        except SpineplanError as exc:
            if changed and not resign:
                assert isinstance(exc, PlanFileError)
            return
        assert not changed or resign  # an edit without a new checksum is never accepted
        assert got["checksum"] == compute_checksum(got)
