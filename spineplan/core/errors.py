"""Exceptions that mean "bad input": the CLI prints them as one line and exits 2."""

from __future__ import annotations

__all__ = ["SpineplanError", "InvalidInputError", "DicomError", "PlanFileError",
           "SegmentationError", "PlanningError", "OutputError", "TooLargeError"]


class SpineplanError(Exception):
    """Base class for errors caused by input or requests, not by bugs.

    The message must say what is wrong and what to do, in one line, and must not
    contain patient identity.
    """


class InvalidInputError(SpineplanError):
    """A file or folder that cannot be read as what it should be."""


class DicomError(InvalidInputError):
    """Unreadable, inconsistent or unsupported DICOM data."""


class TooLargeError(InvalidInputError):
    """An image whose declared size would not fit in the memory available to load it."""


class PlanFileError(InvalidInputError):
    """A plan file that is of another version, another series, or tampered with."""


class SegmentationError(SpineplanError):
    """Segmentation could not find the anatomy it needs."""


class PlanningError(SpineplanError):
    """An impossible planning request (unknown level, missing anatomy, ...)."""


class OutputError(SpineplanError, OSError):
    """A destination that cannot be written (missing or read-only folder, disk full, ...).

    The message names the destination the user asked for, never a temporary file. It is an
    OSError too, so callers that handle failed writes keep working.
    """
