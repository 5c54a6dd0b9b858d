"""Query/retrieve from a PACS node the user configured (DICOM C-ECHO, C-FIND, C-GET).

Uses pynetdicom. Network traffic only goes to the node given; nothing here
logs patient data. Retrieved files are written atomically into a folder of the
user's choice, one file per SOP instance.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .atomic import atomic_output_path
from .errors import InvalidInputError, SpineplanError
from .tasks import Reporter

__all__ = ["PacsNode", "PacsError", "echo", "find_series", "get_series"]


class PacsError(SpineplanError):
    """The PACS could not be reached or refused a request."""


@dataclass
class PacsNode:
    """A remote DICOM node: address, port, called AE title, and our AE title."""

    host: str
    port: int
    called_aet: str = "ANY-SCP"
    calling_aet: str = "SPINEPLAN"
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not (0 < int(self.port) < 65536):
            raise InvalidInputError(f"PACS port must be 1-65535, got {self.port}")
        for aet in (self.called_aet, self.calling_aet):
            if not aet or len(aet) > 16:
                raise InvalidInputError(f"AE title '{aet}' must be 1-16 characters")


def _ae(node: PacsNode, contexts: Iterable) -> "object":
    from pynetdicom import AE

    ae = AE(ae_title=node.calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = node.timeout_s
    for c in contexts:
        ae.add_requested_context(c)
    return ae


def _associate(node: PacsNode, contexts: Iterable, ext_neg=None):
    ae = _ae(node, contexts)
    kw = {"ae_title": node.called_aet}
    if ext_neg:
        kw["ext_neg"] = ext_neg
    assoc = ae.associate(node.host, int(node.port), **kw)
    if not assoc.is_established:
        raise PacsError(f"could not associate with {node.called_aet} at {node.host}:{node.port} "
                        "(check address, port and AE titles)")
    return assoc


def echo(node: PacsNode) -> bool:
    """C-ECHO the node; True on success, PacsError when unreachable."""
    from pynetdicom.sop_class import Verification

    assoc = _associate(node, [Verification])
    try:
        status = assoc.send_c_echo()
        return bool(status) and status.Status == 0x0000
    finally:
        assoc.release()


def find_series(node: PacsNode, *, patient_id: str | None = None,
                study_uid: str | None = None) -> list[dict]:
    """C-FIND at SERIES level (Study Root). Returns dicts of non-identifying series fields."""
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    q = Dataset()
    q.QueryRetrieveLevel = "SERIES"
    q.PatientID = patient_id or ""
    q.StudyInstanceUID = study_uid or ""
    q.SeriesInstanceUID = ""
    q.Modality = ""
    q.SeriesDescription = ""
    q.NumberOfSeriesRelatedInstances = ""
    assoc = _associate(node, [FIND])
    out = []
    try:
        for status, ident in assoc.send_c_find(q, FIND):
            if status is None:
                raise PacsError("PACS connection timed out or was aborted during C-FIND")
            if status.Status in (0xFF00, 0xFF01) and ident is not None:
                out.append({
                    "study_uid": str(ident.get("StudyInstanceUID", "")),
                    "series_uid": str(ident.get("SeriesInstanceUID", "")),
                    "modality": str(ident.get("Modality", "")),
                    "description": str(ident.get("SeriesDescription", "")),
                    "n_instances": str(ident.get("NumberOfSeriesRelatedInstances", "")),
                })
            elif status.Status not in (0x0000, 0xFF00, 0xFF01):
                raise PacsError(f"PACS refused the query (status 0x{status.Status:04X})")
    finally:
        assoc.release()
    return out


def get_series(node: PacsNode, study_uid: str, series_uid: str, out_dir: str | os.PathLike,
               *, progress=None, cancel=None) -> list[Path]:
    """C-GET one series into ``out_dir`` (created); returns the written file paths."""
    from pydicom.dataset import Dataset
    from pynetdicom import StoragePresentationContexts, build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

    rep = Reporter(progress, cancel)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        name = "".join(ch for ch in str(ds.SOPInstanceUID) if ch.isdigit() or ch == ".") + ".dcm"
        with atomic_output_path(out / name) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        written.append(out / name)
        return 0x0000

    contexts = [GET] + [c.abstract_syntax for c in StoragePresentationContexts[:120]]
    roles = [build_role(c.abstract_syntax, scp_role=True) for c in StoragePresentationContexts[:120]]
    ae = _ae(node, contexts)
    assoc = ae.associate(node.host, int(node.port), ae_title=node.called_aet, ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    if not assoc.is_established:
        raise PacsError(f"could not associate with {node.called_aet} at {node.host}:{node.port}")
    q = Dataset()
    q.QueryRetrieveLevel = "SERIES"
    q.StudyInstanceUID = study_uid
    q.SeriesInstanceUID = series_uid
    try:
        for status, _ in assoc.send_c_get(q, GET):
            if status is None:
                raise PacsError("PACS connection timed out or was aborted during C-GET")
            remaining = int(getattr(status, "NumberOfRemainingSuboperations", 0) or 0)
            done = int(getattr(status, "NumberOfCompletedSuboperations", 0) or 0)
            if remaining + done:
                rep.step(done / (remaining + done), "retrieving")
            else:
                rep.check()
            if status.Status not in (0x0000, 0xFF00, 0xFF01, 0xB000):
                raise PacsError(f"PACS refused the retrieve (status 0x{status.Status:04X})")
    finally:
        assoc.release()
    return sorted(written)
