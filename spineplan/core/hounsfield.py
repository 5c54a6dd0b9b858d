"""CT numbers (Hounsfield units) that several modules share, each with its reason.

The CT segmenter keeps its own thresholds (``segmentation.ct``: bone at 150 HU, surfaces at
100 HU) because it works on its smoothed working grid of at least 1.5 mm, where partial volume
lowers the bone's HU, and its canal, column and disc searches were tuned there; they are not
this constant. ``modality.guess_modality`` asks a different question (does the image hold
cortex at all, well above 300 HU).
"""

from __future__ import annotations

__all__ = ["BONE_HU"]

#: A CT voxel at or above this is bone: the cortex (> 500 HU) and the dense cancellous bone of
#: an adult vertebra (150-300 HU) against soft tissue (muscle 40-60, blood 40, disc 70-110 HU).
#: On the bundled sample CT 36 % of the vertebra voxels reach it against 4 % of the 2-voxel
#: shell outside them. Used where an image (not a label map) must say "bone": the labels-fit
#: check, the planners' unlabelled bone on a path (the ilium), the rehearsal's bone surface.
#: Lower, fatty marrow and contrast-filled vessels (150-350 HU) blur into it; higher, an
#: osteoporotic vertebra's marrow is lost.
BONE_HU = 200.0
