"""The evented model of one open case.

Holds the volume, the label map, motor units, the clinical case, plans and
annotations (measurements). Views subscribe to ``scene.events.<name>``; the
scene never calls a view. Edits go through ``scene.undo_stack.push(command)``.
"""

from __future__ import annotations

from typing import Any

from .commands import UndoStack
from .events import Signal
from .volume import Volume

__all__ = ["Scene", "SceneEvents"]


class SceneEvents:
    """The scene's signals. Each is emitted after the change has been applied."""

    def __init__(self) -> None:
        self.volume = Signal("volume")              # (volume)
        self.labels = Signal("labels")              # (labels Volume or None)
        self.motor_units = Signal("motor_units")    # (list)
        self.case = Signal("case")                  # (case)
        self.plan = Signal("plan")                  # (plan or None)
        self.annotations = Signal("annotations")    # (list)
        self.cursor = Signal("cursor")              # (lps ndarray)


class Scene:
    """State of one open case; every mutator emits the matching event."""

    def __init__(self) -> None:
        self.events = SceneEvents()
        self.undo_stack = UndoStack()
        self.volume: Volume | None = None
        self.labels: Volume | None = None
        self.motor_units: list[Any] = []
        self.case: Any = None
        self.plan: Any = None
        self.annotations: list[Any] = []
        self.cursor_lps = None
        self.source_path: str | None = None

    def set_volume(self, volume: Volume, source_path: str | None = None) -> None:
        """Replace the image (a new case: clears labels, plan, annotations and history)."""
        self.volume = volume
        self.source_path = source_path
        self.labels = None
        self.motor_units = []
        self.plan = None
        self.annotations = []
        self.undo_stack.clear()
        self.events.volume.emit(volume)
        self.events.labels.emit(None)
        self.events.motor_units.emit([])
        self.events.plan.emit(None)
        self.events.annotations.emit([])
        self.set_cursor(volume.center_lps())

    def set_labels(self, labels: Volume | None) -> None:
        self.labels = labels
        self.events.labels.emit(labels)

    def set_motor_units(self, units: list[Any]) -> None:
        self.motor_units = list(units)
        self.events.motor_units.emit(self.motor_units)

    def set_case(self, case: Any) -> None:
        self.case = case
        self.events.case.emit(case)

    def set_plan(self, plan: Any) -> None:
        self.plan = plan
        self.events.plan.emit(plan)

    def set_annotations(self, annotations: list[Any]) -> None:
        self.annotations = list(annotations)
        self.events.annotations.emit(self.annotations)

    def set_cursor(self, lps) -> None:
        import numpy as np

        self.cursor_lps = np.asarray(lps, float)
        self.events.cursor.emit(self.cursor_lps)
