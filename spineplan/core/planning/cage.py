"""Unilateral approach, bilateral decompression, single oblique interbody cage (TLIF)."""

from __future__ import annotations

import numpy as np

from ..errors import PlanningError
from ..segmentation import labels as L
from .common import (VERTEBRA_LABELS, bone_label_name, isolated_bone, facet_hits, frame, labels_at, lesion_checks,
                     path_metrics, range_check, scope_checks, side_check, side_sign)
from .lesion import frame_coords, landmarks_at
from .geometry import sampling_stride, box_voxels, cylinder_voxels, points_along, skin_exit_lps, unit
from .implants import load_catalogue
from .plan import Anatomy, Plan
from .safety import PARAMETERS, Check, CheckId

__all__ = ["propose", "evaluate", "cage_axes", "footprint_points", "lesion_gap"]


def lesion_gap(plan: Plan, anat: Anatomy, lesion, loc):
    """Gap (mm) from the decompression reach to the lesion's surface.

    The approach-side facetectomy opens the canal, the lateral recess and the foramen up to the
    lateral edge of the superior articular process; the contralateral decompression (tube tilted
    medially) reaches the opposite lateral recess up to its facet joint; both within
    ``cage_decompression_height_mm`` above and below the disc plane of the target unit.
    """
    u = anat.unit(plan.level)
    marks = landmarks_at(anat, u)
    lat, _post, up = (float(x) for x in frame_coords(u, lesion.centre_lps))
    toward = side_sign(plan.side) * lat
    lo_u, hi_u = -marks["facet_offset_mm"], marks["foramen_lateral_mm"]
    h = PARAMETERS["cage_decompression_height_mm"]
    du = max(lo_u - toward, 0.0, toward - hi_u)
    dw = max(abs(up) - h, 0.0)
    return float(np.hypot(du, dw)) - lesion.extent_mm, (
        f"the {plan.side} facetectomy and contralateral decompression")



def cage_axes(plan: Plan, n: np.ndarray) -> np.ndarray:
    """Columns: insertion axis (into the disc), width axis, height axis (disc normal)."""
    a = unit(plan.parameters["axis_lps"])
    a = unit(a - n * (a @ n))
    w = np.cross(n, a)
    return np.stack([a, w, n], axis=1)


def footprint_points(center, axes, length, width, margin) -> np.ndarray:
    """Corners and edge points of the footprint grown by ``margin`` (in the disc plane)."""
    hl, hw = length / 2 + margin, width / 2 + margin
    s = np.linspace(-1, 1, 7)
    pts = [(x * hl, y * hw) for x in s for y in (-1, 1)] + [(x * hl, y * hw) for x in (-1, 1) for y in s]
    a, w = axes[:, 0], axes[:, 1]
    return np.array([center + p * a + q * w for p, q in pts])


