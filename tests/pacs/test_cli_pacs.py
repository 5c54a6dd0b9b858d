"""``spineplan pacs echo|find|get`` against a real Orthanc, by DIMSE (C-GET, C-MOVE) and DICOMweb."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from spineplan.core.dicom.load import load_volume

from .test_query_retrieve import N_SAMPLE, SAMPLE_SERIES, assert_same_volume


def spineplan(*argv):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return subprocess.run([sys.executable, "-m", "spineplan", "pacs", *argv], capture_output=True,
                          text=True, env=env, timeout=120)


def dimse_args(o, aet=None):
    return ["--host", "127.0.0.1", "--port", str(o.dicom_port), "--called-aet", aet or o.aet,
            "--aet", o.our_aet]


def test_cli_echo_and_find_both_routes(orthanc):
    for route in (dimse_args(orthanc), ["--dicomweb", orthanc.dicomweb_url]):
        r = spineplan("echo", *route)
        assert r.returncode == 0 and r.stdout.startswith("echo ") and r.stdout.strip().endswith("ok")
        r = spineplan("find", *route, "--patient-id", "SAMPLE", "--modality", "CT",
                      "--study-date", "20000101-20001231", "--json")
        assert r.returncode == 0, r.stderr
        studies = json.loads(r.stdout)["studies"]
        assert len(studies) == 1
        (se,) = studies[0]["series"]
        assert (se["series_uid"], se["n_images"], se["modality"]) == (SAMPLE_SERIES, N_SAMPLE, "CT")
        assert se["description"].startswith("Sample lumbar CT")
        r = spineplan("find", *route, "--modality", "MR", "--json")
        assert [s["patient_id"] for s in json.loads(r.stdout)["studies"]] == ["MR-2"]


@pytest.mark.parametrize("route", ["get", "move", "dicomweb"])
def test_cli_get_each_route(orthanc, tmp_path, route, sample_dicom):
    args = {"get": dimse_args(orthanc), "move": dimse_args(orthanc) + ["--move", "--store-port",
                                                                          str(orthanc.store_port)],
            "dicomweb": ["--dicomweb", orthanc.dicomweb_url]}[route]
    out = tmp_path / "series"
    r = spineplan("get", *args, "--series", SAMPLE_SERIES, "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert f"retrieved {N_SAMPLE} images" in r.stdout
    assert not (tmp_path / ".series.partial").exists()
    assert_same_volume(load_volume(out), load_volume(sample_dicom))


def test_cli_errors_are_one_line_exit_2(orthanc, tmp_path):
    cases = [
        (["echo", *dimse_args(orthanc, aet="WRONGAET")], "Called AE title not recognised"),
        (["get", *dimse_args(orthanc), "--series", "1.2.3.4", "-o", str(tmp_path / "x")], "no series 1.2.3.4"),
        (["get", "--dicomweb", orthanc.dicomweb_url, "--series", "not-a-uid", "-o", str(tmp_path / "y")],
         "is not a DICOM UID"),
    ]
    for argv, needle in cases:
        r = spineplan(*argv)
        assert r.returncode == 2, r.stderr
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()
