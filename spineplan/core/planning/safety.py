"""Safety checks shared by the planners, and the named clinical parameters they use.

Every number is a named parameter from CLINICAL.md; ``PARAMETERS`` lists them for display.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..hounsfield import BONE_HU
from ..segmentation import labels as L

__all__ = ["Check", "PARAMETERS", "units_touched", "worst_severity"]

PARAMETERS = {
    "needle_diameter_mm": 1.5,                  # 17-gauge introducer
    "needle_angle_to_sagittal_deg": (35.0, 45.0),
    "needle_entry_from_midline_mm": (80.0, 120.0),
    "needle_anterior_annulus_margin_mm": 5.0,
    "tube_diameters_mm": (16.0, 18.0),
    "incision_range_mm": (16.0, 20.0),
    "tube_lengths_mm": (40, 50, 60, 70, 80, 90),
    "tube_medial_angulation_deg": (5.0, 15.0),
    "tube_entry_from_midline_mm": (15.0, 25.0),
    "tube_contralateral_tilt_deg": (25.0, 35.0),
    "tube_laminotomy_depth_mm": 6.0,            # bone removed below the docking point
    "facet_preservation_min_pct": 50.0,
    "facet_preservation_good_pct": 75.0,
    "facet_region_radius_mm": 7.0,
    "cage_margin_mm": 3.0,
    "cage_center_from_midline_max_mm": 5.0,
    "cage_angle_to_sagittal_deg": (25.0, 45.0),
    "cage_max_over_neighbours_mm": 2.0,
    "dural_sac_clearance_mm": 2.0,
    "bone_hu": BONE_HU,                          # unlabelled bone (ilium) in CT (hounsfield.py)
}


@dataclass
class Check:
    """One check result: ``severity`` is "ok", "warning" or "error"."""

    name: str
    ok: bool
    severity: str
    detail: str

    def __post_init__(self):
        self.ok = bool(self.ok)
        if self.severity not in ("ok", "warning", "error"):
            raise ValueError(f"bad severity {self.severity!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def worst_severity(checks) -> str:
    order = {"ok": 0, "warning": 1, "error": 2}
    return max((c.severity for c in checks), key=lambda s: order[s], default="ok")


def units_touched(hit_labels: np.ndarray, hit_lps: np.ndarray, units) -> dict[str, int]:
    """Attribute touched structures to motor units; returns ``{unit name: voxel count}``.

    A disc belongs to its unit. A vertebra belongs to the unit above and below it; a touched
    voxel of vertebra V is attributed to the unit whose disc is nearer to it. Facet regions
    are handled by the callers (they know the instrument).
    """
    out: dict[str, int] = {}
    by_disc = {u.disc: u for u in units if u.disc}
    centers = {u.name: np.array(u.disc_geometry.center_lps) for u in units if u.disc_geometry}
    for lab in np.unique(hit_labels):
        lab = int(lab)
        sel = hit_labels == lab
        if lab in by_disc:
            out[by_disc[lab].name] = out.get(by_disc[lab].name, 0) + int(sel.sum())
        elif L.is_vertebra(lab):
            cands = [u for u in units if lab in (u.upper, u.lower) and u.name in centers]
            if not cands:
                continue
            P = hit_lps[sel]
            d = np.stack([np.linalg.norm(P - centers[u.name], axis=1) for u in cands], 1)
            nearest = np.argmin(d, axis=1)
            for n, u in enumerate(cands):
                c = int(np.sum(nearest == n))
                if c:
                    out[u.name] = out.get(u.name, 0) + c
    return out
