"""Instrument STL meshes: positions in LPS mm, read back from the written files."""

from __future__ import annotations

import numpy as np
import pytest
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkIOGeometry import vtkSTLReader

from spineplan.core.errors import PlanningError
from spineplan.core.export.instrument_stl import cage_frame_lps, write_instrument_stl

from .plan_dicts import make_plan


def read_stl_points(path) -> np.ndarray:
    r = vtkSTLReader()
    r.SetFileName(str(path))
    r.Update()
    out = r.GetOutput()
    assert out.GetNumberOfCells() > 0
    return vtk_to_numpy(out.GetPoints().GetData()).astype(float)


def _axis_coords(pts, p0, p1):
    a = (p1 - p0) / np.linalg.norm(p1 - p0)
    t = (pts - p0) @ a
    radial = np.linalg.norm((pts - p0) - np.outer(t, a), axis=1)
    return t, radial


@pytest.mark.parametrize("side", ["left", "right"])
def test_needle_axis_through_entry_and_target(tmp_path, side):
    plan = make_plan("needle", side)
    f = write_instrument_stl(plan, tmp_path / "needle.stl")
    assert f.read_bytes()[:80].startswith(b"SPACE=LPS")
    pts = read_stl_points(f)
    e, t = np.array(plan["entry_lps"]), np.array(plan["target_lps"])
    along, radial = _axis_coords(pts, e, t)
    assert np.allclose(radial, 0.75, atol=1e-3)              # 1.5 mm needle
    assert abs(along.min()) < 0.1 and abs(along.max() - np.linalg.norm(t - e)) < 0.1
    # the end caps are centred on entry and target
    ends = [pts[np.abs(along - v) < 1e-3].mean(0) for v in (0.0, np.linalg.norm(t - e))]
    assert np.linalg.norm(ends[0] - e) < 0.1 and np.linalg.norm(ends[1] - t) < 0.1
    assert (pts[:, 0].mean() > 0) == (side == "left")


def test_tube_diameter_length_and_docking(tmp_path):
    plan = make_plan("tube", "left")
    pts = read_stl_points(write_instrument_stl(plan, tmp_path / "tube.stl", binary=False))
    e, t = np.array(plan["entry_lps"]), np.array(plan["target_lps"])
    along, radial = _axis_coords(pts, t, e)                 # measured from the docking point
    assert np.allclose(radial, 9.0, atol=1e-3)              # 18 mm tube
    assert abs(along.min()) < 0.1 and abs(along.max() - 60.0) < 0.1


def test_cage_box_dimensions_along_its_axis(tmp_path):
    plan = make_plan("cage", "left")
    pts = read_stl_points(write_instrument_stl(plan, tmp_path / "cage.stl"))
    c, a, w, h, (L, W, H) = cage_frame_lps(plan)
    local = (pts - c) @ np.stack([a, w, h], axis=1)
    assert np.allclose(np.abs(local), [L / 2, W / 2, H / 2], atol=1e-3)
    assert np.allclose(c, plan["parameters"]["center_lps"])
    ax = np.array(plan["parameters"]["axis_lps"])
    assert np.isclose(a @ ax / np.linalg.norm(ax), 1.0)
    assert abs(h[2]) > 0.99                                 # height is cranio-caudal here


def test_unknown_procedure(tmp_path):
    plan = make_plan()
    plan["procedure"] = "screw"
    with pytest.raises(PlanningError):
        write_instrument_stl(plan, tmp_path / "x.stl")
    assert not list(tmp_path.iterdir())
