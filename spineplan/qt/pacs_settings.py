"""PACS settings dialog: named DIMSE nodes and DICOMweb endpoints, the case cache, secrets.

Edits a core :class:`~spineplan.core.pacs.PacsSettings` and saves it with
:func:`~spineplan.core.pacs.save_settings`; a password or token typed here goes to the
:class:`~spineplan.core.pacs.SecretStore` (OS keyring, or a 0600 file with a warning), never
into ``pacs.json``.
"""

from __future__ import annotations

import warnings

from PySide6.QtWidgets import (QComboBox, QDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QListWidget, QPushButton, QSpinBox, QVBoxLayout)

from ..core.errors import SpineplanError
from ..core.pacs import (AuthKind, DicomWebEndpoint, NodeSettings, PacsNode, PacsSettings,
                         PlaintextSecretsWarning, RetrieveMethod, SecretStore, save_settings)

__all__ = ["PacsSettingsDialog"]

DIMSE, WEB = "DIMSE node", "DICOMweb endpoint"


class PacsSettingsDialog(QDialog):
    """Add, change and remove PACS sources; ``save()`` writes the settings file."""

    def __init__(self, settings: PacsSettings, secrets: SecretStore | None = None, path=None,
                 parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("PACS settings")
        self.settings, self.secrets, self.path = settings, secrets or SecretStore(), path
        self.pending_secrets: dict[str, str] = {}
        self.sources = QListWidget()
        self.sources.currentTextChanged.connect(self._show)
        self.kind = QComboBox()
        self.kind.addItems([DIMSE, WEB])
        self.name, self.host, self.called, self.calling = QLineEdit(), QLineEdit(), QLineEdit(), QLineEdit()
        self.calling.setText("SPINEPLAN")
        self.port, self.store_port = QSpinBox(), QSpinBox()
        for sb, v in ((self.port, 104), (self.store_port, 11113)):
            sb.setRange(1, 65535)
            sb.setValue(v)
        self.method = QComboBox()
        self.method.addItems([m.value for m in RetrieveMethod])
        self.tls_ca, self.tls_cert, self.tls_key = QLineEdit(), QLineEdit(), QLineEdit()
        self.url, self.username, self.secret = QLineEdit(), QLineEdit(), QLineEdit()
        self.secret.setEchoMode(QLineEdit.Password)
        self.auth = QComboBox()
        self.auth.addItems([a.value for a in AuthKind])
        self.cache_dir = QLineEdit(settings.cache_dir)
        self.cache_gb = QSpinBox()
        self.cache_gb.setRange(1, 10000)
        self.cache_gb.setValue(max(1, round(settings.cache_max_bytes / 1024 ** 3)))
        form = QFormLayout()
        for label, w in (("Kind", self.kind), ("Name", self.name), ("Host", self.host),
                         ("Port", self.port), ("Called AE title", self.called),
                         ("Our AE title", self.calling), ("Retrieve by", self.method),
                         ("C-MOVE store port", self.store_port), ("TLS CA file", self.tls_ca),
                         ("TLS certificate", self.tls_cert), ("TLS key", self.tls_key),
                         ("DICOMweb URL", self.url), ("Authentication", self.auth),
                         ("User", self.username), ("Password / token", self.secret),
                         ("Cache folder", self.cache_dir), ("Cache limit (GB)", self.cache_gb)):
            form.addRow(label, w)
        self.apply_button, self.remove_button = QPushButton("Add / update"), QPushButton("Remove")
        self.save_button = QPushButton("Save")
        self.apply_button.clicked.connect(self.apply)
        self.remove_button.clicked.connect(self.remove)
        self.save_button.clicked.connect(self.save)
        self.status = QLabel("")
        buttons = QHBoxLayout()
        for b in (self.apply_button, self.remove_button, self.save_button):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addWidget(self.sources)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        self._refill()

    def _refill(self) -> None:
        self.sources.clear()
        self.sources.addItems(list(self.settings.nodes) + list(self.settings.endpoints))

    def _show(self, name: str) -> None:
        if name in self.settings.nodes:
            ns = self.settings.nodes[name]
            n = ns.node
            self.kind.setCurrentText(DIMSE)
            self.name.setText(name)
            self.host.setText(n.host)
            self.port.setValue(int(n.port))
            self.called.setText(n.called_aet)
            self.calling.setText(n.calling_aet)
            self.store_port.setValue(int(n.store_port))
            self.method.setCurrentText(ns.method.value)
            self.tls_ca.setText(n.tls_ca)
            self.tls_cert.setText(n.tls_cert)
            self.tls_key.setText(n.tls_key)
        elif name in self.settings.endpoints:
            e = self.settings.endpoints[name]
            self.kind.setCurrentText(WEB)
            self.name.setText(name)
            self.url.setText(e.url)
            self.auth.setCurrentText(e.auth.value)
            self.username.setText(e.username)
            self.secret.clear()

    def apply(self) -> bool:
        """Add or replace the source described by the form; False (and a message) when invalid."""
        name = self.name.text().strip()
        if not name:
            self.status.setText("Error: give the source a name")
            return False
        try:
            if self.kind.currentText() == DIMSE:
                node = PacsNode(self.host.text().strip(), self.port.value(),
                                called_aet=self.called.text().strip(),
                                calling_aet=self.calling.text().strip(),
                                store_port=self.store_port.value(), tls_ca=self.tls_ca.text().strip(),
                                tls_cert=self.tls_cert.text().strip(), tls_key=self.tls_key.text().strip())
                self.settings.endpoints.pop(name, None)
                self.settings.nodes[name] = NodeSettings(node, RetrieveMethod(self.method.currentText()))
            else:
                ep = DicomWebEndpoint(self.url.text().strip(), AuthKind(self.auth.currentText()),
                                      self.username.text().strip())
                self.settings.nodes.pop(name, None)
                self.settings.endpoints[name] = ep
                if self.secret.text():
                    self.pending_secrets[name] = self.secret.text()
                    self.secret.clear()
        except SpineplanError as exc:
            self.status.setText(f"Error: {exc}")
            return False
        self._refill()
        self.status.setText(f"{name}: updated (not saved yet)")
        return True

    def remove(self) -> None:
        item = self.sources.currentItem()
        if item is None:
            return
        name = item.text()
        self.settings.nodes.pop(name, None)
        self.settings.endpoints.pop(name, None)
        self.secrets.delete(name)
        self._refill()

    def save(self):
        """Write pacs.json and the typed secrets; returns the settings file path."""
        self.settings.cache_dir = self.cache_dir.text().strip() or self.settings.cache_dir
        self.settings.cache_max_bytes = int(self.cache_gb.value()) * 1024 ** 3
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PlaintextSecretsWarning)
            for name, secret in self.pending_secrets.items():
                self.secrets.set(name, secret)
        self.pending_secrets.clear()
        path = save_settings(self.settings, self.path)
        note = f" ({caught[0].message})" if caught else ""
        self.status.setText(f"Saved {path}{note}")
        return path
