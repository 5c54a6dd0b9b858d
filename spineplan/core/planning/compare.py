"""The least destructive procedure that treats this lesion (CLINICAL.md, the principle).

:func:`compare_procedures` plans the needle, the tube and the cage on one motor unit and side,
measures what each removes and crosses, applies the indications of CLINICAL.md (no ablation
below 50 % of the neighbouring disc height or with a sequestered fragment; fusion for
instability or a slip) and recommends the least destructive procedure, in the order of
:data:`LADDER`, that reaches the lesion with no contraindication and no error check. The
choice stays the surgeon's: every option is returned with its reasons.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from ..errors import PlanningError
from .case import Case
from .common import NO_LESION_TEXT, labels_at
from .geometry import cylinder_voxels, points_along, unit
from .lesion import LesionKind
from .plan import Anatomy, Plan
from .planner import lesion_dict, make_plan
from .safety import PARAMETERS, CheckId

__all__ = ["LADDER", "ContraindicationKind", "Contraindication", "ProcedureOption", "Comparison",
           "compare_procedures", "COMPARE_PARAMETERS"]

#: Procedures from the least to the most destructive: no incision and no bone removed, then a
#: 16-18 mm tube with a laminotomy, then a facetectomy, a discectomy and a fused unit.
LADDER = ("needle", "tube", "cage")

COMPARE_PARAMETERS = {
    "ablation_min_disc_height_ratio": 0.5,   # CLINICAL.md: no ablation below 50 % of the neighbours
    "tube_annulotomy_mm": 5.0,               # annular incision of a discectomy for a herniation
}


class ContraindicationKind(str, enum.Enum):
    """Why a procedure is not indicated (code branches on the kind, never on the text)."""

    DISC_HEIGHT = "disc_height"          # ablation: disc below 50 % of its neighbours
    SEQUESTRUM = "sequestrum"            # ablation: a sequestered fragment
    MIGRATION = "migration"              # ablation: fragment migrated beyond its reach
    INSTABILITY = "instability"          # decompression alone: a slip or instability -> fusion


@dataclass
class Contraindication:
    kind: ContraindicationKind
    reason: str

    def to_dict(self) -> dict:
        return {"kind": self.kind.value, "reason": self.reason}


@dataclass
class ProcedureOption:
    """One planned procedure with what it costs and whether it treats the lesion."""

    procedure: str
    plan: Plan | None
    metrics: dict = field(default_factory=dict)
    reaches_lesion: bool | None = None     # None: no lesion marked
    contraindications: list = field(default_factory=list)
    errors: list = field(default_factory=list)   # CheckId values of the plan's red checks
    failure: str = ""                       # the planner could not propose a plan

    @property
    def treats(self) -> bool:
        """Planned, indicated, without a red check, and reaching the lesion (when marked)."""
        return (self.plan is not None and not self.contraindications and not self.errors
                and self.reaches_lesion is not False)

    def to_dict(self) -> dict:
        return {**self.metrics, "reaches_lesion": self.reaches_lesion,
                "contraindications": [c.to_dict() for c in self.contraindications],
                "errors": list(self.errors), "failure": self.failure or None,
                "motor_units_touched": list(self.plan.motor_units_touched) if self.plan else []}


@dataclass
class Comparison:
    level: str
    side: str
    options: dict
    recommended: str | None
    why: str
    lesion: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"level": self.level, "side": self.side,
                "procedures": {k: v.to_dict() for k, v in self.options.items()},
                "recommended": self.recommended, "why": self.why,
                "lesion": self.lesion or None}


def _muscle_path_mm(anat: Anatomy, entry, end) -> float:
    """Length (mm) from the skin entry through unlabelled soft tissue to the first labelled
    structure (or bone by HU on CT) on the way to ``end``."""
    P = points_along(entry, end, 0.5)
    lab, val = labels_at(anat, P)
    hard = lab != 0
    if anat.image.modality == "CT":
        hard |= np.nan_to_num(val, nan=-1000.0) > PARAMETERS["bone_hu"]
    k = int(np.argmax(hard)) if hard.any() else len(P) - 1
    return float(np.linalg.norm(P[k] - P[0]))


def _cage_bone_removed_cm3(anat: Anatomy, plan: Plan) -> float:
    """Bone of the insertion corridor plus the approach-side facet joint (the deliberate
    facetectomy of CLINICAL.md: the joint's bone within ``facet_region_radius_mm``), cm3."""
    from .cage import cage_axes
    from .common import VERTEBRA_LABELS, frame
    from .geometry import sampling_stride

    u = anat.unit(plan.level)
    _c, n, _lr, _ap = frame(u)
    axes = cage_axes(plan, n)
    start = np.asarray(plan.parameters["center_lps"]) - axes[:, 0] * plan.parameters["length_mm"] / 2
    idx, _ = cylinder_voxels(anat.labels, plan.entry_lps, start, plan.parameters["width_mm"] / 2)
    arr = anat.labels.array
    lab = arr[idx[:, 2], idx[:, 1], idx[:, 0]] if len(idx) else np.zeros(0, int)
    removed = [idx[np.isin(lab, VERTEBRA_LABELS)]]
    f = u.facet_lps(plan.side)
    if f is not None:
        r = PARAMETERS["facet_region_radius_mm"]
        f = np.asarray(f, float)
        fidx, flps = cylinder_voxels(anat.labels, f - [0, 0, r], f + [0, 0, r], r)
        flab = arr[fidx[:, 2], fidx[:, 1], fidx[:, 0]]
        removed.append(fidx[np.isin(flab, [u.upper, u.lower]) & (np.linalg.norm(flps - f, axis=1) <= r)])
    allidx = np.unique(np.vstack(removed), axis=0) if any(len(x) for x in removed) else np.zeros((0, 3))
    voxel_cm3 = float(np.prod(anat.labels.spacing)) * sampling_stride(anat.labels) ** 3 / 1000.0
    return len(allidx) * voxel_cm3


def _metrics(anat: Anatomy, plan: Plan, lesion: dict) -> dict:
    p = plan.parameters
    if plan.procedure == "needle":
        facet = 100.0  # nothing is removed: a needle meeting bone is a red check
        disc, opening = "annulus puncture", float(p.get("diameter_mm", PARAMETERS["needle_diameter_mm"]))
        end = plan.target_lps
    elif plan.procedure == "tube":
        facet = p.get("facet_preservation_pct")
        herniation = not lesion or lesion.get("kind") == LesionKind.HERNIATION.value
        disc = "annulotomy" if herniation else "none"
        opening = COMPARE_PARAMETERS["tube_annulotomy_mm"] if herniation else 0.0
        end = plan.target_lps
    else:
        facet = 0.0  # the approach-side facetectomy is deliberate (CLINICAL.md)
        disc, opening = "discectomy and interbody cage", float(p["width_mm"])
        end = np.asarray(p["center_lps"]) - unit(p["axis_lps"]) * p["length_mm"] / 2
    bone = _cage_bone_removed_cm3(anat, plan) if plan.procedure == "cage" else p.get("bone_removed_cm3", 0.0)
    return {"bone_removed_cm3": round(float(bone), 2),
            "facet_preserved_pct": None if facet is None else round(float(facet), 1),
            "disc_opened": disc, "annulus_opening_mm": round(opening, 1),
            "muscle_path_mm": round(_muscle_path_mm(anat, plan.entry_lps, end), 1),
            "incision_mm": round(float(plan.incision_mm), 1)}


def _contraindications(procedure: str, plan: Plan | None, unit_, lesion: dict, case: Case) -> list:
    out: list[Contraindication] = []
    slip = abs(unit_.slip_mm) if unit_.slip_mm is not None else 0.0
    slip_min = PARAMETERS["slip_fusion_min_mm"]
    if procedure in ("needle", "tube"):
        if slip >= slip_min:
            out.append(Contraindication(ContraindicationKind.INSTABILITY,
                                        f"slip of {slip:.1f} mm at {unit_.name} (>= {slip_min:g} mm): "
                                        "fusion is indicated, decompression alone is not"))
        elif case.pathology == "instability":
            out.append(Contraindication(ContraindicationKind.INSTABILITY,
                                        f"instability marked at {unit_.name}: fusion is indicated"))
    if procedure == "needle":
        ratio = unit_.height_ratio_to_neighbours
        lim = COMPARE_PARAMETERS["ablation_min_disc_height_ratio"]
        if ratio is not None and ratio < lim:
            out.append(Contraindication(ContraindicationKind.DISC_HEIGHT,
                                        f"disc height {100 * ratio:.0f} % of the neighbouring discs' "
                                        f"(< {100 * lim:.0f} %): ablation is not indicated"))
        if lesion.get("kind") == LesionKind.SEQUESTRUM.value or case.pathology == "sequestration":
            out.append(Contraindication(ContraindicationKind.SEQUESTRUM,
                                        "a sequestered fragment is not treated by disc ablation"))
        mig = abs(float(lesion.get("migration_mm", 0.0))) if lesion else 0.0
        if mig > PARAMETERS["ablation_max_migration_mm"]:
            out.append(Contraindication(ContraindicationKind.MIGRATION,
                                        f"fragment migrated {mig:.1f} mm from the disc plane "
                                        f"(ablation treats up to {PARAMETERS['ablation_max_migration_mm']:g} mm)"))
    return out


def compare_procedures(anat: Anatomy, level: str, side: str, lesion=None,
                       case: Case | dict | None = None) -> Comparison:
    """Plan all three procedures on ``level``/``side`` and recommend the least destructive.

    Parameters
    ----------
    anat : Anatomy
    level, side : str
        The diseased motor unit and the side of the approach.
    lesion : Lesion or dict, optional
        The marked lesion; without it "reaches_lesion" is None and only the indications decide.
    case : Case or dict, optional
        Clinical findings (pathology "instability" or "sequestration" count as indications).

    Returns
    -------
    Comparison
        ``options`` by procedure (plan, metrics, reaches_lesion, contraindications, errors),
        ``recommended`` (None when no procedure treats the lesion) and ``why``.
    """
    case_d = Case.from_dict(case) if isinstance(case, dict) else (case or Case(level=level, side=side))
    unit_ = anat.unit(level)
    les = lesion_dict(anat, lesion)
    options: dict[str, ProcedureOption] = {}
    for proc in LADDER:
        try:
            plan = make_plan(anat, level, proc, side, case=Case.from_dict(case_d.to_dict()), lesion=les or None)
        except PlanningError as exc:
            options[proc] = ProcedureOption(proc, None, contraindications=_contraindications(
                proc, None, unit_, les, case_d), failure=str(exc))
            continue
        reach = None
        if les:
            reach = plan.check(CheckId.LESION_REACHED).ok
        options[proc] = ProcedureOption(proc, plan, _metrics(anat, plan, les), reach,
                                        _contraindications(proc, plan, unit_, les, case_d),
                                        [c.id for c in plan.errors()])
    what = ("the " + f"{les['kind']} at {les['level']} ({les['zone']})") if les else NO_LESION_TEXT
    ruled: list[str] = []
    recommended = None
    for proc in LADDER:
        o = options[proc]
        if o.treats:
            recommended = proc
            break
        reasons = [c.reason for c in o.contraindications]
        if o.failure:
            reasons.append(f"no plan: {o.failure}")
        if o.errors:
            reasons.append("red checks: " + ", ".join(o.errors))
        if o.reaches_lesion is False:
            reasons.append(f"does not reach the lesion ({o.plan.metrics.get('lesion_distance_mm', 0):.1f} mm)")
        ruled.append(f"{proc} ruled out: " + "; ".join(reasons))
    if recommended is None:
        why = (f"no procedure treats {what} at {level} without a contraindication or a red check; "
               + "; ".join(ruled) + ". The surgeon decides.")
    else:
        reach = f"reaches {what}" if les else f"treats {level} ({NO_LESION_TEXT})"
        why = (f"{recommended}: the least destructive procedure that {reach} with no "
               f"contraindication and no red check"
               + (f" ({'; '.join(ruled)})" if ruled else "") + ". The choice stays the surgeon's.")
    return Comparison(level, side, options, recommended, why, les)
