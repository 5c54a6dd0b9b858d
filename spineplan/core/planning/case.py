"""The clinical case: diseased motor unit, side, pathology, findings, and concordance.

Concordance rules (CLINICAL.md): a herniation at Lx-Lx+1 in the central, paracentral or
subarticular zone compresses the traversing root Lx+1; in the foraminal or
extraforaminal zone the exiting root Lx.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..segmentation import labels as L
from .safety import Check, CheckId

__all__ = ["Case", "ZONES", "PATHOLOGIES", "ROOTS", "concordance", "roots_explained"]

ZONES = ("central", "paracentral", "subarticular", "foraminal", "extraforaminal")
PATHOLOGIES = ("herniation", "stenosis", "instability", "sequestration")
ROOTS = ("L2", "L3", "L4", "L5", "S1")
TRAVERSING_ZONES = ("central", "paracentral", "subarticular")
ROOT_SIGNS = {
    "L3": "anterior thigh, quadriceps, knee reflex",
    "L4": "medial leg, tibialis anterior, knee reflex",
    "L5": "dorsum of foot and big toe, extensor hallucis longus, no reliable reflex",
    "S1": "lateral foot and sole, plantar flexion, ankle reflex",
}


@dataclass
class Case:
    """What the surgeon marked and found."""

    level: str = ""                 # e.g. "L4-L5"
    side: str = ""                  # planned side: "left" | "right"
    pathology: str = "herniation"
    zone: str = "paracentral"
    symptom_side: str = ""          # "left" | "right" | "bilateral"
    suspected_root: str = ""        # "L3" | "L4" | "L5" | "S1"
    signs: list = field(default_factory=list)
    notes: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["concordance"] = [c.to_dict() for c in concordance(self)]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Case":
        keys = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in (d or {}).items() if k in keys})


def roots_explained(level: str, zone: str) -> list[str]:
    """Nerve roots a lesion at ``level`` in ``zone`` compresses."""
    up, low = L.parse_motor_unit(level)
    upper_name, lower_name = L.vertebra_name(up), L.vertebra_name(low)
    if zone in TRAVERSING_ZONES:
        return [lower_name]
    if zone in ("foraminal", "extraforaminal"):
        return [upper_name]
    return [upper_name, lower_name]


def concordance(case: Case) -> list[Check]:
    """Checks that the marked level/side/zone can explain the clinical findings."""
    out: list[Check] = []
    if not case.level:
        return [Check(CheckId.LEVEL_MARKED, False, "warning", "no diseased motor unit marked yet")]
    try:
        L.parse_motor_unit(case.level)
    except ValueError as exc:
        return [Check(CheckId.LEVEL_MARKED, False, "error", str(exc))]
    if case.suspected_root:
        roots = roots_explained(case.level, case.zone)
        if case.suspected_root in roots:
            out.append(Check(CheckId.ROOT_CONCORDANCE, True, "ok",
                             f"{case.zone} {case.level} lesion explains the {case.suspected_root} root"))
        else:
            out.append(Check(CheckId.ROOT_CONCORDANCE, False, "warning",
                             f"{case.suspected_root} signs are not explained by a {case.zone} lesion at "
                             f"{case.level} (it compresses {', '.join(roots)}); re-check the level and zone"))
    if case.symptom_side in ("left", "right") and case.side in ("left", "right"):
        if case.symptom_side != case.side:
            out.append(Check(CheckId.SIDE_CONCORDANCE, False, "warning",
                             f"symptoms are {case.symptom_side} but the plan approaches from the {case.side}"))
        else:
            out.append(Check(CheckId.SIDE_CONCORDANCE, True, "ok", f"symptoms and approach both {case.side}"))
    return out
