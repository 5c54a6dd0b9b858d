"""PACS query/retrieve against a pynetdicom SCP on loopback (no outside network)."""

import subprocess
import sys

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from spineplan.core.pacs import PacsError, PacsNode, echo, find_series, get_series

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
        if q.get("PatientID") not in ("", None, "P1"):
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
    assert echo(node)
    found = find_series(node, patient_id="P1")
    assert [(s["series_uid"], s["modality"]) for s in found] == [(series, "CT")]
    files = get_series(node, study, series, tmp_path / "got")
    assert len(files) == 3
    import pydicom

    zs = sorted(float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in files)
    assert zs == [0.0, 1.0, 2.0]
    assert not list((tmp_path / "got").glob("*.part"))


def test_unreachable_node_is_clear_error():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    with pytest.raises(PacsError, match="could not associate"):
        echo(PacsNode("127.0.0.1", port, timeout_s=2))


def test_cli_pacs_echo_bad_node_exit_2():
    r = subprocess.run([sys.executable, "-m", "spineplan", "pacs", "echo", "--host", "127.0.0.1",
                        "--port", "70000"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("spineplan: error:")
    assert "Traceback" not in r.stderr
