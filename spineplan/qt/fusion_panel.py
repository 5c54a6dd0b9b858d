"""The "Fuse" step: open a second series (MRI), register it to the CT in the thread pool,
show it fused in the 2D views (blend, checkerboard, MRI in colour) and nudge it by keyboard.

Every change of the transform (register, register again, nudge, reset) is a command on the
scene's undo stack (``core.registration.fusion``); the views redraw on ``fusion.changed``.
Keys in the panel: arrows = move 1 mm in the axial plane (left/right, anterior/posterior),
Page Up/Down = superior/inferior; with Shift, rotate 1 degree about the same axes.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (QButtonGroup, QFileDialog, QGridLayout, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QRadioButton, QSlider, QVBoxLayout, QWidget)

from ..core.registration import (Fusion, RegistrationSettings, nudge_command, register_mri_to_ct,
                                 registration_command, reset_command, transform_from_record)
from ..core.registration.fusion import FusionDisplay
from .workers import run_in_background

__all__ = ["FusionPanel", "install_fusion_panel", "NUDGE_MM", "NUDGE_DEG"]

NUDGE_MM = 1.0   # one arrow key press
NUDGE_DEG = 1.0  # one Shift + arrow key press

# key -> (axis, sign): LPS x for left/right, y for up/down (anterior up in the axial view), z for pages
_NUDGE_KEYS = {Qt.Key_Left: (0, -1.0), Qt.Key_Right: (0, 1.0), Qt.Key_Up: (1, -1.0), Qt.Key_Down: (1, 1.0),
               Qt.Key_PageUp: (2, 1.0), Qt.Key_PageDown: (2, -1.0)}


class FusionPanel(QWidget):
    """Second series, registration, fused display and nudges for one MainWindow."""

    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.window_ = window
        self.scene = window.scene
        self.fusion = Fusion()
        self._worker = None
        self._pending_record = None  # a case file's fusion record waiting for its MRI
        self.settings = RegistrationSettings()
        self.setFocusPolicy(Qt.StrongFocus)
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.open_button = QPushButton("Open second series (MRI)…")
        self.open_button.clicked.connect(self.ask_open_mri)
        self.open_folder_button = QPushButton("…from a DICOM folder")
        self.open_folder_button.clicked.connect(self.ask_open_mri_folder)
        row.addWidget(self.open_button)
        row.addWidget(self.open_folder_button)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Refine at"))
        self.level_edit = QLineEdit("L4-L5")
        self.level_edit.setToolTip("Motor unit for the local refinement (empty: global only)")
        row.addWidget(self.level_edit)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.register_button = QPushButton("Register")
        self.register_button.clicked.connect(self.register)
        self.reset_button = QPushButton("Reset registration")
        self.reset_button.clicked.connect(self.reset)
        row.addWidget(self.register_button)
        row.addWidget(self.reset_button)
        lay.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        lay.addWidget(self.progress)
        self.quality = QLabel("No second series")
        self.quality.setWordWrap(True)
        lay.addWidget(self.quality)
        g = QGridLayout()
        self.display_group = QButtonGroup(self)
        self.display_buttons = {}
        for n, (mode, text) in enumerate(zip(FusionDisplay, ("Blend", "Checkerboard", "MRI in colour"))):
            b = QRadioButton(text)
            b.setChecked(mode == self.fusion.display)
            b.toggled.connect(lambda on, m=mode: on and self.fusion.set_display(display=m))
            self.display_group.addButton(b)
            self.display_buttons[mode] = b
            g.addWidget(b, 0, n)
        g.addWidget(QLabel("MRI opacity"), 1, 0)
        self.opacity_slider = QSlider(Qt.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(int(round(self.fusion.opacity * 100)))
        self.opacity_slider.valueChanged.connect(lambda v: self.fusion.set_display(opacity=v / 100.0))
        g.addWidget(self.opacity_slider, 1, 1, 1, 2)
        lay.addLayout(g)
        hint = QLabel("Nudge (click here first): arrows / Page Up-Down move 1 mm, with Shift rotate 1°. "
                      "Ctrl+Z undoes.")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        lay.addStretch(1)
        for v in window._slice_views():
            v.set_fusion(self.fusion)
        self.fusion.changed.connect(self._update_state)
        self.scene.events.volume.connect(lambda *_: self.clear())
        self._update_state()

    # ------------------------------------------------------------------ series
    def ask_open_mri(self):
        f, _ = QFileDialog.getOpenFileName(self, "Open second series (MRI)", "",
                                           "Images (*.nii *.nii.gz *.nrrd *.mha *.dcm *.zip);;All (*)")
        if f:
            self.open_mri(f)

    def ask_open_mri_folder(self):
        d = QFileDialog.getExistingDirectory(self, "Open second series (MRI) from a folder")
        if d:
            self.open_mri(d)

    def open_mri(self, path, *, register: bool = True, block: bool = False):
        """Load the MRI (background), show it at the identity, then register it."""
        from ..core.dicom.load import load_volume

        if self.scene.volume is None:
            self.window_.show_error("No CT open", "Open the CT first, then the second series.")
            return

        def done(mri):
            if not mri.modality:
                mri.modality = "MR"
            rec, self._pending_record = self._pending_record, None
            self.fusion.set_mri(mri, transform_from_record(rec) if rec else None)
            if register and rec is None:
                self.register()

        self._start(lambda progress=None, cancel=None: load_volume(path, progress=progress, cancel=cancel),
                    done, "loading the second series")
        if block:
            self.wait()

    def clear(self):
        self.fusion.set_mri(None)

    # ------------------------------------------------------------------ registration
    def register(self):
        """Register the MRI to the CT in the thread pool ("register again" when done before:
        it starts from the current transform). The result is one undoable step."""
        f = self.fusion
        if f.mri is None or self.scene.volume is None:
            return
        level = self.level_edit.text().strip() or None
        labels = self.scene.labels_snapshot() if level else None
        if labels is None:
            level = None
        ct, mri, st = self.scene.volume, f.mri, self.settings
        initial = f.transform if f.result is not None else None

        def job(progress=None, cancel=None):
            return register_mri_to_ct(ct, mri, level=level, ct_labels=labels, settings=st, initial=initial,
                                      progress=progress, cancel=cancel)

        self._start(job, lambda res: self.scene.undo_stack.push(registration_command(f, res)), "registering")

    def reset(self):
        if self.fusion.active:
            self.scene.undo_stack.push(reset_command(self.fusion))

    def nudge(self, translation_mm=(0.0, 0.0, 0.0), rotation_deg=(0.0, 0.0, 0.0)):
        """One undoable nudge about the cursor (LPS mm / degrees)."""
        if self.fusion.active:
            c = self.scene.cursor_lps
            self.scene.undo_stack.push(nudge_command(self.fusion, translation_mm, rotation_deg,
                                                     center_lps=None if c is None else np.asarray(c, float)))

    def keyPressEvent(self, e):
        hit = _NUDGE_KEYS.get(e.key())
        if hit is None or not self.fusion.active:
            return super().keyPressEvent(e)
        axis, sign = hit
        v = np.zeros(3)
        if e.modifiers() & Qt.ShiftModifier:
            v[axis] = sign * NUDGE_DEG
            self.nudge(rotation_deg=tuple(v))
        else:
            v[axis] = sign * NUDGE_MM
            self.nudge(translation_mm=tuple(v))
        e.accept()

    # ------------------------------------------------------------------ case files
    def case_record(self):
        return self.fusion.to_record()

    def apply_case_record(self, rec):
        """A case file's fusion record: applied now when the MRI is open, else when it is opened."""
        if not rec:
            return
        if self.fusion.mri is not None:
            self.fusion.set_transform(transform_from_record(rec))
            self.fusion.level = rec.get("level")
        else:
            self._pending_record = rec

    # ------------------------------------------------------------------ plumbing
    def _start(self, fn, on_done, what):
        self.register_button.setEnabled(False)
        self.open_button.setEnabled(False)
        self.open_folder_button.setEnabled(False)
        self.progress.setValue(0)
        self.quality.setText(f"{what}…")
        w = run_in_background(fn)
        w.signals.progress.connect(lambda f, m: (self.progress.setValue(int(100 * f)),
                                                 self.quality.setText(m or what)))
        w.signals.finished.connect(lambda out: (self._finish(), on_done(out)))
        w.signals.failed.connect(lambda msg: (self._finish(), self.window_.show_error("Fusion", msg)))
        w.signals.cancelled.connect(self._finish)
        self._worker = w

    def _finish(self):
        self._worker = None
        self.progress.setValue(100)
        self.register_button.setEnabled(True)
        self.open_button.setEnabled(True)
        self.open_folder_button.setEnabled(True)
        self._update_state()

    def busy(self) -> bool:
        return self._worker is not None

    def wait(self, timeout_s: float = 120.0) -> bool:
        """Process events until the background fusion work is done (tests, scripts)."""
        import time

        from PySide6.QtWidgets import QApplication

        end = time.monotonic() + timeout_s
        while self.busy():
            if time.monotonic() > end:
                return False
            QApplication.processEvents()
            time.sleep(0.005)
        QApplication.processEvents()
        return True

    def _update_state(self, *_):
        f = self.fusion
        self.register_button.setText("Register again" if f.result is not None else "Register")
        self.register_button.setEnabled(f.mri is not None and not self.busy())
        self.reset_button.setEnabled(f.active)
        if self.busy():
            return
        if f.mri is None:
            self.quality.setText("No second series")
        elif f.result is None:
            self.quality.setText("Second series shown in scanner coordinates (not registered)")
        else:
            r = f.result
            parts = [f"registered in {r.seconds:.1f} s"]
            if r.local_transform is not None:
                parts.append(f"{r.level}: residual {r.residual_mm:.2f} mm, local correction "
                             f"{r.local_correction_mm:.1f} mm" if r.residual_mm is not None else f"{r.level}")
            if r.dice:
                parts.append("Dice " + ", ".join(f"{k} {v:.2f}" for k, v in r.dice.items()))
            parts += [fl.message for fl in r.flags]
            self.quality.setText("; ".join(parts))


def install_fusion_panel(window) -> FusionPanel:
    """Add the "Fuse" step and File > "Open second series (MRI) for fusion…" to ``window``."""
    panel = FusionPanel(window)
    window.add_step("Fuse", panel)
    file_menu = window.menuBar().actions()[0].menu()
    act = QAction("Open second series (MRI) for fusion…", window)
    act.triggered.connect(panel.ask_open_mri)
    acts = file_menu.actions()
    file_menu.insertAction(acts[2] if len(acts) > 2 else None, act)
    window.fusion_action = act
    last = {"t": None}

    def autosave_on_transform(fusion):  # (a display change is not part of the case)
        if fusion.transform is not last["t"]:
            last["t"] = fusion.transform
            window._autosave()

    panel.fusion.changed.connect(autosave_on_transform)
    return panel
