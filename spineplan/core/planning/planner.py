"""Dispatch: propose and re-check plans of any procedure."""

from __future__ import annotations

from . import cage, needle, tube
from .case import Case, concordance
from .lesion import Lesion, locate_lesion
from .plan import Anatomy, Plan

__all__ = ["make_plan", "evaluate", "PLANNERS", "lesion_dict"]

PLANNERS = {"needle": needle, "tube": tube, "cage": cage}


def _with_case(plan: Plan, case: Case | dict | None) -> Plan:
    if case is None:
        case = Case(level=plan.level, side=plan.side)
    if isinstance(case, dict):
        case = Case.from_dict(case)
    if not case.level:
        case.level = plan.level
    if not case.side:
        case.side = plan.side
    plan.case = case.to_dict()
    return plan


def lesion_dict(anatomy: Anatomy, lesion: "Lesion | dict | None") -> dict:
    """The plan-file ``lesion`` dict (Lesion + its location on ``anatomy``); {} for none."""
    if not lesion:
        return {}
    if isinstance(lesion, dict):
        from .lesion import lesion_from_dict

        lesion = lesion_from_dict(lesion)
    return {**lesion.to_dict(), **locate_lesion(anatomy, lesion).to_dict()}


def make_plan(anatomy: Anatomy, level: str, procedure: str, side: str,
              case: Case | dict | None = None, lesion: "Lesion | dict | None" = None, **params) -> Plan:
    """Propose a plan automatically from the anatomy, with its checks.

    Parameters
    ----------
    anatomy : Anatomy
        Image, labels and motor units.
    level : str
        Target motor unit, e.g. ``"L4-L5"``.
    procedure : {"needle", "tube", "cage"}
    side : {"left", "right"}
        The patient's side of the approach.
    case : Case or dict, optional
        Clinical findings; its concordance checks are added to the plan.
    lesion : Lesion or dict, optional
        The marked lesion: the proposal aims at it, the check "lesion reached" is added, and
        its computed zone replaces the case's typed zone in the concordance checks.
    """
    mod = PLANNERS[procedure]
    case_d = (Case.from_dict(case) if isinstance(case, dict) else case)
    anatomy.require_established_levels()
    les = lesion_dict(anatomy, lesion)
    if les:
        case_d = case_d or Case(level=level, side=side)
        case_d.zone = les["zone"]
    plan = mod.propose(anatomy, level, side, case=case_d.to_dict() if case_d else None, lesion=les,
                       **params)
    if anatomy.segmentation is not None:
        plan.segmentation = anatomy.segmentation.summary_dict()
    plan.motor_unit = anatomy.unit(level).summary_dict()  # measurements for the report
    return evaluate(_with_case(plan, case_d), anatomy)


def evaluate(plan: Plan, anatomy: Anatomy) -> Plan:
    """Re-check a (moved) plan; adds the case's concordance checks."""
    PLANNERS[plan.procedure].evaluate(plan, anatomy)
    if plan.case:
        c = Case.from_dict(plan.case)
        c.side = plan.side
        if plan.lesion.get("zone"):  # the computed zone, in place of the typed guess
            c.zone = plan.lesion["zone"]
            plan.case["zone"] = c.zone
        plan.checks.extend(concordance(c))
    return plan
