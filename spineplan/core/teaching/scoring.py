"""Practice scoring: a resident's plan against the hidden reference plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .plans import check_plan, side_matches_geometry, trajectory_lps

__all__ = ["SCORE_TOLERANCES", "SCORE_WEIGHTS", "PASS_SCORE", "RED_CHECK_SCORE_CAP", "Score", "score_attempt",
           "score_summary"]


#: Weights of the overall 0-100 score (sum 1). Each geometric term is
#: ``max(0, 1 - error / tolerance)``; checks = fraction of the attempt's checks that
#: passed (1 when it has none); motor units = 1 when the attempt touches exactly the
#: reference's motor units. A wrong side, level or procedure scores 0 overall.
SCORE_WEIGHTS = {"entry": 0.25, "angle": 0.25, "target": 0.25, "checks": 0.10, "motor_units": 0.15}
#: Error (mm or degrees) at which a geometric term reaches 0 points.
SCORE_TOLERANCES = {"entry_mm": 20.0, "angle_deg": 20.0, "target_mm": 10.0}
#: An attempt passes from this overall score up.
PASS_SCORE = 60.0
#: The highest score of an attempt with a red (error) check: a failing one, however close the
#: trajectory (a plan through bone or the canal is not 70 % right).
RED_CHECK_SCORE_CAP = 40.0


@dataclass(frozen=True)
class Score:
    """Result of :func:`score_attempt` (errors in mm and degrees, overall 0-100)."""

    entry_error_mm: float
    target_error_mm: float
    angle_difference_deg: float
    depth_difference_mm: float
    checks_passed: tuple[str, ...]
    checks_failed: tuple[str, ...]
    motor_units_reference: tuple[str, ...]
    motor_units_attempt: tuple[str, ...]
    motor_units_match: bool
    same_side: bool
    same_level: bool
    same_procedure: bool
    components: dict[str, float]
    overall: float
    remarks: tuple[str, ...] = ()
    red_checks: tuple[str, ...] = ()   # the attempt's error checks (they cap the score)

    @property
    def passed(self) -> bool:
        """True from :data:`PASS_SCORE` up; never with a red check."""
        return self.overall >= PASS_SCORE and not self.red_checks

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two vectors (degrees), robust near 0 and 180 degrees."""
    return float(np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b)), float(a @ b))))


def score_attempt(reference_plan: dict, attempt_plan: dict) -> Score:
    """Score a resident's attempt against the reference plan.

    Parameters
    ----------
    reference_plan, attempt_plan : dict
        Plan dicts of the same case (the attempt's ``checks`` are those computed for it).

    Returns
    -------
    Score
        Entry / target distances (mm), trajectory angle difference (deg), checks the
        attempt passed and failed, motor units touched, and an overall 0-100 score
        weighted by :data:`SCORE_WEIGHTS` with :data:`SCORE_TOLERANCES`.
    """
    check_plan(reference_plan)
    check_plan(attempt_plan, require_consistent_side=False)
    e_r, t_r, d_r, depth_r = trajectory_lps(reference_plan)
    e_a, t_a, d_a, depth_a = trajectory_lps(attempt_plan)
    entry_err = float(np.linalg.norm(e_a - e_r))
    target_err = float(np.linalg.norm(t_a - t_r))
    angle = _angle_deg(d_r, d_a)

    passed, failed, red = [], [], []
    for c in attempt_plan.get("checks") or []:
        name = str(c.get("name", "check"))
        ok = bool(c.get("ok")) and c.get("severity", "ok") != "error"
        (passed if ok else failed).append(name)
        if c.get("severity") == "error":
            red.append(name)
    mu_r = tuple(sorted(str(u) for u in reference_plan.get("motor_units_touched") or []))
    mu_a = tuple(sorted(str(u) for u in attempt_plan.get("motor_units_touched") or []))
    same_side = reference_plan.get("side") == attempt_plan.get("side")
    same_level = reference_plan.get("level") == attempt_plan.get("level")
    same_proc = reference_plan.get("procedure") == attempt_plan.get("procedure")

    def term(err: float, tol: float) -> float:
        return max(0.0, 1.0 - err / tol)

    comp = {
        "entry": term(entry_err, SCORE_TOLERANCES["entry_mm"]),
        "angle": term(angle, SCORE_TOLERANCES["angle_deg"]),
        "target": term(target_err, SCORE_TOLERANCES["target_mm"]),
        "checks": (len(passed) / (len(passed) + len(failed))) if (passed or failed) else 1.0,
        "motor_units": 1.0 if mu_a == mu_r else 0.0,
    }
    overall = 100.0 * sum(SCORE_WEIGHTS[k] * v for k, v in comp.items())
    remarks = []
    if not same_side:
        remarks.append("wrong side: the attempt is planned on the other side of the patient")
    elif not side_matches_geometry(attempt_plan):
        remarks.append(f"wrong side: the attempt's entry lies on the patient's other side than "
                       f"'{attempt_plan.get('side')}'")
    if not same_level:
        remarks.append(f"wrong level: {attempt_plan.get('level')} instead of {reference_plan.get('level')}")
    if not same_proc:
        remarks.append(f"other procedure: {attempt_plan.get('procedure')} instead of "
                       f"{reference_plan.get('procedure')}")
    if remarks:
        overall = 0.0
    if red and overall > RED_CHECK_SCORE_CAP:
        overall = RED_CHECK_SCORE_CAP
        remarks.append(f"capped at {RED_CHECK_SCORE_CAP:.0f}/100 (a fail): red checks: {', '.join(red)}")
    if failed:
        remarks.append("failed checks: " + ", ".join(failed))
    if mu_a != mu_r:
        remarks.append(f"motor units touched {list(mu_a)} instead of {list(mu_r)}")
    return Score(entry_error_mm=entry_err, target_error_mm=target_err, angle_difference_deg=angle,
                 depth_difference_mm=float(depth_a - depth_r), checks_passed=tuple(passed),
                 checks_failed=tuple(failed), motor_units_reference=mu_r, motor_units_attempt=mu_a,
                 motor_units_match=mu_a == mu_r, same_side=same_side, same_level=same_level,
                 same_procedure=same_proc, components=comp, overall=round(overall, 2),
                 remarks=tuple(remarks), red_checks=tuple(red))


def score_summary(score: Score) -> list[str]:
    """Lines for showing a score beside the two plans (GUI, comparison image, reports)."""
    n_checks = len(score.checks_passed) + len(score.checks_failed)
    lines = [
        f"Score {score.overall:.0f}/100",
        ("Pass" if score.passed else f"Fail (pass from {PASS_SCORE:.0f}; no red check)"),
        f"Entry point {score.entry_error_mm:.1f} mm off",
        f"Trajectory angle {score.angle_difference_deg:.1f} deg off",
        f"Target {score.target_error_mm:.1f} mm off",
        f"Checks passed {len(score.checks_passed)}/{n_checks}",
        "Motor units " + (", ".join(score.motor_units_attempt) or "none")
        + (" (match)" if score.motor_units_match else
           f" (reference: {', '.join(score.motor_units_reference) or 'none'})"),
    ]
    return lines + [r[0].upper() + r[1:] for r in score.remarks]
