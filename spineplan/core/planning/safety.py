"""Safety checks shared by the planners, and the named clinical parameters they use.

Every number is a named parameter from CLINICAL.md; ``PARAMETERS`` lists them for display.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum

import numpy as np

from ..hounsfield import BONE_HU
from ..segmentation import labels as L

__all__ = ["Check", "CheckId", "CheckStatus", "CHECK_NAMES", "SEVERITY_LIGHT", "PARAMETERS",
           "units_touched", "worst_severity", "check_counts", "has_red"]

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
    # reach of each instrument towards a marked lesion (check "lesion reached")
    "tube_working_depth_mm": 25.0,              # the bore carried from the docking point to the disc
    "needle_lesion_reach_mm": 10.0,             # the working tip's reach from its path in the disc
    "ablation_max_migration_mm": 5.0,           # a fragment migrated further is not treated by ablation
    "cage_decompression_height_mm": 12.0,       # facetectomy/decompression reach above and below the disc plane
    "slip_fusion_min_mm": 3.0,                  # a slip from this size is treated by fusion (compare)
}


class CheckId(str, Enum):
    """Stable identity of every check: code, tests and files find checks by it, never by text."""

    ENTRY_SIDE = "entry_side"
    MOTOR_UNITS_TOUCHED = "motor_units_touched"
    ADJACENT_UNTOUCHED = "adjacent_untouched"
    TARGET_FACETS = "target_facets"
    NEEDLE_BONE = "needle_bone_collision"
    ILIAC_CREST = "iliac_crest"
    UNLABELLED_BONE = "unlabelled_bone"
    CANAL_CLEARANCE = "canal_clearance"
    LATERAL_CORRIDOR = "lateral_corridor"
    ANTERIOR_ANNULUS = "anterior_annulus_margin"
    NUCLEUS_REACH = "nucleus_reach"
    NEEDLE_ANGLE = "needle_angle_to_sagittal"
    NEEDLE_ENTRY_MIDLINE = "needle_entry_from_midline"
    INDICATION_DISC_HEIGHT = "indication_disc_height"
    INDICATION_SEQUESTRATION = "indication_sequestration"
    BONE_IN_BORE = "bone_in_bore"
    INCISION = "incision_length"
    FACET_PRESERVATION = "facet_preservation"
    DURAL_SAC_CLEARANCE = "dural_sac_clearance"
    TUBE_LENGTH = "tube_length"
    CONTRALATERAL_TILT = "contralateral_tilt"
    MEDIAL_ANGULATION = "medial_angulation"
    TUBE_ENTRY_MIDLINE = "tube_entry_from_midline"
    PARALLEL_TO_DISC = "parallel_to_disc_plane"
    CAGE_FOOTPRINT = "cage_footprint"
    CAGE_HEIGHT = "cage_height"
    CAGE_MIDLINE = "cage_centre_near_midline"
    CAGE_ANTERIOR_HALF = "cage_in_anterior_half"
    CAGE_ANGLE = "cage_insertion_angle"
    CONTRALATERAL_FACET = "contralateral_facet_preserved"
    FACETECTOMY = "facetectomy"
    LEVEL_MARKED = "level_marked"
    ROOT_CONCORDANCE = "root_concordance"
    SIDE_CONCORDANCE = "side_concordance"
    LESION_REACHED = "lesion_reached"
    INDICATION_MIGRATION = "indication_migration"


#: What each check is called on screen and in reports (one home for the text).
CHECK_NAMES: dict[CheckId, str] = {
    CheckId.ENTRY_SIDE: "entry on planned side", CheckId.MOTOR_UNITS_TOUCHED: "motor units touched",
    CheckId.ADJACENT_UNTOUCHED: "adjacent discs and facet joints untouched",
    CheckId.TARGET_FACETS: "target facet joints", CheckId.NEEDLE_BONE: "needle-bone collision",
    CheckId.ILIAC_CREST: "iliac crest", CheckId.UNLABELLED_BONE: "unlabelled bone",
    CheckId.CANAL_CLEARANCE: "canal clearance", CheckId.LATERAL_CORRIDOR: "lateral corridor",
    CheckId.ANTERIOR_ANNULUS: "anterior annulus margin", CheckId.NUCLEUS_REACH: "nucleus reach",
    CheckId.NEEDLE_ANGLE: "angle to sagittal plane", CheckId.NEEDLE_ENTRY_MIDLINE: "skin entry from midline",
    CheckId.INDICATION_DISC_HEIGHT: "indication: disc height",
    CheckId.INDICATION_SEQUESTRATION: "indication: sequestration",
    CheckId.BONE_IN_BORE: "bone in the bore", CheckId.INCISION: "incision length",
    CheckId.FACET_PRESERVATION: "facet preservation", CheckId.DURAL_SAC_CLEARANCE: "dural sac clearance",
    CheckId.TUBE_LENGTH: "tube length", CheckId.CONTRALATERAL_TILT: "contralateral tilt",
    CheckId.MEDIAL_ANGULATION: "medial angulation", CheckId.TUBE_ENTRY_MIDLINE: "skin entry from midline",
    CheckId.PARALLEL_TO_DISC: "parallel to disc plane",
    CheckId.CAGE_FOOTPRINT: "cage footprint inside endplates", CheckId.CAGE_HEIGHT: "cage height",
    CheckId.CAGE_MIDLINE: "cage centre near midline", CheckId.CAGE_ANTERIOR_HALF: "cage in anterior half",
    CheckId.CAGE_ANGLE: "insertion angle to sagittal",
    CheckId.CONTRALATERAL_FACET: "contralateral facet preserved", CheckId.FACETECTOMY: "facetectomy",
    CheckId.LEVEL_MARKED: "level marked", CheckId.ROOT_CONCORDANCE: "root concordance",
    CheckId.SIDE_CONCORDANCE: "side concordance",
    CheckId.LESION_REACHED: "lesion reached", CheckId.INDICATION_MIGRATION: "indication: migration",
}


class CheckStatus(str, Enum):
    """Outcome of a check. NOT_EVALUATED (amber, severity "warning") when the anatomy it needs
    is missing: listed with why, never left out."""

    PASSED = "passed"
    WARNING = "warning"
    FAILED = "failed"
    NOT_EVALUATED = "not_evaluated"


#: Traffic-light colour of each severity (red/amber/green counts of a plan).
SEVERITY_LIGHT = {"error": "red", "warning": "amber", "ok": "green"}


@dataclass
class Check:
    """One check result: ``severity`` is "ok", "warning" or "error"; ``id`` a :class:`CheckId`
    value; ``status`` a :class:`CheckStatus` value (derived from the severity unless not
    evaluated). Code builds checks as ``Check(CheckId.X, ok, severity, detail)``; the name is
    then the id's display text."""

    name: str
    ok: bool
    severity: str
    detail: str
    id: str = ""
    status: str = ""

    def __post_init__(self):
        if isinstance(self.name, CheckId):
            self.id, self.name = self.name.value, CHECK_NAMES[self.name]
        self.id = CheckId(self.id).value if self.id in CheckId._value2member_map_ else str(self.id or "")
        self.ok = bool(self.ok)
        if self.severity not in ("ok", "warning", "error"):
            raise ValueError(f"bad severity {self.severity!r}")
        if not self.status:
            self.status = {"ok": CheckStatus.PASSED, "warning": CheckStatus.WARNING,
                           "error": CheckStatus.FAILED}[self.severity].value
        self.status = CheckStatus(self.status).value
        if self.status == CheckStatus.NOT_EVALUATED.value and (self.ok or self.severity != "warning"):
            raise ValueError("a check not evaluated is amber (severity warning) and not ok")

    @classmethod
    def not_evaluated(cls, check_id: CheckId, why: str) -> "Check":
        """A check that cannot be evaluated on this anatomy: amber, with the reason."""
        return cls(check_id, False, "warning", f"not evaluated: {why}",
                   status=CheckStatus.NOT_EVALUATED.value)

    @property
    def evaluated(self) -> bool:
        return self.status != CheckStatus.NOT_EVALUATED.value

    @property
    def light(self) -> str:
        """"red", "amber" or "green"."""
        return SEVERITY_LIGHT[self.severity]

    def to_dict(self) -> dict:
        return asdict(self)


def worst_severity(checks) -> str:
    order = {"ok": 0, "warning": 1, "error": 2}
    return max((c.severity for c in checks), key=lambda s: order[s], default="ok")


def check_counts(checks) -> dict[str, int]:
    """``{"red", "amber", "green", "not_evaluated"}`` counts of checks (objects or plan-file
    dicts); not-evaluated checks are amber and also counted on their own."""
    out = {"red": 0, "amber": 0, "green": 0, "not_evaluated": 0}
    for c in checks:
        sev = c.get("severity", "ok") if isinstance(c, dict) else c.severity
        status = c.get("status", "") if isinstance(c, dict) else c.status
        out[SEVERITY_LIGHT.get(sev, "amber")] += 1
        out["not_evaluated"] += status == CheckStatus.NOT_EVALUATED.value
    return out


def has_red(checks) -> bool:
    """True when any check (object or dict) is an error."""
    return check_counts(checks)["red"] > 0


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
