"""Plan (one procedure on one motor unit) and the Anatomy it is checked against."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from ... import __version__
from ..errors import PlanningError
from ..segmentation import labels as L
from ..segmentation.motor_units import MotorUnit, compute_motor_units
from ..volume import Volume, source_from_volume
from .kinds import PROCEDURES, SIDES
from .safety import PARAMETERS, Check, CheckId, check_counts

__all__ = ["Plan", "Anatomy", "FORMAT_VERSION"]

FORMAT_VERSION = 2  # 2: the optional "lesion" (planning/lesion.py); 1 files load (persistence)


class Anatomy:
    """Image + labels + motor units, with caches the checks reuse while dragging."""

    def __init__(self, image: Volume, labels: Volume, units: list[MotorUnit] | None = None,
                 segmentation: Any = None):
        if not image.same_grid(labels):
            raise PlanningError("the label map is not on the image grid (resample it first)")
        self.image, self.labels = image, labels
        self.units = units if units is not None else compute_motor_units(labels, image)
        self.by_name = {u.name: u for u in self.units}
        self._canal_tree = None
        # how the levels were named (SegmentationResult or None when unknown); a plan is only
        # proposed on levels that are established or confirmed by the user
        self.segmentation = segmentation

    def require_established_levels(self) -> None:
        """PlanningError when the segmenter could not fix the levels and no one confirmed them."""
        seg = self.segmentation
        if seg is not None and seg.needs_confirmation:
            why = "; ".join(f.message for f in seg.flags) or (
                f"lowest level confidence {seg.min_confidence:.2f}")
            raise PlanningError(f"the levels are not established ({why}): check the names on the "
                                "images and confirm them (GUI: Confirm levels; command line: "
                                "--confirm-levels) before planning")

    def unit(self, level: str) -> MotorUnit:
        try:
            L.parse_motor_unit(level)
        except ValueError as exc:
            raise PlanningError(str(exc)) from None
        if level not in self.by_name:
            have = ", ".join(self.by_name) or "none"
            raise PlanningError(f"motor unit {level} is not in the labelled anatomy (found: {have})")
        u = self.by_name[level]
        if u.disc_geometry is None:
            raise PlanningError(f"no disc found at {level}; correct the segmentation first")
        return u

    def neighbours(self, level: str) -> list[MotorUnit]:
        names = [u.name for u in self.units]
        k = names.index(level)
        return [self.units[n] for n in (k - 1, k + 1) if 0 <= n < len(self.units)]

    def canal_points(self) -> np.ndarray:
        """LPS of the dural-sac voxels (cached); empty when not labelled."""
        tree = self.canal_tree()
        return np.zeros((0, 3)) if tree is None else tree.data

    def canal_tree(self):
        """KD-tree of dural-sac (label 300) voxel centres, or None when not labelled."""
        if self._canal_tree is None:
            kji = np.argwhere(self.labels.array == L.CANAL)
            self._canal_tree = False if len(kji) == 0 else cKDTree(
                self.labels.lps_points_from_ijk(kji[:, ::-1].astype(float)))
        return self._canal_tree or None

    def source(self) -> dict:
        """The plan's record of the image it is made on (``volume.source_from_volume``)."""
        return source_from_volume(self.image)


@dataclass
class Plan:
    """A planned procedure. LPS millimetres throughout."""

    level: str
    side: str
    procedure: str
    entry_lps: np.ndarray
    target_lps: np.ndarray
    incision_mm: float = 0.0
    parameters: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    motor_units_touched: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    case: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    created: str = ""
    segmentation: dict = field(default_factory=dict)  # SegmentationResult.summary_dict()
    motor_unit: dict = field(default_factory=dict)    # the target unit's MotorUnit.summary_dict()
    lesion: dict = field(default_factory=dict)        # Lesion.to_dict() + LesionLocation; {} = none

    def __post_init__(self):
        if self.procedure not in PROCEDURES:
            raise PlanningError(f"procedure must be one of {', '.join(PROCEDURES)}")
        if self.side not in SIDES:
            raise PlanningError("side must be left or right")
        self.entry_lps = np.asarray(self.entry_lps, float)
        self.target_lps = np.asarray(self.target_lps, float)

    def errors(self) -> list[Check]:
        return [c for c in self.checks if c.severity == "error"]

    def check(self, check_id: "CheckId | str") -> Check:
        """The check with this :class:`CheckId` (or its value); KeyError when absent."""
        try:
            key = CheckId(check_id).value
        except ValueError:
            raise KeyError(f"{check_id!r} is not a check id (CheckId)") from None
        for c in self.checks:
            if c.id == key:
                return c
        raise KeyError(key)

    def check_counts(self) -> dict[str, int]:
        """Red/amber/green (and not evaluated) counts of the checks."""
        return check_counts(self.checks)

    def to_dict(self) -> dict[str, Any]:
        """The plan-file dict (PLAN_SCHEMA): persistence adds checksum and identity."""
        def clean(x):
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            if isinstance(x, np.ndarray):
                return [float(v) for v in x.ravel()]
            if isinstance(x, (np.floating, np.integer, np.bool_)):
                return x.item()
            return x

        return clean({
            "format_version": FORMAT_VERSION,
            "generator": f"spineplan {__version__}",
            "created": self.created or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": self.source,
            "level": self.level, "side": self.side, "procedure": self.procedure,
            "entry_lps": self.entry_lps, "target_lps": self.target_lps,
            "incision_mm": float(self.incision_mm),
            "parameters": self.parameters, "metrics": self.metrics,
            "motor_units_touched": list(self.motor_units_touched),
            "checks": [c.to_dict() for c in self.checks],
            "check_summary": check_counts(self.checks),
            "case": self.case,
            "clinical_parameters": {k: v for k, v in PARAMETERS.items()},
            "segmentation": self.segmentation,
            "motor_unit": self.motor_unit,
            "lesion": self.lesion or None,
        })

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        try:
            return cls(level=d["level"], side=d["side"], procedure=d["procedure"],
                       entry_lps=d["entry_lps"], target_lps=d["target_lps"],
                       incision_mm=float(d.get("incision_mm", 0.0)),
                       parameters=dict(d.get("parameters", {})), metrics=dict(d.get("metrics", {})),
                       motor_units_touched=list(d.get("motor_units_touched", [])),
                       checks=[Check(**c) for c in d.get("checks", [])],
                       case=dict(d.get("case", {})), source=dict(d.get("source", {})),
                       created=d.get("created", ""), segmentation=dict(d.get("segmentation") or {}),
                       motor_unit=dict(d.get("motor_unit") or {}), lesion=dict(d.get("lesion") or {}))
        except (KeyError, TypeError) as exc:
            raise PlanningError(f"not a valid plan: missing or bad field {exc}") from None
