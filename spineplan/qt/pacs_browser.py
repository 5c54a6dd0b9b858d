"""PACS browser dialog: query form, studies expanding to series, retrieve in a background worker.

All PACS work is core/pacs (the same code as ``spineplan pacs``); this module only shows it.
A double click (or Retrieve) on a series fetches it into the case cache with progress and Cancel,
then emits :attr:`PacsBrowser.series_ready` with the folder; a cached series opens at once.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout)

from ..core.errors import SpineplanError
from ..core.pacs import CaseCache, PacsSettings, Query, SecretStore, parse_date_range, search
from .workers import run_in_background

__all__ = ["PacsBrowser", "clients_from_settings"]

COLUMNS = ("Description", "Modality", "Body part", "Images", "Date", "Patient ID")
SERIES_ROLE = Qt.UserRole + 1


def clients_from_settings(settings: PacsSettings, secrets: SecretStore | None = None) -> dict:
    """``{name: client}`` for every configured DIMSE node and DICOMweb endpoint."""
    out = {name: ns.client() for name, ns in settings.nodes.items()}
    for name in settings.endpoints:
        out[name] = settings.web_client(name, secrets or SecretStore())
    return out


class PacsBrowser(QDialog):
    """Query a PACS and retrieve a series; ``clients`` maps a source name to a core/pacs client."""

    series_ready = Signal(str)

    def __init__(self, clients: dict, cache: CaseCache, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("PACS")
        self.clients, self.cache = dict(clients), cache
        self.worker = None
        self.source = QComboBox()
        self.source.addItems(list(self.clients))
        self.patient_name, self.patient_id = QLineEdit(), QLineEdit()
        self.accession, self.dates = QLineEdit(), QLineEdit()
        self.dates.setPlaceholderText("YYYYMMDD-YYYYMMDD")
        self.modality = QComboBox()
        self.modality.addItems(["", "CT", "MR"])
        self.modality.setEditable(True)
        form = QFormLayout()
        for label, w in (("Source", self.source), ("Patient name", self.patient_name),
                         ("Patient ID", self.patient_id), ("Accession", self.accession),
                         ("Study date", self.dates), ("Modality", self.modality)):
            form.addRow(label, w)
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test_connection)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.run_search)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.itemDoubleClicked.connect(lambda item, _col: self.retrieve_item(item))
        self.retrieve_button = QPushButton("Retrieve and open")
        self.retrieve_button.clicked.connect(lambda: self.retrieve_item(self.tree.currentItem()))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("")
        buttons = QHBoxLayout()
        for b in (self.test_button, self.search_button, self.retrieve_button, self.cancel_button):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.tree)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        self.resize(820, 560)

    # -- helpers -----------------------------------------------------------------------------
    def client(self):
        return self.clients[self.source.currentText()]

    def query(self) -> Query:
        lo, hi = parse_date_range(self.dates.text())
        return Query(patient_name=self.patient_name.text().strip(),
                     patient_id=self.patient_id.text().strip(), accession=self.accession.text().strip(),
                     date_from=lo, date_to=hi, modality=self.modality.currentText().strip().upper())

    def _busy(self, busy: bool) -> None:
        self.search_button.setEnabled(not busy)
        self.test_button.setEnabled(not busy)
        self.retrieve_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _start(self, fn, on_done) -> None:
        self._busy(True)
        w = self.worker = run_in_background(fn)
        w.signals.progress.connect(self._on_progress)
        w.signals.finished.connect(lambda out: (self._busy(False), on_done(out)))
        w.signals.failed.connect(lambda msg: (self._busy(False), self.status.setText(f"Error: {msg}")))
        w.signals.cancelled.connect(lambda: (self._busy(False), self.status.setText("Cancelled")))

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(round(1000 * fraction)))
        if message:
            self.status.setText(message)

    # -- actions -----------------------------------------------------------------------------
    def test_connection(self) -> None:
        """C-ECHO, or a QIDO-RS query with limit=1, in the background."""
        client = self.client()
        self.status.setText("Testing…")

        def echo(progress=None, cancel=None):
            client.echo()
            return client.describe()
        self._start(echo, lambda who: self.status.setText(f"Connection to {who}: ok"))

    def run_search(self) -> None:
        """Query in the background; the table fills when the answer lands."""
        try:
            q, client = self.query(), self.client()
        except SpineplanError as exc:
            self.status.setText(f"Error: {exc}")
            return
        self.status.setText("Searching…")
        self._start(lambda progress=None, cancel=None: search(client, q), self._fill)

    def _fill(self, studies) -> None:
        self.tree.clear()
        for st in studies:
            top = QTreeWidgetItem([st.description or "(no description)", "/".join(st.modalities),
                                   "", str(st.n_images or sum(s.n_images or 0 for s in st.series)),
                                   st.date, st.patient_id])
            for se in st.series:
                child = QTreeWidgetItem([se.description, se.modality, se.body_part,
                                         "" if se.n_images is None else str(se.n_images), se.date, ""])
                child.setData(0, SERIES_ROLE, se)
                top.addChild(child)
            self.tree.addTopLevelItem(top)
            top.setExpanded(True)
        self.status.setText(f"{len(studies)} studies")

    def retrieve_item(self, item) -> None:
        """Fetch the series of ``item`` (from the cache when complete there), then emit it."""
        series = item.data(0, SERIES_ROLE) if item is not None else None
        if series is None:
            self.status.setText("Choose a series")
            return
        client, cache = self.client(), self.cache
        self.progress.setValue(0)
        self.status.setText("Retrieving…")
        self._start(lambda progress=None, cancel=None: cache.fetch(client, series, progress=progress,
                                                                    cancel=cancel),
                    self._ready)

    def _ready(self, folder) -> None:
        self.status.setText(f"Opened {Path(folder).name}")
        self.series_ready.emit(str(folder))

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
