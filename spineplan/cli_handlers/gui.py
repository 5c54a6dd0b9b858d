"""``spineplan gui [PATH] [--screenshot OUT.png] [--labels L.nii.gz] [--plan PLAN.json]``."""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.errors import InvalidInputError
from ..paths import sample_dicom_dir


def run(args) -> int:
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from .._qtapp import app_instance
    from ..qt.main_window import MainWindow, apply_dark_theme

    path = args.path or str(sample_dicom_dir())
    if not Path(path).exists():
        raise InvalidInputError(f"{path} does not exist")
    if args.plan:  # an invalid or forged-beyond-repair plan is refused before any window opens
        from ..core.persistence import load_plan

        load_plan(args.plan)
    vol = None
    if args.screenshot:
        # load synchronously, before any window (whose VTK view may print to stderr), so that
        # loading errors become exit code 2 with one line
        from ..core.dicom.load import load_volume

        vol = load_volume(path)
    app = app_instance()
    apply_dark_theme(app)
    settings = QSettings("spineplan", "spineplan")
    win = MainWindow(settings=settings)
    if args.screenshot:
        from ..core.segmentation.importers import read_labels

        win.scene.set_volume(vol, source_path=path)
        if args.labels:
            from ..core.segmentation.fit import check_labels_fit_image

            lab = read_labels([args.labels], vol)
            fit = check_labels_fit_image(vol, lab)
            if not fit.ok:
                raise InvalidInputError(fit.message)
            win.set_labels(lab)
            win.settle()
        if args.plan:
            _open_plan(win, args.plan)
        win.show()
        if args.presentation:
            win.set_presentation(True)
        for _ in range(5):
            app.processEvents()
        win.settle()
        img = win.screenshot()
        # light PNG compression (quality 80 of 100): a third of the default's time, still small
        if not img.save(args.screenshot, None, 80):
            raise InvalidInputError(f"cannot write {args.screenshot}")
        print(f"wrote {args.screenshot}")
        win.close()
        app.processEvents()
        return 0
    win.show()
    if args.presentation:
        win.set_presentation(True)
    if args.labels or args.plan:
        def start():
            # the image first (on this thread: the labels and the plan need it), then the
            # labels, then the plan with its checks recomputed on them
            if not win.open_path(path, block=True):
                return
            if args.labels and not win.load_labels([args.labels]):
                return
            if args.plan:
                _open_plan(win, args.plan)

        QTimer.singleShot(0, start)
    else:
        QTimer.singleShot(0, lambda: win.open_path(path))
    return app.exec()


def _open_plan(win, plan_path):
    win.open_plan_file(plan_path)  # checks recomputed on the labels shown, differences in red
    plan = win.scene.plan
    win.scene.set_cursor(plan.target_lps)
    if win.view3d is not None:
        win.view3d.set_camera("posterior" if plan.procedure != "needle" else plan.side)
