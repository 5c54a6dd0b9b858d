"""Corrections of a label map as undoable commands (level shift, rename, merge)."""

from __future__ import annotations

import numpy as np

from ..commands import Command
from ..errors import SegmentationError
from . import labels as L

__all__ = ["shift_levels", "rename_label", "LabelEdit"]

_STANDARD = list(range(1, 25))  # C1..L5 in order; the sacrum stays the sacrum


def shift_levels(arr: np.ndarray, steps: int) -> np.ndarray:
    """Rename every vertebra (and its disc) ``steps`` levels caudally (+) or cranially (-).

    The most common labelling error is an off-by-one count; the sacrum keeps its label.
    """
    present = [v for v in np.unique(arr).tolist() if v in _STANDARD]
    lut = np.arange(max(int(arr.max()) + 1, 400), dtype=arr.dtype)
    for v in present:
        n = v + steps
        if not 1 <= n <= 24:
            raise SegmentationError(f"cannot shift {L.vertebra_name(v)} by {steps}: no such level")
        lut[v] = n
        if L.disc_label(v) < len(lut):
            lut[L.disc_label(v)] = L.disc_label(n)
    taken = set(lut[present].tolist())
    if L.SACRUM in taken:
        raise SegmentationError("shift would collide with the sacrum")
    return lut[arr]


def rename_label(arr: np.ndarray, old: int, new: int) -> np.ndarray:
    """Rename one label (merging into ``new`` if it exists)."""
    out = arr.copy()
    out[arr == old] = new
    return out


class LabelEdit(Command):
    """Replace the scene's label array by ``fn(array)``; undo restores the previous one.

    Only the changed voxels are kept (indices and old values), not a full copy.
    """

    def __init__(self, scene, fn, text: str):
        self.scene, self.fn, self.text = scene, fn, text
        self._idx = self._old = self._new = None

    def do(self):
        lab = self.scene.labels
        if self._idx is None:
            new = self.fn(lab.array)
            self._idx = np.flatnonzero(new != lab.array)
            self._old = lab.array.ravel()[self._idx].copy()
            self._new = new.ravel()[self._idx].copy()
        arr = lab.array.copy()
        arr.ravel()[self._idx] = self._new
        self.scene.set_labels(lab.with_array(arr, modality="SEG"))

    def undo(self):
        lab = self.scene.labels
        arr = lab.array.copy()
        arr.ravel()[self._idx] = self._old
        self.scene.set_labels(lab.with_array(arr, modality="SEG"))
