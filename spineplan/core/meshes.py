"""Surface meshes in LPS mm: one mesher for label maps and one for CT iso-surfaces.

Used by the live 3D view and the rehearsal (display resolution, decimated) and by the STL
export (native resolution, every triangle): the same surface, at the resolution asked for.
A mesh is extracted in index space, smoothed, then mapped to LPS with the volume's full
affine, so any acquisition direction is handled; on a mirrored grid (direction matrix of
negative determinant, e.g. a LAS or RAS-stored file) the triangles are turned back so that
they face outwards. VTK filters only (no rendering modules), imported when a mesh is made.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .volume import Volume

__all__ = ["label_meshes_lps", "iso_surface_lps", "decimate", "DISPLAY_VOXEL_MM",
           "DISPLAY_MAX_TRIANGLES", "LABEL_SMOOTH_ITERATIONS"]

#: Voxel size (mm) of the label meshes shown on screen (3D view, rehearsal).
DISPLAY_VOXEL_MM = 1.5
#: Triangle budget of each label mesh on screen (software OpenGL stays interactive).
DISPLAY_MAX_TRIANGLES = 6_000
#: Windowed-sinc passes on a label surface (removes the voxel steps, keeps the shape).
LABEL_SMOOTH_ITERATIONS = 15


def _image_from_array(arr: np.ndarray):
    """vtkImageData in index space (spacing 1, origin 0) from an array indexed [k, j, i]."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData

    arr = np.ascontiguousarray(arr)
    img = vtkImageData()
    img.SetDimensions(arr.shape[2], arr.shape[1], arr.shape[0])
    img.GetPointData().SetScalars(numpy_support.numpy_to_vtk(arr.ravel(order="C"), deep=True))
    return img


def _lps_from_index(vol: Volume, offset_ijk=(0, 0, 0), stride=(1, 1, 1)) -> np.ndarray:
    """4x4 affine from the (strided, offset) index space of ``vol`` to LPS mm."""
    return vol.lps_from_ijk() @ np.array([[stride[0], 0, 0, offset_ijk[0]],
                                          [0, stride[1], 0, offset_ijk[1]],
                                          [0, 0, stride[2], offset_ijk[2]],
                                          [0, 0, 0, 1]], float)


def _finish(poly, lps_from_index: np.ndarray, smooth_iterations: int):
    """Smooth (index space), map to LPS, face outwards on mirrored grids, add normals."""
    from vtkmodules.vtkCommonDataModel import vtkPolyData
    from vtkmodules.vtkCommonTransforms import vtkTransform
    from vtkmodules.vtkFiltersCore import (vtkPolyDataNormals, vtkReverseSense,
                                           vtkWindowedSincPolyDataFilter)
    from vtkmodules.vtkFiltersGeneral import vtkTransformFilter

    src = poly
    if smooth_iterations and poly.GetNumberOfPoints() > 0:
        sm = vtkWindowedSincPolyDataFilter()
        sm.SetInputData(poly)
        sm.SetNumberOfIterations(smooth_iterations)
        sm.SetPassBand(0.1)
        sm.NonManifoldSmoothingOn()
        sm.NormalizeCoordinatesOn()
        sm.Update()
        src = sm.GetOutput()
    t = vtkTransform()
    t.SetMatrix(lps_from_index.ravel().tolist())
    tf = vtkTransformFilter()
    tf.SetInputData(src)
    tf.SetTransform(t)
    last = tf
    if np.linalg.det(lps_from_index[:3, :3]) < 0:  # a mirror turns the faces inside out
        rev = vtkReverseSense()
        rev.SetInputConnection(tf.GetOutputPort())
        last = rev
    nm = vtkPolyDataNormals()
    nm.SetInputConnection(last.GetOutputPort())
    nm.SplittingOff()
    nm.ConsistencyOn()
    nm.Update()
    out = vtkPolyData()
    out.DeepCopy(nm.GetOutput())
    return out


def _strides(vol: Volume, voxel_mm: float | None) -> tuple[int, int, int]:
    """(i, j, k) strides that bring the grid to about ``voxel_mm`` (1 = native)."""
    if voxel_mm is None:
        return (1, 1, 1)
    return tuple(max(1, int(round(voxel_mm / s))) for s in vol.spacing)


def decimate(poly, max_triangles: int | None):
    """Reduce a mesh to at most about ``max_triangles`` (fast quadric clustering).

    Clustering cells start at the mesh's mean edge scale and grow until the budget is met;
    a no-op when the mesh is already small enough or ``max_triangles`` is None.
    """
    from vtkmodules.vtkCommonDataModel import vtkPolyData
    from vtkmodules.vtkFiltersCore import vtkQuadricClustering

    n = poly.GetNumberOfPolys()
    if max_triangles is None or n <= max_triangles or n == 0:
        return poly
    b = np.array(poly.GetBounds(), float).reshape(3, 2)
    ext = np.maximum(b[:, 1] - b[:, 0], 1e-3)  # index units (the mesh is not yet in LPS)
    # iso-surfaces in index space have edges of about one unit: clustering on cells of
    # sqrt(n / budget) units keeps about the budget
    cell = 1.2 * float(np.sqrt(n / max_triangles))
    out = poly
    for _ in range(6):
        q = vtkQuadricClustering()
        q.SetInputData(poly)
        q.SetNumberOfDivisions(*[max(2, int(np.ceil(e / cell))) for e in ext])
        q.AutoAdjustNumberOfDivisionsOff()
        q.Update()
        out = q.GetOutput()
        if out.GetNumberOfPolys() <= max_triangles:
            break
        cell *= 1.3
    res = vtkPolyData()
    res.DeepCopy(out)
    return res


