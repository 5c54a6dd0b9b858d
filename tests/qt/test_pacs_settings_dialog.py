"""The PACS settings dialog: what is typed is saved, secrets go to the keyring, bad input refused."""

from __future__ import annotations

import stat

import pytest

pytest.importorskip("PySide6")

from spineplan.core.pacs import (AuthKind, PacsSettings, RetrieveMethod, SecretStore,  # noqa: E402
                                 load_settings)
from spineplan.qt.pacs_settings import WEB, PacsSettingsDialog  # noqa: E402
from tests.core.test_pacs_settings import SECRET, memory_keyring  # noqa: E402,F401


def test_settings_dialog_saves_nodes_endpoints_and_secret(qtbot, tmp_path, memory_keyring):  # noqa: F811
    path = tmp_path / "cfg" / "pacs.json"
    secrets = SecretStore(tmp_path / "cfg")
    dlg = PacsSettingsDialog(PacsSettings(cache_dir=str(tmp_path / "cache")), secrets, path)
    qtbot.addWidget(dlg)
    dlg.name.setText("hospital")
    dlg.host.setText("pacs.example.org")
    dlg.port.setValue(11112)
    dlg.called.setText("HOSPACS")
    dlg.method.setCurrentText("move")
    dlg.store_port.setValue(11200)
    assert dlg.apply()
    dlg.kind.setCurrentText(WEB)
    dlg.name.setText("web")
    dlg.url.setText("ftp://wrong")
    assert not dlg.apply() and "must start with http" in dlg.status.text()
    dlg.url.setText("https://pacs.example.org/dicom-web")
    dlg.auth.setCurrentText("basic")
    dlg.username.setText("surgeon")
    dlg.secret.setText(SECRET)
    assert dlg.apply()
    dlg.cache_gb.setValue(3)
    assert dlg.save() == path

    s = load_settings(path)
    assert s.nodes["hospital"].node.called_aet == "HOSPACS"
    assert s.nodes["hospital"].node.store_port == 11200
    assert s.nodes["hospital"].method is RetrieveMethod.MOVE
    assert s.endpoints["web"].auth is AuthKind.BASIC and s.endpoints["web"].username == "surgeon"
    assert s.cache_max_bytes == 3 * 1024 ** 3
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SECRET not in path.read_text()
    assert secrets.get("web") == SECRET

    dlg.sources.setCurrentRow([dlg.sources.item(i).text() for i in range(dlg.sources.count())].index("web"))
    assert dlg.url.text() == "https://pacs.example.org/dicom-web" and dlg.secret.text() == ""
    dlg.remove()
    dlg.save()
    assert "web" not in load_settings(path).endpoints and secrets.get("web") is None
