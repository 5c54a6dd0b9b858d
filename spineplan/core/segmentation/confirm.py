"""The surgeon's confirmation of the level names, as an undoable scene command.

When a segmenter cannot establish the levels (``needs_confirmation``), no plan is proposed until
the user has looked at the images and confirmed the names (or corrected them and then
confirmed). The confirmation is recorded in the segmentation's evidence (anchor ``USER``,
the level checked) and so travels into the plan file and the report.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..commands import Command
from .result import Anchor, LevelEvidence, SegmentationResult

__all__ = ["ConfirmLevels", "NameVertebra", "confirmed", "labels_file_result"]


def confirmed(result: SegmentationResult, level: str, levels: list[str] | None = None) -> SegmentationResult:
    """``result`` with its levels confirmed by the user, who checked ``level`` on the images
    (``levels``: the names after a correction, when the user renamed them)."""
    ev = result.evidence
    evidence = LevelEvidence(Anchor.USER, dict(ev.counted), dict(ev.missed), confirmed_level=level)
    out = replace(result, evidence=evidence)
    if levels is not None and list(levels) != list(result.levels):
        # the segmenter's per-level confidences belonged to the old names
        out = replace(out, levels=list(levels), confidence={lv: 1.0 for lv in levels})
    out.extra = dict(result.extra, confirmed_from=ev.anchor.value)
    return out


def labels_file_result(levels: list[str]) -> SegmentationResult:
    """The level status of a label map the user loaded: its names are the file's."""
    return SegmentationResult(None, levels=list(levels), confidence={lv: 1.0 for lv in levels},
                              evidence=LevelEvidence(Anchor.LABELS_FILE), backend="labels file")


class ConfirmLevels(Command):
    """Confirm the scene's level names (undo restores the unconfirmed status)."""

    def __init__(self, scene, level: str) -> None:
        if scene.segmentation is None:
            raise ValueError("no segmentation to confirm")
        self.scene, self.level = scene, level
        self.old = scene.segmentation
        self.text = f"Confirm levels ({level})"

    def do(self) -> None:
        self.scene.set_segmentation(confirmed(self.old, self.level))

    def undo(self) -> None:
        self.scene.set_segmentation(self.old)


class NameVertebra(Command):
    """The surgeon names one vertebra on the images: every vertebra and disc is renamed by
    counting from it, and the levels count as confirmed by the user (one undo step)."""

    edits_labels = True  # dropped from the history when the scene gets a new label map

    def __init__(self, scene, label: int, name: str) -> None:
        from . import labels as L
        from .edit import LabelEdit, renamed_from_one

        if scene.labels is None:
            raise ValueError("no label map to rename")
        res = scene.segmentation
        keep = res is not None and res.evidence.anchor in (Anchor.SACRUM, Anchor.SACRUM_AND_RIBS)
        arr = scene.labels.array
        renamed_from_one(arr, label, name, keep_sacrum=keep)  # refuses here, before any change
        self.scene, self.name, self.old = scene, name, res
        self.edit = LabelEdit(scene, lambda a: renamed_from_one(a, label, name, keep_sacrum=keep),
                              f"Name {L.vertebra_name(label)} {name}")
        self.text = self.edit.text

    def do(self) -> None:
        from . import labels as L

        self.edit.do()
        if self.old is not None:
            present = [int(v) for v in np.unique(self.scene.labels.array) if L.is_vertebra(int(v))]
            levels = [L.vertebra_name(v) for v in L.craniocaudal_order(present)]
            self.scene.set_segmentation(confirmed(self.old, self.name, levels))

    def undo(self) -> None:
        self.edit.undo()
        if self.old is not None:
            self.scene.set_segmentation(self.old)