def evaluate(plan: Plan, anat: Anatomy) -> Plan:
    """Re-check a cage plan: footprint, height, position, corridor, facets, scope."""
    u = anat.unit(plan.level)
    c, n, lr, ap = frame(u)
    g = u.disc_geometry
    p = plan.parameters
    center = np.asarray(p["center_lps"], float)
    plan.target_lps = center
    axes = cage_axes(plan, n)
    length, width, height = float(p["length_mm"]), float(p["width_mm"]), float(p["height_mm"])
    checks: list[Check] = [side_check(plan, u)]
    # footprint inside the endplates with margins: grown footprint must stay in the disc
    fp = footprint_points(center, axes, length, width, PARAMETERS["cage_margin_mm"])
    lab, _ = labels_at(anat, fp)
    outside = int(np.sum(lab != u.disc))
    checks.append(Check(CheckId.CAGE_FOOTPRINT, outside == 0, "ok" if outside == 0 else "error",
                        f"{length:g} x {width:g} mm footprint with {PARAMETERS['cage_margin_mm']:g} mm margins "
                        + ("fits the disc" if outside == 0 else
                           f"leaves the disc at {outside} of {len(fp)} margin points (too long or misplaced)")))
    neigh = [v.disc_geometry.middle_height_mm for v in anat.neighbours(plan.level) if v.disc_geometry]
    if not neigh:
        checks.append(Check.not_evaluated(CheckId.CAGE_HEIGHT, "no neighbouring disc labelled to compare with"))
    else:
        ref = float(np.mean(neigh))
        over = height - ref
        lim = PARAMETERS["cage_max_over_neighbours_mm"]
        checks.append(Check(CheckId.CAGE_HEIGHT, over <= lim, "ok" if over <= lim else "warning",
                            f"{height:g} mm vs neighbouring discs {ref:.1f} mm "
                            f"({over:+.1f} mm; no more than {lim:g} mm above)"))
    q = center - c
    mid = abs(float(q @ lr))
    lim = PARAMETERS["cage_center_from_midline_max_mm"]
    checks.append(Check(CheckId.CAGE_MIDLINE, mid <= lim, "ok" if mid <= lim else "warning",
                        f"centre {mid:.1f} mm from the midline (<= {lim:g} mm)"))
    lo, hi = g.ap_range_mm
    anterior_half = float(q @ ap) <= (lo + hi) / 2 + 1e-6
    checks.append(Check(CheckId.CAGE_ANTERIOR_HALF, anterior_half, "ok" if anterior_half else "warning",
                        "centre in the anterior half of the disc" if anterior_half else
                        "centre in the posterior half of the disc"))
    ang = float(np.degrees(np.arcsin(min(1.0, abs(axes[:, 0][0])))))
    checks.append(range_check(CheckId.CAGE_ANGLE, ang, *PARAMETERS["cage_angle_to_sagittal_deg"], "deg"))
    # insertion corridor from the skin to the cage's entry end, cage-wide
    start = center - axes[:, 0] * length / 2
    r = width / 2
    cidx, clps = cylinder_voxels(anat.labels, plan.entry_lps, start, r)
    clab = anat.labels.array[cidx[:, 2], cidx[:, 1], cidx[:, 0]]
    cval = anat.image.array[cidx[:, 2], cidx[:, 1], cidx[:, 0]]
    bidx, blps = box_voxels(anat.labels, center, axes, (length / 2, width / 2, height / 2))
    blab = anat.labels.array[bidx[:, 2], bidx[:, 1], bidx[:, 0]]
    tree = anat.canal_tree()
    if tree is None:
        checks.append(Check.not_evaluated(CheckId.DURAL_SAC_CLEARANCE,
                                          "no dural sac (label 300) in the label map"))
    else:
        axis_pts = points_along(plan.entry_lps, start, 1.0)
        clear = float(tree.query(axis_pts)[0].min()) - r
        need = PARAMETERS["dural_sac_clearance_mm"]
        checks.append(Check(CheckId.DURAL_SAC_CLEARANCE, clear >= need, "ok" if clear >= need else "error",
                            f"corridor {clear:.1f} mm from the dural sac (needs >= {need:g} mm)"))
    unl = (clab == 0) & (cval > PARAMETERS["bone_hu"]) if anat.image.modality == "CT" else np.zeros(0, bool)
    if np.any(unl):
        unl[unl] = isolated_bone(anat, cidx[unl])
    if np.any(unl):
        checks.append(Check(CheckId.ILIAC_CREST if plan.level.endswith("S1") else CheckId.UNLABELLED_BONE, False, "error",
                            "unlabelled bone (iliac crest?) in the insertion corridor"))
    bone = np.isin(clab, VERTEBRA_LABELS)
    voxel_cm3 = float(np.prod(anat.labels.spacing)) * sampling_stride(anat.labels) ** 3 / 1000.0
    per = {bone_label_name(int(b)): round(float(np.sum(clab == b)) * voxel_cm3, 2) for b in np.unique(clab[bone])}
    p["bone_removed_cm3"] = round(sum(per.values()), 2)
    p["bone_removed_by_structure_cm3"] = per
    p["facetectomy_side"] = plan.side
    contra = "right" if plan.side == "left" else "left"
    hits = facet_hits(anat, np.vstack([clps[bone], blps]) if bone.any() else blps, 2.0)
    contra_hit = (plan.level, contra) in hits
    if u.facet_lps(contra) is None:
        checks.append(Check.not_evaluated(CheckId.CONTRALATERAL_FACET,
                                          f"the {contra} {plan.level} facet joint was not found in the labels"))
    else:
        checks.append(Check(CheckId.CONTRALATERAL_FACET, not contra_hit, "ok" if not contra_hit else "error",
                            f"{contra} {plan.level} facet joint " + ("touched" if contra_hit else "preserved")))
    checks.append(Check(CheckId.FACETECTOMY, True, "ok",
                        f"{plan.side} {plan.level} facetectomy for the approach ({p['bone_removed_cm3']:.2f} cm3 bone)"))
    m = path_metrics(plan, u)
    plan.metrics = m
    plan.incision_mm = float(p.get("incision_mm", 25.0))
    all_lab = np.concatenate([clab, blab])
    all_lps = np.vstack([clps, blps])
    keep = (all_lab != 0) & (all_lab != L.CANAL)
    checks[1:1] = scope_checks(plan, anat, all_lab[keep], all_lps[keep], hits,
                               allowed_facets=(plan.side,))
    plan.checks = checks
    plan.checks.extend(lesion_checks(plan, anat, lesion_gap))
    return plan


