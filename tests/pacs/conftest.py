"""Fixtures of the PACS suite: a real Orthanc holding the bundled sample CT and a second study.

The suite is marked ``pacs`` (``pytest -m "not pacs"`` skips it) and skips with a reason when the
``Orthanc`` binary is absent (``./dev.sh test`` installs the Debian packages).
"""

from __future__ import annotations

import numpy as np
import pytest

from spineplan.core.dicom.write import write_series
from spineplan.core.volume import Volume

from .orthanc import ORTHANC_BIN, OrthancServer


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/pacs/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.pacs)


def _need_orthanc():
    if ORTHANC_BIN is None:
        pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb; "
                    "./dev.sh test installs it)")


def _mr_study(folder):
    """A small synthetic MR series of another patient (second study on the server)."""
    arr = (np.arange(6 * 16 * 12, dtype=np.int16).reshape(6, 16, 12) % 300)
    vol = Volume(arr, spacing=(1.0, 1.0, 4.0), origin=(-10.0, -20.0, 30.0), direction=np.eye(3))
    return write_series(vol, folder, patient_name="OTHER^PATIENT", patient_id="MR-2",
                        description="T2 sagittal test", modality="MR", uid_seed="spineplan-pacs-mr")


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory, sample_dicom):
    """A running Orthanc with the sample CT (112 images) and a 12-image MR study uploaded."""
    _need_orthanc()
    work = tmp_path_factory.mktemp("orthanc")
    server = OrthancServer(work).start()
    try:
        server.upload(sorted(sample_dicom.glob("*.dcm")))
        server.mr_files = _mr_study(work / "mr")
        server.upload(server.mr_files)
        yield server
    finally:
        server.stop()


@pytest.fixture()
def fresh_orthanc(tmp_path, sample_dicom):
    """A private Orthanc per test (for tests that stop or kill the server)."""
    _need_orthanc()
    server = OrthancServer(tmp_path / "orthanc_work")
    server.workdir.mkdir()
    server.start()
    try:
        server.upload(sorted(sample_dicom.glob("*.dcm")))
        yield server
    finally:
        server.stop()
