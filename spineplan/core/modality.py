"""The modality of an image that does not say (NIfTI, NRRD, MHA carry none)."""

from __future__ import annotations

import numpy as np

from .errors import InvalidInputError
from .volume import Volume

__all__ = ["guess_modality", "settle_modality"]

AIR_HU = -500.0   # CT air is near -1000 HU (outside the body, bowel, lungs)
CORTEX_HU = 300.0  # CT cortical bone is well above this (not hounsfield.BONE_HU: is there cortex at all?)


def guess_modality(volume: Volume) -> str:
    """"CT" when the values hold air near -1000 and bone above +300 (Hounsfield units), else
    "MR" (magnitude images are never negative). Sampled, so it costs milliseconds."""
    a = np.asarray(volume.array).ravel()
    step = max(a.size // 2_000_000, 1)
    s = a[::step]
    lo, hi = np.percentile(s, [0.5, 99.9])
    return "CT" if lo <= AIR_HU and hi >= CORTEX_HU else "MR"


def settle_modality(volume: Volume, requested: str | None = None) -> str:
    """Give ``volume`` its modality: ``requested`` (``--modality``), else its own, else
    :func:`guess_modality`.

    Returns
    -------
    str
        The modality assumed from the image values, or "" when it was known or requested.

    Raises
    ------
    InvalidInputError
        ``requested`` contradicts the modality the series declares.
    """
    if requested:
        if volume.modality and volume.modality != requested:
            raise InvalidInputError(f"--modality {requested} contradicts the series ({volume.modality})")
        volume.modality = requested
        return ""
    if volume.modality:
        return ""
    volume.modality = guess_modality(volume)  # NIfTI/NRRD/MHA say nothing: judged, and said so
    return volume.modality
