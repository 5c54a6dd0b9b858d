"""Export label maps: NIfTI/NRRD/MHA label file and one STL surface per vertebra (LPS mm).

STL files carry LPS coordinates (DICOM/ITK convention; 3D Slicer reads STL as LPS by default);
the header says so. Only VTK filters and IO are used (no rendering).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..dicom.load import write_volume
from ..errors import InvalidInputError
from ..persistence import atomic_output_path
from ..segmentation import labels as L
from ..volume import Volume

__all__ = ["write_label_map", "label_surface_lps", "write_vertebra_stls"]


def write_label_map(labels: Volume, path: str | os.PathLike) -> Path:
    """Write the label map (uint16) as .nii.gz/.nii/.nrrd/.mha, atomically."""
    return write_volume(labels.with_array(labels.array.astype(np.uint16), modality="SEG"), path)


def label_surface_lps(labels: Volume, value: int, smooth_iterations: int = 15):
    """vtkPolyData surface of one label, in LPS mm (any grid orientation)."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkCommonTransforms import vtkTransform
    from vtkmodules.vtkFiltersCore import vtkWindowedSincPolyDataFilter
    from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D, vtkTransformFilter

    m = labels.array == value
    if not m.any():
        raise InvalidInputError(f"label {value} is not in the label map")
    idx = np.argwhere(m)
    lo = np.maximum(idx.min(0) - 1, 0)
    hi = np.minimum(idx.max(0) + 2, m.shape)
    sub = np.ascontiguousarray(m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.uint8))
    img = vtkImageData()
    img.SetDimensions(sub.shape[2], sub.shape[1], sub.shape[0])
    img.GetPointData().SetScalars(numpy_support.numpy_to_vtk(sub.ravel(), deep=True))
    fe = vtkDiscreteFlyingEdges3D()
    fe.SetInputData(img)
    fe.SetValue(0, 1)
    sm = vtkWindowedSincPolyDataFilter()
    sm.SetInputConnection(fe.GetOutputPort())
    sm.SetNumberOfIterations(smooth_iterations)
    sm.SetPassBand(0.1)
    sm.NonManifoldSmoothingOn()
    sm.NormalizeCoordinatesOn()
    t = vtkTransform()
    mat = labels.lps_from_ijk() @ np.array([[1, 0, 0, lo[2]], [0, 1, 0, lo[1]], [0, 0, 1, lo[0]], [0, 0, 0, 1.0]])
    t.SetMatrix(mat.ravel().tolist())
    tf = vtkTransformFilter()
    tf.SetInputConnection(sm.GetOutputPort())
    tf.SetTransform(t)
    if np.linalg.det(mat[:3, :3]) < 0:  # a mirrored grid (e.g. LAS file) would turn the faces inside out
        from vtkmodules.vtkFiltersCore import vtkReverseSense

        rev = vtkReverseSense()
        rev.SetInputConnection(tf.GetOutputPort())
        rev.Update()
        return rev.GetOutput()
    tf.Update()
    return tf.GetOutput()


def write_vertebra_stls(labels: Volume, folder: str | os.PathLike) -> list[Path]:
    """One STL per labelled vertebra, named by level (``L4.stl``), LPS mm."""
    from vtkmodules.vtkIOGeometry import vtkSTLWriter

    out_dir = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for v in L.craniocaudal_order(int(x) for x in np.unique(labels.array) if L.is_vertebra(int(x))):
        poly = label_surface_lps(labels, v)
        path = out_dir / f"{L.vertebra_name(v)}.stl"
        with atomic_output_path(path) as tmp:
            w = vtkSTLWriter()
            w.SetInputData(poly)
            w.SetFileName(str(tmp))
            w.SetHeader(f"spineplan {L.vertebra_name(v)} SPACE=LPS units=mm")
            w.SetFileTypeToBinary()
            if not w.Write():
                raise InvalidInputError(f"cannot write {path}")
        written.append(path)
    return written