def propose(anat: Anatomy, level: str, side: str, *, case: dict | None = None,
            angle_deg: float = 35.0, catalogue=None, lesion: dict | None = None, **_ignored) -> Plan:
    """Automatic oblique cage: size from the disc, then the longest length that fits."""
    u = anat.unit(level)
    c, n, lr, ap = frame(u)
    g = u.disc_geometry
    s = side_sign(side)
    fam = (catalogue or load_catalogue())[0]
    neigh = [v.disc_geometry.middle_height_mm for v in anat.neighbours(level) if v.disc_geometry]
    ref = float(np.mean(neigh)) if neigh else g.middle_height_mm
    heights = [h for h in fam.heights_mm if h <= ref + PARAMETERS["cage_max_over_neighbours_mm"]]
    height = min(heights, key=lambda h: abs(h - ref)) if heights else min(fam.heights_mm)
    width = 10 if 10 in fam.widths_mm else fam.widths_mm[len(fam.widths_mm) // 2]
    lo, hi = g.ap_range_mm
    best, best_key = None, None
    for ang in (angle_deg, 40.0, 45.0, 30.0, 25.0):
        t = np.radians(ang)
        axis = unit(-np.cos(t) * ap - s * np.sin(t) * lr)
        for shift in (0.15, 0.10, 0.05, 0.20):
            center = c + (-(hi - lo) * shift) * ap
            for length in sorted(fam.lengths_mm, reverse=True):
                entry = skin_exit_lps(anat.image, center, -axis)
                if entry is None:
                    continue
                plan = Plan(level, side, "cage", entry, center,
                            parameters={"cage_id": fam.id, "length_mm": float(length), "width_mm": float(width),
                                        "height_mm": float(height),
                                        "lordosis_deg": float(min(fam.lordosis_deg, key=lambda x: abs(
                                            x - (u.segmental_angle_deg or 0)))),
                                        "center_lps": center.tolist(), "axis_lps": axis.tolist(),
                                        "incision_mm": 25.0},
                            case=dict(case or {}), source=anat.source(), lesion=dict(lesion or {}))
                evaluate(plan, anat)
                fits = plan.check(CheckId.CAGE_FOOTPRINT).ok
                if not fits:
                    continue
                errs = len(plan.errors())
                warns = sum(x.severity == "warning" for x in plan.checks)
                key = (errs, warns, -length, abs(ang - angle_deg))
                if best_key is None or key < best_key:
                    best, best_key = plan, key
                break  # longest fitting length for this position
    if best is None:
        raise PlanningError(f"no catalogue cage fits the {level} disc with "
                            f"{PARAMETERS['cage_margin_mm']:g} mm margins")
    return best
