"""Locations of bundled data (assets/, sample_dicom/) in a source checkout or install."""

from __future__ import annotations

from pathlib import Path

__all__ = ["project_root", "assets_dir", "sample_dicom_dir", "shared_data_dir"]


def project_root() -> Path:
    """The repository root (the folder holding assets/ and sample_dicom/)."""
    return Path(__file__).resolve().parent.parent


def assets_dir() -> Path:
    """Editable data files (implant catalogue, presets)."""
    return project_root() / "assets"


def sample_dicom_dir() -> Path:
    """The bundled sample CT series used by the quick start."""
    return project_root() / "sample_dicom"


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout (present in CI, absent in a user's clone)."""
    return project_root().parent / "shared" / "data"
