"""Judging a segmentation against a reference, and the variants a field-of-view suite runs.

Outcomes (:class:`Outcome`): a result is RIGHT when every vertebra it names that overlaps a
reference vertebra overlaps that same vertebra most, and it does not ask for confirmation;
FLAGGED when it asks the user to confirm the levels (``needs_confirmation``) or refuses the
input with a clear error; SILENT when it names a level wrong without asking (the never-event,
which must not happen); CRASHED on any other exception.

Variants (:func:`variants`) are made from an image and its reference on the same grid, with
geometry kept exact: crops (from the top and from the bottom at each reference level),
resamplings, noise, intensity scaling, stacks stored in reverse order and left-right flips of
the stored array (with the header flipped too, so world positions are unchanged), and for MRI
inverted contrast and a bias field.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterator

import numpy as np

from ..errors import SpineplanError
from ..volume import Volume
from . import labels as L

__all__ = ["Outcome", "Judgement", "judge", "run_and_judge", "variants", "crop_k", "resample",
           "reverse_stack", "flip_stored_lr", "vertebra_dice"]


class Outcome(str, Enum):
    RIGHT = "right"
    FLAGGED = "flagged"
    SILENT = "silent"
    CRASHED = "crashed"


@dataclass
class Judgement:
    """One case's outcome, with what it rests on."""

    outcome: Outcome
    levels_right: bool
    wrong: dict[str, str] = field(default_factory=dict)   # {named: reference}
    min_confidence: float = 0.0
    flags: list[str] = field(default_factory=list)         # flag kinds
    dice: dict[str, float] = field(default_factory=dict)  # per reference vertebra
    error: str = ""

    @property
    def mean_dice(self) -> float:
        return float(np.mean(list(self.dice.values()))) if self.dice else 0.0


def _major_overlap(pred: np.ndarray, ref: np.ndarray) -> dict[int, int]:
    """For each predicted vertebra label, the reference vertebra label it overlaps most (only
    labels that overlap some reference vertebra)."""
    m = (pred > 0) & (pred < 100) & (ref > 0) & (ref < 100)
    if not m.any():
        return {}
    p, r = pred[m].astype(np.int64), ref[m].astype(np.int64)
    pairs, counts = np.unique(p * 1000 + r, return_counts=True)
    best: dict[int, tuple[int, int]] = {}
    for code, c in zip(pairs, counts):
        pv, rv = divmod(int(code), 1000)
        if c > best.get(pv, (0, 0))[1]:
            best[pv] = (rv, int(c))
    return {pv: rv for pv, (rv, _) in best.items()}


