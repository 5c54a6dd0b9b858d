"""The workstation main window: 3 slice views + 3D view, workflow panel, menus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QColor, QImage, QKeySequence, QPainter, QPalette
from PySide6.QtWidgets import (QApplication, QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QInputDialog, QLabel,
                               QListWidget, QListWidgetItem, QMainWindow, QMessageBox, QProgressDialog,
                               QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QTabWidget,
                               QVBoxLayout, QWidget)

from ..core.planning.kinds import SIDES
from ..core.scene import Scene
from ..core.segmentation import labels as L
from .slice_view import BRUSH_TOOLS, LabelBrush, SliceView
from .workers import LatestJob, run_in_background

__all__ = ["MainWindow", "apply_dark_theme"]


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    pal = QPalette()
    for role, rgb in ((QPalette.Window, (30, 31, 34)), (QPalette.WindowText, (220, 220, 220)),
                      (QPalette.Base, (22, 23, 26)), (QPalette.AlternateBase, (36, 37, 40)),
                      (QPalette.Text, (220, 220, 220)), (QPalette.Button, (44, 45, 50)),
                      (QPalette.ButtonText, (220, 220, 220)), (QPalette.Highlight, (40, 110, 170)),
                      (QPalette.HighlightedText, (255, 255, 255))):
        pal.setColor(role, QColor(*rgb))
    app.setPalette(pal)


def _labels_present(arr: np.ndarray) -> set[int]:
    """The label values present in a label array."""
    return set(np.flatnonzero(L.label_counts(arr)).tolist()) if arr.size else set()


#: Motor-unit table columns: header and the measurement names (MotorUnit.measurements) shown.
UNIT_TABLE_COLUMNS = (
    ("unit", ()), ("disc A/M/P", ("disc_height_anterior_mm", "disc_height_middle_mm", "disc_height_posterior_mm")),
    ("angle°", ("segmental_angle_deg",)), ("slip", ("slip_mm",)), ("canal", ("canal_ap_mm",)),
    ("sac mm²", ("sac_area_mm2",)), ("facets", ()), ("notes", ()))
#: Header tooltips (units) of the motor-unit table.
UNIT_TABLE_TIPS = {"disc A/M/P": "disc height anterior / middle / posterior, mm", "angle°": "segmental angle, "
                   "degrees (lordosis +)", "slip": "slip, mm (anterolisthesis +, retrolisthesis -)",
                   "canal": "bony canal AP at the disc level, mm", "sac mm²": "dural sac area at the disc plane"}


def unit_table_cells(u) -> list[tuple[str, list[str]]]:
    """(text, implausible measurement names) of each column of a motor unit's table row; an
    implausible value reads '⚠ value?' so that it is never taken for a plain number."""
    m, bad = u.measurements(), set(u.implausible)
    cells = []
    for header, keys in UNIT_TABLE_COLUMNS:
        if header == "unit":
            cells.append((u.name, []))
        elif header == "facets":
            cells.append(("L+R" if u.facet_left_lps and u.facet_right_lps else "?", []))
        elif header == "notes":
            notes = list(u.warnings) + ([f"IMPLAUSIBLE: {', '.join(sorted(bad))}"] if bad else [])
            cells.append(("; ".join(notes) or u.canal_grade, sorted(bad)))
        else:
            parts = [("-" if k not in m else f"⚠ {m[k]:.1f}?" if k in bad else f"{m[k]:.1f}") for k in keys]
            cells.append(("/".join(parts), [k for k in keys if k in bad]))
    return cells


class MainWindow(QMainWindow):
    """Reading workstation. ``with_3d=False`` skips the VTK view (tests of 2D behaviour)."""

    def __init__(self, scene: Scene | None = None, settings: QSettings | None = None, with_3d: bool = True):
        super().__init__()
        self.scene = scene or Scene()
        self.settings = settings or QSettings("spineplan", "spineplan")
        self.setWindowTitle("spineplan")
        self.resize(1500, 950)
        self.anatomy = None
        self.plan_recheck = None  # planning.recheck.Recheck of the plan last opened from a file
        self._worker = None
        self.views = {o: SliceView(self.scene, o) for o in ("axial", "sagittal", "coronal")}
        self.brush = LabelBrush(self.scene, on_stroke=self._on_stroke)
        self._labels_stale = False
        self._units_job = LatestJob(self._units_done)  # motor units and vertebra list
        self._closing = False
        self._labels_version = 0  # counts label changes (a proposal on older labels is dropped)
        self._plan_worker = None
        self.view3d = None
        if with_3d:
            from .view3d import View3D

            self.view3d = View3D(self.scene)
            self.view3d.plan_point_moved.connect(self.move_plan_point)
        grid = QGridLayout()
        grid.setSpacing(2)
        grid.addWidget(self.views["axial"], 0, 0)
        grid.addWidget(self.views["sagittal"], 0, 1)
        grid.addWidget(self.views["coronal"], 1, 0)
        if self.view3d is not None:
            grid.addWidget(self.view3d, 1, 1)
        for n in (0, 1):
            grid.setRowStretch(n, 1)
            grid.setColumnStretch(n, 1)
        self.view_area = QWidget()
        self.view_area.setLayout(grid)
        self.panel = QTabWidget()
        self.panel.setMinimumWidth(360)
        split = QSplitter()
        split.addWidget(self.view_area)
        split.addWidget(self.panel)
        split.setStretchFactor(0, 4)
        self.setCentralWidget(split)
        for v in self.views.values():
            v.status.connect(self.statusBar().showMessage)
            v.plan_point_moved.connect(self.move_plan_point)
        self._build_panels()
        self._build_menus()
        from .fusion_panel import install_fusion_panel  # the second series (qt/fusion_panel.py)

        self.fusion_panel = install_fusion_panel(self)
        self.scene.events.volume.connect(self._on_volume)
        self.scene.events.labels.connect(self._on_labels)
        self.scene.events.motor_units.connect(self._on_units)
        self.scene.events.annotations.connect(self._on_annotations)
        self.scene.events.plan.connect(self._on_plan)
        self.scene.events.segmentation.connect(self._on_segmentation)
        self.scene.events.plan.connect(self._autosave)
        self.scene.events.annotations.connect(self._autosave)
        self.setAcceptDrops(True)
        self.convention = self.settings.value("convention", "radiological")
        self.set_convention(self.convention)

    # ------------------------------------------------------------------ panels
    def add_step(self, name: str, widget: QWidget) -> None:
        """Add a workflow step (tab) to the side panel."""
        self.panel.addTab(widget, name)

    def _build_panels(self):
        data = QWidget()
        f = QFormLayout(data)
        self.info_label = QLabel("No case open")
        self.info_label.setWordWrap(True)
        f.addRow(self.info_label)
        self.preset_box = QComboBox()
        from ..core.presets import CT_PRESETS

        self.preset_box.addItems(list(CT_PRESETS) + ["MRI auto"])
        self.preset_box.currentTextChanged.connect(self.apply_preset)
        f.addRow("Window preset", self.preset_box)
        self.add_step("Data", data)

        seg = QWidget()
        v = QVBoxLayout(seg)
        row = QHBoxLayout()
        b = QPushButton("Load labels…")
        b.clicked.connect(self._ask_labels)
        row.addWidget(b)
        self.segment_button = QPushButton("Segment")
        self.segment_button.clicked.connect(self.run_segmentation)
        row.addWidget(self.segment_button)
        v.addLayout(row)
        row = QHBoxLayout()
        for txt, steps in (("Levels up", -1), ("Levels down", 1)):
            bb = QPushButton(txt)
            bb.clicked.connect(lambda _=False, s=steps: self.shift_levels(s))
            row.addWidget(bb)
        v.addLayout(row)
        v.addWidget(self._build_correct_group())
        # what the segmenter is unsure of (no sacrum in view, L6, low confidence) stays on screen
        self.seg_status = QLabel("")
        self.seg_status.setWordWrap(True)
        v.addWidget(self.seg_status)
        # levels the segmenter could not establish: no plan until the surgeon confirms them
        self.confirm_levels_button = QPushButton("Confirm levels (I checked the names on the images)")
        self.confirm_levels_button.setEnabled(False)
        self.confirm_levels_button.clicked.connect(self.confirm_levels)
        v.addWidget(self.confirm_levels_button)
        self.unit_table = QTableWidget(0, len(UNIT_TABLE_COLUMNS))
        self.unit_table.setHorizontalHeaderLabels([h for h, _ in UNIT_TABLE_COLUMNS])
        for c, (h, _k) in enumerate(UNIT_TABLE_COLUMNS):
            self.unit_table.horizontalHeaderItem(c).setToolTip(UNIT_TABLE_TIPS.get(h, h))
        self.unit_table.horizontalHeader().setStretchLastSection(True)
        self.unit_table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.unit_table.cellClicked.connect(lambda r, c: self.level_box.setCurrentText(
            self.unit_table.item(r, 0).text()))
        v.addWidget(self.unit_table)
        self.add_step("Segment", seg)

        plan = QWidget()
        f = QFormLayout(plan)
        self.level_box = QComboBox()
        self.side_box = QComboBox()
        self.side_box.addItems(list(SIDES))
        self.proc_box = QComboBox()
        self.proc_box.addItems(["tube", "needle", "cage"])
        self.zone_box = QComboBox()
        self.zone_box.addItems(["paracentral", "central", "subarticular", "foraminal", "extraforaminal"])
        self.root_box = QComboBox()
        self.root_box.addItems(["", "L3", "L4", "L5", "S1"])
        self.symptom_box = QComboBox()
        self.symptom_box.addItems(["", "left", "right", "bilateral"])
        self.pathology_box = QComboBox()
        self.pathology_box.addItems(["herniation", "stenosis", "instability", "sequestration"])
        for label, w in (("Motor unit", self.level_box), ("Side", self.side_box), ("Procedure", self.proc_box),
                         ("Pathology", self.pathology_box), ("Herniation zone", self.zone_box),
                         ("Symptom side", self.symptom_box), ("Suspected root", self.root_box)):
            f.addRow(label, w)
        b = self.propose_button = QPushButton("Propose plan")
        b.clicked.connect(self.propose_plan)
        f.addRow(b)
        self.check_list = QListWidget()
        f.addRow(self.check_list)
        # typed values: entry and target in LPS mm (x = patient's left)
        from PySide6.QtWidgets import QLineEdit

        self.point_edits = {}
        for which in ("entry", "target"):
            e = QLineEdit()
            e.setPlaceholderText("x, y, z (LPS mm)")
            e.returnPressed.connect(lambda w=which: self.type_plan_point(w))
            self.point_edits[which] = e
            f.addRow(f"{which.capitalize()} LPS", e)
        # oblique views along the trajectory and down the instrument (what the endoscope sees)
        self.plan_views = {o: SliceView(self.scene, o) for o in ("along", "down")}
        row = QHBoxLayout()
        for o, v in self.plan_views.items():
            v.setMinimumSize(170, 170)
            v.plan_point_moved.connect(self.move_plan_point)
            row.addWidget(v)
        f.addRow(row)
        row = QHBoxLayout()
        for txt, fn in (("Save plan…", self.save_plan), ("Report PDF…", self.export_report),
                        ("Slicer markups…", self.export_markups), ("Instrument STL…", self.export_stl),
                        ("Rehearsal…", self.ask_rehearsal)):
            bb = QPushButton(txt)
            bb.clicked.connect(fn)
            row.addWidget(bb)
        f.addRow(row)
        self.add_step("Plan", plan)
        from .lesion_panel import LesionPanel  # the marked lesion (issue 16): its own module

        self.lesion_panel = LesionPanel(self.scene, lambda: self._anatomy() if self.scene.labels is not None else None)
        self.add_step("Lesion", self.lesion_panel)
        for sv in self._slice_views():
            sv.brush = self.brush

        practice = QWidget()
        v = QVBoxLayout(practice)
        self.practice_info = QLabel("Practice: load a reference plan (hidden), plan the case, then score.")
        self.practice_info.setWordWrap(True)
        v.addWidget(self.practice_info)
        row = QHBoxLayout()
        for txt, fn in (("Load reference…", self.ask_practice_reference), ("Score my plan", self.score_practice)):
            bb = QPushButton(txt)
            bb.clicked.connect(fn)
            row.addWidget(bb)
        v.addLayout(row)
        self.practice_result = QLabel("")
        self.practice_result.setWordWrap(True)
        v.addWidget(self.practice_result)
        self.practice_image = QLabel()
        self.practice_image.setMinimumHeight(200)
        v.addWidget(self.practice_image)
        v.addStretch(1)
        self.add_step("Practice", practice)
        self.practice_reference = None

        meas = QWidget()
        v = QVBoxLayout(meas)
        row = QHBoxLayout()
        for tool in ("crosshair", "distance", "angle", "cobb"):
            bb = QPushButton(tool)
            bb.clicked.connect(lambda _=False, t=tool: self.set_tool(t))
            row.addWidget(bb)
        v.addLayout(row)
        self.measure_list = QListWidget()
        v.addWidget(self.measure_list)
        bb = QPushButton("Delete selected")
        bb.clicked.connect(self.delete_selected_measurement)
        v.addWidget(bb)
        self.add_step("Measure", meas)

    def _build_correct_group(self) -> QGroupBox:
        box = QGroupBox("Correct")
        g = QGridLayout(box)
        g.setContentsMargins(6, 6, 6, 6)
        self.vertebra_box = QComboBox()
        self.vertebra_box.setToolTip("Vertebra to correct; Paint paints this label")
        self.vertebra_box.currentTextChanged.connect(self._on_vertebra_selected)
        self.name_box = QComboBox()
        self.name_box.addItems([L.vertebra_name(x) for x in L.craniocaudal_order(L.VERTEBRA_LABELS)])
        self.name_box.setCurrentText("L1")
        self.name_box.setToolTip("Name for Rename / the caudal part of Split; the vertebra Merge absorbs")
        g.addWidget(QLabel("Vertebra"), 0, 0)
        g.addWidget(self.vertebra_box, 0, 1)
        g.addWidget(QLabel("Name"), 0, 2)
        g.addWidget(self.name_box, 0, 3)
        for col, span, txt, fn in ((0, 1, "Rename", self.rename_vertebra), (1, 1, "Merge into", self.merge_vertebra),
                                   (2, 2, "Split at crosshair", self.split_vertebra_at_cursor)):
            b = QPushButton(txt)
            b.clicked.connect(fn)
            g.addWidget(b, 1, col, 1, span)
        # level unknown: name one vertebra on the images, and the whole column is renamed from it
        self.name_from_button = QPushButton("Name it and count the others from it (confirms the levels)")
        self.name_from_button.setToolTip("The selected vertebra is the chosen name; every other vertebra and "
                                         "disc is renamed by counting from it")
        self.name_from_button.clicked.connect(self.name_vertebra)
        g.addWidget(self.name_from_button, 2, 0, 1, 4)
        self.paint_button = QPushButton("Paint")
        self.erase_button = QPushButton("Erase")
        for b, tool in ((self.paint_button, "paint"), (self.erase_button, "erase")):
            b.setCheckable(True)
            b.toggled.connect(lambda on, t=tool: self.set_tool(t if on else "crosshair"))
        self.brush_radius = QDoubleSpinBox()
        self.brush_radius.setRange(0.5, 30.0)
        self.brush_radius.setSingleStep(0.5)
        self.brush_radius.setSuffix(" mm")
        self.brush_radius.setValue(self.brush.radius_mm)
        self.brush_radius.setToolTip("Brush radius: a disc on the slice (a sphere in trajectory views)")
        self.brush_radius.valueChanged.connect(lambda r: setattr(self.brush, "radius_mm", float(r)))
        self.keep_others_box = QCheckBox("Keep other labels")
        self.keep_others_box.setChecked(self.brush.keep_others)
        self.keep_others_box.setToolTip("Paint only onto background; erase only the selected vertebra")
        self.keep_others_box.toggled.connect(lambda on: setattr(self.brush, "keep_others", bool(on)))
        g.addWidget(self.paint_button, 2, 0)
        g.addWidget(self.erase_button, 2, 1)
        g.addWidget(self.brush_radius, 2, 2)
        g.addWidget(self.keep_others_box, 2, 3)
        return box

    def _build_menus(self):
        m = self.menuBar().addMenu("&File")
        for txt, fn, key in (("Open folder…", self.ask_open_folder, QKeySequence.Open),
                             ("Open file…", self.ask_open_file, None),
                             ("Save case…", self.ask_save_case, QKeySequence.Save),
                             ("Open case…", self.ask_open_case, None),
                             ("Open from PACS…", self.ask_open_pacs, None),
                             ("PACS settings…", self.ask_pacs_settings, None), ("Quit", self.close, QKeySequence.Quit)):
            a = QAction(txt, self)
            a.triggered.connect(fn)
            if key is not None:
                a.setShortcut(key)
            m.addAction(a)
        self.recent_menu = m.addMenu("Recent")
        self._fill_recent()
        e = self.menuBar().addMenu("&Edit")
        self.undo_action = QAction("Undo", self)
        self.undo_action.setShortcut(QKeySequence("Ctrl+Z"))
        self.undo_action.triggered.connect(self.scene.undo_stack.undo)
        self.redo_action = QAction("Redo", self)
        self.redo_action.setShortcut(QKeySequence("Ctrl+Shift+Z"))
        self.redo_action.triggered.connect(self.scene.undo_stack.redo)
        e.addAction(self.undo_action)
        e.addAction(self.redo_action)
        v = self.menuBar().addMenu("&View")
        a = QAction("Neurological convention", self, checkable=True)
        a.toggled.connect(lambda on: self.set_convention("neurological" if on else "radiological"))
        v.addAction(a)
        self.convention_action = a
        for name in ("axial", "sagittal", "coronal", "3d", "all"):
            act = QAction(f"Layout: {name}", self)
            act.triggered.connect(lambda _=False, n=name: self.set_layout(n))
            v.addAction(act)
        if self.view3d is not None:
            for name in ("anterior", "posterior", "left", "right", "superior"):
                act = QAction(f"3D camera: {name}", self)
                act.triggered.connect(lambda _=False, n=name: self.view3d.set_camera(n))
                v.addAction(act)

    # ------------------------------------------------------------------ data
    def _fill_recent(self):
        self.recent_menu.clear()
        for p in self.settings.value("recent", [], type=list)[:8]:
            a = QAction(p, self)
            a.triggered.connect(lambda _=False, q=p: self.open_path(q))
            self.recent_menu.addAction(a)

    def ask_open_folder(self):
        d = QFileDialog.getExistingDirectory(self, "Open DICOM folder")
        if d:
            self.open_path(d)

    def ask_open_file(self):
        f, _ = QFileDialog.getOpenFileName(self, "Open image", "", "Images (*.nii *.nii.gz *.nrrd *.mha *.dcm *.zip);;All (*)")
        if f:
            self.open_path(f)

    def dragEnterEvent(self, e):
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e):
        urls = e.mimeData().urls()
        if urls:
            self.open_path(urls[0].toLocalFile())

    def ask_pacs_settings(self):
        """The PACS settings dialog (qt/pacs_settings.py)."""
        from ..core.pacs import load_settings
        from .pacs_settings import PacsSettingsDialog

        try:
            settings = load_settings()
        except Exception as exc:  # noqa: BLE001
            self.show_error("PACS settings", str(exc))
            return
        PacsSettingsDialog(settings, parent=self).show()

    def ask_open_pacs(self):
        """The PACS browser (qt/pacs_browser.py) on the configured nodes; a retrieved series opens."""
        from ..core.pacs import load_settings
        from .pacs_browser import PacsBrowser, clients_from_settings

        try:
            settings = load_settings()
            clients = clients_from_settings(settings)
        except Exception as exc:  # noqa: BLE001
            self.show_error("PACS settings", str(exc))
            return
        if not clients:
            self.show_error("PACS", "No PACS node configured: add one in File > PACS settings… "
                            "(see README, 'Getting images from a PACS').")
            return
        dlg = PacsBrowser(clients, settings.cache(), self)
        dlg.series_ready.connect(lambda folder: (dlg.accept(), self.open_path(folder)))
        dlg.show()

    def open_path(self, path: str, *, block: bool = False, series_uid: str | None = None):
        """Load in a worker with progress and Cancel; errors as a dialog, the open case stays."""
        from ..core.dicom.load import load_volume
        from ..core.dicom.scan import is_image_file, scan

        if series_uid is None and not block and Path(path).is_dir():
            try:
                res = scan(path)
            except Exception as exc:  # noqa: BLE001
                self.show_error(f"Cannot open {path}", str(exc))
                return
            if len(res.series) > 1:
                series_uid = self._choose_series(res.series)
                if series_uid is None:
                    return

        def job(progress=None, cancel=None):
            return load_volume(path, series_uid=series_uid, progress=progress, cancel=cancel)

        if block:
            try:
                vol = job()
            except Exception as exc:  # noqa: BLE001
                self.show_error(f"Cannot open {path}", str(exc))
                return False
            self._loaded(vol, path)
            return True
        dlg = QProgressDialog("Loading…", "Cancel", 0, 100, self)
        dlg.setWindowModality(Qt.WindowModal)
        dlg.setMinimumDuration(300)
        w = run_in_background(job)
        self._worker = w
        w.signals.progress.connect(lambda f, m: (dlg.setValue(int(f * 100)), dlg.setLabelText(m or "Loading…")))
        w.signals.finished.connect(lambda vol: (dlg.close(), self._loaded(vol, path)))
        w.signals.failed.connect(lambda msg: (dlg.close(), self.show_error(f"Cannot open {path}", msg)))
        w.signals.cancelled.connect(dlg.close)
        dlg.canceled.connect(w.cancel)
        return w

    def _choose_series(self, series) -> str | None:
        items = [f"{s.modality} | {s.description} | {s.size[2]} slices | "
                 f"{s.spacing[0]:.2f}x{s.spacing[1]:.2f}x{s.spacing[2]:.2f} mm"
                 + (f" | {len(s.warnings)} warning(s)" if s.warnings else "") for s in series]
        item, ok = QInputDialog.getItem(self, "Choose a series", "Series found:", items, 0, False)
        return series[items.index(item)].uid if ok else None

    def _loaded(self, vol, path):
        self._autosaver = None
        self.scene.set_volume(vol, source_path=str(path))
        self.offer_recovery()
        recent = [p for p in self.settings.value("recent", [], type=list) if p != str(path)]
        self.settings.setValue("recent", [str(path)] + recent[:9])
        self._fill_recent()
        if vol.warnings:
            self.statusBar().showMessage("; ".join(vol.warnings)[:300])

    def show_error(self, title: str, message: str):
        QMessageBox.critical(self, title, message)

    # ------------------------------------------------------------------ presentation
    presentation = False
    case_title = ""

    def patient_text(self) -> str:
        """What identifies the case on screen: the patient, or the case title when presenting."""
        if self.presentation:
            return self.case_title or "Teaching case"
        ident = (self.scene.volume.meta.get("identity") or {}) if self.scene.volume else {}
        return " ".join(x for x in (ident.get("patient_name", ""), ident.get("patient_id", "")) if x)

    def set_presentation(self, on: bool, title: str = "Teaching case"):
        """Teaching screens: full screen, large type and thick lines, no patient identity,
        one large view over a strip of small ones, keyboard control (arrows step, space plays)."""
        from PySide6.QtCore import QTimer

        self.presentation, self.case_title = bool(on), title
        for v in self.views.values():
            v.overlay_scale = 2.0 if on else 1.0
            v.update()
        self.setStyleSheet("* { font-size: 20pt; }" if on else "")
        grid = self.view_area.layout()
        order = ["axial", "sagittal", "coronal"]
        widgets = [self.views[o] for o in order] + ([self.view3d] if self.view3d else [])
        for w in widgets:
            grid.removeWidget(w)
        if on:
            grid.addWidget(widgets[0], 0, 0, 1, len(widgets) - 1)
            for n, w in enumerate(widgets[1:]):
                grid.addWidget(w, 1, n)
            grid.setRowStretch(0, 4)
            grid.setRowStretch(1, 1)
            self.panel.setVisible(False)
            self.menuBar().setVisible(False)
            self.showFullScreen()
            self.views["axial"].setFocus()
        else:
            for n, w in enumerate(widgets):
                grid.addWidget(w, n // 2, n % 2)
            grid.setRowStretch(0, 1)
            grid.setRowStretch(1, 1)
            self.panel.setVisible(True)
            self.menuBar().setVisible(True)
            self.showNormal()
        if not hasattr(self, "_cine"):
            self._cine = QTimer(self)
            self._cine.timeout.connect(lambda: self.views["axial"].scroll(1))
        self._cine.stop()
        self._refresh_titles()

    def keyPressEvent(self, e):
        if self.presentation and e.key() == Qt.Key_Space:
            self._cine.stop() if self._cine.isActive() else self._cine.start(150)
        elif self.presentation and e.key() == Qt.Key_Escape:
            self.set_presentation(False)
        elif self.presentation and e.key() in (Qt.Key_Left, Qt.Key_Right, Qt.Key_Up, Qt.Key_Down):
            self.views["axial"].scroll(1 if e.key() in (Qt.Key_Right, Qt.Key_Up) else -1)
        else:
            super().keyPressEvent(e)

    def _refresh_titles(self):
        who = self.patient_text()
        src = "" if self.presentation else Path(self.scene.source_path or "").name
        self.setWindowTitle(" — ".join(x for x in ("spineplan", who, src) if x))
        if self.scene.volume is not None:
            self._on_volume(self.scene.volume)

    def _info_text(self, vol, identity: bool = True) -> str:
        """The image panel's text; without ``identity`` no patient and no series description."""
        i, j, k = vol.size_ijk
        who = self.patient_text() if identity else ""
        desc = "" if self.presentation or not identity else vol.meta.get("description", "")
        return ((f"<b>{who}</b><br>" if who else "")
                + f"<b>{vol.modality or 'image'}</b> {desc}"
                f"<br>{i}×{j}×{k} voxels, "
                f"{vol.spacing[0]:.2f}×{vol.spacing[1]:.2f}×{vol.spacing[2]:.2f} mm, {vol.orientation()}<br>"
                + "<br>".join(f"⚠ {w}" for w in vol.warnings))

    def _on_volume(self, vol):
        self.info_label.setText(self._info_text(vol))
        self.preset_box.setCurrentText("CT bone" if vol.modality == "CT" else "MRI auto")
        who = self.patient_text()
        src = "" if self.presentation else Path(self.scene.source_path or "").name
        self.setWindowTitle(" — ".join(x for x in ("spineplan", who, src) if x))

    def apply_preset(self, name: str):
        from ..core.presets import CT_PRESETS, mri_auto_window

        if self.scene.volume is None:
            return
        lw = CT_PRESETS.get(name) or mri_auto_window(self.scene.volume.array)
        for v in self.views.values():
            v.set_window(*lw)

    def set_convention(self, convention: str):
        self.convention = convention
        self.settings.setValue("convention", convention)
        for v in self.views.values():
            v.set_convention(convention)

    def set_layout(self, name: str):
        widgets = dict(self.views, **({"3d": self.view3d} if self.view3d else {}))
        for n, w in widgets.items():
            w.setVisible(name == "all" or n == name)
        self.settings.setValue("layout", name)

    def _slice_views(self):
        return list(self.views.values()) + list(getattr(self, "plan_views", {}).values())

    def set_tool(self, tool: str):
        """Tool of the slice views: "crosshair", a measurement, or "paint" / "erase" (labels).

        Measurements are taken in the three main views; the trajectory views take the
        crosshair and the brush.
        """
        for v in self._slice_views():
            v.tool = tool if v in self.views.values() or tool in BRUSH_TOOLS else "crosshair"
            v._pending = []
            v.update()
        self.brush.erase = tool == "erase"
        for b, t in ((self.paint_button, "paint"), (self.erase_button, "erase")):
            b.blockSignals(True)
            b.setChecked(tool == t)
            b.blockSignals(False)
        if tool in BRUSH_TOOLS and self.scene.labels is None:
            self.statusBar().showMessage("No label map: segment or load labels before painting")

    # ------------------------------------------------------------------ segmentation
    def _ask_labels(self):
        f, _ = QFileDialog.getOpenFileName(self, "Open label map", "", "Label maps (*.nii *.nii.gz *.nrrd *.mha)")
        if f:
            self.load_labels([f])

    def load_labels(self, paths) -> bool:
        """Load a label map onto the image (checked to fit it first); False after a message."""
        from ..core.segmentation.importers import read_labels

        if self.scene.volume is None:
            return False
        try:
            lab = read_labels(paths, self.scene.volume)
        except Exception as exc:  # noqa: BLE001
            self.show_error("Cannot read the label map", str(exc))
            return False
        from ..core.segmentation.fit import check_labels_fit_image

        fit = check_labels_fit_image(self.scene.volume, lab)
        if not fit.ok:
            self.show_error("The label map does not fit this image", fit.message)
            return False
        self.set_labels(lab)
        from ..core.segmentation.confirm import labels_file_result

        names = [L.vertebra_name(x) for x in L.craniocaudal_order(self._present_labels()) if L.is_vertebra(x)]
        self.scene.set_segmentation(labels_file_result(names))
        return True

    def set_labels(self, lab):
        self.scene.set_labels(lab)

    def _on_labels(self, lab, region=None):
        """Motor units and the vertebra list follow the labels (after segmentation, corrections,
        undo/redo); during a paint stroke they are brought up to date when the stroke ends."""
        self.anatomy = None
        self._labels_version += 1
        if self.brush.active:
            self._labels_stale = True
            return
        self._labels_stale = False
        self._recompute_units(lab)

    def _recompute_units(self, lab):
        """Motor units and the labels present (the vertebra list) of new or edited labels,
        computed in the thread pool on a snapshot of the label map (1-2 s on a full-size CT;
        painting may go on meanwhile). A newer edit supersedes a running computation: its result
        is dropped. Until the units arrive, the table is disabled and planning computes its
        anatomy from the labels themselves."""
        def job(progress=None, cancel=None):
            from ..core.segmentation.motor_units import compute_motor_units  # scipy: not at start

            return compute_motor_units(snapshot), _labels_present(snapshot.array), version

        if lab is None:
            self._units_job.supersede()
            self.unit_table.setEnabled(True)
            self._fill_vertebra_box(set())
            self.scene.set_motor_units([])
            return
        snapshot = self.scene.labels_snapshot()  # the subscribers are only given the scene's labels
        version = self._labels_version
        self.unit_table.setEnabled(False)
        self._units_job.start(job)

    @property
    def units_pending(self) -> bool:
        """Motor units of the current labels are being computed."""
        return self._units_job.pending

    def _units_done(self, result, error: str | None):
        self.unit_table.setEnabled(True)
        if error is not None:
            self.statusBar().showMessage(f"motor units not computed: {error}")
            result = ([], self._present_labels(), None)
        units, present, version = result
        if version is not None:
            self._present_cache = (version, frozenset(present))
        self._fill_vertebra_box(present)
        self.scene.set_motor_units(units)

    def background_pending(self) -> bool:
        """True while motor units, 3D label meshes or a plan proposal are being computed."""
        return (self.units_pending or self.plan_pending
                or (self.view3d is not None and self.view3d.meshes_pending))

    def settle(self, timeout_s: float = 120.0) -> bool:
        """Process events until the background label work is done (screenshots, scripts, tests);
        False on timeout."""
        import time

        from PySide6.QtWidgets import QApplication

        end = time.monotonic() + timeout_s
        while self.background_pending():
            if time.monotonic() > end:
                return False
            QApplication.processEvents()
            time.sleep(0.005)
        return True

    def _anatomy(self):
        """The planning anatomy; built from the labels when the motor units are not yet current."""
        from ..core.planning.plan import Anatomy

        if self.anatomy is None:
            units = None if self.units_pending else (self.scene.motor_units or None)
            # the snapshot: planning runs in the thread pool while the labels may be edited
            self.anatomy = Anatomy(self.scene.volume, self.scene.labels_snapshot(), units)
        self.anatomy.segmentation = self.scene.segmentation
        return self.anatomy

    def _on_stroke(self, started: bool):
        """Costly label subscribers (motor units, vertebra list, 3D meshes) wait for a stroke's end."""
        if self.view3d is not None:
            self.view3d.defer_label_meshes(started)
        if not started and self._labels_stale:
            self._on_labels(self.scene.labels)

    _present_cache: tuple[int, frozenset] = (-1, frozenset())

    def _present_labels(self) -> set[int]:
        """The label values present now: the background count's while the labels are unchanged
        since (a full-size scan takes 0.1-0.5 s to count, on every correction click)."""
        version, present = self._present_cache
        if version == self._labels_version:
            return set(present)
        lab = self.scene.labels
        return set() if lab is None else _labels_present(lab.array)

    _wanted_vertebra = ""

    def _fill_vertebra_box(self, present: set[int]):
        cur = self.vertebra_box.currentText()
        names = [L.vertebra_name(x) for x in L.craniocaudal_order(present) if L.is_vertebra(x)]
        self.vertebra_box.blockSignals(True)
        self.vertebra_box.clear()
        self.vertebra_box.addItems(names)
        for want in (self._wanted_vertebra, cur):  # a renamed vertebra stays selected
            if want in names:
                self.vertebra_box.setCurrentText(want)
                break
        self._wanted_vertebra = ""
        self.vertebra_box.blockSignals(False)
        self._on_vertebra_selected(self.vertebra_box.currentText())

    def _on_vertebra_selected(self, name: str):
        self.brush.label = L.vertebra_label(name) if name else 0

    def _correction_labels(self, what: str):
        """(selected vertebra, chosen name's label, labels present) or None after a message."""
        if self.scene.labels is None or not self.vertebra_box.currentText():
            self.show_error(what, "Segment the spine or load a label map first.")
            return None
        return (L.vertebra_label(self.vertebra_box.currentText()), L.vertebra_label(self.name_box.currentText()),
                self._present_labels())

    def name_vertebra(self) -> bool:
        """Name the selected vertebra and rename the column from it (the user's confirmation)."""
        from ..core.errors import SegmentationError
        from ..core.segmentation.confirm import NameVertebra

        sel = self._correction_labels("Name vertebra")
        if sel is None:
            return False
        old, _, _ = sel
        name = self.name_box.currentText()
        try:
            self.scene.undo_stack.push(NameVertebra(self.scene, old, name))
        except (SegmentationError, ValueError) as exc:
            self.show_error("Name vertebra", str(exc))
            return False
        self._wanted_vertebra = name
        return True

    def rename_vertebra(self) -> bool:
        """Give the selected vertebra the chosen name; refused when that name is already used."""
        from ..core.errors import SegmentationError
        from ..core.segmentation.edit import rename_command

        sel = self._correction_labels("Rename")
        if sel is None:
            return False
        old, new, _ = sel
        try:  # the core refuses a name already in use
            self.scene.undo_stack.push(rename_command(self.scene, old, new))
        except SegmentationError as exc:
            self.show_error("Rename", str(exc))
            return False
        self._wanted_vertebra = L.vertebra_name(new)  # selected when the list is refilled
        return True

    def merge_vertebra(self) -> bool:
        """The selected vertebra absorbs the one chosen by name (a vertebra cut in two)."""
        from ..core.segmentation.edit import merge_command

        sel = self._correction_labels("Merge")
        if sel is None:
            return False
        keep, absorb, present = sel
        if absorb == keep or absorb not in present:
            self.show_error("Merge", f"Choose another vertebra of the label map to merge into "
                                     f"{L.vertebra_name(keep)} ({L.vertebra_name(absorb)} is "
                                     f"{'the same one' if absorb == keep else 'not in the label map'}).")
            return False
        self.scene.undo_stack.push(merge_command(self.scene, keep, absorb))
        return True

    def split_vertebra_at_cursor(self) -> bool:
        """Split the selected vertebra by the axial plane through the crosshair; the caudal
        part gets the chosen name (refused if that name is used or the plane misses the label)."""
        from ..core.segmentation.edit import split_command

        sel = self._correction_labels("Split")
        if sel is None:
            return False
        label, new, present = sel
        lab, z0 = self.scene.labels, float(self.scene.cursor_lps[2])
        if new == label or new in present:
            self.show_error("Split", f"{L.vertebra_name(new)} is already in the label map: "
                                     "choose an unused name for the caudal part.")
            return False
        idx = np.argwhere(lab.array == label)
        z = lab.lps_points_from_ijk(idx[:, ::-1].astype(float))[:, 2]
        if not (z < z0).any() or (z < z0).all():
            self.show_error("Split", f"The axial plane through the crosshair (z = {z0:.1f} mm) does not cut "
                                     f"{L.vertebra_name(label)} (z {z.min():.1f} to {z.max():.1f} mm).")
            return False
        self.scene.undo_stack.push(split_command(self.scene, label, self.scene.cursor_lps.copy(),
                                                 (0.0, 0.0, -1.0), new))
        return True

    def run_segmentation(self):
        from ..core.segmentation.base import default_for

        vol = self.scene.volume
        if vol is None:
            return
        if not vol.modality:  # NIfTI/NRRD files do not say; the user does, once
            choice, ok = QInputDialog.getItem(
                self, "Segment", "This file does not record its modality. Segment it as:",
                ["MR", "CT"], 0, False)
            if not ok:
                return
            vol.modality = choice
        try:
            seg = default_for(vol.modality)
            if not seg.is_available():
                raise RuntimeError(f"segmenter '{seg.name}' is not available: "
                                   f"{'; '.join(seg.missing_dependencies)}. Load a label map instead.")
        except Exception as exc:  # noqa: BLE001
            self.show_error("Segmentation", str(exc))
            return
        w = run_in_background(lambda progress=None, cancel=None: seg.segment(vol, progress=progress, cancel=cancel))
        self._worker = w
        w.signals.finished.connect(lambda res: self._on_segmented(seg.name, res))
        w.signals.failed.connect(lambda msg: self.show_error("Segmentation failed", msg))

    def _on_segmented(self, backend: str, res):
        """Show a segmenter's labels; its level status goes to the scene (shown by
        ``_on_segmentation``)."""
        self.set_labels(res.labels)
        if not res.backend:
            res.backend = backend
        self.scene.set_segmentation(res)

    def _on_segmentation(self, res):
        """Levels, weakest confidence, evidence and flags; the confirmation button when needed."""
        self.anatomy = None  # the planning anatomy carries the level status
        if res is None:
            self.seg_status.setText("")
            self.seg_status.setStyleSheet("")
            self.confirm_levels_button.setEnabled(False)
            return
        text = f"{res.backend}: {', '.join(res.levels) or 'no levels'}"
        if res.confidence:
            lv = min(res.confidence, key=res.confidence.get)
            text += f" (lowest confidence {res.confidence[lv]:.2f}, {lv})"
        if res.levels:
            text += f"\nnamed {res.evidence.describe(res.levels[-1])}"
        if res.flags:
            text += "\n⚠ " + "\n⚠ ".join(f.message for f in res.flags)
        if res.needs_confirmation:
            text += "\n⚠ LEVELS NOT ESTABLISHED: check the names on the images, correct them if " \
                    "needed, then confirm before planning."
        self.seg_status.setText(text)
        self.seg_status.setStyleSheet("color: #c62828; font-weight: bold;"
                                      if res.flags or res.needs_confirmation else "")
        self.confirm_levels_button.setEnabled(res.needs_confirmation)

    def confirm_levels(self) -> bool:
        """Record (undoably) that the surgeon checked the level names, at the chosen unit."""
        from ..core.segmentation.confirm import ConfirmLevels

        if self.scene.segmentation is None:
            return False
        self.scene.undo_stack.push(ConfirmLevels(self.scene, self.level_box.currentText() or "all"))
        return True

    def shift_levels(self, steps: int):
        from ..core.segmentation.edit import LabelEdit, shift_levels

        if self.scene.labels is None:
            return
        try:
            self.scene.undo_stack.push(LabelEdit(self.scene, lambda a: shift_levels(a, steps),
                                                 f"Shift level names by {steps}"))
        except Exception as exc:  # noqa: BLE001
            self.show_error("Cannot shift levels", str(exc))
            return

    def _on_units(self, units):
        if units:  # (no scipy import for an image without labels: the start stays short)
            from ..core.segmentation.motor_units import implausible_lines

        self.anatomy = None
        self.unit_table.setRowCount(len(units))
        cur = self.level_box.currentText()
        self.level_box.clear()
        self.level_box.addItems([u.name for u in units])
        if cur:
            self.level_box.setCurrentText(cur)
        for r, u in enumerate(units):
            for c, (t, bad) in enumerate(unit_table_cells(u)):
                item = QTableWidgetItem(t)
                if bad:  # an impossible number is marked, never shown plain
                    item.setForeground(QColor(235, 60, 60))
                    item.setToolTip("implausible: " + "; ".join(bad) + ". A measurement failure: "
                                    "check the labels of this unit.")
                self.unit_table.setItem(r, c, item)
            notes = self.unit_table.item(r, len(UNIT_TABLE_COLUMNS) - 1)
            notes.setToolTip("\n".join([notes.text()] + implausible_lines(u)))
        # every column in view (no horizontal scrolling): numbers sized to their contents,
        # the notes column takes the rest and elides (the full text is its tooltip)
        self.unit_table.resizeColumnsToContents()

    # ------------------------------------------------------------------ planning
    plan_pending = False  # a proposal is being computed

    def propose_plan(self):
        """Propose a plan for the chosen unit, side and procedure. The search (up to a few
        seconds for a cage on a full-size CT) runs in the thread pool on the anatomy's snapshot
        of the labels; a proposal made on labels that changed meanwhile is dropped."""
        from ..core.planning.case import Case
        from ..core.planning.planner import make_plan

        if self.scene.labels is None:
            self.show_error("Plan", "Segment the spine or load a label map first.")
            return None
        if self.plan_pending:
            return None
        if self.scene.levels_need_confirmation:
            self.show_error("Plan", "The levels are not established: check the vertebra names on the "
                                    "images, correct them if needed, then press 'Confirm levels'.")
            return None
        try:
            anat = self._anatomy()
            level, side, proc = self.level_box.currentText(), self.side_box.currentText(), self.proc_box.currentText()
            case = Case(level=level, side=side, zone=self.zone_box.currentText(),
                        pathology=self.pathology_box.currentText(),
                        symptom_side=self.symptom_box.currentText(),
                        suspected_root=self.root_box.currentText())
        except Exception as exc:  # noqa: BLE001
            self.show_error("Cannot plan", str(exc))
            return None
        lesion = self.scene.lesion  # the proposal aims at the marked lesion
        self.plan_pending = True
        self.propose_button.setEnabled(False)
        self.statusBar().showMessage(f"planning {proc} at {level}…")
        w = run_in_background(lambda progress=None, cancel=None: make_plan(anat, level, proc, side, case=case,
                                                                                 lesion=lesion))
        self._plan_worker = w
        ver = self._labels_version
        w.signals.finished.connect(lambda plan: self._plan_proposed(ver, plan))
        w.signals.failed.connect(lambda msg: self._plan_proposed(ver, None, msg))
        return w

    def _plan_proposed(self, labels_version: int, plan, error: str | None = None):
        from ..core.commands import SetAttrCommand

        self._plan_worker = None
        self.plan_pending = False
        if self._closing:
            return
        self.propose_button.setEnabled(True)
        self.statusBar().clearMessage()
        if error is not None:
            self.show_error("Cannot plan", error)
            return
        if labels_version != self._labels_version:  # the labels changed while planning
            self.statusBar().showMessage("the labels changed while planning: propose the plan again")
            return
        self.scene.undo_stack.push(SetAttrCommand(self.scene, "plan", plan,
                                                  notify=lambda: self.scene.events.plan.emit(self.scene.plan),
                                                  text="Propose plan"))
        self.scene.set_cursor(plan.target_lps)

    def move_plan_point(self, which: str, lps, finished: bool = True):
        """Drag of the plan's entry or target: re-check live, one undo step per drag."""
        from ..core.commands import SetAttrCommand
        from ..core.planning.plan import Plan
        from ..core.planning.planner import evaluate

        plan = self.scene.plan
        if plan is None:
            return
        self._anatomy()
        moved = Plan.from_dict(plan.to_dict())
        setattr(moved, f"{which}_lps", np.asarray(lps, float))
        if moved.procedure == "cage" and which == "target":
            moved.parameters["center_lps"] = [float(x) for x in lps]
        try:
            evaluate(moved, self.anatomy)
        except Exception as exc:  # noqa: BLE001
            self.statusBar().showMessage(f"cannot re-check: {exc}")
            return
        self.scene.undo_stack.push(SetAttrCommand(
            self.scene, "plan", moved, notify=lambda: self.scene.events.plan.emit(self.scene.plan),
            text=f"Move plan {which}", merge_id=("plan-drag", which)))
        if finished:
            self.scene.undo_stack.end_merge()

    def type_plan_point(self, which: str) -> bool:
        """Apply a typed entry/target ("x, y, z" in LPS mm) with the same re-check as a drag."""
        try:
            xyz = [float(t) for t in self.point_edits[which].text().replace(";", ",").split(",")]
            if len(xyz) != 3 or not all(np.isfinite(xyz)):
                raise ValueError
        except ValueError:
            self.show_error("Plan", "Type three numbers: x, y, z in LPS millimetres.")
            return False
        self.move_plan_point(which, np.array(xyz), True)
        return True

    def _on_plan(self, plan):
        self.check_list.clear()
        for which, e in getattr(self, "point_edits", {}).items():
            if plan is not None and not e.hasFocus():
                e.setText(", ".join(f"{v:.1f}" for v in getattr(plan, f"{which}_lps")))
        if plan is None:
            return
        colours = {"ok": QColor(60, 200, 90), "warning": QColor(240, 170, 30), "error": QColor(235, 60, 60)}
        n = plan.check_counts()
        head = QListWidgetItem(f"{n['red']} red · {n['amber']} amber ({n['not_evaluated']} not evaluated) · "
                               f"{n['green']} green")
        head.setForeground(colours["error" if n["red"] else "warning" if n["amber"] else "ok"])
        self.check_list.addItem(head)
        for c in sorted(plan.checks, key=lambda c: {"error": 0, "warning": 1, "ok": 2}[c.severity]):
            it = QListWidgetItem(f"● {c.name}: {c.detail}")  # a not-evaluated detail says so and why
            it.setForeground(colours[c.severity])
            it.setToolTip(f"{c.name} ({c.status.replace('_', ' ')}): {c.detail}")
            it.setData(Qt.UserRole, c.id)
            self.check_list.addItem(it)

    def open_plan_file(self, path):
        """Open a saved plan on the loaded image; its checks are recomputed on the labels shown
        and every stored result that differs is listed in red (returns the Recheck).

        Raises PlanFileError (tampered, other series, ...) like ``persistence.load_plan``.
        """
        from ..core.persistence import load_plan

        return self._set_loaded_plan(load_plan(path, volume=self.scene.volume), Path(path).name)

    def _set_loaded_plan(self, d: dict, name: str):
        """Show a plan read from a file with its checks recomputed (see open_plan_file)."""
        from ..core.planning.plan import Anatomy, Plan
        from ..core.planning.recheck import not_rechecked, recheck_plan

        labels = self.scene.labels_snapshot()
        if labels is None:
            recheck = not_rechecked("no labels loaded: segment or load labels to recompute them")
        else:
            recheck = recheck_plan(d, Anatomy(self.scene.volume, labels))
        plan = Plan.from_dict(d)
        if recheck.checks:
            plan.checks = list(recheck.checks)
            plan.motor_units_touched = list(recheck.motor_units_touched)
        self.plan_recheck = recheck
        self.scene.set_plan(plan)
        red = QColor(235, 60, 60)
        lines = ([f"⚠ stored result differs: {x.describe()}" for x in recheck.differences]
                 or ([] if recheck.agrees else [f"⚠ checks not recomputed: {recheck.reason}"]))
        for text in reversed(lines):
            it = QListWidgetItem(text)
            it.setForeground(red)
            self.check_list.insertItem(0, it)
        if lines:
            self.statusBar().showMessage(f"{name}: " + "; ".join(lines)[:300])
        return recheck

    def _plan_dict(self):
        if self.scene.plan is None:
            self.show_error("No plan", "Propose a plan first.")
            return None
        return self.scene.plan.to_dict()

    def _export_plan(self, title: str, default_name: str, file_filter: str, write) -> None:
        """Ask for a file name and write the current plan with ``write(plan_dict, path)``."""
        d = self._plan_dict()
        if d is None:
            return
        f, _ = QFileDialog.getSaveFileName(self, title, default_name, file_filter)
        if f:
            write(d, f)

    def save_plan(self):
        from ..core.persistence import save_plan

        self._export_plan("Save plan", "plan.json", "Plan (*.json)", save_plan)

    def export_report(self):
        from ..core.export.report import write_report

        self._export_plan("Report", "report.pdf", "PDF (*.pdf)", lambda d, f: write_report(
            d, f, volume=self.scene.volume, labels=self.scene.labels))

    def export_markups(self):
        from ..core.export.slicer_markups import write_markups

        self._export_plan("Slicer markups", "plan.mrk.json", "Markups (*.mrk.json)", write_markups)

    # ------------------------------------------------------------------ measurements
    def _on_annotations(self, items):
        self.measure_list.clear()
        for m in items:
            self.measure_list.addItem(f"{m.view}: {m.text()}")

    def delete_selected_measurement(self):
        from ..core.measurements import DeleteMeasurement

        r = self.measure_list.currentRow()
        if 0 <= r < len(self.scene.annotations):
            self.scene.undo_stack.push(DeleteMeasurement(self.scene, self.scene.annotations[r]))

    def export_stl(self):
        from ..core.export.instrument_stl import write_instrument_stl

        self._export_plan("Instrument STL (LPS)", "instrument.stl", "STL (*.stl)", write_instrument_stl)

    # ------------------------------------------------------------------ autosave
    def autosave_file(self) -> Path | None:
        """Where unsaved work on the open image is autosaved (per series, in the user's data dir)."""
        from PySide6.QtCore import QStandardPaths

        vol = self.scene.volume
        if vol is None:
            return None
        base = Path(self.settings.value("autosave_dir", "") or
                    QStandardPaths.writableLocation(QStandardPaths.AppDataLocation) or Path.home() / ".spineplan")
        import hashlib

        key = hashlib.sha256((vol.meta.get("series_uid", "") + repr(vol.origin) + repr(vol.size_ijk)).encode()).hexdigest()[:16]
        return base / f"case-{key}.json"

    def _autosave(self, *_):
        from ..core.persistence import Autosaver

        path = self.autosave_file()
        if path is None or (self.scene.plan is None and not self.scene.annotations):
            return
        if getattr(self, "_autosaver", None) is None or self._autosaver.path != path:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._autosaver = Autosaver(path, min_interval_s=2.0)
        self._unsaved = True
        if not self._autosaver.changed(self.case_state()):
            # held back by the throttle: written when the interval is over, not only at the
            # next edit (a kill after the last edits would lose them)
            from PySide6.QtCore import QTimer

            QTimer.singleShot(int(self._autosaver.min_interval_s * 1000) + 100, self._flush_autosave)

    _unsaved = False

    def _flush_autosave(self):
        saver = getattr(self, "_autosaver", None)
        if saver is not None and saver.pending:
            saver.flush()

    def discard_autosave(self):
        """Remove this image's autosave (after a clean save, or when the user declines
        recovery): the next start offers recovery only for work newer than that."""
        from ..core.persistence import discard_autosave

        path = self.autosave_file()
        saver = getattr(self, "_autosaver", None)
        if saver is not None and saver.path == path:
            saver.discard()
        elif path is not None:
            discard_autosave(path)
        self._unsaved = False

    def offer_recovery(self) -> bool:
        """After a crash: restore the autosaved plan and measurements of this image if asked."""
        from ..core.measurements import Measurement
        from ..core.persistence import find_recovery
        from ..core.planning.plan import Plan

        path = self.autosave_file()
        state = find_recovery(path) if path is not None else None
        if not state:
            return False
        ans = QMessageBox.question(self, "Recover unsaved work",
                                   "spineplan found unsaved work on this image (after a crash?). Restore it?")
        if ans != QMessageBox.Yes:
            self.discard_autosave()  # declined: not asked again
            return False
        self.scene.set_annotations([Measurement.from_dict(m) for m in state.get("measurements") or []])
        self.scene.set_plan(Plan.from_dict(state["plan"]) if state.get("plan") else None)
        return True

    # ------------------------------------------------------------------ rehearsal
    def ask_rehearsal(self):
        if self._plan_dict() is None:
            return
        f, _ = QFileDialog.getSaveFileName(self, "Rehearsal animation", "rehearsal.gif", "Animation (*.gif *.mp4)")
        if f:
            self.export_rehearsal(f, str(Path(f).with_suffix(".pdf")))

    def export_rehearsal(self, out, handout=None, *, size=(640, 480), frames_per_step=8, block=False):
        """Render the guided rehearsal of the current plan in a worker; GIF/MP4 + handout PDF."""
        from ..core import teaching
        from ..core.export.animation import write_animation
        from ..core.export.handout import write_handout
        from ..render.rehearsal import render_rehearsal

        plan = self.scene.plan.to_dict()
        if self.presentation:
            plan = teaching.anonymise_for_presentation(plan, self.case_title)
        ct, labels = self.scene.volume, self.scene.labels
        if labels is not None:  # label edits change the scene's array in place meanwhile
            labels = self.scene.labels_snapshot()

        def job(progress=None, cancel=None):
            imgs: list = []
            steps = teaching.rehearsal_steps(plan, labels)  # the storyboard, once
            frames = render_rehearsal(plan, ct, labels, size=size, frames_per_step=frames_per_step,
                                      progress=progress, cancel=cancel, step_images=imgs, steps=steps)
            write_animation(frames, out)
            if handout:
                write_handout(steps, imgs, handout)
            return len(frames)

        if block:
            return job()
        w = run_in_background(job)
        self._worker = w
        w.signals.finished.connect(lambda n: self.statusBar().showMessage(f"rehearsal written: {out} ({n} frames)"))
        w.signals.failed.connect(lambda msg: self.show_error("Rehearsal failed", msg))
        return w

    # ------------------------------------------------------------------ practice
    def ask_practice_reference(self):
        f, _ = QFileDialog.getOpenFileName(self, "Reference plan", "", "Plan (*.json)")
        if f:
            self.start_practice(f)

    def start_practice(self, path) -> bool:
        """Hide a reference plan: the resident sees only level, side and procedure."""
        from ..core.persistence import load_plan
        from ..core.teaching import resident_view

        try:
            ref = load_plan(path, volume=self.scene.volume)
        except Exception as exc:  # noqa: BLE001
            self.show_error("Cannot load the reference plan", str(exc))
            return False
        self.practice_reference = ref
        task = resident_view(ref)
        self.level_box.setCurrentText(task["level"])
        self.side_box.setCurrentText(task["side"])
        self.proc_box.setCurrentText(task["procedure"])
        self.practice_info.setText(f"Task: {task['procedure']} at {task['level']}, {task['side']} side. "
                                   "Plan it (Plan tab: propose, then drag entry/target), then score.")
        self.practice_result.setText("")
        return True

    def score_practice(self):
        """Score the current plan against the hidden reference and show both side by side."""
        from ..core.teaching import score_attempt, score_summary

        if self.practice_reference is None or self.scene.plan is None:
            self.show_error("Practice", "Load a reference plan and make your own plan first.")
            return None
        score = score_attempt(self.practice_reference, self.scene.plan.to_dict())
        self.practice_result.setText("<br>".join(score_summary(score)))
        try:
            from ..render.rehearsal import render_comparison

            img = render_comparison(self.practice_reference, self.scene.plan.to_dict(), self.scene.volume,
                                    self.scene.labels, size=(640, 320), score=score)
            h, w = img.shape[:2]
            q = QImage(np.ascontiguousarray(img[..., :3]).data, w, h, 3 * w, QImage.Format_RGB888).copy()
            from PySide6.QtGui import QPixmap

            self.practice_image.setPixmap(QPixmap.fromImage(q).scaledToWidth(max(self.panel.width() - 20, 200)))
        except Exception as exc:  # noqa: BLE001 - the score stands without the picture
            self.statusBar().showMessage(f"comparison image unavailable: {exc}")
        return score

    # ------------------------------------------------------------------ case files
    def case_state(self) -> dict:
        """The case as saved: measurements, plan, clinical case, and the image it belongs to."""
        from ..core.volume import source_from_volume

        vol = self.scene.volume
        return {"source": source_from_volume(vol) if vol is not None else None,
                "measurements": [m.to_dict() for m in self.scene.annotations],
                "plan": self.scene.plan.to_dict() if self.scene.plan is not None else None,
                "case": self.scene.plan.case if self.scene.plan is not None else None,
                "fusion": self.fusion_panel.case_record()}

    def save_case(self, path):
        from ..core.persistence import save_case

        out = save_case(self.case_state(), path)
        self.discard_autosave()  # saved cleanly: nothing to recover
        return out

    def open_case(self, path):
        """Restore measurements and plan saved for the open image (refused for another series)."""
        from ..core.measurements import Measurement
        from ..core.persistence import load_case

        try:
            doc = load_case(path, volume=self.scene.volume)
        except Exception as exc:  # noqa: BLE001
            self.show_error("Cannot open the case", str(exc))
            return False
        self.scene.set_annotations([Measurement.from_dict(m) for m in doc.get("measurements") or []])
        self.fusion_panel.apply_case_record(doc.get("fusion"))
        if doc.get("plan"):
            self._set_loaded_plan(doc["plan"], Path(path).name)  # checks recomputed
        else:
            self.scene.set_plan(None)
        self.scene.undo_stack.clear()
        return True

    def ask_save_case(self):
        f, _ = QFileDialog.getSaveFileName(self, "Save case", "case.json", "Case (*.json)")
        if f:
            self.save_case(f)

    def ask_open_case(self):
        f, _ = QFileDialog.getOpenFileName(self, "Open case", "", "Case (*.json)")
        if f:
            self.open_case(f)

    # ------------------------------------------------------------------ screenshots
    def screenshot(self, identity: bool = False) -> QImage:
        """The whole window, with the VTK view's real pixels painted in (grab() can't read GL).

        An exported picture: without ``identity`` the patient's name/ID and the series
        description are left out of it (the screen keeps showing them).
        """
        vol = self.scene.volume
        shown = self.info_label.text()
        if vol is not None and not identity:
            self.info_label.setText(self._info_text(vol, identity=False))
        QApplication.processEvents()
        try:
            img = self.grab().toImage().convertToFormat(QImage.Format_RGB888)
        finally:
            if vol is not None and not identity:
                self.info_label.setText(shown)
        if self.view3d is not None and self.view3d.isVisible():
            arr = self.view3d.grab_array()
            h, w = arr.shape[:2]
            q = QImage(np.ascontiguousarray(arr).data, w, h, 3 * w, QImage.Format_RGB888).copy()
            pos = self.view3d.mapTo(self, self.view3d.rect().topLeft())
            p = QPainter(img)
            p.drawImage(pos, q.scaled(self.view3d.width(), self.view3d.height()))
            p.end()
        return img

    def closeEvent(self, e):
        self._closing = True
        if self._unsaved:
            self._flush_autosave()  # unsaved work stays recoverable
        else:
            self.discard_autosave()
        self._units_job.close()
        self.lesion_panel.close_jobs()
        if self.view3d is not None:
            self.view3d.close_vtk()
        super().closeEvent(e)
