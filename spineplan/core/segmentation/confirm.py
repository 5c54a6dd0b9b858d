"""The surgeon's confirmation of the level names, as an undoable scene command.

When a segmenter cannot establish the levels (``needs_confirmation``), no plan is proposed until
the user has looked at the images and confirmed the names (or corrected them and then
confirmed). The confirmation is recorded in the segmentation's evidence (anchor ``USER``,
the level checked) and so travels into the plan file and the report.
"""

from __future__ import annotations

from dataclasses import replace

from ..commands import Command
from .result import Anchor, LevelEvidence, SegmentationResult

__all__ = ["ConfirmLevels", "confirmed", "labels_file_result"]


def confirmed(result: SegmentationResult, level: str) -> SegmentationResult:
    """``result`` with its levels confirmed by the user, who checked ``level`` on the images."""
    ev = result.evidence
    evidence = LevelEvidence(Anchor.USER, dict(ev.counted), dict(ev.missed), confirmed_level=level)
    out = replace(result, evidence=evidence)
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
