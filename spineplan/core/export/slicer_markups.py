"""3D Slicer markups (.mrk.json) of a plan's trajectory.

Coordinates are written in LPS with ``"coordinateSystem": "LPS"`` (valid in Slicer's
markups schema v1.0.3); Slicer converts them to its RAS world on reading (x, y negated).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..persistence import atomic_write_text

__all__ = ["markups_dict", "write_markups", "SCHEMA_URL"]

SCHEMA_URL = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
              "Resources/Schema/markups-schema-v1.0.3.json#")


def _point(pid: str, label: str, lps) -> dict:
    return {"id": pid, "label": label, "description": "", "associatedNodeID": "",
            "position": [float(x) for x in lps], "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
            "selected": True, "locked": True, "visibility": True, "positionStatus": "defined"}


def markups_dict(plan: dict) -> dict:
    """Markups document: one Line (entry -> target) and a Fiducial list (entry, target)."""
    name = f"{plan['procedure']} {plan['level']} {plan['side']}"
    line = {"type": "Line", "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": True,
            "fixedNumberOfControlPoints": True, "labelFormat": "%N-%d", "name": f"{name} trajectory",
            "controlPoints": [_point("1", "entry", plan["entry_lps"]),
                              _point("2", "target", plan["target_lps"])],
            "measurements": [], "display": {"visibility": True, "opacity": 1.0,
                                            "color": [0.2, 0.9, 0.2], "selectedColor": [0.2, 0.9, 0.2]}}
    fid = {"type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": True,
           "labelFormat": "%N-%d", "name": f"{name} points",
           "controlPoints": [_point("1", "entry", plan["entry_lps"]), _point("2", "target", plan["target_lps"])]}
    return {"@schema": SCHEMA_URL, "markups": [line, fid]}


def write_markups(plan: dict, path: str | Path) -> Path:
    """Write the plan's trajectory as a Slicer .mrk.json file (atomically)."""
    return atomic_write_text(path, json.dumps(markups_dict(plan), indent=1) + "\n")
