"""Failures against a real Orthanc: each gives a typed, one-line error and leaves the cache consistent."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from spineplan.core.dicom.load import load_volume
from spineplan.core.pacs import (CaseCache, DicomWebClient, DicomWebEndpoint, DimseClient, PacsError,
                                 PacsErrorKind, PacsNode, RetrieveMethod, SeriesRecord, SeriesSink,
                                 StorageSCP, locate_series)
from spineplan.core.tasks import Cancelled

from .orthanc import free_port
from .test_query_retrieve import N_SAMPLE, SAMPLE_SERIES, assert_same_volume, dimse, web


def test_wrong_called_aet_is_rejected_with_the_reason(orthanc):
    node = PacsNode("127.0.0.1", orthanc.dicom_port, called_aet="NOTORTHANC",
                    calling_aet=orthanc.our_aet, timeout_s=5)
    with pytest.raises(PacsError) as e:
        DimseClient(node).echo()
    assert e.value.kind is PacsErrorKind.CALLED_AET
    assert "Called AE title not recognised" in str(e.value) and "\n" not in str(e.value)


def test_unknown_calling_aet_cannot_query(orthanc):
    node = PacsNode("127.0.0.1", orthanc.dicom_port, called_aet=orthanc.aet, calling_aet="STRANGER",
                    timeout_s=5)
    DimseClient(node).echo()                      # Orthanc answers C-ECHO to anyone
    with pytest.raises(PacsError) as e:
        locate_series(DimseClient(node), SAMPLE_SERIES)
    assert e.value.kind in (PacsErrorKind.REFUSED, PacsErrorKind.CALLING_AET)


def test_no_such_series(orthanc):
    for c in (dimse(orthanc), web(orthanc)):
        with pytest.raises(PacsError) as e:
            locate_series(c, "1.2.3.4.5")
        assert e.value.kind is PacsErrorKind.NO_SUCH_SERIES


def test_stopped_server_is_unreachable(fresh_orthanc):
    c_dimse, c_web = dimse(fresh_orthanc), web(fresh_orthanc)
    c_dimse.echo()
    c_web.echo()
    fresh_orthanc.stop()
    for c in (c_dimse, c_web):
        with pytest.raises(PacsError) as e:
            c.echo()
        assert e.value.kind is PacsErrorKind.UNREACHABLE, c.describe()
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("route", ["c-get", "wado-rs"])
def test_interrupted_transfer_is_never_complete_and_resumes(fresh_orthanc, tmp_path, route,
                                                            sample_dicom):
    make = {"c-get": dimse, "wado-rs": web}[route]
    c = make(fresh_orthanc)
    series = locate_series(c, SAMPLE_SERIES)
    cache = CaseCache(tmp_path / "cache")
    killed = []

    def progress(fraction, message):
        if fraction >= 0.35 and not killed:
            killed.append(fraction)
            fresh_orthanc.kill()               # the server goes away mid-transfer

    with pytest.raises(PacsError) as e:
        cache.fetch(c, series, progress=progress)
    assert killed
    assert e.value.kind in (PacsErrorKind.ABORTED, PacsErrorKind.INCOMPLETE, PacsErrorKind.UNREACHABLE)
    assert "resume" in str(e.value)
    assert cache.entries() == {}
    assert cache.lookup(SAMPLE_SERIES) is None
    assert not cache.series_dir(SAMPLE_SERIES).exists()
    kept = cache.partial_count(SAMPLE_SERIES)
    assert 0 < kept < N_SAMPLE
    assert not list(cache.partial_dir(SAMPLE_SERIES).glob("*.part"))

    fresh_orthanc.start()                       # same storage, same ports
    folder = cache.fetch(make(fresh_orthanc), series)
    assert cache.entries()[SAMPLE_SERIES].n_images == N_SAMPLE
    assert not cache.partial_dir(SAMPLE_SERIES).exists()
    assert_same_volume(load_volume(folder), load_volume(sample_dicom))


def test_cancel_keeps_the_partial_transfer_out_of_the_index(orthanc, tmp_path):
    c = dimse(orthanc)
    series = locate_series(c, SAMPLE_SERIES)
    cache = CaseCache(tmp_path / "cache")
    got = []
    with pytest.raises(Cancelled):
        cache.fetch(c, series, progress=lambda f, m: got.append(f), cancel=lambda: len(got) >= 10)
    assert cache.entries() == {}
    assert 10 <= cache.partial_count(SAMPLE_SERIES) < N_SAMPLE
    assert cache.fetch(c, series).is_dir()     # resumed
    assert cache.entries()[SAMPLE_SERIES].n_images == N_SAMPLE


def test_lru_eviction_over_the_size_limit(orthanc, tmp_path):
    c = dimse(orthanc)
    ct = locate_series(c, SAMPLE_SERIES)
    mr = [s for s in c.find_series(_q_all()) if s.modality == "MR"][0]
    full = CaseCache(tmp_path / "full")
    full.fetch(c, ct)
    full.fetch(c, mr)
    sizes = {u: e.n_bytes for u, e in full.entries().items()}
    limit = sum(sizes.values()) - 1
    assert CaseCache(tmp_path / "full").evict() == []           # no limit hit by default

    shutil.copytree(tmp_path / "full", tmp_path / "a")
    a = CaseCache(tmp_path / "a", max_bytes=limit)
    assert a.evict() == [ct.series_uid]                          # fetched first, used least recently
    assert set(a.entries()) == {mr.series_uid} and not a.series_dir(ct.series_uid).exists()

    shutil.copytree(tmp_path / "full", tmp_path / "b")
    b = CaseCache(tmp_path / "b", max_bytes=limit)
    assert b.lookup(ct.series_uid) is not None                   # opening it makes it recent
    assert b.evict() == [mr.series_uid]
    assert set(b.entries()) == {ct.series_uid}


def _q_all():
    from spineplan.core.pacs import Query

    return Query()


def _ct_slice(series_uid):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3", series_uid
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.zeros((4, 4), np.int16).tobytes()
    return ds


def _send(port, calling_aet, ds):
    from pynetdicom import AE

    ae = AE(ae_title=calling_aet)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="SPINEPLAN")
    if not assoc.is_established:
        return None
    try:
        return assoc.send_c_store(ds).Status
    finally:
        assoc.release()


def test_storage_scp_accepts_only_the_peer_and_the_requested_series(tmp_path):
    port = free_port()
    node = PacsNode("127.0.0.1", 104, called_aet="ORTHANC", calling_aet="SPINEPLAN", store_port=port,
                    timeout_s=5)
    wanted = "1.2.3.4"
    sink = SeriesSink(tmp_path / "in", SeriesRecord("1.2.3", wanted, n_images=1))
    with StorageSCP(node, sink):
        assert _send(port, "INTRUDER", _ct_slice(wanted)) is None          # association rejected
        assert _send(port, "ORTHANC", _ct_slice("1.2.3.999")) == 0xA900    # another series
        assert sink.received == 0 and not list((tmp_path / "in").iterdir())
        assert _send(port, "ORTHANC", _ct_slice(wanted)) == 0x0000
    assert sink.received == 1 and sink.refused == 1 and sink.complete()
    assert len(list((tmp_path / "in").glob("*.dcm"))) == 1
