"""Cage catalogue, read from the editable assets/cages.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ...paths import assets_dir
from ..errors import InvalidInputError

__all__ = ["CageFamily", "load_catalogue"]


@dataclass
class CageFamily:
    id: str
    name: str
    lengths_mm: list
    widths_mm: list
    heights_mm: list
    lordosis_deg: list


def load_catalogue(path: str | Path | None = None) -> list[CageFamily]:
    """Cage families from ``assets/cages.json`` (or ``path``); clear error when malformed."""
    p = Path(path) if path else assets_dir() / "cages.json"
    try:
        doc = json.loads(p.read_text())
        fams = [CageFamily(**{k: f[k] for k in CageFamily.__dataclass_fields__}) for f in doc["families"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"cage catalogue {p.name} cannot be read ({exc})") from None
    if not fams:
        raise InvalidInputError(f"cage catalogue {p.name} lists no cages")
    return fams
