"""A plan dict as teaching reads it: its trajectory (LPS), procedure, side and level labels, checked
(:func:`check_plan`: procedure, side, level, entry/target, side against the geometry).
"""

from __future__ import annotations


import numpy as np

from ..errors import PlanFileError
from ..planning.kinds import PROCEDURES, SIDES
from ..segmentation import labels as L

__all__ = ["SIDE_TOLERANCE_MM", "check_plan", "side_matches_geometry", "trajectory_lps"]


def _vec3(plan: dict, key: str) -> np.ndarray:
    try:
        v = np.asarray(plan[key], dtype=float).reshape(3)
    except KeyError:
        raise PlanFileError(f"plan has no '{key}'; save the plan again from spineplan") from None
    except (TypeError, ValueError):
        raise PlanFileError(f"plan '{key}' must be three numbers (LPS mm)") from None
    if not np.all(np.isfinite(v)):
        raise PlanFileError(f"plan '{key}' is not finite")
    return v


def trajectory_lps(plan: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Entry, target, unit direction (entry -> target) and depth (mm) of a plan.

    Raises
    ------
    PlanFileError
        When entry or target is missing/invalid or they coincide.
    """
    entry, target = _vec3(plan, "entry_lps"), _vec3(plan, "target_lps")
    depth = float(np.linalg.norm(target - entry))
    if depth < 1.0:
        raise PlanFileError("plan entry and target coincide; the trajectory has no length")
    return entry, target, (target - entry) / depth, depth


def _procedure(plan: dict) -> str:
    proc = plan.get("procedure")
    if proc not in PROCEDURES:
        raise PlanFileError(f"plan procedure {proc!r} is not one of {', '.join(PROCEDURES)}")
    return proc


def _side(plan: dict) -> str:
    side = plan.get("side")
    if side not in SIDES:
        raise PlanFileError(f"plan side {side!r} must be 'left' or 'right'")
    return side


def _level_labels(level: str) -> dict:
    """Labels around a motor unit: upper/lower vertebra, target disc, neighbouring discs."""
    try:
        up, low = L.parse_motor_unit(level)
    except (ValueError, AttributeError):
        raise PlanFileError(f"plan level {level!r} is not a motor unit such as L4-L5") from None
    above = {1: None, 20: 19, 28: 19}.get(up, up - 1)
    below = {19: 20, 24: L.SACRUM, 25: L.SACRUM, 28: 20}.get(low, low + 1)  # typical anatomy
    disc_above = L.disc_label(above) if above else None
    disc_below = L.disc_label(low) if low != L.SACRUM and L.is_disc(L.disc_label(low)) else None
    upper_name, lower_name = L.vertebra_name(up), L.vertebra_name(low)
    return dict(up=up, low=low, disc=L.disc_label(up), disc_above=disc_above,
                disc_below=disc_below, exiting_root=upper_name,
                traversing_root=lower_name,
                unit_above=(f"{L.vertebra_name(above)}-{upper_name}" if above else None),
                unit_below=(L.motor_unit_name(low, below) if low != L.SACRUM else None))


#: How far (mm) the entry may lie on the other side of the target, in LPS x, before a plan's
#: declared side and its geometry are taken to contradict each other (a straight-down tube
#: has entry x close to target x; a posterolateral approach has the entry lateral).
SIDE_TOLERANCE_MM = 5.0


def side_matches_geometry(plan: dict) -> bool:
    """True when the entry lies on the declared side (LPS: the patient's left is +x).

    A ``"left"`` plan whose entry is more than :data:`SIDE_TOLERANCE_MM` to the patient's
    right of its target (or the reverse) describes a wrong-side approach.
    """
    entry, target, _, _ = trajectory_lps(plan)
    sgn = 1.0 if _side(plan) == "left" else -1.0
    return bool(sgn * (entry[0] - target[0]) >= -SIDE_TOLERANCE_MM)


def check_plan(plan: dict, require_consistent_side: bool = True) -> dict:
    """Validate the keys rehearsal and scoring need; return the plan.

    Raises
    ------
    PlanFileError
        Missing/invalid procedure, side, level, entry or target, or (when
        ``require_consistent_side``) an entry on the other side than the declared one.
    """
    if not isinstance(plan, dict):
        raise PlanFileError("a plan must be a JSON object")
    _procedure(plan)
    side = _side(plan)
    _level_labels(str(plan.get("level", "")))
    trajectory_lps(plan)
    if require_consistent_side and not side_matches_geometry(plan):
        other = "right" if side == "left" else "left"
        raise PlanFileError(f"plan says {side.upper()} but its entry lies on the patient's {other}; "
                            f"check the plan before teaching with it")
    return plan
