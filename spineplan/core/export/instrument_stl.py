"""Instrument meshes (needle, tubular retractor, cage) from a plan dict, as STL in LPS mm.

Geometry helpers are plain numpy (used by the markups export too); VTK (sources,
filters and the STL writer only, no rendering modules) is imported when a mesh is
built. The STL header carries ``SPACE=LPS``, which 3D Slicer reads as the model's
coordinate system (Slicer also assumes LPS for STL files without it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import PlanningError
from ..atomic import atomic_output_path
from ..persistence import as_plan_dict

__all__ = ["trajectory_axis_lps", "tube_segment_lps", "cage_frame_lps", "cage_corners_lps",
           "needle_polydata", "tube_polydata", "cage_polydata", "instrument_polydata",
           "write_instrument_stl", "DEFAULT_NEEDLE_DIAMETER_MM"]

DEFAULT_NEEDLE_DIAMETER_MM = 1.5
CYLINDER_RESOLUTION = 48


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    n = np.linalg.norm(v)
    if not np.isfinite(n) or n < 1e-9:
        raise PlanningError("instrument axis has zero length (entry equals target)")
    return v / n


def trajectory_axis_lps(plan: dict) -> np.ndarray:
    """Unit vector from the skin entry to the target (LPS)."""
    return _unit(np.subtract(plan["target_lps"], plan["entry_lps"]))


def tube_segment_lps(plan: dict) -> tuple[np.ndarray, np.ndarray]:
    """(outer end, docking end) of the tube: ``length_mm`` back from the target towards the entry."""
    target = np.asarray(plan["target_lps"], float)
    axis = trajectory_axis_lps(plan)
    depth = float(np.linalg.norm(np.subtract(plan["target_lps"], plan["entry_lps"])))
    length = float(plan["parameters"].get("length_mm", depth))
    return target - length * axis, target


def cage_frame_lps(plan: dict, center_lps=None):
    """Cage centre and orthonormal frame (LPS): the one cage frame (STL, markups, rehearsal).

    Returns ``(center, axis, width_dir, height_dir, (length, width, height))``:
    ``center`` is ``center_lps`` when given (the rehearsal's cage on its way in), else
    ``parameters.center_lps``, else the target; ``axis`` is the insertion direction
    (``parameters.axis_lps``, else entry -> target), ``height_dir`` is the patient's superior
    direction made orthogonal to the axis, ``width_dir = height_dir x axis`` (right-handed).
    PlanningError when the plan does not give the cage's length, width and height.
    """
    par = plan["parameters"]
    missing = [k for k in ("length_mm", "width_mm", "height_mm") if k not in par]
    if missing:
        raise PlanningError(f"cage plan without {', '.join(missing)}: re-plan the cage")
    center = np.asarray(center_lps if center_lps is not None else
                        par.get("center_lps", plan["target_lps"]), float)
    axis = _unit(par["axis_lps"]) if "axis_lps" in par else trajectory_axis_lps(plan)
    up = np.array([0.0, 0.0, 1.0])
    if abs(axis @ up) > 0.95:  # a cage inserted cranio-caudally (never clinically): use posterior
        up = np.array([0.0, 1.0, 0.0])
    height_dir = _unit(up - (up @ axis) * axis)
    width_dir = np.cross(height_dir, axis)
    dims = (float(par["length_mm"]), float(par["width_mm"]), float(par["height_mm"]))
    return center, axis, width_dir, height_dir, dims


def cage_corners_lps(plan: dict) -> np.ndarray:
    """The 8 corners (LPS, ``(8, 3)``) of the cage box."""
    c, a, w, h, (L, W, H) = cage_frame_lps(plan)
    return np.array([c + sa * L / 2 * a + sw * W / 2 * w + sh * H / 2 * h
                     for sa in (-1, 1) for sw in (-1, 1) for sh in (-1, 1)])


def _polydata_in_frame(source, origin, x_dir, y_dir, z_dir):
    """Triangulated copy of ``source``'s output placed by a rigid frame (columns x, y, z)."""
    from vtkmodules.vtkCommonTransforms import vtkTransform
    from vtkmodules.vtkFiltersCore import vtkTriangleFilter
    from vtkmodules.vtkFiltersGeneral import vtkTransformFilter

    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x_dir, y_dir, z_dir, origin
    assert np.linalg.det(m[:3, :3]) > 0.999  # rigid, right-handed: no mirrored meshes
    tr = vtkTransform()
    tr.SetMatrix(m.ravel().tolist())
    f = vtkTransformFilter()
    f.SetInputConnection(source.GetOutputPort())
    f.SetTransform(tr)
    tri = vtkTriangleFilter()
    tri.SetInputConnection(f.GetOutputPort())
    tri.Update()
    return tri.GetOutput()


def _cylinder_polydata(p0, p1, diameter_mm: float):
    from vtkmodules.vtkFiltersSources import vtkCylinderSource

    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = _unit(p1 - p0)
    if diameter_mm <= 0:
        raise PlanningError(f"instrument diameter must be positive, got {diameter_mm}")
    src = vtkCylinderSource()  # axis along +y, centred at the origin
    src.SetHeight(float(np.linalg.norm(p1 - p0)))
    src.SetRadius(diameter_mm / 2.0)
    src.SetResolution(CYLINDER_RESOLUTION)
    src.CappingOn()
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = _unit(np.cross(axis, helper))
    e2 = np.cross(e1, axis)
    return _polydata_in_frame(src, (p0 + p1) / 2.0, e1, axis, e2)


def needle_polydata(plan: dict):
    """Needle: a cylinder of ``parameters.diameter_mm`` from the entry to the target."""
    d = float(plan["parameters"].get("diameter_mm", DEFAULT_NEEDLE_DIAMETER_MM))
    return _cylinder_polydata(plan["entry_lps"], plan["target_lps"], d)


def tube_polydata(plan: dict):
    """Tubular retractor: cylinder of ``diameter_mm`` and ``length_mm`` ending at the target."""
    par = plan["parameters"]
    d = float(par.get("diameter_mm", plan.get("incision_mm") or 0.0))
    outer, dock = tube_segment_lps(plan)
    return _cylinder_polydata(outer, dock, d)


def cage_polydata(plan: dict, center_lps=None):
    """Cage: a box length x width x height with its length along the insertion axis
    (centred at ``center_lps`` when given, see :func:`cage_frame_lps`)."""
    from vtkmodules.vtkFiltersSources import vtkCubeSource

    c, a, w, h, (L, W, H) = cage_frame_lps(plan, center_lps)
    src = vtkCubeSource()
    src.SetXLength(L)
    src.SetYLength(W)
    src.SetZLength(H)
    return _polydata_in_frame(src, c, a, w, h)


def instrument_polydata(plan: dict):
    """The plan's instrument mesh (``vtkPolyData``, LPS mm) by ``plan["procedure"]``."""
    plan = as_plan_dict(plan)
    proc = plan.get("procedure")
    if proc == "needle":
        return needle_polydata(plan)
    if proc == "tube":
        return tube_polydata(plan)
    if proc == "cage":
        return cage_polydata(plan)
    raise PlanningError(f"unknown procedure {proc!r}: expected needle, tube or cage")


def write_instrument_stl(plan: dict, path: str | os.PathLike, *, binary: bool = True) -> Path:
    """Write the plan's instrument as an STL file (LPS mm, header ``SPACE=LPS``), atomically."""
    from vtkmodules.vtkIOGeometry import vtkSTLWriter

    plan = as_plan_dict(plan)
    poly = instrument_polydata(plan)
    dest = Path(path)
    with atomic_output_path(dest) as tmp:
        w = vtkSTLWriter()
        w.SetFileName(str(tmp))
        w.SetInputData(poly)
        w.SetHeader(f"SPACE=LPS spineplan {plan['procedure']} {plan.get('level', '')} "
                    f"{plan.get('side', '')}"[:79])
        if binary:
            w.SetFileTypeToBinary()
        else:
            w.SetFileTypeToASCII()
        if w.Write() != 1:
            raise OSError(f"could not write STL {dest.name}")
    return dest
