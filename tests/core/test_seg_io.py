"""Label import (TotalSegmentator numbering, mask folders, other grids), export (label map,
STL per vertebra), corrections with undo, the TotalSegmentator backend and `segment` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from spineplan.core.dicom.load import read_image_file, write_volume
from spineplan.core.errors import SegmentationError
from spineplan.core.export.label_export import label_surface_lps, write_label_map, write_vertebra_stls
from spineplan.core.phantom import make_phantom
from spineplan.core.scene import Scene
from spineplan.core.segmentation import labels as L
from spineplan.core.segmentation.base import get
from spineplan.core.segmentation.edit import (LabelEdit, merge_labels, paint_sphere, shift_levels,
                                              split_label_at_plane)
from spineplan.core.segmentation.importers import TOTALSEG_TO_VERSE, import_labels


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(spacing=2.0)


def _to_totalseg(arr):
    inv = {v: k for k, v in TOTALSEG_TO_VERSE.items() if k != 25 and k != 79}
    out = np.zeros_like(arr)
    for v, ts in inv.items():
        out[arr == v] = ts
    return out


def test_totalsegmentator_numbering_import(phantom, tmp_path):
    vert = np.where(np.isin(phantom.labels.array, list(L.VERTEBRA_NAMES)), phantom.labels.array, 0)
    ts = phantom.labels.with_array(_to_totalseg(vert).astype(np.uint8))
    assert set(np.unique(ts.array)) >= {26, 27, 28, 32}  # S1, L5, L4, T12 in TotalSegmentator numbers
    write_volume(ts, tmp_path / "ts.nii.gz")
    back = import_labels(tmp_path / "ts.nii.gz", phantom.ct)
    assert np.array_equal(back.array, vert)


def test_totalsegmentator_mask_folder(phantom, tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    for v, name in ((23, "vertebrae_L4"), (24, "vertebrae_L5"), (26, "vertebrae_S1")):
        write_volume(phantom.labels.with_array((phantom.labels.array == v).astype(np.uint8)), folder / f"{name}.nii.gz")
    back = import_labels(folder, phantom.ct)
    for v in (23, 24, 26):
        assert np.array_equal(back.array == v, phantom.labels.array == v)


def test_labels_on_another_grid_line_up_through_world_coordinates(phantom, tmp_path):
    # the same labels stored with the j axis reversed (LAS-like): must land in the same place
    lab = phantom.labels
    d = lab.direction.copy()
    d[:, 1] *= -1
    origin = lab.lps_points_from_ijk((0, lab.size_ijk[1] - 1, 0))
    from spineplan.core.volume import Volume

    flipped = Volume(lab.array[:, ::-1, :].copy(), spacing=lab.spacing, origin=tuple(origin), direction=d)
    write_volume(flipped, tmp_path / "flipped.nii.gz")
    back = import_labels(tmp_path / "flipped.nii.gz", phantom.ct, numbering="verse")
    assert np.array_equal(back.array, lab.array)


def test_real_dicom_labels_las_vs_lps(shared_data):
    from spineplan.core.dicom.load import load_volume

    d = shared_data / "ct_lumbar_totalseg"
    ct = load_volume(d / "example_ct_dicom")
    raw = read_image_file(d / "example_ct_dicom_vertebrae_verse.nii.gz")
    assert raw.orientation() != ct.orientation()  # stored mirrored (LAS vs LPS)
    lab = import_labels(d / "example_ct_dicom_vertebrae_verse.nii.gz", ct)
    assert ct.array[lab.array == 19].mean() > 150  # T12 is bone
    for v in (18, 19):  # same world position per vertebra, and not the index-wise copy
        c_raw = raw.lps_points_from_ijk(np.argwhere(raw.array == v)[:, ::-1].astype(float)).mean(0)
        c_imp = lab.lps_points_from_ijk(np.argwhere(lab.array == v)[:, ::-1].astype(float)).mean(0)
        assert np.linalg.norm(c_raw - c_imp) < 1.0
        assert (lab.array == v).sum() == (raw.array == v).sum()
    assert not np.array_equal(lab.array, raw.array)


def test_label_map_round_trip_and_stls(phantom, tmp_path):
    write_label_map(phantom.labels, tmp_path / "l.nii.gz")
    back = read_image_file(tmp_path / "l.nii.gz")
    assert np.array_equal(back.array, phantom.labels.array)
    assert np.allclose(back.lps_from_ijk(), phantom.labels.lps_from_ijk())
    files = write_vertebra_stls(phantom.labels, tmp_path / "stl")
    assert [f.stem for f in files] == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    poly = label_surface_lps(phantom.labels, 23)
    b = np.array(poly.GetBounds()).reshape(3, 2)
    idx = np.argwhere(phantom.labels.array == 23)
    lps = phantom.labels.lps_points_from_ijk(idx[:, ::-1].astype(float))
    assert np.all(np.abs(b[:, 0] - lps.min(0)) <= 2.5) and np.all(np.abs(b[:, 1] - lps.max(0)) <= 2.5)
    from vtkmodules.vtkIOGeometry import vtkSTLReader

    r = vtkSTLReader()
    r.SetFileName(str(tmp_path / "stl" / "L4.stl"))
    r.Update()
    assert np.allclose(r.GetOutput().GetBounds(), poly.GetBounds(), atol=1e-3)


def test_level_shift_and_undo(phantom):
    scene = Scene()
    scene.set_volume(phantom.ct)
    scene.set_labels(phantom.labels)
    before = phantom.labels.array.copy()
    scene.undo_stack.push(LabelEdit(scene, lambda a: shift_levels(a, -1), "shift up"))
    a = scene.labels.array
    assert (a == 22).sum() == (before == 23).sum() and (a == 122).sum() == (before == 123).sum()
    assert (a == L.SACRUM).sum() == (before == L.SACRUM).sum()
    scene.undo_stack.undo()
    assert np.array_equal(scene.labels.array, before)
    with pytest.raises(SegmentationError):
        shift_levels(before, 1)  # L5 has no standard level below it (L6 is set by hand)


def test_merge_split_and_paint_stroke_is_one_undo_step(phantom):
    lab = phantom.labels
    merged = merge_labels(lab.array, 23, 24)
    assert not (merged == 24).any() and (merged == 23).sum() == ((lab.array == 23) | (lab.array == 24)).sum()
    c = np.array(phantom.truth["vertebrae"]["L3"]["center_lps"])
    split = split_label_at_plane(lab.array, lab, 22, c, [0, 0, 1.0], 21)
    assert (split == 22).sum() > 0 and (split == 21).sum() > (lab.array == 21).sum()
    scene = Scene()
    scene.set_volume(phantom.ct)
    scene.set_labels(lab)
    before = lab.array.copy()
    for dx in (0.0, 4.0, 8.0):  # one stroke = three dabs
        scene.undo_stack.push(LabelEdit(scene, lambda a, dx=dx: paint_sphere(a, lab, c + [dx, 0, 0], 4.0, 0),
                                        "erase", merge_id="stroke"))
    scene.undo_stack.end_merge()
    assert (scene.labels.array != before).sum() > 0 and len(scene.undo_stack) == 1
    scene.undo_stack.undo()
    assert np.array_equal(scene.labels.array, before)


def test_totalsegmentator_backend_reports_unavailable_and_runs_when_present(phantom, tmp_path, monkeypatch):
    ts = get("totalsegmentator")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert not ts.is_available() and "not on PATH" in ts.missing_dependencies[0]
    # a stand-in executable that writes a TotalSegmentator-numbered map of the phantom
    vert = np.where(np.isin(phantom.labels.array, list(L.VERTEBRA_NAMES)), phantom.labels.array, 0)
    write_volume(phantom.labels.with_array(_to_totalseg(vert).astype(np.uint8)), tmp_path / "answer.nii.gz")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "TotalSegmentator"
    exe.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import shutil, sys
        out = sys.argv[sys.argv.index("-o") + 1]
        print("fake TotalSegmentator running")
        shutil.copyfile({str(tmp_path / 'answer.nii.gz')!r}, out)
        """))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "tshome"))
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    assert not ts.is_available() and "weights" in ts.missing_dependencies[0]
    (tmp_path / "tshome" / "nnunet" / "results" / "Dataset297_TotalSegmentator_total_3mm").mkdir(parents=True)
    assert ts.is_available()
    lines = []
    res = ts.segment(phantom.ct, log=lines.append)
    assert np.array_equal(res.labels.array, vert) and lines == ["fake TotalSegmentator running"]
    assert res.levels == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    # the CLI with that backend: JSON contract
    write_volume(phantom.ct, tmp_path / "ct.nii.gz")
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "spineplan", "segment", str(tmp_path / "ct.nii.gz"), "-o",
                        str(tmp_path / "out.nii.gz"), "--backend", "totalsegmentator", "--json"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["levels"][-1] == "S1" and doc["labels_file"].endswith("out.nii.gz")
    assert set(doc) >= {"levels", "motor_units", "seconds", "labels_file"}


