"""The Lesion tab: a lesion marked at the crosshair is one undo step, located in the thread
pool, and the proposal aims at it ("lesion reached" in the plan's checks)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

pytest.importorskip("PySide6")

from spineplan.core.phantom import make_phantom  # noqa: E402
from spineplan.core.planning.safety import CheckId  # noqa: E402

from .test_workstation import _make_window, _open, _propose, _set_labels  # noqa: E402


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(spacing=2.0, herniation={"level": "L4-L5", "side": "left", "zone": "paracentral",
                                                 "size_mm": 6.0})


@pytest.fixture()
def window(qtbot, tmp_path, phantom):
    w = _make_window(qtbot, tmp_path)
    _open(w, phantom, qtbot)
    _set_labels(w, phantom.labels)
    yield w
    w.close()
    gc.collect()


def test_mark_undo_redo_and_aimed_proposal(window, phantom, qtbot):
    panel = window.lesion_panel
    assert panel.info.text() == "no lesion marked" and not panel.clear_button.isEnabled()
    centre = np.array(phantom.truth["herniation"]["center_lps"])
    window.scene.set_cursor(centre)
    panel.radius_box.setValue(6.0)
    panel.mark_button.click()
    les = window.scene.lesion
    assert les is not None and np.allclose(les.centre_lps, centre) and les.radius_mm == 6.0
    qtbot.waitUntil(lambda: panel.location is not None, timeout=30000)
    assert (panel.location.level, panel.location.zone, panel.location.side) == ("L4-L5", "paracentral", "left")
    assert "paracentral left" in panel.info.text()
    window.scene.undo_stack.undo()
    assert window.scene.lesion is None and panel.info.text() == "no lesion marked"
    window.scene.undo_stack.redo()
    assert window.scene.lesion is les
    qtbot.waitUntil(lambda: panel.location is not None, timeout=30000)
    window.level_box.setCurrentText("L4-L5")
    window.side_box.setCurrentText("left")
    window.proc_box.setCurrentText("tube")
    _propose(window)
    plan = window.scene.plan
    assert plan is not None and plan.check(CheckId.LESION_REACHED).ok
    assert plan.lesion["zone"] == "paracentral"
    names = [window.check_list.item(n).text() for n in range(window.check_list.count())]
    assert any("lesion reached" in t for t in names)
    panel.clear_button.click()
    assert window.scene.lesion is None and window.scene.undo_stack.undo_text() == "Clear lesion"


def test_mark_without_crosshair_says_so(window):
    window.scene.cursor_lps = None
    assert window.lesion_panel.mark_at_cursor() is False
    assert window.scene.lesion is None and "crosshair" in window.lesion_panel.info.text()


def test_find_and_accept_a_candidate(window, phantom, qtbot):
    panel = window.lesion_panel
    assert panel.find_candidates()
    qtbot.waitUntil(lambda: not panel.finding, timeout=60000)
    assert [lv for lv, _ in panel.candidates] == ["L4-L5"] and panel.accept_button.isEnabled()
    assert panel.accept_candidate()
    les = window.scene.lesion
    assert les is panel.candidates[0][1] and les.mask["voxels"] > 0
    assert np.linalg.norm(les.centre_lps - phantom.truth["herniation"]["center_lps"]) <= 4.5
    qtbot.waitUntil(lambda: panel.location is not None, timeout=30000)
    assert (panel.location.level, panel.location.zone) == ("L4-L5", "paracentral")
    window.scene.undo_stack.undo()
    assert window.scene.lesion is None
