"""The Lesion tab: mark the lesion at the crosshair with a radius, undoably; show where it lies.

Marking pushes ``planning.lesion.mark_lesion_command`` on the scene's undo stack; the panel
follows ``scene.events.lesion`` (so undo/redo update it too). The location (level, zone, side,
migration) is computed in the thread pool on the planning anatomy given by ``anatomy_fn``.
"""

from __future__ import annotations

from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel,
                               QPushButton, QWidget)

from ..core.planning.lesion import (LESION_PARAMETERS, NO_LESION_TEXT, Lesion, LesionKind,
                                    candidate_herniations, lesion_summary_text, locate_lesion,
                                    mark_lesion_command)

from .workers import LatestJob

__all__ = ["LesionPanel"]


# workers.LatestJob delivers results on the GUI thread after the caller connected (even
# one ready at once, e.g. a location from the anatomy's cache)
_Newest = LatestJob


class LesionPanel(QWidget):
    """Radius spin box, kind, "Mark at crosshair" / "Clear", and the computed location."""

    def __init__(self, scene, anatomy_fn=None, parent=None):
        super().__init__(parent)
        self.scene = scene
        self.anatomy_fn = anatomy_fn
        self.location = None  # the LesionLocation of the current lesion, once computed
        form = QFormLayout(self)
        self.radius_box = QDoubleSpinBox()
        self.radius_box.setRange(1.0, 30.0)
        self.radius_box.setSingleStep(0.5)
        self.radius_box.setSuffix(" mm")
        self.radius_box.setValue(LESION_PARAMETERS["lesion_default_radius_mm"])
        self.kind_box = QComboBox()
        self.kind_box.addItems([k.value for k in LesionKind])
        self.mark_button = QPushButton("Mark at crosshair")
        self.clear_button = QPushButton("Clear")
        row = QHBoxLayout()
        row.addWidget(self.mark_button)
        row.addWidget(self.clear_button)
        self.info = QLabel(NO_LESION_TEXT)
        self.info.setWordWrap(True)
        self.find_button = QPushButton("Find candidates")
        self.candidate_box = QComboBox()
        self.accept_button = QPushButton("Accept")
        self.accept_button.setEnabled(False)
        crow = QHBoxLayout()
        crow.addWidget(self.find_button)
        crow.addWidget(self.candidate_box, 1)
        crow.addWidget(self.accept_button)
        self.candidates: list = []  # (level, Lesion) from candidate_herniations
        form.addRow("Radius", self.radius_box)
        form.addRow("Kind", self.kind_box)
        form.addRow(row)
        form.addRow(self.info)
        form.addRow(crow)
        self.mark_button.clicked.connect(self.mark_at_cursor)
        self.clear_button.clicked.connect(self.clear)
        self.find_button.clicked.connect(self.find_candidates)
        self.accept_button.clicked.connect(self.accept_candidate)
        self._job = _Newest(self._located)
        self._find_job = _Newest(self._found)
        scene.events.lesion.connect(self._on_lesion)
        self._on_lesion(scene.lesion)

    def mark_at_cursor(self) -> bool:
        """Mark a lesion at the crosshair (one undo step); False without a crosshair."""
        if self.scene.cursor_lps is None:
            self.info.setText("place the crosshair on the lesion first")
            return False
        les = Lesion(self.scene.cursor_lps.copy(), float(self.radius_box.value()),
                     kind=self.kind_box.currentText())
        self.scene.undo_stack.push(mark_lesion_command(self.scene, les))
        return True

    def clear(self) -> None:
        if self.scene.lesion is not None:
            self.scene.undo_stack.push(mark_lesion_command(self.scene, None))

    def _on_lesion(self, lesion) -> None:
        self.location = None
        self.clear_button.setEnabled(lesion is not None)
        if lesion is None:
            self.info.setText(NO_LESION_TEXT)
            return
        c = ", ".join(f"{x:.1f}" for x in lesion.centre_lps)
        self.info.setText(f"{lesion.kind.value} at LPS {c}, radius {lesion.radius_mm:.1f} mm")
        anat = self.anatomy_fn() if self.anatomy_fn is not None else None
        if anat is not None:
            self._job.start(lambda progress=None, cancel=None: (lesion, locate_lesion(anat, lesion)))

    def _located(self, result, error) -> None:
        if error is not None or result is None:
            if error:
                self.info.setText(f"{self.info.text()}\nnot located: {error}")
            return
        lesion, loc = result
        if lesion is not self.scene.lesion:  # marked again meanwhile
            return
        self.location = loc
        self.info.setText(lesion_summary_text({**lesion.to_dict(), **loc.to_dict()}))

    def find_candidates(self) -> bool:
        """Search the discs for herniated material (thread pool); False without labels."""
        anat = self.anatomy_fn() if self.anatomy_fn is not None else None
        if anat is None:
            self.info.setText("segment the spine or load labels to find candidates")
            return False
        self.find_button.setEnabled(False)
        self._find_job.start(lambda progress=None, cancel=None: candidate_herniations(anat))
        return True

    @property
    def finding(self) -> bool:
        return self._find_job.pending

    def _found(self, result, error) -> None:
        self.find_button.setEnabled(True)
        self.candidates = list(result or [])
        self.candidate_box.clear()
        for level, les in self.candidates:
            self.candidate_box.addItem(f"{level}: {les.mask['volume_mm3']:.0f} mm3")
        self.accept_button.setEnabled(bool(self.candidates))
        if error:
            self.info.setText(f"no candidates: {error}")
        elif not self.candidates:
            self.candidate_box.addItem("none found")

    def accept_candidate(self) -> bool:
        """Mark the chosen candidate (one undo step); the radius box and crosshair follow it."""
        n = self.candidate_box.currentIndex()
        if not 0 <= n < len(self.candidates):
            return False
        les = self.candidates[n][1]
        self.radius_box.setValue(les.radius_mm)
        self.scene.set_cursor(les.centre_lps)
        self.scene.undo_stack.push(mark_lesion_command(self.scene, les))
        return True

    def close_jobs(self) -> None:
        self._job.close()
        self._find_job.close()