def test_segment_cli_without_segmenter_is_clear_error(tmp_path, phantom, monkeypatch):
    # an image without a modality and without air: taken for an MR (said so), which the MRI
    # segmenter refuses: a one-line reason naming --modality and --labels, exit 2
    mr = phantom.ct.with_array(np.clip(phantom.ct.array, 0, 400).astype(np.int16))
    write_volume(mr, tmp_path / "ct.nii.gz")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))
    r = subprocess.run([sys.executable, "-m", "spineplan", "segment", str(tmp_path / "ct.nii.gz"), "-o",
                        str(tmp_path / "o.nii.gz")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.startswith("spineplan: error:") and "--labels" in r.stderr
    assert "--modality" in r.stderr and "assumed" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_dicom_seg_round_trip_on_the_sample_series(sample_dicom, tmp_path):
    from spineplan.core.dicom.load import load_volume
    from spineplan.core.export.dicom_seg import write_dicom_seg
    from spineplan.core.segmentation.importers import read_dicom_seg

    ct = load_volume(sample_dicom)
    ref = sample_dicom / "reference"
    lab = import_labels(ref / "vertebrae_verse.nii.gz", ct)
    discs = import_labels(ref / "discs_verse.nii.gz", ct)
    lab.array = np.where(discs.array > 0, discs.array, lab.array)
    files = sorted(sample_dicom.glob("*.dcm"))
    out = write_dicom_seg(lab, files, tmp_path / "seg.dcm")
    import pydicom

    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG"
    names = {str(s.SegmentLabel) for s in ds.SegmentSequence}
    assert {"L4", "L4/L5", "S1"} <= names
    refd = {str(r.ReferencedSOPInstanceUID) for s in ds.ReferencedSeriesSequence
            for r in s.ReferencedInstanceSequence}
    assert refd == {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    back = read_dicom_seg(out, ct)
    assert np.array_equal(back.array, lab.array)
    assert np.array_equal(import_labels(out, ct).array, lab.array)  # the generic importer too


def test_totalsegmentator_cancel_kills_a_silent_process(phantom, tmp_path, monkeypatch):
    import time

    from spineplan.core.tasks import Cancelled

    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "TotalSegmentator"
    exe.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "tshome"))
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    (tmp_path / "tshome" / "nnunet" / "results" / "Dataset297_x").mkdir(parents=True)
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        get("totalsegmentator").segment(phantom.ct, cancel=lambda: time.monotonic() - t0 > 0.5)
    assert time.monotonic() - t0 < 10  # killed, not waited for


def _signed_volume_mm3(poly):
    from vtkmodules.util import numpy_support

    pts = numpy_support.vtk_to_numpy(poly.GetPoints().GetData()).astype(float)
    tri = numpy_support.vtk_to_numpy(poly.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    a, b, c = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def test_stl_faces_point_outward_on_mirrored_grids(phantom):
    from spineplan.core.volume import Volume

    lab = phantom.labels
    d = lab.direction.copy()
    d[:, 0] *= -1  # LAS-like storage of the same labels
    origin = lab.lps_points_from_ijk((lab.size_ijk[0] - 1, 0, 0))
    flipped = Volume(lab.array[:, :, ::-1].copy(), spacing=lab.spacing, origin=tuple(origin), direction=d)
    vox_mm3 = float(np.prod(lab.spacing)) * (lab.array == 23).sum()
    for grid in (lab, flipped):
        poly = label_surface_lps(grid, 23)
        v = _signed_volume_mm3(poly)
        assert 0.7 * vox_mm3 < v < 1.3 * vox_mm3  # outward winding, about the voxel volume
        b = np.array(poly.GetBounds()).reshape(3, 2)
        idx = np.argwhere(grid.array == 23)
        lps = grid.lps_points_from_ijk(idx[:, ::-1].astype(float))
        assert np.all(np.abs(b[:, 0] - lps.min(0)) <= max(lab.spacing))
        assert np.all(np.abs(b[:, 1] - lps.max(0)) <= max(lab.spacing))


def test_full_totalsegmentator_map_with_organs_and_ribs_is_not_read_as_verse(phantom, tmp_path):
    from spineplan.core.errors import InvalidInputError

    lab = phantom.labels
    vert = np.where(np.isin(lab.array, list(L.VERTEBRA_NAMES)), lab.array, 0)
    ts = _to_totalseg(vert).astype(np.uint8)
    free = ts == 0
    ts[:, :3, :][free[:, :3, :]] = 5      # liver (organ at 1..24)
    ts[:, -3:, :][free[:, -3:, :]] = 104  # a rib
    ts[:2][free[:2]] = 51                 # heart
    write_volume(lab.with_array(ts), tmp_path / "total.nii.gz")
    back = import_labels(tmp_path / "total.nii.gz", phantom.ct)
    assert np.array_equal(back.array, vert)
    # VerSe file with a foreign value: kept labels exact, the foreign one reported and dropped
    odd = lab.array.copy()
    odd[0, 0, 0] = 27
    write_volume(lab.with_array(odd), tmp_path / "verse.nii.gz")
    back = import_labels(tmp_path / "verse.nii.gz", phantom.ct)
    exp = lab.array.copy()
    exp[0, 0, 0] = 0
    assert np.array_equal(back.array, exp) and any("27" in w for w in back.warnings)
    write_volume(lab.with_array(np.full_like(lab.array, 27)), tmp_path / "none.nii.gz")
    with pytest.raises(InvalidInputError):
        import_labels(tmp_path / "none.nii.gz", phantom.ct)


def test_read_labels_detects_totalsegmentator_numbering(phantom, tmp_path):
    """`plan --labels` and the GUI read label files through the importer: a TotalSegmentator
    map is renumbered, not taken for our numbering (which would mislabel every level)."""
    from spineplan.core.segmentation.importers import read_labels

    vert = np.where(np.isin(phantom.labels.array, list(L.VERTEBRA_NAMES)), phantom.labels.array, 0)
    write_volume(phantom.labels.with_array(_to_totalseg(vert).astype(np.uint8)), tmp_path / "ts.nii.gz")
    assert np.array_equal(read_labels([tmp_path / "ts.nii.gz"], phantom.ct).array, vert)
