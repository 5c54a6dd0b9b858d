"""The modality of an image that does not say (NIfTI, NRRD, MHA carry none)."""

from __future__ import annotations

import numpy as np

from .volume import Volume

__all__ = ["guess_modality"]

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
