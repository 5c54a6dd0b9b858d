"""DIMSE routes (pynetdicom): C-ECHO, C-FIND at study and series level, C-GET and C-MOVE.

C-MOVE goes to our own storage SCP (:class:`StorageSCP`), listening only while the move runs,
accepting associations only from the node we asked (AE title and address) and storing only
images of the requested series. Nothing here logs patient data.
"""

from __future__ import annotations

import enum
import socket
import ssl
from dataclasses import dataclass
from typing import Iterable

from ..errors import InvalidInputError
from .model import (Level, PacsError, PacsErrorKind, Query, SeriesRecord, StudyRecord,
                    query_dataset, series_from_dataset, study_from_dataset)
from .transfer import SeriesSink

__all__ = ["PacsNode", "RetrieveMethod", "DimseClient", "StorageSCP"]

_PENDING = (0xFF00, 0xFF01)


class RetrieveMethod(enum.Enum):
    """How a DIMSE node sends us a series."""

    GET = "get"
    MOVE = "move"


@dataclass
class PacsNode:
    """A remote DICOM node: address, port, called AE title, our AE title, optional TLS files.

    ``store_port`` is where our storage SCP listens for C-MOVE (the node must know our AE title
    at this address and port).
    """

    host: str
    port: int
    called_aet: str = "ANY-SCP"
    calling_aet: str = "SPINEPLAN"
    timeout_s: float = 10.0
    store_port: int = 11113
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    def __post_init__(self) -> None:
        for name in ("port", "store_port"):
            v = getattr(self, name)
            try:
                ok = 0 < int(v) < 65536
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise InvalidInputError(f"PACS {name.replace('_', ' ')} must be 1-65535, got {v}")
        for aet in (self.called_aet, self.calling_aet):
            if not aet or len(aet) > 16 or not aet.isascii() or "\\" in aet:
                raise InvalidInputError(f"AE title '{aet}' must be 1-16 ASCII characters")
        if not self.host:
            raise InvalidInputError("PACS host is empty")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidInputError("TLS needs both a certificate and its key (or neither)")

    def describe(self) -> str:
        return f"{self.called_aet}@{self.host}:{self.port}"

    def tls_args(self):
        """``(SSLContext, host)`` for pynetdicom when TLS is configured, else None."""
        if not (self.tls_ca or self.tls_cert):
            return None
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca or None)
            if self.tls_cert:
                ctx.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidInputError(f"cannot use the TLS files of {self.describe()}: {exc}") from None
        return ctx, self.host


def _reject_kind(reason: str) -> PacsErrorKind:
    r = reason.lower()
    if "called ae" in r:
        return PacsErrorKind.CALLED_AET
    if "calling ae" in r:
        return PacsErrorKind.CALLING_AET
    return PacsErrorKind.REJECTED


