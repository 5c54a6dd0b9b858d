"""Label convention (VerSe numbering), level names and the one colour palette of labels.

1–7 C1–C7, 8–19 T1–T12, 20–24 L1–L5, 25 L6, 26 sacrum (S1), 28 T13;
disc = 100 + label of the vertebra above (L4/L5 = 123, L5/S1 = 124);
300 spinal canal (dural sac), 301 spinal cord.

Colours (``LABEL_RGB``, ``label_rgb``) are the same in the slice views, the 3D view, the
rehearsal and the report.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "VERTEBRA_NAMES", "VERTEBRA_LABELS", "LABEL_FROM_NAME", "SACRUM", "CANAL", "CORD", "DISC_OFFSET",
    "vertebra_name", "vertebra_label", "disc_label", "is_vertebra", "is_disc",
    "vertebra_above_disc", "craniocaudal_order", "next_caudal", "motor_unit_name",
    "parse_motor_unit", "disc_name", "segment_name", "label_from_segment_name", "label_counts",
    "VERTEBRA_RGB", "TRANSITIONAL_RGB", "DISC_RGB", "CANAL_RGB", "CORD_RGB", "OTHER_RGB",
    "LABEL_RGB", "label_rgb",
]

SACRUM = 26
CANAL = 300
CORD = 301
DISC_OFFSET = 100

VERTEBRA_NAMES: dict[int, str] = {}
for _n in range(1, 8):
    VERTEBRA_NAMES[_n] = f"C{_n}"
for _n in range(1, 13):
    VERTEBRA_NAMES[7 + _n] = f"T{_n}"
for _n in range(1, 6):
    VERTEBRA_NAMES[19 + _n] = f"L{_n}"
VERTEBRA_NAMES[25] = "L6"
VERTEBRA_NAMES[26] = "S1"
VERTEBRA_NAMES[28] = "T13"

LABEL_FROM_NAME = {v: k for k, v in VERTEBRA_NAMES.items()}
VERTEBRA_LABELS = tuple(sorted(VERTEBRA_NAMES))  # every vertebra label value
LABEL_FROM_NAME["S"] = SACRUM
LABEL_FROM_NAME["SACRUM"] = SACRUM

# Cranio-caudal order of labels (T13 sits between T12 and L1, L6 between L5 and S1).
_ORDER = list(range(1, 20)) + [28] + list(range(20, 26)) + [26]
_RANK = {lab: n for n, lab in enumerate(_ORDER)}


def vertebra_name(label: int) -> str:
    """``20 -> "L1"``; raises KeyError for a non-vertebra label."""
    return VERTEBRA_NAMES[int(label)]


def vertebra_label(name: str) -> int:
    """``"L1" -> 20``, case-insensitive; raises KeyError for an unknown name."""
    return LABEL_FROM_NAME[name.strip().upper()]


def is_vertebra(label: int) -> bool:
    return int(label) in VERTEBRA_NAMES


def is_disc(label: int) -> bool:
    return is_vertebra(int(label) - DISC_OFFSET) and int(label) - DISC_OFFSET != SACRUM


def disc_label(upper_vertebra: int) -> int:
    """Disc below a vertebra: ``23 (L4) -> 123``."""
    return DISC_OFFSET + int(upper_vertebra)


def vertebra_above_disc(disc: int) -> int:
    return int(disc) - DISC_OFFSET


def craniocaudal_order(labels) -> list[int]:
    """Sort vertebra labels from cranial to caudal."""
    return sorted((int(x) for x in labels), key=lambda x: _RANK.get(x, 999))


def next_caudal(label: int, present=None) -> int | None:
    """The vertebra below ``label`` (among ``present`` if given)."""
    order = _ORDER if present is None else craniocaudal_order(present)
    if label not in order:
        return None
    n = order.index(label)
    return order[n + 1] if n + 1 < len(order) else None


def motor_unit_name(upper: int, lower: int) -> str:
    """``(23, 24) -> "L4-L5"``."""
    return f"{vertebra_name(upper)}-{vertebra_name(lower)}"


def disc_name(disc: int) -> str:
    """``123 -> "L4/L5"`` (the lower vertebra is the next caudal one)."""
    up = vertebra_above_disc(disc)
    # Conventional neighbours; transitional T13 / L6 only when the disc belongs to them.
    low = {19: 20, 24: SACRUM, 25: SACRUM, 28: 20}.get(up, up + 1)
    return f"{vertebra_name(up)}/{vertebra_name(low)}"


#: Lower neighbours beyond ``label + 1``: transitional vertebrae (T13, L6) and the counting
#: variants a level shift or rename produces (11 thoracic: T11-L1; 4 lumbar: L4-S1; a renamed
#: L5: L4-L6), so that every unit between labelled vertebrae has a valid name.
NAMED_NEIGHBOURS = {18: (19, 20, 28), 19: (20, 28), 28: (20,), 23: (24, 25, SACRUM),
                    24: (25, SACRUM), 25: (SACRUM,)}


def _adjacent(up: int, low: int) -> bool:
    special = NAMED_NEIGHBOURS
    if up in special:
        return low in special[up]
    return 1 <= up < 24 and low == up + 1


def parse_motor_unit(name: str) -> tuple[int, int]:
    """``"L4-L5" -> (23, 24)``; raises ValueError with a helpful message."""
    parts = name.strip().upper().replace("/", "-").split("-")
    if len(parts) != 2 or parts[0] not in LABEL_FROM_NAME or parts[1] not in LABEL_FROM_NAME:
        raise ValueError(f"'{name}' is not a motor-unit name such as L4-L5 or L5-S1")
    up, low = vertebra_label(parts[0]), vertebra_label(parts[1])
    if not _adjacent(up, low):
        raise ValueError(f"'{name}' does not name two adjacent vertebrae")
    return up, low


def segment_name(label: int) -> str:
    """The name of a label as a structure (DICOM SEG segment label): ``"L4"``, ``"L4/L5"``,
    ``"spinal canal"``, ``"spinal cord"``."""
    if label == CANAL:
        return "spinal canal"
    if label == CORD:
        return "spinal cord"
    if is_disc(label):
        return disc_name(label)
    return vertebra_name(label)


def label_from_segment_name(name: str) -> int | None:
    """The label a structure name stands for (inverse of :func:`segment_name`), else None."""
    n = name.strip()
    if n == "spinal canal":
        return CANAL
    if n == "spinal cord":
        return CORD
    if "/" in n:
        up = n.split("/")[0].upper()
        return disc_label(vertebra_label(up)) if up in LABEL_FROM_NAME else None
    return LABEL_FROM_NAME.get(n.upper())


_COUNT_CHUNK = 1 << 20


def label_counts(arr: np.ndarray, minlength: int = 0) -> np.ndarray:
    """Number of voxels of each label value: ``np.bincount(arr.ravel(), minlength=minlength)``.

    Counted in chunks of a million voxels: bincount casts its input to int64, which for a
    whole uint16 map means an 8-byte-per-voxel temporary (0.8 GB for 513x450x473) and is 4-6x
    slower (measured 0.8-1.3 s against 0.2 s).
    """
    flat = arr.reshape(-1)
    out = np.zeros(minlength, np.int64)
    for s in range(0, flat.size, _COUNT_CHUNK):
        c = np.bincount(flat[s:s + _COUNT_CHUNK])
        if c.size > out.size:
            out = np.concatenate([out, np.zeros(c.size - out.size, np.int64)])
        out[:c.size] += c
    return out


# ----------------------------------------------------------------------------- colours
#: Vertebra colours (RGB 0-255), given in cranio-caudal order C1 ... L5, S1 and repeating:
#: ivory, teal, plum, khaki, brown, rose. Any two vertebrae within two levels of each other
#: differ by a CIE76 colour difference of at least 47 (before, L4 and S1 were both orange,
#: 25 apart); none is within 35 of the discs' blue (L5's pink was 40 from the discs' magenta),
#: the canal's yellow, or the colours the rehearsal draws over the anatomy (instrument cyan,
#: structures at risk red, target and reference green, the resident's attempt orange).
VERTEBRA_RGB = ((235, 225, 200), (40, 120, 110), (120, 50, 100), (190, 190, 130), (140, 80, 40),
                (215, 120, 160))
#: Transitional vertebrae (T13, L6) stand out in grey: their naming needs a second look.
TRANSITIONAL_RGB = (150, 150, 150)
DISC_RGB = (70, 150, 230)
CANAL_RGB = (255, 255, 120)
CORD_RGB = (255, 255, 0)
OTHER_RGB = (170, 170, 170)

_COLOUR_ORDER = list(range(1, 25)) + [SACRUM]  # C1 ... L5, S1: consecutive levels


def _make_label_rgb() -> np.ndarray:
    lut = np.tile(np.array(OTHER_RGB, np.uint8), (400, 1))
    lut[0] = 0
    for n, v in enumerate(_COLOUR_ORDER):
        lut[v] = VERTEBRA_RGB[n % len(VERTEBRA_RGB)]
    for v in (25, 28):  # L6, T13
        lut[v] = TRANSITIONAL_RGB
    for v in range(DISC_OFFSET, DISC_OFFSET + 30):
        if is_disc(v):
            lut[v] = DISC_RGB
    lut[CANAL], lut[CORD] = CANAL_RGB, CORD_RGB
    lut.setflags(write=False)
    return lut


#: RGB (uint8) of every label value 0..399, indexed by the label (0 = background, black).
LABEL_RGB = _make_label_rgb()


def label_rgb(label: int) -> tuple[int, int, int]:
    """The palette's RGB (0-255) of one label value."""
    return tuple(int(c) for c in LABEL_RGB[min(max(int(label), 0), len(LABEL_RGB) - 1)])
