"""`spineplan segment` contract: JSON document, label file by extension (incl. DICOM SEG), errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spineplan import cli
from spineplan.core.dicom.load import load_volume, read_image_file, write_volume
from spineplan.core.dicom.write import write_series
from spineplan.core.phantom import make_phantom
from spineplan.core.segmentation import base
from spineplan.core.segmentation.base import SegmentationResult
from spineplan.core.segmentation.result import Flag, FlagKind


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(spacing=2.5)


class _Stub:
    """A test-only backend: returns the phantom's exact labels on the input grid."""

    name = "stub"
    modalities = ("CT",)

    def __init__(self, phantom):
        self.phantom, self.calls = phantom, 0

    def is_available(self):
        return True

    @property
    def missing_dependencies(self):
        return []

    def segment(self, volume, *, progress=None, cancel=None):
        from spineplan.core.segmentation.importers import labels_on_grid

        self.calls += 1
        lab = labels_on_grid(self.phantom.labels, volume)
        return SegmentationResult(lab, levels=["T12", "L1", "L2", "L3", "L4", "L5", "S1"],
                                  confidence={"L5": 0.9}, flags=[Flag(FlagKind.INCOMPLETE_LABELS, "stub flag")])


@pytest.fixture
def stub(phantom, monkeypatch):
    s = _Stub(phantom)
    base._load_optional()  # optional backends register now, into the real registry, not the stub's
    reg = {"stub": s}
    monkeypatch.setattr(base, "_REGISTRY", reg)
    return s


def test_json_contract_and_nifti_output(phantom, stub, tmp_path, capsys):
    write_volume(phantom.ct, tmp_path / "ct.nii.gz")
    out = tmp_path / "labels.nii.gz"
    rc = cli.main(["segment", str(tmp_path / "ct.nii.gz"), "-o", str(out), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and stub.calls == 1
    assert doc["levels"] == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert [u["level"] for u in doc["motor_units"]] == ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    for u in doc["motor_units"]:  # each unit an object with its measurements (contract)
        assert set(u) == {"level", "measurements", "implausible"} and u["implausible"] == []
        assert 5.0 <= u["measurements"]["disc_height_middle_mm"] <= 15.0
        assert abs(u["measurements"]["canal_ap_mm"] - phantom.truth["canal_ap_mm"]) <= 2.0
    assert doc["labels_file"] == str(out) and doc["seconds"] >= 0
    assert doc["confidence"] == {"L5": 0.9} and doc["flags"] == [{"kind": "incomplete_labels", "levels": [], "message": "stub flag"}]
    back = read_image_file(out)
    assert back.same_grid(phantom.labels) and np.array_equal(back.array, phantom.labels.array)


def test_dicom_source_with_dcm_output_writes_a_seg(phantom, stub, tmp_path, capsys):
    import pydicom

    from spineplan.core.segmentation.importers import read_dicom_seg

    write_series(phantom.ct, tmp_path / "dcm")
    out = tmp_path / "seg.dcm"
    rc = cli.main(["segment", str(tmp_path / "dcm"), "-o", str(out), "--backend", "stub"])
    assert rc == 0 and "stub" in capsys.readouterr().out
    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG"
    ct = load_volume(tmp_path / "dcm")
    back = read_dicom_seg(out, ct)
    assert np.array_equal(back.array, stub.segment(ct).labels.array)


@pytest.mark.parametrize("case", ["bad_ext", "missing", "unknown_backend"])
def test_bad_input_is_one_line_exit_2(phantom, stub, tmp_path, capsys, case):
    write_volume(phantom.ct, tmp_path / "ct.nii.gz")
    src, out, extra = str(tmp_path / "ct.nii.gz"), str(tmp_path / "o.nii.gz"), []
    if case == "bad_ext":
        out = str(tmp_path / "o.txt")
    elif case == "missing":
        src = str(tmp_path / "nothing_here")
    else:
        extra = ["--backend", "nope"]
    rc = cli.main(["segment", src, "-o", out, *extra])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("spineplan: error:") and err.count("\n") == 1
    assert stub.calls == 0
    if case == "unknown_backend":
        assert "stub" in err  # lists the known backends


def test_modality_from_the_values(tmp_path):
    """A NIfTI carries no modality: CT has air near -1000 HU and bone above +300, else MR."""
    from spineplan.core.modality import guess_modality

    p = make_phantom(levels=("L4", "L5"), spacing=3.0)
    assert guess_modality(p.ct) == "CT"
    mr = p.ct.with_array(np.clip(p.ct.array.astype(np.float32) + 1000.0, 0, None) / 8.0)
    assert guess_modality(mr) == "MR"


@pytest.mark.shared_data
def test_nifti_mri_without_modality_is_segmented_as_mr(shared_data, tmp_path, capsys):
    src = shared_data / "mri_lumbar_vb_dev" / "case02_mri.nii.gz"
    out = tmp_path / "labels.nii.gz"
    assert cli.main(["segment", str(src), "-o", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["backend"] == "classical-mri" and doc["modality"] == "MR" and doc["modality_assumed"]
    assert {"L1", "L5"} <= set(doc["levels"]) and out.exists()
