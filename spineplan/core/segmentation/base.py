"""Segmenter protocol, result type and registry.

A backend has a ``name``, ``is_available()``, ``missing_dependencies`` (why it is
unavailable) and ``segment(volume, *, progress=None, cancel=None) -> SegmentationResult``.
Built-in classical backends are always available; optional ones report what they miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from ..errors import SegmentationError
from ..volume import Volume
from .result import Flag, FlagKind, SegmentationResult  # noqa: F401  (re-exported)

__all__ = ["SegmentationResult", "padded_box", "Segmenter", "FunctionSegmenter", "register", "get",
           "available", "all_segmenters", "default_for", "segment_volume"]


class Segmenter(Protocol):
    name: str
    modalities: tuple[str, ...]

    def is_available(self) -> bool: ...

    @property
    def missing_dependencies(self) -> list[str]: ...

    def segment(self, volume: Volume, *, progress=None, cancel=None) -> SegmentationResult: ...


@dataclass
class FunctionSegmenter:
    """A built-in backend wrapping ``module:function`` imported on first use."""

    name: str
    modalities: tuple[str, ...]
    target: str  # "spineplan.core.segmentation.ct:segment_ct"
    description: str = ""

    def _fn(self) -> Callable[..., SegmentationResult]:
        import importlib

        mod, fn = self.target.split(":")
        return getattr(importlib.import_module(mod), fn)

    def is_available(self) -> bool:
        return not self.missing_dependencies

    @property
    def missing_dependencies(self) -> list[str]:
        try:
            self._fn()
        except (ImportError, AttributeError) as exc:
            return [str(exc)]
        return []

    def segment(self, volume: Volume, *, progress=None, cancel=None) -> SegmentationResult:
        return self._fn()(volume, progress=progress, cancel=cancel)


_REGISTRY: dict[str, Any] = {}
_optional_loaded = False


def register(segmenter: Any) -> Any:
    """Add a backend to the registry (replacing one of the same name)."""
    _REGISTRY[segmenter.name] = segmenter
    return segmenter


def _load_optional() -> None:
    """Register the optional backends (they report their own availability) on first use.

    The registry imports them, never the reverse: a backend module knows nothing of the
    registry it is listed in.
    """
    global _optional_loaded
    if not _optional_loaded:
        from .totalseg import TotalSegmentatorBackend

        register(TotalSegmentatorBackend())
        _optional_loaded = True


def get(name: str) -> Any:
    """The backend called ``name``; SegmentationError listing the known ones otherwise."""
    _load_optional()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SegmentationError(
            f"unknown segmenter '{name}'; known: {', '.join(sorted(_REGISTRY))}") from None


def all_segmenters() -> list[Any]:
    _load_optional()
    return list(_REGISTRY.values())


def available() -> list[Any]:
    _load_optional()
    return [s for s in _REGISTRY.values() if s.is_available()]


def default_for(modality: str) -> Any:
    """The first available backend for a modality ("CT" or "MR")."""
    _load_optional()
    for s in _REGISTRY.values():
        if modality in s.modalities and s.is_available():
            return s
    why = "; ".join(f"{s.name}: {', '.join(s.missing_dependencies)}" for s in _REGISTRY.values()
                    if modality in s.modalities)
    raise SegmentationError(f"no segmenter available for modality '{modality or 'unknown'}'"
                            + (f" ({why})" if why else "")
                            + "; set the modality (--modality CT|MR) or load a label map (--labels)")


def segment_volume(volume: Volume, backend: str = "auto", *, assumed: str = "", progress=None,
                   cancel=None) -> tuple[SegmentationResult, Any]:
    """Segment ``volume`` with ``backend`` (``"auto"``: the default for its modality).

    ``assumed`` is the modality guessed from the image values (``modality.settle_modality``):
    a segmentation that fails then says so, and how to set it.

    Returns
    -------
    (SegmentationResult, segmenter)
    """
    seg = default_for(volume.modality) if backend == "auto" else get(backend)
    if not seg.is_available():
        raise SegmentationError(f"segmenter '{seg.name}' is not available: {'; '.join(seg.missing_dependencies)}")
    try:
        return seg.segment(volume, progress=progress, cancel=cancel), seg
    except SegmentationError as exc:
        if not assumed:
            raise
        raise SegmentationError(f"{exc} (modality {assumed} assumed from the image values; set it with "
                                "--modality CT|MR, or load a label map with --labels)") from None


register(FunctionSegmenter("classical-ct", ("CT",), "spineplan.core.segmentation.ct:segment_ct",
                           "built-in CT segmenter (no model weights, CPU)"))
register(FunctionSegmenter("classical-mri", ("MR",), "spineplan.core.segmentation.mri:segment_mri",
                           "built-in sagittal lumbar MRI segmenter (no model weights, CPU)"))


def padded_box(m: np.ndarray, pad) -> tuple[slice, ...]:
    """Bounding box of the (non-empty) mask ``m`` grown by ``pad`` voxels (one value, or one
    per axis), clipped at the array's start (slices clip at its end)."""
    pads = np.broadcast_to(np.asarray(pad, int), (m.ndim,))
    return tuple(slice(max(int(a.min()) - p, 0), int(a.max()) + p + 1) for a, p in zip(np.nonzero(m), pads))