def label_meshes_lps(labels: Volume, values: Sequence[int] | None = None, *,
                     voxel_mm: float | None = None, max_triangles: int | None = None,
                     smooth_iterations: int = LABEL_SMOOTH_ITERATIONS) -> dict[int, object]:
    """Smoothed closed surface (vtkPolyData, LPS mm, outward faces) of each label present.

    Parameters
    ----------
    labels : Volume
        Label map on any grid (mirrored ones included).
    values : sequence of int, optional
        The labels to mesh (default: every non-zero value present).
    voxel_mm : float, optional
        Mesh on the grid subsampled to about this voxel size (None: the native grid).
        The display uses :data:`DISPLAY_VOXEL_MM`.
    max_triangles : int, optional
        Decimate each mesh to about this many triangles (None: keep them all).
    smooth_iterations : int
        Windowed-sinc smoothing passes (0: the voxel-step surface).

    Returns
    -------
    dict
        ``{label: vtkPolyData}``; each label is meshed on its own bounding box, padded so
        that the surface closes at the edge of the scan.
    """
    from scipy import ndimage
    from vtkmodules.vtkFiltersCore import vtkFlyingEdges3D

    si, sj, sk = _strides(labels, voxel_mm)
    arr = labels.array[::sk, ::sj, ::si]
    if not np.issubdtype(arr.dtype, np.integer):
        arr = np.rint(arr).astype(np.int32)
    present = [int(v) for v in np.unique(arr) if v > 0]
    if values is not None:
        wanted = {int(x) for x in values}
        present = [v for v in present if v in wanted]
    out: dict[int, object] = {}
    if not present:
        return out
    boxes = ndimage.find_objects(arr, max_label=max(present))
    for v in present:
        if boxes[v - 1] is None:
            continue
        sl = boxes[v - 1]
        sub = arr[sl] == v
        mask = np.zeros(tuple(n + 2 for n in sub.shape), np.uint8)  # one empty voxel around
        mask[1:-1, 1:-1, 1:-1] = sub
        fe = vtkFlyingEdges3D()
        fe.SetInputData(_image_from_array(mask))
        fe.SetValue(0, 0.5)
        fe.ComputeNormalsOff()
        fe.Update()
        off = ((sl[2].start - 1) * si, (sl[1].start - 1) * sj, (sl[0].start - 1) * sk)
        out[v] = _finish(decimate(fe.GetOutput(), max_triangles),
                         _lps_from_index(labels, off, (si, sj, sk)), smooth_iterations)
    return out


def iso_surface_lps(ct: Volume, hu: float, voxel_mm: float | None = 3.0,
                    smooth_iterations: int = 8, outer_only: bool = False,
                    max_triangles: int | None = 40_000):
    """Iso-surface of a CT at ``hu`` (vtkPolyData, LPS mm), on the grid subsampled to about
    ``voxel_mm``.

    With ``outer_only`` only the outer envelope is kept: the largest connected region above
    ``hu`` with its cavities filled (no bowel gas, lungs or organ boundaries inside), which is
    what the skin and the soft-tissue hull need. Decimated to ``max_triangles``.
    """
    from vtkmodules.vtkFiltersCore import vtkFlyingEdges3D

    si, sj, sk = _strides(ct, voxel_mm)
    arr = np.asarray(ct.array[::sk, ::sj, ::si], dtype=np.float32)
    level = float(hu)
    if outer_only:
        from scipy import ndimage

        mask = arr > hu
        lab, n = ndimage.label(mask)
        if n > 1:
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            mask = lab == int(np.argmax(sizes))
        mask = ndimage.binary_fill_holes(mask)
        # also fill cavities open at the scan's cranial/caudal ends: slice by slice along
        # the array axis closest to the patient's head-feet axis
        ax = int(np.argmax(np.abs(ct.direction[2, :])))  # 0 = i, 1 = j, 2 = k
        np_axis = 2 - ax
        mask = np.stack([ndimage.binary_fill_holes(m) for m in np.moveaxis(mask, np_axis, 0)], 0)
        mask = np.moveaxis(mask, 0, np_axis)
        arr = ndimage.gaussian_filter(mask.astype(np.float32), 0.7)
        level = 0.5
    # pad so the surface closes at the edges of the scan
    arr = np.pad(arr, 1, constant_values=min(float(arr.min()), level - 1000.0))
    fe = vtkFlyingEdges3D()
    fe.SetInputData(_image_from_array(arr))
    fe.SetValue(0, level)
    fe.ComputeNormalsOff()
    fe.ComputeScalarsOff()
    fe.Update()
    poly = decimate(fe.GetOutput(), max_triangles)
    return _finish(poly, _lps_from_index(ct, (-si, -sj, -sk), (si, sj, sk)), smooth_iterations)
