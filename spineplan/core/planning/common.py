"""Pieces shared by the three planners: frames, metrics, scope checks."""

from __future__ import annotations

import numpy as np

from ..segmentation import labels as L
from .lesion import NO_LESION_TEXT, Lesion, LesionLocation, lesion_from_dict, locate_lesion
from .geometry import angle_to_axial_deg, angle_to_sagittal_deg, points_along, unit
from .plan import Anatomy, Plan
from .safety import PARAMETERS, Check, CheckId, units_touched

__all__ = ["VERTEBRA_LABELS", "isolated_bone", "frame", "side_sign", "path_metrics", "labels_at", "scope_checks", "side_check",
           "facet_hits", "bone_label_name", "range_check", "lesion_checks", "segment_distance",
           "NO_LESION_TEXT"]


def side_sign(side: str) -> float:
    """+1 for the patient's left (LPS +x), -1 for the right."""
    return 1.0 if side == "left" else -1.0


def frame(unit_):
    g = unit_.disc_geometry
    return (np.array(g.center_lps), np.array(g.normal_lps), np.array(g.lr_lps), np.array(g.ap_lps))


def path_metrics(plan: Plan, unit_) -> dict:
    c, n, lr, ap = frame(unit_)
    d = unit(plan.target_lps - plan.entry_lps)
    lateral = float((plan.entry_lps - c) @ lr) * side_sign(plan.side)
    return {"entry_midline_distance_mm": abs(lateral),
            "entry_lateral_offset_towards_side_mm": lateral,
            "angle_to_sagittal_deg": angle_to_sagittal_deg(d),
            "angle_to_axial_deg": angle_to_axial_deg(d),
            "angle_to_disc_plane_deg": float(np.degrees(np.arcsin(min(1.0, abs(d @ n))))),
            "depth_mm": float(np.linalg.norm(plan.target_lps - plan.entry_lps)),
            "incision_mm": float(plan.incision_mm)}


def labels_at(anat: Anatomy, pts: np.ndarray):
    """Nearest-voxel labels and image values at LPS points (0 / nan outside)."""
    ijk = np.rint(anat.labels.ijk_points_from_lps(pts)).astype(int)
    size = np.array(anat.labels.size_ijk)
    inside = np.all((ijk >= 0) & (ijk < size), axis=1)
    lab = np.zeros(len(pts), np.int64)
    val = np.full(len(pts), np.nan)
    v = ijk[inside]
    lab[inside] = anat.labels.array[v[:, 2], v[:, 1], v[:, 0]]
    val[inside] = anat.image.array[v[:, 2], v[:, 1], v[:, 0]]
    return lab, val


VERTEBRA_LABELS = np.array(L.VERTEBRA_LABELS)


