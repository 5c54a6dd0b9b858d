"""Window/level presets (level, width) and automatic windows for MRI."""

from __future__ import annotations

import numpy as np

__all__ = ["CT_PRESETS", "auto_window", "mri_auto_window"]

CT_PRESETS = {
    "CT bone": (400.0, 1800.0),
    "CT spine": (250.0, 1000.0),
    "CT soft tissue": (40.0, 400.0),
}


def mri_auto_window(array: np.ndarray) -> tuple[float, float]:
    """MRI window from the 1st and 99th percentiles of the non-background voxels."""
    a = array[::4, ::4, ::4].astype(np.float32)
    fg = a[a > np.percentile(a, 5)]
    lo, hi = np.percentile(fg if fg.size else a, [1, 99])
    return float((lo + hi) / 2), float(max(hi - lo, 1.0))


def auto_window(volume) -> tuple[float, float]:
    """The default window of a volume: CT bone for CT, percentiles otherwise."""
    if volume.modality == "CT":
        return CT_PRESETS["CT bone"]
    return mri_auto_window(volume.array)
