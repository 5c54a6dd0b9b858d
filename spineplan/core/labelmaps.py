"""Label maps onto an image grid (through world coordinates, never array indices).

Reading label files (numberings, DICOM SEG, folders) is ``segmentation.importers``.
"""

from __future__ import annotations

import numpy as np

from .errors import InvalidInputError
from .volume import Volume

__all__ = ["labels_on_grid"]


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
