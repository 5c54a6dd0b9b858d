"""The motor-unit table marks implausible measurements instead of showing them as numbers."""

from __future__ import annotations

import gc

import pytest

pytest.importorskip("PySide6")

from PySide6.QtGui import QColor  # noqa: E402

from spineplan.core.phantom import make_phantom  # noqa: E402
from spineplan.qt.main_window import UNIT_TABLE_COLUMNS  # noqa: E402

from ..core.test_motor_units import shifted_vertebra  # noqa: E402
from .test_workstation import _make_window, wait_units  # noqa: E402


def test_implausible_slip_is_marked_in_the_table(qtbot, tmp_path):
    ph = make_phantom(spacing=2.5)
    lab = shifted_vertebra(ph.labels, "L1", 20.0)  # L1-L2 reads as a ~ -19 mm retrolisthesis
    w = _make_window(qtbot, tmp_path)
    try:
        w.scene.set_volume(ph.ct)
        w.scene.set_labels(lab)
        wait_units(w)
        t = w.unit_table
        headers = [h for h, _ in UNIT_TABLE_COLUMNS]
        rows = {t.item(r, 0).text(): r for r in range(t.rowCount())}
        assert list(rows) == ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
        slip = t.item(rows["L1-L2"], headers.index("slip"))
        assert slip.text().startswith("⚠") and slip.text().endswith("?")
        assert slip.foreground().color() == QColor(235, 60, 60) and "slip_mm" in slip.toolTip()
        notes = t.item(rows["L1-L2"], headers.index("notes")).text()
        assert "IMPLAUSIBLE" in notes and "slip_mm" in notes
        ok = t.item(rows["L4-L5"], headers.index("slip"))
        assert not ok.text().startswith("⚠") and abs(float(ok.text())) < 2.0 and not ok.toolTip()
        sac = t.item(rows["L4-L5"], headers.index("sac mm²")).text()
        assert 150 < float(sac) < 200
        # issue 15: the notes and facet columns sat behind a horizontal scrollbar
        qtbot.wait(50)
        n = t.columnCount()
        assert sum(t.columnWidth(c) for c in range(n - 1)) + 40 <= t.viewport().width()
        assert t.columnViewportPosition(n - 1) + 40 <= t.viewport().width()
        assert not t.horizontalScrollBar().isVisible()
        assert "IMPLAUSIBLE" in t.item(rows["L1-L2"], n - 1).toolTip()
    finally:
        w.close()
        gc.collect()