def isolated_bone(anat: Anatomy, ijk: np.ndarray) -> np.ndarray:
    """For unlabelled bone voxels (ijk), True where no labelled vertebra lies within one voxel.

    Label maps (a model's or a reader's) stop a voxel short of the cortex in places; such
    voxels belong to the vertebra next to them, not to an unlabelled bone (iliac crest, rib).
    """
    if len(ijk) == 0:
        return np.zeros(0, bool)
    arr = anat.labels.array
    shp = np.array(arr.shape)[::-1]
    near = np.zeros(len(ijk), bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            for dk in (-1, 0, 1):
                q = np.clip(ijk + [di, dj, dk], 0, shp - 1)
                near |= np.isin(arr[q[:, 2], q[:, 1], q[:, 0]], VERTEBRA_LABELS)
    return ~near


def bone_label_name(lab: int) -> str:
    if L.is_vertebra(lab):
        return L.vertebra_name(lab)
    return "unlabelled bone (iliac crest or rib?)"


def facet_hits(anat: Anatomy, pts: np.ndarray, radius: float) -> list[tuple[str, str]]:
    """(unit name, side) of every facet joint within ``radius`` mm of any point."""
    hits = []
    for u in anat.units:
        for side in ("left", "right"):
            f = u.facet_lps(side)
            if f is None or len(pts) == 0:
                continue
            if np.min(np.linalg.norm(pts - np.asarray(f), axis=1)) <= radius:
                hits.append((u.name, side))
    return hits


def range_check(name, value, lo, hi, unit_txt, severity="warning") -> Check:
    ok = lo <= value <= hi
    return Check(name, ok, "ok" if ok else severity,
                 f"{value:.1f} {unit_txt} ({'within' if ok else 'outside'} {lo:g}-{hi:g} {unit_txt})")


def side_check(plan: Plan, unit_) -> Check:
    """Wrong-side safeguard: the entry must lie on the planned side of the midline."""
    c, n, lr, ap = frame(unit_)
    lateral = float((plan.entry_lps - c) @ lr) * side_sign(plan.side)
    ok = lateral > 0
    return Check(CheckId.ENTRY_SIDE, ok, "ok" if ok else "error",
                 f"entry is {abs(lateral):.0f} mm to the patient's "
                 f"{plan.side if ok else ('right' if plan.side == 'left' else 'left')} of the midline"
                 + ("" if ok else f" but the plan is for the {plan.side} side"))


def scope_checks(plan: Plan, anat: Anatomy, hit_labels: np.ndarray, hit_lps: np.ndarray,
                 facets: list[tuple[str, str]], allowed_facets=()) -> list[Check]:
    """Motor units touched (exactly the target) and adjacent discs/facet joints untouched."""
    touched = units_touched(hit_labels, hit_lps, anat.units)
    for name, _side in facets:
        touched[name] = touched.get(name, 0) + 1
    plan.motor_units_touched = sorted(touched, key=lambda n: [u.name for u in anat.units].index(n))
    others = [n for n in plan.motor_units_touched if n != plan.level]
    out = [Check(CheckId.MOTOR_UNITS_TOUCHED, not others and plan.level in touched or not others,
                 "ok" if not others else "error",
                 f"touches {', '.join(plan.motor_units_touched) or 'nothing labelled'}"
                 + (f"; outside the target unit {plan.level}: {', '.join(others)}" if others else
                    f" (target {plan.level})"))]
    neigh = anat.neighbours(plan.level)
    neigh_discs = {u.disc for u in neigh if u.disc}
    disc_hit = sorted(L.disc_name(d) for d in set(np.unique(hit_labels).tolist()) & neigh_discs)
    facet_hit = [f"{n} {s}" for n, s in facets if n != plan.level]
    bad = disc_hit + facet_hit
    out.append(Check(CheckId.ADJACENT_UNTOUCHED, not bad, "ok" if not bad else "error",
                     "none touched" if not bad else "touched: " + ", ".join(bad)))
    own = [s for n, s in facets if n == plan.level and s not in allowed_facets]
    if own:
        out.append(Check(CheckId.TARGET_FACETS, False, "warning",
                         f"the instrument reaches the {', '.join(own)} {plan.level} facet joint"))
    return out


def path_points(plan: Plan, step=0.5):
    return points_along(plan.entry_lps, plan.target_lps, step)


def segment_distance(p, a, b, radius: float = 0.0) -> float:
    """Distance (mm) from point ``p`` to the solid cylinder (segment ``a``-``b``, ``radius``)."""
    p, a, b = (np.asarray(x, float) for x in (p, a, b))
    ab = b - a
    L2 = float(ab @ ab)
    t = 0.0 if L2 == 0 else float(np.clip((p - a) @ ab / L2, 0.0, 1.0))
    foot = a + t * ab
    return max(float(np.linalg.norm(p - foot)) - radius, 0.0)


def lesion_checks(plan: Plan, anat: Anatomy, distance_fn) -> list[Check]:
    """The "lesion reached" check of a plan with a marked lesion ([] without one).

    ``distance_fn(plan, anat, lesion, location) -> (gap_mm, what)``: the gap from the
    instrument's reach to the lesion's surface (0 when they overlap) and what the reach is.
    The plan's ``lesion`` is refreshed with the location (zone, side, migration, level), its
    metrics get ``lesion_distance_mm``, and when the plan does not touch the lesion's unit the
    "motor units touched" check says so.
    """
    if not plan.lesion:
        return []
    les: Lesion = lesion_from_dict(plan.lesion)
    loc: LesionLocation = locate_lesion(anat, les)
    plan.lesion.update(loc.to_dict())
    gap, what = distance_fn(plan, anat, les, loc)
    gap = max(float(gap), 0.0)
    plan.metrics["lesion_distance_mm"] = round(gap, 1)
    ok = gap <= 0.0
    where = f"{les.kind.value} at {loc.level} ({loc.zone}{'' if loc.side == 'midline' else ' ' + loc.side})"
    detail = (f"{what} reaches the {where}" if ok else f"{what} misses the {where} by {gap:.1f} mm")
    if loc.level != plan.level:
        detail += f"; the lesion lies at {loc.level}, outside the target unit {plan.level}"
    if loc.level not in plan.motor_units_touched:
        for c in plan.checks:
            if c.id == CheckId.MOTOR_UNITS_TOUCHED.value:
                c.detail += f"; the marked lesion is at {loc.level}, which this plan does not touch"
    return [Check(CheckId.LESION_REACHED, ok, "ok" if ok else "error", detail)]
