"""Shared fixtures. Tests that read ../shared/data skip with a reason when it is absent."""

from __future__ import annotations

import os

import pytest

from spineplan.paths import sample_dicom_dir, shared_data_dir

os.environ.setdefault("QT_API", "pyside6")


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; skips when it is not beside the checkout."""
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"../shared/data not found at {d} (only present in CI and dev machines)")
    return d


@pytest.fixture(scope="session")
def sample_dicom():
    d = sample_dicom_dir()
    if not any(d.glob("*.dcm")):
        pytest.fail(f"bundled sample series missing in {d}")
    return d