class DimseClient:
    """Query/retrieve through one :class:`PacsNode`; ``method`` chooses C-GET or C-MOVE."""

    def __init__(self, node: PacsNode, method: RetrieveMethod = RetrieveMethod.GET) -> None:
        self.node, self.method = node, RetrieveMethod(method)

    def describe(self) -> str:
        return self.node.describe()

    # -- association -------------------------------------------------------------------------
    def _ae(self, contexts: Iterable):
        from pynetdicom import AE

        ae = AE(ae_title=self.node.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.node.timeout_s
        for c in contexts:
            ae.add_requested_context(c)
        return ae

    def _probe(self) -> None:
        n = self.node
        try:
            with socket.create_connection((n.host, int(n.port)), timeout=n.timeout_s):
                pass
        except socket.timeout:
            raise PacsError(PacsErrorKind.TIMEOUT, f"{n.describe()} did not answer within "
                            f"{n.timeout_s:g} s") from None
        except socket.gaierror:
            raise PacsError(PacsErrorKind.UNREACHABLE, f"unknown host '{n.host}'") from None
        except OSError as exc:
            why = "connection refused" if isinstance(exc, ConnectionRefusedError) else exc.strerror
            raise PacsError(PacsErrorKind.UNREACHABLE,
                            f"cannot reach {n.host}:{n.port} ({why or exc}); check host and port") from None

    def _associate(self, contexts: Iterable, ext_neg=None, handlers=()):
        from pynetdicom import evt

        self._probe()
        reason: list[str] = []

        def on_acse(event):
            p = event.primitive
            if getattr(p, "result", None) in (0x01, 0x02):
                try:
                    reason.append(p.reason_str)
                except Exception:
                    reason.append("no reason given")

        ae = self._ae(contexts)
        n = self.node
        kw = {"ae_title": n.called_aet, "evt_handlers": [(evt.EVT_ACSE_RECV, on_acse), *handlers]}
        if ext_neg:
            kw["ext_neg"] = ext_neg
        tls = n.tls_args()
        if tls:
            kw["tls_args"] = tls
        assoc = ae.associate(n.host, int(n.port), **kw)
        if assoc.is_established:
            return assoc
        if assoc.is_rejected:
            why = reason[0] if reason else "no reason given"
            kind = _reject_kind(why)
            hint = {PacsErrorKind.CALLED_AET: f"; is '{n.called_aet}' the node's AE title?",
                    PacsErrorKind.CALLING_AET: f"; the node must know our AE title '{n.calling_aet}'"}
            raise PacsError(kind, f"{n.describe()} rejected the association: {why}{hint.get(kind, '')}")
        if assoc.is_aborted:
            raise PacsError(PacsErrorKind.REFUSED, f"{n.describe()} aborted the association "
                            "(it may not offer this service to our AE title)")
        raise PacsError(PacsErrorKind.TIMEOUT, f"no association with {n.describe()} within "
                        f"{n.timeout_s:g} s")

    # -- services ----------------------------------------------------------------------------
    def echo(self) -> None:
        """C-ECHO; PacsError when the node cannot be reached or does not answer Success."""
        from pynetdicom.sop_class import Verification

        assoc = self._associate([Verification])
        try:
            status = assoc.send_c_echo()
        finally:
            assoc.release()
        if not status or status.get("Status") != 0x0000:
            raise PacsError(PacsErrorKind.REFUSED, f"{self.describe()} did not answer the C-ECHO")

    def _find(self, ident):
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

        assoc = self._associate([FIND])
        out = []
        try:
            for status, answer in assoc.send_c_find(ident, FIND):
                if not status or "Status" not in status:
                    if not out:
                        raise PacsError(PacsErrorKind.REFUSED, f"{self.describe()} dropped the C-FIND "
                                        f"(does it allow queries from our AE title "
                                        f"'{self.node.calling_aet}'?)")
                    raise PacsError(PacsErrorKind.ABORTED,
                                    f"{self.describe()} stopped answering the C-FIND")
                if status.Status in _PENDING and answer is not None:
                    out.append(answer)
                elif status.Status != 0x0000:
                    raise PacsError(PacsErrorKind.REFUSED, f"{self.describe()} refused the query "
                                    f"(status 0x{status.Status:04X})")
        finally:
            if assoc.is_established:
                assoc.release()
        return out

    def find_studies(self, query: Query) -> list[StudyRecord]:
        """Study-level C-FIND (Study Root)."""
        return [study_from_dataset(d) for d in self._find(query_dataset(query, Level.STUDY))]

    def find_series(self, query: Query) -> list[SeriesRecord]:
        """Series-level C-FIND (Study Root) within ``query.study_uid`` (or by series UID)."""
        return [series_from_dataset(d, query.study_uid)
                for d in self._find(query_dataset(query, Level.SERIES))]

    def retrieve(self, series: SeriesRecord, sink: SeriesSink) -> None:
        """Send the series into ``sink`` by C-GET or C-MOVE (see ``method``)."""
        if self.method is RetrieveMethod.GET:
            self._get(series, sink)
        else:
            self._move(series, sink)

    def _identifier(self, series: SeriesRecord):
        from pydicom.dataset import Dataset

        q = Dataset()
        q.QueryRetrieveLevel = "SERIES"
        q.StudyInstanceUID = series.study_uid
        q.SeriesInstanceUID = series.series_uid
        return q

    def _follow(self, responses, assoc, sink: SeriesSink, what: str) -> None:
        """Consume C-GET/C-MOVE responses: counts, cancel, final status."""
        from ..tasks import Cancelled

        for status, _ in responses:
            if not status or "Status" not in status:
                raise PacsError(PacsErrorKind.ABORTED, f"{self.describe()} stopped during the {what} "
                                f"({sink.received} images kept; retrieve again to resume)")
            remaining = int(status.get("NumberOfRemainingSuboperations", 0) or 0)
            done = sum(int(status.get(k, 0) or 0) for k in (
                "NumberOfCompletedSuboperations", "NumberOfFailedSuboperations",
                "NumberOfWarningSuboperations"))
            if status.Status in _PENDING:
                sink.set_expected(remaining + done)
                if sink.cancelled():
                    assoc.abort()
                    raise Cancelled()
                continue
            if status.Status == 0xFE00:
                raise Cancelled()
            if status.Status not in (0x0000, 0xB000):
                kind = PacsErrorKind.NO_SUCH_SERIES if status.Status == 0xA801 else PacsErrorKind.REFUSED
                raise PacsError(kind, f"{self.describe()} refused the {what} "
                                f"(status 0x{status.Status:04X})")
            if sink.expected is None and status.Status == 0x0000 and sink.received:
                failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
                if not failed:
                    sink.set_expected(sink.received + remaining)

    def _get(self, series: SeriesRecord, sink: SeriesSink) -> None:
        from pynetdicom import StoragePresentationContexts, build_role, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

        def on_store(event):
            ds = event.dataset
            ds.file_meta = event.file_meta
            return 0x0000 if sink.store(ds) else 0xA900

        storage = [c.abstract_syntax for c in StoragePresentationContexts[:127]]
        roles = [build_role(c, scp_role=True) for c in storage]
        assoc = self._associate([GET] + storage, ext_neg=roles,
                                handlers=[(evt.EVT_C_STORE, on_store)])
        try:
            self._follow(assoc.send_c_get(self._identifier(series), GET), assoc, sink, "C-GET")
        finally:
            if assoc.is_established:
                assoc.release()

    def _move(self, series: SeriesRecord, sink: SeriesSink) -> None:
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE

        with StorageSCP(self.node, sink):
            assoc = self._associate([MOVE])
            try:
                self._follow(assoc.send_c_move(self._identifier(series), self.node.calling_aet, MOVE),
                             assoc, sink, "C-MOVE")
            finally:
                if assoc.is_established:
                    assoc.release()


class StorageSCP:
    """Our storage SCP for one C-MOVE, as a context manager.

    Listens on ``node.store_port`` with our AE title; accepts only associations whose calling
    AE title is the node's and whose address is the node's; stores only images of the sink's
    series (others get status 0xA900).
    """

    def __init__(self, node: PacsNode, sink: SeriesSink) -> None:
        self.node, self.sink, self.server = node, sink, None
        try:
            self.peer_ips = {ai[4][0] for ai in socket.getaddrinfo(node.host, None)}
        except socket.gaierror:
            raise PacsError(PacsErrorKind.UNREACHABLE, f"unknown host '{node.host}'") from None
        if any(ip.startswith("127.") or ip == "::1" for ip in self.peer_ips):
            self.peer_ips |= {"127.0.0.1", "::1"}

    def _on_store(self, event):
        if event.assoc.requestor.address not in self.peer_ips:
            return 0xA900
        ds = event.dataset
        ds.file_meta = event.file_meta
        return 0x0000 if self.sink.store(ds) else 0xA900

    def __enter__(self) -> "StorageSCP":
        from pynetdicom import AE, StoragePresentationContexts, evt

        ae = AE(ae_title=self.node.calling_aet)
        ae.require_calling_aet = [self.node.called_aet]
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.node.timeout_s
        for c in StoragePresentationContexts:
            ae.add_supported_context(c.abstract_syntax)
        try:
            self.server = ae.start_server(("", int(self.node.store_port)), block=False,
                                          evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        except OSError as exc:
            raise PacsError(PacsErrorKind.STORE_PORT, f"cannot listen on store port "
                            f"{self.node.store_port} for C-MOVE ({exc.strerror or exc})") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
