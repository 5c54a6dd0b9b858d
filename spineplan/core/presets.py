"""Window/level presets (level, width), automatic windows for MRI, and the 3D view's
volume-rendering presets (data only: the render layer applies them)."""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass

__all__ = ["CT_PRESETS", "auto_window", "mri_auto_window", "VolumePreset", "CT_BONE_VOLUME"]

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


@dataclass(frozen=True)
class VolumePreset:
    """A volume-rendering preset: colour and opacity transfer functions over the voxel values
    (HU for CT) and the shading of the 3D view (the render layer applies it).

    Attributes
    ----------
    color : ((value, r, g, b), ...), r, g, b in 0..1
    opacity : ((value, opacity per mm), ...)
    ambient, diffuse, specular, specular_power : shading coefficients
    light_intensity : the view's headlight while the volume is shown
    """

    name: str
    color: tuple
    opacity: tuple
    ambient: float
    diffuse: float
    specular: float
    specular_power: float
    light_intensity: float


CT_BONE_SHIFT_HU = 120.0
"""How far the CT-bone ramps lie above 3D Slicer's CT-Bone preset. Slicer's opacity starts at
-16 HU, which on a CPU ray cast (no GPU, opacity per mm) fogs the view with muscle and organs;
starting at about 100 HU leaves soft tissue clear and the bone surface in front."""

CT_BONE_VOLUME = VolumePreset(
    name="CT bone",
    # 3D Slicer's CT-Bone colours (presets.xml), moved up by CT_BONE_SHIFT_HU
    color=((-3024.0, 0.0, 0.0, 0.0),
           (-16.4458 + CT_BONE_SHIFT_HU, 0.729412, 0.254902, 0.301961),
           (641.385 + CT_BONE_SHIFT_HU, 0.905882, 0.815686, 0.552941),
           (3071.0, 1.0, 1.0, 1.0)),
    # nothing below 100 HU, cancellous bone (300 HU) well visible, cortex (1000 HU) nearly opaque
    opacity=((-3024.0, 0.0), (100.0, 0.0), (300.0, 0.6), (1000.0, 0.85), (3071.0, 0.85)),
    # Slicer's CT-Bone shading is ambient 0.1, diffuse 0.9, specular 0.2, power 10; the CPU
    # ray cast's shading darkens, so more ambient and a brighter headlight make up for it
    ambient=0.35, diffuse=1.0, specular=0.2, specular_power=10.0, light_intensity=1.8)
