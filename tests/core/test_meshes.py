"""One label mesher (core/meshes.py): right place and outward faces on any grid, the same
surface on screen and in the STL export."""

import subprocess
import sys

import numpy as np
import pytest

from spineplan.core import meshes as M
from spineplan.core.export.label_export import write_vertebra_stls
from spineplan.core.phantom import make_phantom
from spineplan.core.volume import Volume

L4 = 23


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(spacing=1.5)


def _points(poly):
    from vtkmodules.util import numpy_support

    return numpy_support.vtk_to_numpy(poly.GetPoints().GetData()).astype(float)


def _signed_volume_mm3(poly):
    from vtkmodules.util import numpy_support

    pts = _points(poly)
    tri = numpy_support.vtk_to_numpy(poly.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    a, b, c = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _mirrored(lab: Volume) -> Volume:
    """The same labels stored with the i axis reversed (LAS-like: det(direction) = -1)."""
    d = lab.direction.copy()
    d[:, 0] *= -1
    origin = lab.lps_points_from_ijk((lab.size_ijk[0] - 1, 0, 0))
    return Volume(lab.array[:, :, ::-1].copy(), spacing=lab.spacing, origin=tuple(origin), direction=d)


def _label_extent_lps(grid: Volume, value: int):
    idx = np.argwhere(grid.array == value)
    lps = grid.lps_points_from_ijk(idx[:, ::-1].astype(float))
    return lps.min(0), lps.max(0)


@pytest.mark.parametrize("resolution", [
    dict(),  # the STL export's: native grid, every triangle
    dict(voxel_mm=3.0, max_triangles=M.DISPLAY_MAX_TRIANGLES),  # subsampled 2x and decimated
])
def test_mirrored_grid_mesh_lies_on_the_label_and_faces_outwards(phantom, resolution):
    lab = phantom.labels
    flipped = _mirrored(lab)
    assert np.linalg.det(flipped.direction) < 0
    voxel = max(lab.spacing) * (2 if resolution else 1)
    vox_mm3 = float(np.prod(lab.spacing)) * (lab.array == L4).sum()
    for grid in (lab, flipped):
        poly = M.label_meshes_lps(grid, [L4], **resolution)[L4]
        pts = _points(poly)
        lo, hi = _label_extent_lps(grid, L4)
        assert np.all(np.abs(pts.min(0) - lo) <= voxel), (pts.min(0), lo)
        assert np.all(np.abs(pts.max(0) - hi) <= voxel), (pts.max(0), hi)
        assert 0.7 * vox_mm3 < _signed_volume_mm3(poly) < 1.3 * vox_mm3  # outward, right size
    # the mirrored storage gives the same surface in LPS
    a = _points(M.label_meshes_lps(lab, [L4], **resolution)[L4])
    b = _points(M.label_meshes_lps(flipped, [L4], **resolution)[L4])
    assert np.allclose(a.mean(0), b.mean(0), atol=0.5)


def test_display_mesh_and_stl_are_one_surface(phantom, tmp_path):
    """On a grid at the display's voxel size, the display mesh without its triangle budget is
    the STL file's surface, point for point."""
    from vtkmodules.vtkIOGeometry import vtkSTLReader

    lab = phantom.labels
    assert np.allclose(lab.spacing, M.DISPLAY_VOXEL_MM)
    write_vertebra_stls(lab, tmp_path)
    r = vtkSTLReader()
    r.SetFileName(str(tmp_path / "L4.stl"))
    r.Update()
    stl = _points(r.GetOutput())
    display = _points(M.label_meshes_lps(lab, [L4], voxel_mm=M.DISPLAY_VOXEL_MM)[L4])
    assert len(display) == len(stl)
    assert np.allclose(np.sort(display, axis=0), np.sort(stl, axis=0), atol=1e-3)
    # with the budget: fewer triangles, the same place
    budget = M.label_meshes_lps(lab, [L4], voxel_mm=M.DISPLAY_VOXEL_MM,
                                max_triangles=M.DISPLAY_MAX_TRIANGLES)[L4]
    assert budget.GetNumberOfPolys() <= 1.1 * M.DISPLAY_MAX_TRIANGLES < r.GetOutput().GetNumberOfPolys()
    assert np.allclose(_points(budget).mean(0), stl.mean(0), atol=1.0)


def test_meshing_loads_no_vtk_rendering():
    code = (
        "import sys\n"
        "from spineplan.core.phantom import make_phantom\n"
        "from spineplan.core import meshes\n"
        "p = make_phantom(spacing=3.0)\n"
        "m = meshes.label_meshes_lps(p.labels, [23], voxel_mm=3.0, max_triangles=500)\n"
        "s = meshes.iso_surface_lps(p.ct, 200.0, voxel_mm=6.0)\n"
        "assert m[23].GetNumberOfPolys() > 0 and s.GetNumberOfPolys() > 0\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith(('vtkmodules.vtkRendering', 'PySide6')))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""
