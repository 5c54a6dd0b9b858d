"""PACS without Orthanc: a pynetdicom SCP on loopback, unreachable nodes, CLI argument errors."""

import socket
import subprocess
import sys

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from spineplan.core.errors import InvalidInputError
from spineplan.core.pacs import (DimseClient, PacsError, PacsErrorKind, PacsNode, Query,
                                 download_series, locate_series)

pynetdicom = pytest.importorskip("pynetdicom")


def _ct_slice(study, series, z):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID, ds.Modality, ds.SeriesDescription = "P1", "CT", "spine"
    ds.ImagePositionPatient = [0, 0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.full((8, 8), int(z), np.int16).tobytes()
    return ds


@pytest.fixture()
def scp():
    from pynetdicom import AE, StoragePresentationContexts, evt
    from pynetdicom.sop_class import (StudyRootQueryRetrieveInformationModelFind,
                                      StudyRootQueryRetrieveInformationModelGet, Verification)

    study, series = generate_uid(), generate_uid()
    store = [_ct_slice(study, series, z) for z in range(3)]

    def on_find(event):
        q = event.identifier
        if q.get("SeriesInstanceUID") not in ("", None, series):
            return
        ident = Dataset()
        ident.QueryRetrieveLevel = "SERIES"
        ident.StudyInstanceUID, ident.SeriesInstanceUID = study, series
        ident.Modality, ident.SeriesDescription = "CT", "spine"
        ident.NumberOfSeriesRelatedInstances = len(store)
        yield 0xFF00, ident

    def on_get(event):
        yield len(store)
        for ds in store:
            yield 0xFF00, ds

    ae = AE(ae_title="TESTPACS")
    ae.add_supported_context(Verification)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    for c in StoragePresentationContexts:
        ae.add_supported_context(c.abstract_syntax, scu_role=True, scp_role=True)
    server = ae.start_server(("127.0.0.1", 0), block=False,
                             evt_handlers=[(evt.EVT_C_FIND, on_find), (evt.EVT_C_GET, on_get)])
    port = server.socket.getsockname()[1]
    yield PacsNode("127.0.0.1", port, called_aet="TESTPACS"), study, series
    server.shutdown()


def test_echo_find_get(scp, tmp_path):
    node, study, series = scp
    c = DimseClient(node)
    c.echo()
    found = c.find_series(Query(study_uid=study))
    assert [(s.series_uid, s.modality, s.n_images) for s in found] == [(series, "CT", 3)]
    rec = locate_series(c, series, study)
    out = download_series(c, rec, tmp_path / "got", tmp_path / "staging")
    import pydicom

    zs = sorted(float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in out.glob("*.dcm"))
    assert zs == [0.0, 1.0, 2.0]
    assert not (tmp_path / "staging").exists() and not list(out.glob("*.part"))


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    return port


def test_unreachable_node_is_typed_error():
    with pytest.raises(PacsError) as e:
        DimseClient(PacsNode("127.0.0.1", _closed_port(), timeout_s=2)).echo()
    assert e.value.kind is PacsErrorKind.UNREACHABLE and "connection refused" in str(e.value)


@pytest.mark.parametrize("argv, needle", [
    (["echo", "--host", "127.0.0.1", "--port", "70000"], "port must be 1-65535"),
    (["echo"], "give --host"),
    (["find", "--host", "127.0.0.1", "--port", "104", "--study-date", "2024-01-01"], "YYYYMMDD"),
    (["get", "--host", "127.0.0.1", "--port", "104"], "needs --series"),
    (["echo", "--dicomweb", "ftp://x"], "must start with http"),
])
def test_cli_pacs_bad_arguments_exit_2(argv, needle):
    r = subprocess.run([sys.executable, "-m", "spineplan", "pacs", *argv], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("spineplan: error:"), r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_pacs_connection_refused_exit_2():
    port = _closed_port()
    for extra in (["--host", "127.0.0.1", "--port", str(port)], ["--dicomweb", f"http://127.0.0.1:{port}"]):
        r = subprocess.run([sys.executable, "-m", "spineplan", "pacs", "echo", *extra],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "cannot reach" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_tls_files_are_checked(tmp_path):
    with pytest.raises(InvalidInputError, match="both a certificate and its key"):
        PacsNode("pacs", 2762, tls_cert=str(tmp_path / "c.pem"))
    node = PacsNode("pacs", 2762, tls_ca=str(tmp_path / "missing-ca.pem"))
    with pytest.raises(InvalidInputError, match="cannot use the TLS files"):
        node.tls_args()
    assert PacsNode("pacs", 104).tls_args() is None


def test_busy_store_port_is_a_clear_error(tmp_path):
    from spineplan.core.pacs import SeriesRecord, SeriesSink, StorageSCP

    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        node = PacsNode("127.0.0.1", 104, called_aet="PEER", store_port=s.getsockname()[1])
        sink = SeriesSink(tmp_path / "in", SeriesRecord("1.2", "1.2.3", n_images=1))
        with pytest.raises(PacsError) as e:
            with StorageSCP(node, sink):
                pass
    assert e.value.kind is PacsErrorKind.STORE_PORT and "cannot listen on store port" in str(e.value)
