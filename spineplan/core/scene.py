"""The evented model of one open case.

Holds the volume, the label map, motor units, the clinical case, plans and
annotations (measurements). Views subscribe to ``scene.events.<name>``; the
scene never calls a view. Edits go through ``scene.undo_stack.push(command)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .commands import UndoStack
from .events import Signal
from .volume import Volume

__all__ = ["Scene", "SceneEvents"]


class SceneEvents:
    """The scene's signals. Each is emitted after the change has been applied."""

    def __init__(self) -> None:
        self.volume = Signal("volume")              # (volume)
        # (labels Volume or None, region): region is None when the whole label map may have
        # changed (a new map), else the (k, j, i) slices of the array edited in place
        self.labels = Signal("labels")
        self.motor_units = Signal("motor_units")    # (list)
        self.case = Signal("case")                  # (case)
        self.plan = Signal("plan")                  # (plan or None)
        self.annotations = Signal("annotations")    # (list)
        self.cursor = Signal("cursor")              # (lps ndarray)
        self.lesion = Signal("lesion")              # (planning.lesion.Lesion or None)
        # (SegmentationResult without its arrays, or None): how the levels were named, the
        # flags, and whether the user must confirm a level before planning
        self.segmentation = Signal("segmentation")


class Scene:
    """State of one open case; every mutator emits the matching event."""

    def __init__(self) -> None:
        self.events = SceneEvents()
        self.undo_stack = UndoStack()
        self.volume: Volume | None = None
        self.labels: Volume | None = None
        self._labels_snapshot: Volume | None = None
        self.motor_units: list[Any] = []
        self.case: Any = None
        self.plan: Any = None
        self.annotations: list[Any] = []
        self.cursor_lps = None
        self.source_path: str | None = None
        self.segmentation: Any = None
        self.lesion: Any = None  # the marked lesion (planning.lesion.Lesion), undoable

    def set_volume(self, volume: Volume, source_path: str | None = None) -> None:
        """Replace the image (a new case: clears labels, plan, annotations and history)."""
        self.volume = volume
        self.source_path = source_path
        self.labels = None
        self._labels_snapshot = None
        self.motor_units = []
        self.plan = None
        self.annotations = []
        self.segmentation = None
        self.lesion = None
        self.undo_stack.clear()
        self.events.volume.emit(volume)
        self.events.labels.emit(None, None)
        self.events.motor_units.emit([])
        self.events.plan.emit(None)
        self.events.annotations.emit([])
        self.events.segmentation.emit(None)
        self.events.lesion.emit(None)
        self.set_cursor(volume.center_lps())

    def set_labels(self, labels: Volume | None) -> None:
        """Replace the label map. The scene keeps its own C-ordered copy of the array, which
        label edits (``edit_labels``) change in place; the caller's array is never modified.
        Recorded edits of the previous map (commands with ``edits_labels``) are dropped from
        the history: undoing them would write the old map's voxels into the new one."""
        if labels is not None:
            labels = labels.with_array(np.array(labels.array, order="C", copy=True))
        self.labels = labels
        self._labels_snapshot = None
        self.undo_stack.discard(lambda c: getattr(c, "edits_labels", False))
        self.events.labels.emit(labels, None)

    def edit_labels(self, flat_index: np.ndarray, values) -> tuple[slice, slice, slice] | None:
        """Write ``values`` at the flat (C-order) indices of the label array, in place.

        Emits ``labels(labels, region)`` with the bounding box of the indices as
        ``(k, j, i)`` slices, so that views can update only that part; returns the region
        (None, and no event, when there is nothing to write). No copy of the array is made.
        """
        lab = self.labels
        idx = np.asarray(flat_index, np.intp).ravel()
        if lab is None or idx.size == 0:
            return None
        arr = lab.array
        if not (arr.flags.c_contiguous and arr.flags.writeable):  # not given through set_labels
            arr = lab.array = np.array(arr, order="C", copy=True)
        arr.reshape(-1)[idx] = values
        self._labels_snapshot = None
        lab.modality = "SEG"
        k, j, i = np.unravel_index(idx, arr.shape)
        region = tuple(slice(int(a.min()), int(a.max()) + 1) for a in (k, j, i))
        self.events.labels.emit(lab, region)
        return region

    def labels_snapshot(self) -> Volume | None:
        """A read-only copy of the current label map, for work in another thread (edits change
        ``labels.array`` in place). All callers share one copy until the next edit."""
        if self.labels is None:
            return None
        if self._labels_snapshot is None:
            arr = self.labels.array.copy()
            arr.flags.writeable = False
            self._labels_snapshot = self.labels.with_array(arr)
        return self._labels_snapshot

    def set_segmentation(self, result: Any) -> None:
        """Record how the current labels' levels were named (a ``SegmentationResult``; its
        label array and extras are not kept here: the labels live in ``self.labels``)."""
        if result is not None:
            from dataclasses import replace

            result = replace(result, labels=None, extra={})
        self.segmentation = result
        self.events.segmentation.emit(result)

    @property
    def levels_need_confirmation(self) -> bool:
        """True while the segmenter could not establish the levels and no one confirmed them."""
        return self.segmentation is not None and self.segmentation.needs_confirmation

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
        self.cursor_lps = np.asarray(lps, float)
        self.events.cursor.emit(self.cursor_lps)
