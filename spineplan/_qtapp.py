"""The QApplication singleton (created once)."""

from __future__ import annotations

import sys


def app_instance():
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setApplicationName("spineplan")
    return app
