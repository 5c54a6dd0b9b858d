"""Query and retrieve against a real Orthanc: C-FIND + C-GET, C-FIND + C-MOVE, QIDO-RS + WADO-RS.

Each route's retrieved series must load as the bundled sample does (array, spacing, origin,
direction); the cache then serves it without any network request.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from spineplan.core.dicom.load import load_volume
from spineplan.core.pacs import (CaseCache, DicomWebClient, DicomWebEndpoint, DimseClient, PacsNode,
                                 Query, RetrieveMethod, locate_series, search)

from .orthanc import free_port

from spineplan.paths import sample_dicom_dir

SAMPLE_SERIES = "1.2.826.0.1.3680043.8.498.13291415514722158716675332977844217676"
N_SAMPLE = len(list(sample_dicom_dir().glob("*.dcm")))  # 112


def dimse(orthanc, method=RetrieveMethod.GET, **kw):
    node = PacsNode("127.0.0.1", orthanc.dicom_port, called_aet=orthanc.aet,
                    calling_aet=orthanc.our_aet, store_port=orthanc.store_port, timeout_s=10, **kw)
    return DimseClient(node, method)


def web(orthanc):
    if not orthanc.has_dicomweb:
        pytest.skip("the Orthanc DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")
    return DicomWebClient(DicomWebEndpoint(orthanc.dicomweb_url))


def clients(orthanc):
    return {"dimse": dimse(orthanc), "dicomweb": web(orthanc)}


@pytest.fixture(scope="module")
def sample_volume(sample_dicom):
    return load_volume(sample_dicom)


def assert_same_volume(got, want):
    assert got.array.shape == want.array.shape
    assert np.array_equal(got.array, want.array)
    assert np.allclose(got.spacing, want.spacing, atol=1e-6)
    assert np.allclose(got.origin, want.origin, atol=1e-6)
    assert np.allclose(got.direction, want.direction, atol=1e-9)


@pytest.mark.parametrize("route", ["dimse", "dicomweb"])
def test_one_query_model_on_both_routes(orthanc, route):
    c = clients(orthanc)[route]
    everything = search(c, Query())
    assert len(everything) == 2
    by_pid = {s.patient_id: s for s in everything}
    assert set(by_pid) == {"SAMPLE", "MR-2"}
    ct = by_pid["SAMPLE"]
    assert [(s.series_uid, s.modality, s.n_images) for s in ct.series] == [(SAMPLE_SERIES, "CT", N_SAMPLE)]
    assert ct.series[0].description.startswith("Sample lumbar CT")
    assert by_pid["MR-2"].series[0].modality == "MR"
    assert by_pid["MR-2"].series[0].n_images == len(orthanc.mr_files)

    assert [s.patient_id for s in search(c, Query(patient_id="MR-2"))] == ["MR-2"]
    assert [s.patient_id for s in search(c, Query(modality="CT"))] == ["SAMPLE"]
    assert [s.patient_id for s in search(c, Query(patient_name="SAMPLE*"))] == ["SAMPLE"]
    # the sample was acquired 2000-01-01
    assert [s.patient_id for s in search(c, Query(patient_id="SAMPLE", date_from=dt.date(1999, 12, 1),
                                                  date_to=dt.date(2000, 1, 31)))] == ["SAMPLE"]
    assert search(c, Query(date_from=dt.date(2001, 1, 1), date_to=dt.date(2001, 12, 31),
                           patient_id="SAMPLE")) == []
    assert search(c, Query(accession="NOSUCHACC")) == []
    assert locate_series(c, SAMPLE_SERIES).study_uid == ct.study_uid


@pytest.mark.parametrize("route", ["c-get", "c-move", "wado-rs"])
def test_retrieve_gives_the_sample_volume(orthanc, route, tmp_path, sample_volume, monkeypatch):
    c = {"c-get": dimse(orthanc), "c-move": dimse(orthanc, RetrieveMethod.MOVE),
         "wado-rs": web(orthanc)}[route]
    series = locate_series(c, SAMPLE_SERIES)
    cache = CaseCache(tmp_path / "cache")
    seen = []
    folder = cache.fetch(c, series, progress=lambda f, m: seen.append((f, m)))
    assert len(list(folder.glob("*.dcm"))) == N_SAMPLE
    assert seen[-1] == (1.0, f"received {N_SAMPLE} of {N_SAMPLE} images")
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)
    assert not list((tmp_path / "cache" / "partial").rglob("*.dcm"))
    entry = cache.entries()[SAMPLE_SERIES]
    assert entry.n_images == N_SAMPLE and entry.n_bytes > N_SAMPLE * 101 * 101 * 2
    assert_same_volume(load_volume(folder), sample_volume)

    # a cached series opens without a network request: the client is not used again
    class NoNetwork:
        def describe(self):
            return "no network"

        def __getattr__(self, name):
            raise AssertionError(f"network used: {name}")

    assert cache.fetch(NoNetwork(), series) == folder
