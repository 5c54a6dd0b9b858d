"""Named warnings of series discovery and loading: code branches on ``kind``, never on text."""

from __future__ import annotations

import enum

__all__ = ["LoadWarningKind", "LoadWarning", "warning_kind", "MAX_MISSING_IN_A_GAP",
           "MIN_VOLUME_SLICES"]

MIN_VOLUME_SLICES = 4
"""Fewer slices than this are not a volume (a localizer, a partial transfer): warned."""

MAX_MISSING_IN_A_GAP = 2
"""Most consecutive missing slices a gap may hold: it is filled by linear interpolation between
its neighbours and warned about; a longer gap would invent anatomy never scanned (refused)."""


class LoadWarningKind(str, enum.Enum):
    """What a load warning is about."""

    MISSING_SLICES = "missing_slices"          # a slice-count gap: positions with steps missing
    NONUNIFORM_SPACING = "nonuniform_spacing"  # irregular steps, resampled
    GANTRY_TILT = "gantry_tilt"                # sheared stack, resampled onto an orthogonal grid
    DUPLICATE_POSITIONS = "duplicate_positions"
    SPLIT_SERIES = "split_series"              # one UID holding several stacks
    SLICE_SKIPPED = "slice_skipped"            # a file that could not be decoded
    TOO_FEW_SLICES = "too_few_slices"          # <= 3 slices: not a volume (dicom2nifti refuses)
    OTHER = "other"


class LoadWarning(str):
    """A warning message (a ``str``, printed as is) that carries its :class:`LoadWarningKind`."""

    kind: LoadWarningKind

    def __new__(cls, kind: LoadWarningKind, message: str) -> "LoadWarning":
        obj = super().__new__(cls, message)
        obj.kind = LoadWarningKind(kind)
        return obj

    def __reduce__(self):  # copy/pickle keep the kind
        return (LoadWarning, (self.kind, str(self)))

    def to_dict(self) -> dict:
        """``{kind, message}`` for JSON outputs."""
        return {"kind": self.kind.value, "message": str(self)}


def warning_kind(w: str) -> LoadWarningKind:
    """The kind of a warning (``OTHER`` for a plain string)."""
    return w.kind if isinstance(w, LoadWarning) else LoadWarningKind.OTHER
