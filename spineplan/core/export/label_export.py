"""Export label maps: NIfTI/NRRD/MHA label file and one STL surface per vertebra (LPS mm).

STL files carry LPS coordinates (DICOM/ITK convention; 3D Slicer reads STL as LPS by default);
the header says so. The surfaces are the 3D view's (``core.meshes``) at the label map's own
resolution. Only VTK filters and IO are used (no rendering).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_output_path
from ..dicom.load import write_volume
from ..errors import InvalidInputError
from ..meshes import label_meshes_lps
from ..segmentation import labels as L
from ..volume import Volume

__all__ = ["write_label_map", "label_surface_lps", "write_vertebra_stls"]


def write_label_map(labels: Volume, path: str | os.PathLike) -> Path:
    """Write the label map (uint16) as .nii.gz/.nii/.nrrd/.mha, atomically."""
    return write_volume(labels.with_array(labels.array.astype(np.uint16, copy=False), modality="SEG"), path)


def label_surface_lps(labels: Volume, value: int):
    """vtkPolyData surface of one label at the grid's own resolution, in LPS mm (any grid
    orientation): ``meshes.label_meshes_lps`` with every triangle kept."""
    mesh = label_meshes_lps(labels, [value]).get(int(value))
    if mesh is None:
        raise InvalidInputError(f"label {value} is not in the label map")
    return mesh


def write_vertebra_stls(labels: Volume, folder: str | os.PathLike) -> list[Path]:
    """One STL per labelled vertebra, named by level (``L4.stl``), LPS mm."""
    from vtkmodules.vtkIOGeometry import vtkSTLWriter

    out_dir = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    vertebrae = L.craniocaudal_order(int(x) for x in np.unique(labels.array) if L.is_vertebra(int(x)))
    surfaces = label_meshes_lps(labels, vertebrae)
    for v in vertebrae:
        poly = surfaces[v]
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
