"""Trajectories as 3D Slicer markups (``.mrk.json``, markups schema v1.0.3).

One Line markup (entry -> target) named ``spineplan <procedure> <level> <side>`` and
one Fiducial list (entry, target and, for a cage, the 8 box corners).

Coordinates: written in **LPS** with ``"coordinateSystem": "LPS"`` (the schema's
default and DICOM's frame), so the numbers in the file are the plan's numbers.
Slicer's reader converts them to its RAS world by negating x and y; a left-side
entry (x > 0 in LPS) therefore appears at R < 0, the patient's left. Passing
``coordinate_system="RAS"`` writes (-x, -y, z) instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..persistence import as_plan_dict
from .instrument_stl import cage_corners_lps

__all__ = ["MARKUPS_SCHEMA_URL", "markups_document", "write_markups", "ras_from_lps_points"]

MARKUPS_SCHEMA_URL = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/"
                      "Markups/Resources/Schema/markups-schema-v1.0.3.json#")
_COLOURS = {"needle": [1.0, 0.85, 0.1], "tube": [0.2, 0.7, 1.0], "cage": [1.0, 0.45, 0.1]}
# Orientation of a control point in LPS files: Slicer writes RAS identity as diag(-1, -1, 1).
_ORIENT = {"LPS": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
           "RAS": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]}


def ras_from_lps_points(points) -> np.ndarray:
    """LPS -> RAS (Slicer world, NIfTI): negate x and y."""
    return np.asarray(points, float) * np.array([-1.0, -1.0, 1.0])


def _control_point(n: int, label: str, description: str, p, cs: str) -> dict:
    q = ras_from_lps_points(p) if cs == "RAS" else np.asarray(p, float)
    return {"id": str(n), "label": label, "description": description, "associatedNodeID": "",
            "position": [float(x) for x in q], "orientation": list(_ORIENT[cs]),
            "selected": True, "locked": True, "visibility": True, "positionStatus": "defined"}


def _display(colour) -> dict:
    return {"visibility": True, "opacity": 1.0, "color": list(colour),
            "selectedColor": list(colour), "activeColor": [0.4, 1.0, 0.0],
            "propertiesLabelVisibility": True, "pointLabelsVisibility": True, "textScale": 3.0,
            "glyphType": "Sphere3D", "glyphScale": 1.0, "glyphSize": 5.0, "useGlyphScale": True,
            "sliceProjection": False, "lineThickness": 0.2, "snapMode": "unconstrained"}


def markups_document(plan: dict, *, coordinate_system: str = "LPS") -> dict:
    """The markups JSON document (dict) for a plan dict."""
    plan = as_plan_dict(plan)
    cs = coordinate_system.upper()
    if cs not in _ORIENT:
        raise ValueError(f"coordinate_system must be LPS or RAS, got {coordinate_system!r}")
    proc, level, side = plan["procedure"], plan["level"], plan["side"]
    entry = np.asarray(plan["entry_lps"], float)
    target = np.asarray(plan["target_lps"], float)
    name = f"spineplan {proc} {level} {side}"
    colour = _COLOURS.get(proc, [1.0, 1.0, 0.0])
    target_label = {"needle": "tip", "tube": "docking point", "cage": "cage centre"}.get(proc, "target")
    line = {
        "type": "Line", "name": name, "coordinateSystem": cs, "coordinateUnits": "mm",
        "locked": True, "fixedNumberOfControlPoints": True, "labelFormat": "%N-%d",
        "lastUsedControlPointNumber": 2,
        "controlPoints": [
            _control_point(1, "entry", f"skin entry ({side} side)", entry, cs),
            _control_point(2, "target", target_label, target, cs),
        ],
        "measurements": [{"name": "length", "enabled": True,
                          "value": float(np.linalg.norm(target - entry)), "units": "mm",
                          "printFormat": "%-#4.4g%s"}],
        "display": _display(colour),
    }
    pts = [("entry", f"skin entry ({side} side)", entry), ("target", target_label, target)]
    if proc == "cage" and {"length_mm", "width_mm", "height_mm"} <= set(plan["parameters"]):
        for n, c in enumerate(cage_corners_lps(plan)):
            pts.append((f"cage corner {n + 1}", "cage box corner", c))
    fid = {
        "type": "Fiducial", "name": f"{name} points", "coordinateSystem": cs,
        "coordinateUnits": "mm", "locked": True, "fixedNumberOfControlPoints": False,
        "labelFormat": "%N-%d", "lastUsedControlPointNumber": len(pts),
        "controlPoints": [_control_point(n + 1, lab, desc, p, cs)
                          for n, (lab, desc, p) in enumerate(pts)],
        "measurements": [],
        "display": _display(colour),
    }
    return {"@schema": MARKUPS_SCHEMA_URL, "markups": [line, fid]}


def write_markups(plan: dict, path: str | os.PathLike, *, coordinate_system: str = "LPS") -> Path:
    """Write the plan's trajectory as a Slicer ``.mrk.json`` file (atomically); return the path."""
    doc = markups_document(plan, coordinate_system=coordinate_system)
    return atomic_write_text(path, json.dumps(doc, indent=4, allow_nan=False) + "\n")
