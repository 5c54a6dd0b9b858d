"""The PACS browser driven by pytest-qt against Orthanc: it lists the studies, a double click opens."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from spineplan.core.pacs import CaseCache  # noqa: E402
from spineplan.qt.pacs_browser import SERIES_ROLE, PacsBrowser  # noqa: E402

from .test_query_retrieve import N_SAMPLE, SAMPLE_SERIES, dimse, web  # noqa: E402


def _series_items(dlg):
    out = {}
    for i in range(dlg.tree.topLevelItemCount()):
        top = dlg.tree.topLevelItem(i)
        for j in range(top.childCount()):
            ch = top.child(j)
            out[ch.data(0, SERIES_ROLE).series_uid] = ch
    return out


def test_browser_lists_studies_and_double_click_opens(qtbot, orthanc, tmp_path):
    cache = CaseCache(tmp_path / "cache")
    dlg = PacsBrowser({"orthanc dimse": dimse(orthanc), "orthanc web": web(orthanc)}, cache)
    qtbot.addWidget(dlg)
    dlg.show()
    for source in ("orthanc dimse", "orthanc web"):
        dlg.source.setCurrentText(source)
        dlg.search_button.click()
        qtbot.waitUntil(lambda: dlg.tree.topLevelItemCount() == 2 and dlg.search_button.isEnabled(),
                        timeout=20000)
        assert {dlg.tree.topLevelItem(i).text(5) for i in range(2)} == {"SAMPLE", "MR-2"}
        assert _series_items(dlg)[SAMPLE_SERIES].text(3) == str(N_SAMPLE)

    dlg.patient_id.setText("MR-2")
    dlg.search_button.click()
    qtbot.waitUntil(lambda: dlg.tree.topLevelItemCount() == 1 and dlg.search_button.isEnabled(),
                    timeout=20000)
    dlg.patient_id.setText("")
    dlg.search_button.click()
    qtbot.waitUntil(lambda: dlg.tree.topLevelItemCount() == 2 and dlg.search_button.isEnabled(),
                    timeout=20000)

    item = _series_items(dlg)[SAMPLE_SERIES]
    with qtbot.waitSignal(dlg.series_ready, timeout=60000) as sig:
        dlg.tree.itemDoubleClicked.emit(item, 0)
    folder = sig.args[0]
    assert folder == str(cache.series_dir(SAMPLE_SERIES))
    assert cache.entries()[SAMPLE_SERIES].n_images == N_SAMPLE
    assert dlg.progress.value() == 1000
    assert dlg.status.text().startswith("Opened")


def test_browser_cancel_leaves_nothing_complete(qtbot, orthanc, tmp_path):
    cache = CaseCache(tmp_path / "cache")
    dlg = PacsBrowser({"orthanc": dimse(orthanc)}, cache)
    qtbot.addWidget(dlg)
    dlg.search_button.click()
    qtbot.waitUntil(lambda: dlg.tree.topLevelItemCount() == 2 and dlg.search_button.isEnabled(),
                    timeout=20000)
    dlg.progress.valueChanged.connect(lambda v: dlg.cancel_button.click() if v > 100 else None)
    dlg.retrieve_item(_series_items(dlg)[SAMPLE_SERIES])
    qtbot.waitUntil(lambda: dlg.status.text() == "Cancelled", timeout=60000)
    assert cache.entries() == {}
    assert 0 < cache.partial_count(SAMPLE_SERIES) < N_SAMPLE


def test_open_from_pacs_menu_opens_the_series_in_the_workstation(qtbot, orthanc, tmp_path, monkeypatch,
                                                                 sample_dicom):
    import numpy as np
    from PySide6.QtCore import QSettings

    from spineplan.core.dicom.load import load_volume
    from spineplan.core.pacs import NodeSettings, PacsSettings, save_settings
    from spineplan.qt.main_window import MainWindow

    monkeypatch.setenv("SPINEPLAN_CONFIG_DIR", str(tmp_path / "cfg"))
    node = dimse(orthanc).node
    save_settings(PacsSettings(nodes={"orthanc": NodeSettings(node)}, cache_dir=str(tmp_path / "cache")))
    qs = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    qs.setValue("autosave_dir", str(tmp_path / "autosave"))
    w = MainWindow(settings=qs, with_3d=False)
    qtbot.addWidget(w)
    w.show()
    action = [a for a in w.menuBar().actions()[0].menu().actions() if a.text() == "Open from PACS…"]
    assert action
    action[0].trigger()
    dlg = w.findChild(PacsBrowser)
    assert dlg is not None and dlg.isVisible()
    dlg.search_button.click()
    qtbot.waitUntil(lambda: dlg.tree.topLevelItemCount() == 2 and dlg.search_button.isEnabled(),
                    timeout=20000)
    dlg.tree.itemDoubleClicked.emit(_series_items(dlg)[SAMPLE_SERIES], 0)
    qtbot.waitUntil(lambda: w.scene.volume is not None, timeout=60000)
    want = load_volume(sample_dicom)
    assert np.array_equal(w.scene.volume.array, want.array)
    assert np.allclose(w.scene.volume.origin, want.origin)


def test_browser_test_connection(qtbot, orthanc, tmp_path):
    from spineplan.core.pacs import DimseClient, PacsNode

    wrong = DimseClient(PacsNode("127.0.0.1", orthanc.dicom_port, called_aet="NOTORTHANC", timeout_s=5))
    dlg = PacsBrowser({"good": dimse(orthanc), "web": web(orthanc), "wrong": wrong},
                      CaseCache(tmp_path / "cache"))
    qtbot.addWidget(dlg)
    for source, expect in (("good", "ok"), ("web", "ok"), ("wrong", "Called AE title not recognised")):
        dlg.source.setCurrentText(source)
        dlg.test_button.click()
        qtbot.waitUntil(lambda: dlg.test_button.isEnabled(), timeout=20000)
        assert expect in dlg.status.text(), dlg.status.text()
    assert dlg.status.text().startswith("Error:")
