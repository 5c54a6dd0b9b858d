"""PACS settings: round trip, file modes, secrets only in the keyring (or a 0600 file, with a warning)."""

from __future__ import annotations

import stat

import keyring
import pytest
from keyring.backend import KeyringBackend

from spineplan.core.errors import InvalidInputError
from spineplan.core.pacs import (AuthKind, DicomWebEndpoint, NodeSettings, PacsNode, PacsSettings,
                                 PlaintextSecretsWarning, RetrieveMethod, SecretBackend, SecretStore,
                                 load_settings, save_settings)

SECRET = "s3cr3t-token-7f1e"


class MemoryKeyring(KeyringBackend):
    priority = 10

    def __init__(self):
        super().__init__()
        self.store = {}

    def set_password(self, service, username, password):
        self.store[(service, username)] = password

    def get_password(self, service, username):
        return self.store.get((service, username))

    def delete_password(self, service, username):
        self.store.pop((service, username), None)


@pytest.fixture()
def memory_keyring():
    old = keyring.get_keyring()
    kr = MemoryKeyring()
    keyring.set_keyring(kr)
    yield kr
    keyring.set_keyring(old)


def _settings(tmp_path):
    return PacsSettings(
        nodes={"hospital": NodeSettings(PacsNode("pacs.example.org", 11112, called_aet="HOSP",
                                                 calling_aet="SPINE1", store_port=11113,
                                                 tls_ca="/etc/ca.pem"), RetrieveMethod.MOVE)},
        endpoints={"web": DicomWebEndpoint("https://pacs.example.org/dicom-web/", AuthKind.BEARER,
                                           "")},
        cache_dir=str(tmp_path / "cache"), cache_max_bytes=123456789)


def _all_text(folder):
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_settings_round_trip_and_mode(tmp_path, memory_keyring, monkeypatch):
    monkeypatch.setenv("SPINEPLAN_CONFIG_DIR", str(tmp_path / "cfg"))
    s = _settings(tmp_path)
    path = save_settings(s)
    assert path == tmp_path / "cfg" / "pacs.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = load_settings()
    assert back == s
    assert back.nodes["hospital"].method is RetrieveMethod.MOVE
    assert back.endpoints["web"].url == "https://pacs.example.org/dicom-web"
    assert back.cache().max_bytes == 123456789

    secrets = SecretStore()
    assert secrets.backend is SecretBackend.KEYRING
    secrets.set("web", SECRET)
    assert SecretStore().get("web") == SECRET
    assert SECRET not in _all_text(tmp_path / "cfg")           # only in the keyring
    client = back.web_client("web", secrets)
    assert client._client._session.headers["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(back) and SECRET not in repr(client.endpoint)


def test_without_keyring_secrets_go_to_a_0600_file_with_a_warning(tmp_path):
    store = SecretStore(tmp_path / "cfg", use_keyring=False)
    assert store.backend is SecretBackend.FILE
    with pytest.warns(PlaintextSecretsWarning):
        store.set("web", SECRET)
    assert stat.S_IMODE(store.file_path.stat().st_mode) == 0o600
    assert SecretStore(tmp_path / "cfg", use_keyring=False).get("web") == SECRET
    store.delete("web")
    assert store.get("web") is None


def test_broken_settings_file_is_one_line_error(tmp_path):
    p = tmp_path / "pacs.json"
    p.write_text('{"version": 1, "nodes": {"x": {"host": "h", "port": 99999}}}')
    with pytest.raises(InvalidInputError, match="port must be 1-65535"):
        load_settings(p)
    p.write_text("{not json")
    with pytest.raises(InvalidInputError, match="not readable"):
        load_settings(p)
    assert load_settings(tmp_path / "absent.json") == PacsSettings()
