"""The fusion state of a case (the second series and its transform) and its undoable edits.

:class:`Fusion` is an evented model: views subscribe to ``fusion.changed`` and redraw; the
model never calls a view. Every change of the transform is a command on the scene's undo
stack (:func:`nudge_command`, :func:`registration_command`, :func:`reset_command`). The case
file stores :meth:`Fusion.to_record` under ``"fusion"`` (versioned by ``record_version``).
"""

from __future__ import annotations

from typing import Any

from ..commands import Command
from ..errors import InvalidInputError
from ..events import Signal
from ..volume import Volume, source_from_volume
from .rigid import RegistrationResult
from .transform import RigidTransform

__all__ = ["Fusion", "FusionDisplay", "TransformCommand", "nudge_command", "registration_command",
           "reset_command", "FUSION_RECORD_VERSION", "transform_from_record", "validate_fusion_record"]

FUSION_RECORD_VERSION = 1
#: Display modes of the fused 2D views.
FusionDisplay = ("blend", "checkerboard", "colour")


class Fusion:
    """The MRI of a case and its transform (CT LPS -> MRI LPS).

    Events: ``changed(fusion)`` after any change of the MRI, transform or display.
    """

    def __init__(self) -> None:
        self.changed = Signal("fusion")
        self.mri: Volume | None = None
        self.transform: RigidTransform | None = None
        self.result: RegistrationResult | None = None
        self.level: str | None = None
        self.opacity: float = 0.5
        self.display: str = "blend"
        self.checker_mm: float = 20.0
        self.window: tuple[float, float] = (0.5, 1.0)  # (level, width) of the MRI's grey

    @staticmethod
    def display_window(mri: Volume) -> tuple[float, float]:
        """(level, width) of the MRI display: its 1st to 99.5th percentile (of a sample)."""
        import numpy as np

        a = mri.array.ravel()[:: max(1, mri.array.size // 200000)]
        lo, hi = np.percentile(a, [1.0, 99.5])
        return float((lo + hi) / 2), float(max(hi - lo, 1e-6))

    @property
    def active(self) -> bool:
        return self.mri is not None and self.transform is not None

    def set_mri(self, mri: Volume | None, transform: RigidTransform | None = None) -> None:
        """A new second series (identity transform until registered)."""
        self.mri = mri
        if mri is not None:
            self.window = self.display_window(mri)
        self.transform = None if mri is None else (transform or RigidTransform.identity())
        self.result = None
        self.changed.emit(self)

    def set_transform(self, transform: RigidTransform, result: RegistrationResult | None = None) -> None:
        self.transform = transform
        if result is not None:
            self.result = result
            self.level = result.level
        self.changed.emit(self)

    def set_display(self, display: str | None = None, opacity: float | None = None) -> None:
        """Blend / checkerboard / colour, and the MRI's opacity (0-1). A view setting: not undone."""
        if display is not None:
            if display not in FusionDisplay:
                raise ValueError(display)
            self.display = display
        if opacity is not None:
            self.opacity = float(min(max(opacity, 0.0), 1.0))
        self.changed.emit(self)

    def to_record(self) -> dict | None:
        """The case file's ``fusion`` record (None without a second series)."""
        if not self.active:
            return None
        rec: dict[str, Any] = {"record_version": FUSION_RECORD_VERSION,
                               "transform": self.transform.to_dict(),
                               "level": self.level, "mri_source": source_from_volume(self.mri)}
        if self.result is not None:
            q = self.result.to_dict()
            rec["quality"] = {k: q[k] for k in ("residual_mm", "local_correction_mm", "dice", "mean_dice",
                                                "metric_global", "metric_local")}
        return rec


def validate_fusion_record(rec: Any) -> None:
    """Raise InvalidInputError unless ``rec`` is a fusion record this version reads."""
    if not isinstance(rec, dict):
        raise InvalidInputError("fusion must be an object")
    v = rec.get("record_version")
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise InvalidInputError("fusion: record_version must be a positive integer")
    if v > FUSION_RECORD_VERSION:
        raise InvalidInputError(f"fusion record version {v} is newer than this spineplan reads "
                                f"({FUSION_RECORD_VERSION}): update spineplan")
    RigidTransform.from_dict(rec.get("transform"))


def transform_from_record(rec: dict) -> RigidTransform:
    """The transform of a (validated) fusion record."""
    validate_fusion_record(rec)
    return RigidTransform.from_dict(rec["transform"])


class TransformCommand(Command):
    """Set the fusion's transform (and its registration result), undoably."""

    def __init__(self, fusion: Fusion, transform: RigidTransform, text: str,
                 result: RegistrationResult | None = None, merge_id: Any = None) -> None:
        self.fusion, self.new, self.new_result = fusion, transform, result
        self.old, self.old_result = fusion.transform, fusion.result
        self.text, self.merge_id = text, merge_id

    def do(self) -> None:
        self.fusion.result = self.new_result if self.new_result is not None else self.fusion.result
        self.fusion.set_transform(self.new)

    def undo(self) -> None:
        self.fusion.result = self.old_result
        self.fusion.set_transform(self.old)

    def merge(self, other: Command) -> bool:
        if isinstance(other, TransformCommand) and other.fusion is self.fusion:
            self.new, self.new_result = other.new, other.new_result or self.new_result
            return True
        return False


def nudge_command(fusion: Fusion, translation_mm=(0.0, 0.0, 0.0), rotation_deg=(0.0, 0.0, 0.0),
                  center_lps=None) -> TransformCommand:
    """A manual nudge of the MRI on the CT (LPS mm / degrees about ``center_lps``)."""
    t = fusion.transform or RigidTransform.identity()
    if center_lps is not None:
        t = t.with_center(center_lps)
    return TransformCommand(fusion, t.nudged(translation_mm, rotation_deg), "Nudge fusion")


def registration_command(fusion: Fusion, result: RegistrationResult) -> TransformCommand:
    """Apply a (new) registration result: "Register again" is undoable."""
    return TransformCommand(fusion, result.transform, "Register MRI to CT", result=result)


def reset_command(fusion: Fusion) -> TransformCommand:
    """Back to the scanners' own coordinates (identity)."""
    c = fusion.transform.center_lps if fusion.transform is not None else (0.0, 0.0, 0.0)
    return TransformCommand(fusion, RigidTransform.identity(c), "Reset registration")
