"""Reading label maps onto an image grid (through world coordinates, never array indices)."""

from __future__ import annotations

import numpy as np

from .errors import InvalidInputError
from .volume import Volume

__all__ = ["labels_on_grid", "read_labels"]


def labels_on_grid(labels: Volume, image: Volume) -> Volume:
    """Nearest-neighbour resample of ``labels`` onto ``image``'s grid in LPS space."""
    import SimpleITK as sitk

    if labels.same_grid(image):
        return image.with_array(labels.array.astype(np.uint16), modality="SEG")
    res = sitk.Resample(labels.to_sitk(), image.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    arr = sitk.GetArrayFromImage(res).astype(np.uint16)
    if not arr.any():
        raise InvalidInputError("the label map does not overlap the image (another patient or series?)")
    return image.with_array(arr, modality="SEG")


def read_labels(paths, image: Volume) -> Volume:
    """Read one or more label files (our/VerSe or TotalSegmentator numbering, DICOM SEG) and
    merge them onto ``image``'s grid (later files win where non-zero)."""
    from .segmentation.importers import import_labels  # numbering detection, DICOM SEG, folders

    out = None
    for p in paths:
        lab = import_labels(p, image)
        if out is None:
            out = lab
        else:
            out.array = np.where(lab.array > 0, lab.array, out.array)
    if out is None:
        raise InvalidInputError("no label file given")
    return out
