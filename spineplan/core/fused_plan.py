"""A plan on CT bone with MRI soft tissue: the fused MRI's dural sac replaces the CT's, and
every check that rests on it says which image its structure came from.

The CT is the planning image (bone, HU); the MRI's labels are carried onto the CT grid
through the fusion transform (``registration.mri_on_ct``, nearest neighbour). Only soft
tissue the MRI shows better is taken from it (``MRI_STRUCTURES``: the dural sac, label 300);
it never overwrites the CT's bone.
"""

from __future__ import annotations

import numpy as np

from .errors import SegmentationError
from .planning.safety import CheckId
from .registration.rigid import mri_on_ct
from .registration.transform import RigidTransform
from .segmentation import labels as L
from .volume import Volume

__all__ = ["MRI_STRUCTURES", "SOURCE_CHECKS", "labels_with_mri_soft_tissue", "state_structure_sources"]

#: Label values taken from the fused MRI instead of the CT.
MRI_STRUCTURES = (L.CANAL,)
#: The checks that rest on each MRI structure.
SOURCE_CHECKS = {L.CANAL: (CheckId.DURAL_SAC_CLEARANCE,)}


def labels_with_mri_soft_tissue(ct_labels: Volume, mri_labels: Volume, transform: RigidTransform,
                                values=MRI_STRUCTURES) -> Volume:
    """The CT's label map with ``values`` (default: the dural sac) replaced by the MRI's,
    carried onto the CT grid through ``transform`` (CT LPS -> MRI LPS). CT bone and discs win
    where the two overlap."""
    moved = mri_on_ct(mri_labels, ct_labels, transform, labels=True).array
    out = ct_labels.array.astype(np.uint16, copy=True)
    for v in values:
        if not (moved == v).any():
            raise SegmentationError(f"the MRI labels have no {L.segment_name(int(v))} where the CT is")
        out[out == v] = 0
        out[(moved == v) & (out == 0)] = v
    return ct_labels.with_array(out)


def state_structure_sources(plan, sources: dict) -> None:
    """Say in each check's detail which image its structure came from.

    ``sources`` maps a label value to the image's name (e.g. ``{300: "MRI (fused)"}``);
    structures not named come from the planning image. Changes ``plan.checks`` in place.
    """
    ids = {cid.value: name for v, name in sources.items() for cid in SOURCE_CHECKS.get(v, ())}
    for c in plan.checks:
        name = ids.get(c.id)
        if name:
            struct = L.segment_name(next(v for v in sources if c.id in {x.value for x in SOURCE_CHECKS[v]}))
            c.detail = f"{c.detail} [{struct.replace('spinal canal', 'dural sac')} from the {name}]"
