"""Re-check a loaded plan from the anatomy: a plan file's stored checks are never trusted.

A checksum only shows that a file was written by something that knows the algorithm; a plan
edited outside spineplan and re-checksummed (entry moved to the other side, level changed)
loads. So on load (report, rehearse, GUI) every check is recomputed from the image and labels
and compared with the stored ones: :class:`Recheck` lists the differences by kind.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field

from ..errors import PlanningError
from .plan import Anatomy, Plan
from .safety import Check

__all__ = ["DifferenceKind", "CheckDifference", "RecheckStatus", "Recheck", "recheck_plan",
           "not_rechecked"]


class DifferenceKind(str, enum.Enum):
    """How a recomputed result differs from the one stored in the file."""

    OUTCOME = "outcome"                    # severity (ok / warning / error) differs
    MISSING_IN_FILE = "missing_in_file"    # recomputed, but the file holds no such check
    NOT_RECOMPUTED = "not_recomputed"      # in the file, but the planner does not produce it
    MOTOR_UNITS = "motor_units"            # the motor units touched differ


class RecheckStatus(str, enum.Enum):
    """Whether the checks could be recomputed."""

    RECOMPUTED = "recomputed"
    NO_ANATOMY = "no_anatomy"      # no image/labels given: the stored result is unverified
    LEVEL_NOT_FOUND = "level_not_found"  # the plan's level is not in the anatomy


@dataclass
class CheckDifference:
    """One difference: the check's name, its kind and both results (dicts, or None)."""

    name: str
    kind: DifferenceKind
    stored: dict | None
    recomputed: dict | None

    def describe(self) -> str:
        """One line for people (code uses ``kind``)."""
        s, r = self.stored or {}, self.recomputed or {}
        if self.kind is DifferenceKind.OUTCOME:
            return (f"{self.name}: file says {s.get('severity')}, recomputed "
                    f"{r.get('severity')} ({r.get('detail', '')})")
        if self.kind is DifferenceKind.MISSING_IN_FILE:
            return f"{self.name}: not in the file, recomputed {r.get('severity')} ({r.get('detail', '')})"
        if self.kind is DifferenceKind.NOT_RECOMPUTED:
            return f"{self.name}: in the file ({s.get('severity')}) but not a check spineplan makes"
        return (f"motor units touched: file says {', '.join(s.get('units', [])) or 'none'}, "
                f"recomputed {', '.join(r.get('units', [])) or 'none'}")

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind.value, "stored": self.stored,
                "recomputed": self.recomputed}


@dataclass
class Recheck:
    """The recomputed checks of a loaded plan and how they differ from the stored ones."""

    status: RecheckStatus
    checks: list[Check] = field(default_factory=list)
    motor_units_touched: list[str] = field(default_factory=list)
    differences: list[CheckDifference] = field(default_factory=list)
    reason: str = ""

    @property
    def agrees(self) -> bool:
        """True when recomputed and nothing differs."""
        return self.status is RecheckStatus.RECOMPUTED and not self.differences

    def to_dict(self) -> dict:
        return {"status": self.status.value, "reason": self.reason,
                "checks": [c.to_dict() for c in self.checks],
                "motor_units_touched": list(self.motor_units_touched),
                "differences": [d.to_dict() for d in self.differences]}


def not_rechecked(reason: str) -> Recheck:
    """The result when there is no anatomy to recompute from (said in red by the report)."""
    return Recheck(RecheckStatus.NO_ANATOMY, reason=reason)


def recheck_plan(plan: dict, anatomy: Anatomy) -> Recheck:
    """Recompute every check of ``plan`` (a loaded plan dict) on ``anatomy``; compare.

    Parameters
    ----------
    plan : dict
        As returned by ``persistence.load_plan``.
    anatomy : Anatomy
        The image and labels the plan is checked on.

    Returns
    -------
    Recheck
        ``checks`` recomputed with today's clinical parameters, and ``differences`` (typed)
        from the file's ``checks`` and ``motor_units_touched``.
    """
    from .planner import evaluate

    fresh = Plan.from_dict(copy.deepcopy(plan))
    fresh.checks = []
    try:
        evaluate(fresh, anatomy)
    except PlanningError as exc:
        return Recheck(RecheckStatus.LEVEL_NOT_FOUND, reason=str(exc))
    stored = {c["name"]: c for c in plan.get("checks") or []}
    now = {c.name: c.to_dict() for c in fresh.checks}
    diffs: list[CheckDifference] = []
    for name, r in now.items():
        s = stored.get(name)
        if s is None:
            diffs.append(CheckDifference(name, DifferenceKind.MISSING_IN_FILE, None, r))
        elif s.get("severity") != r["severity"] or bool(s.get("ok")) != bool(r["ok"]):
            diffs.append(CheckDifference(name, DifferenceKind.OUTCOME, s, r))
    for name, s in stored.items():
        if name not in now:
            diffs.append(CheckDifference(name, DifferenceKind.NOT_RECOMPUTED, s, None))
    units = list(fresh.motor_units_touched)
    if sorted(units) != sorted(plan.get("motor_units_touched") or []):
        diffs.append(CheckDifference("motor units touched", DifferenceKind.MOTOR_UNITS,
                                     {"units": list(plan.get("motor_units_touched") or [])},
                                     {"units": units}))
    return Recheck(RecheckStatus.RECOMPUTED, fresh.checks, units, diffs)
