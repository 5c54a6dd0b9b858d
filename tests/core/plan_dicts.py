"""Hand-built plan dicts (PLAN_SCHEMA.md) on the synthetic phantom, for persistence/export tests.

They do not depend on the planners: entry/target come from the phantom's ground truth.
"""

from __future__ import annotations

import functools

import numpy as np

from spineplan.core.volume import source_from_volume
from spineplan.core.phantom import make_phantom


@functools.lru_cache(maxsize=1)
def phantom():
    return make_phantom()


def _sign(side: str) -> float:
    return 1.0 if side == "left" else -1.0  # LPS: +x is the patient's left


def make_plan(procedure: str = "needle", side: str = "left", level: str = "L4-L5",
              *, errors: bool = False) -> dict:
    """A realistic plan dict for ``procedure`` on ``level`` from ``side``."""
    ph = phantom()
    disc = ph.truth["discs"][level]
    facet = np.array(ph.truth["facets"][level][side])
    centre = np.array(disc["center_lps"])
    s = _sign(side)
    if procedure == "needle":
        target = centre
        entry = centre + np.array([s * 80.0, 70.0, 8.0])   # posterolateral, ~40 deg to sagittal
        params = {"diameter_mm": 1.5}
        incision = 0.0
    elif procedure == "tube":
        target = facet + np.array([-s * 6.0, 4.0, 0.0])      # interlaminar window, medial to facet
        entry = target + np.array([s * 15.0, 100.0 - target[1] + 2.0, 0.0])
        params = {"diameter_mm": 18.0, "length_mm": 60.0, "contralateral_tilt_deg": 0.0}
        incision = 18.0
    else:
        target = centre
        axis = np.array([-s * 0.5, -0.866, 0.0])               # oblique, towards the far side
        entry = centre - 110.0 * axis
        params = {"cage_id": "demo-26x10x11", "length_mm": 26.0, "width_mm": 10.0,
                  "height_mm": 11.0, "lordosis_deg": 5.0, "center_lps": centre.tolist(),
                  "axis_lps": axis.tolist(), "facetectomy_side": side}
        incision = 25.0
    d = entry - target
    checks = [
        {"name": "motor units touched", "ok": True, "severity": "ok", "detail": f"only {level}"},
        {"name": "adjacent discs untouched", "ok": True, "severity": "ok", "detail": "clear"},
        {"name": "incision length", "ok": True, "severity": "ok", "detail": f"{incision} mm"},
    ]
    if errors:
        checks += [
            {"name": "needle-bone collision", "ok": False, "severity": "error",
             "detail": "needle crosses the left L4-L5 facet joint"},
            {"name": "canal clearance", "ok": False, "severity": "warning",
             "detail": "2.5 mm from the dural sac"},
        ]
    return {
        "source": source_from_volume(ph.ct),
        "level": level,
        "side": side,
        "procedure": procedure,
        "entry_lps": entry.tolist(),
        "target_lps": target.tolist(),
        "incision_mm": incision,
        "parameters": params,
        "metrics": {"entry_midline_distance_mm": float(abs(entry[0])),
                    "angle_to_sagittal_deg": float(np.degrees(np.arctan2(abs(d[0]), abs(d[1])))),
                    "angle_to_axial_deg": float(np.degrees(np.arcsin(abs(d[2]) / np.linalg.norm(d)))),
                    "depth_mm": float(np.linalg.norm(d)), "incision_mm": incision},
        "motor_units_touched": [level],
        "checks": checks,
        "case": {"level": level, "side": side, "pathology": "herniation", "zone": "paracentral",
                 "symptom_side": side, "suspected_root": "L5", "signs": ["SLR positive"],
                 "notes": "", "concordance": []},
    }