def vertebra_dice(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Dice of each reference vertebra against the same label in ``pred``."""
    out = {}
    for v in np.unique(ref):
        v = int(v)
        if not L.is_vertebra(v):
            continue
        a, b = pred == v, ref == v
        out[L.vertebra_name(v)] = float(2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1))
    return out


def judge(result, reference: Volume) -> Judgement:
    """The outcome of a :class:`SegmentationResult` against a reference label map on its grid."""
    pred, ref = np.asarray(result.labels.array), np.asarray(reference.array)
    if pred.shape != ref.shape:
        raise ValueError("reference and result are not on one grid")
    major = _major_overlap(pred, ref)
    wrong = {L.vertebra_name(p): L.vertebra_name(r) for p, r in major.items() if p != r}
    right = bool(major) and not wrong
    asks = result.needs_confirmation
    outcome = Outcome.FLAGGED if asks else (Outcome.RIGHT if right else Outcome.SILENT)
    return Judgement(outcome, right, wrong, float(result.min_confidence),
                     [f.kind.value for f in result.flags], vertebra_dice(pred, ref))


def run_and_judge(segment: Callable, image: Volume, reference: Volume) -> Judgement:
    """Segment ``image`` and judge it; a SpineplanError (a clear refusal) counts as FLAGGED,
    any other exception as CRASHED."""
    try:
        res = segment(image)
    except SpineplanError as exc:
        return Judgement(Outcome.FLAGGED, False, error=f"refused: {exc}")
    except Exception:  # noqa: BLE001  (what the suite counts)
        return Judgement(Outcome.CRASHED, False, error=traceback.format_exc(limit=3))
    return judge(res, reference)


# ---- variants (image and reference transformed alike, world geometry exact) -------------

def _rebuilt(vol: Volume, array: np.ndarray, origin, direction=None) -> Volume:
    return Volume(np.ascontiguousarray(array), spacing=vol.spacing,
                  origin=tuple(float(x) for x in origin),
                  direction=vol.direction.copy() if direction is None else direction,
                  modality=vol.modality, meta=dict(vol.meta))


def crop_k(vol: Volume, k0: int, k1: int) -> Volume:
    """Slices ``k0:k1`` of the stored array (axis 0), origin moved so world positions keep."""
    return _crop_axis(vol, 0, k0, k1)


def _crop_axis(vol: Volume, axis: int, a0: int, a1: int) -> Volume:
    a0, a1 = max(int(a0), 0), min(int(a1), vol.array.shape[axis])
    sl = [slice(None)] * 3
    sl[axis] = slice(a0, a1)
    ijk = [0.0, 0.0, 0.0]
    ijk[2 - axis] = float(a0)
    origin = vol.lps_points_from_ijk(np.array([ijk]))[0]
    return _rebuilt(vol, vol.array[tuple(sl)], origin)


def _si_axis(vol: Volume) -> int:
    """The array axis (0 = k, 1 = j, 2 = i) that runs most nearly head-foot."""
    col = int(np.argmax(np.abs(vol.direction[2])))  # direction column most along z
    return 2 - col


def reverse_stack(vol: Volume) -> Volume:
    """The same image with its slices stored in the reverse order (header adjusted)."""
    d = vol.direction.copy()
    d[:, 2] *= -1
    origin = vol.lps_points_from_ijk(np.array([[0.0, 0.0, vol.array.shape[0] - 1.0]]))[0]
    return _rebuilt(vol, vol.array[::-1], origin, d)


def flip_stored_lr(vol: Volume) -> Volume:
    """The stored array flipped along the axis most nearly left-right, with the header flipped
    too: world positions (and so the patient's left) are unchanged."""
    col = int(np.argmax(np.abs(vol.direction[0])))
    axis = 2 - col
    d = vol.direction.copy()
    d[:, col] *= -1
    ijk = [0.0, 0.0, 0.0]
    ijk[col] = vol.array.shape[axis] - 1.0
    origin = vol.lps_points_from_ijk(np.array([ijk]))[0]
    return _rebuilt(vol, np.flip(vol.array, axis=axis), origin, d)


def resample(vol: Volume, spacing_mm: float | tuple, *, labels: bool = False) -> Volume:
    """``vol`` on a grid of ``spacing_mm`` (same direction and extent): linear for images,
    nearest neighbour for labels."""
    import SimpleITK as sitk

    img = vol.to_sitk()
    sp = np.broadcast_to(np.asarray(spacing_mm, float), (3,))
    size = [max(int(round(n * s / t)), 1) for n, s, t in zip(img.GetSize(), img.GetSpacing(), sp)]
    interp = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    out = sitk.Resample(img, size, sitk.Transform(), interp, img.GetOrigin(), tuple(sp),
                        img.GetDirection(), 0, img.GetPixelID())
    return Volume.from_sitk(out, modality=vol.modality, meta=dict(vol.meta))


def _reference_extent(ref: Volume, axis: int) -> dict[int, tuple[int, int]]:
    """Array index range along ``axis`` of each reference vertebra."""
    other = tuple(a for a in range(3) if a != axis)
    out = {}
    for v in np.unique(ref.array):
        v = int(v)
        if L.is_vertebra(v):
            idx = np.nonzero((ref.array == v).any(axis=other))[0]
            out[v] = (int(idx.min()), int(idx.max()))
    return out


def variants(image: Volume, reference: Volume, *, modality: str = "CT", spacings=(),
             seed: int = 0, noise: float = 0.0, crops: bool = True) -> Iterator[tuple[str, Volume, Volume]]:
    """(name, image, reference) variants of one case, reference always on the image's grid.

    Crops cut through the middle of each reference vertebra, from the top (keeping what lies
    below) and from the bottom (keeping what lies above), so a level is half in view at the
    edge. ``noise`` is a fraction of the image's 1-99.5 percentile span.
    """
    yield "original", image, reference
    axis = _si_axis(image)
    # the array index that grows towards the head along `axis`
    col = 2 - axis
    up = image.direction[2, col] > 0
    if crops:
        ext = _reference_extent(reference, axis)
        n = image.array.shape[axis]
        for v, (a, b) in sorted(ext.items(), key=lambda t: L.craniocaudal_order([t[0]])):
            mid = (a + b) // 2
            name = L.vertebra_name(v)
            # keep everything caudal of mid (cut the top through v) and cranial of mid
            lo_keep, hi_keep = ((0, mid) if up else (mid, n)), ((mid, n) if up else (0, mid))
            for tag, (k0, k1) in (("top", lo_keep), ("bottom", hi_keep)):
                if k1 - k0 < 0.25 * n:
                    continue
                yield (f"crop-{tag}-through-{name}", _crop_axis(image, axis, k0, k1),
                       _crop_axis(reference, axis, k0, k1))
    for s in spacings:
        img = resample(image, s)
        yield f"resampled-{s}mm", img, img.with_array(_same_grid_labels(reference, img), modality="SEG")
    a = image.array.astype(np.float32)
    span = float(np.percentile(a, 99.5) - np.percentile(a, 1))
    rng = np.random.default_rng(seed)
    if noise:
        yield (f"noise-{noise:g}", image.with_array(a + rng.normal(0, noise * span, a.shape).astype(np.float32)),
               reference)
    if modality == "MR":
        yield "scaled-x3", image.with_array(a * 3.0 + 10.0), reference
        yield "inverted", image.with_array(float(a.max()) - a), reference
        yield "bias-field", image.with_array(a * _bias(a.shape, rng)), reference
    yield "reversed-stack", reverse_stack(image), reverse_stack(reference)
    yield "flipped-lr-stored", flip_stored_lr(image), flip_stored_lr(reference)


def _same_grid_labels(reference: Volume, grid: Volume) -> np.ndarray:
    import SimpleITK as sitk

    ref_img = reference.to_sitk()
    g = grid.to_sitk()
    out = sitk.Resample(ref_img, g, sitk.Transform(), sitk.sitkNearestNeighbor, 0, ref_img.GetPixelID())
    return sitk.GetArrayFromImage(out)


def _bias(shape, rng) -> np.ndarray:
    """A smooth multiplicative field, 0.6-1.4 across the volume (coil shading)."""
    g = [np.linspace(-1, 1, n) for n in shape]
    kk, jj, ii = np.meshgrid(*g, indexing="ij")
    c = rng.uniform(-1, 1, 3)
    f = 1.0 + 0.4 * np.tanh(c[0] * kk + c[1] * jj + c[2] * ii)
    return f.astype(np.float32)
