"""Measurements drawn on slices (LPS mm): distance, angle, two-line Cobb angle.

Stored in ``scene.annotations``; added and deleted through undoable commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .commands import Command

__all__ = ["Measurement", "AddMeasurement", "DeleteMeasurement", "POINTS_NEEDED"]

POINTS_NEEDED = {"distance": 2, "angle": 3, "cobb": 4}


def _angle(u, v) -> float:
    u, v = np.asarray(u, float), np.asarray(v, float)
    c = float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))


@dataclass
class Measurement:
    kind: str                       # "distance" | "angle" | "cobb"
    points_lps: list = field(default_factory=list)
    view: str = ""                  # the view it was drawn in

    def value(self) -> float:
        """mm for a distance, degrees for angles (Cobb: acute angle between the two lines)."""
        p = [np.asarray(x, float) for x in self.points_lps]
        if self.kind == "distance":
            return float(np.linalg.norm(p[1] - p[0]))
        if self.kind == "angle":
            return _angle(p[0] - p[1], p[2] - p[1])
        if self.kind == "cobb":
            a = _angle(p[1] - p[0], p[3] - p[2])
            return min(a, 180.0 - a)
        raise ValueError(self.kind)

    def text(self) -> str:
        unit = "mm" if self.kind == "distance" else "deg"
        return f"{self.kind} {self.value():.1f} {unit}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "points_lps": [[float(x) for x in p] for p in self.points_lps],
                "view": self.view}

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        m = cls(d["kind"], [list(map(float, p)) for p in d["points_lps"]], d.get("view", ""))
        if m.kind not in POINTS_NEEDED or len(m.points_lps) != POINTS_NEEDED[m.kind]:
            raise ValueError(f"bad measurement {d}")
        return m


class AddMeasurement(Command):
    def __init__(self, scene, m: Measurement):
        self.scene, self.m, self.text = scene, m, f"Add {m.kind}"

    def do(self):
        self.scene.set_annotations(self.scene.annotations + [self.m])

    def undo(self):
        self.scene.set_annotations([a for a in self.scene.annotations if a is not self.m])


class DeleteMeasurement(Command):
    def __init__(self, scene, m: Measurement):
        self.scene, self.m, self.text = scene, m, f"Delete {m.kind}"
        self.index = scene.annotations.index(m)

    def do(self):
        self.scene.set_annotations([a for a in self.scene.annotations if a is not self.m])

    def undo(self):
        a = list(self.scene.annotations)
        a.insert(self.index, self.m)
        self.scene.set_annotations(a)
