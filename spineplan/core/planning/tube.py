"""Tubular-retractor microendoscopic discectomy: 16/18 mm tube docked on the interlaminar window."""

from __future__ import annotations

import numpy as np

from ..errors import PlanningError
from ..segmentation import labels as L
from .common import (VERTEBRA_LABELS, bone_label_name, isolated_bone, facet_hits, frame, lesion_checks,
                     path_metrics, range_check, scope_checks, segment_distance, side_check, side_sign)
from .lesion import frame_coords, lesion_from_dict
from .geometry import sampling_stride, cylinder_voxels, skin_exit_lps, unit
from .plan import Anatomy, Plan
from .safety import PARAMETERS, Check, CheckId

__all__ = ["propose", "evaluate", "lesion_gap"]


def lesion_gap(plan: Plan, anat: Anatomy, lesion, loc):
    """Gap (mm) from the working channel (the bore carried from the docking point
    ``tube_working_depth_mm`` deeper along the tube axis) to the lesion's surface."""
    d = unit(plan.target_lps - plan.entry_lps)
    end = plan.target_lps + d * PARAMETERS["tube_working_depth_mm"]
    r = float(plan.parameters["diameter_mm"]) / 2.0
    gap = segment_distance(lesion.centre_lps, plan.target_lps, end, r) - lesion.extent_mm
    return gap, f"the {plan.parameters['diameter_mm']:g} mm working channel at docking depth"



def _working_volume(plan: Plan, anat: Anatomy):
    """Voxels of the tube bore from skin to the docking point plus the laminotomy depth."""
    d = unit(plan.target_lps - plan.entry_lps)
    end = plan.target_lps + d * PARAMETERS["tube_laminotomy_depth_mm"]
    radius = plan.parameters["diameter_mm"] / 2.0
    idx, lps = cylinder_voxels(anat.labels, plan.entry_lps, end, radius)
    lab = anat.labels.array[idx[:, 2], idx[:, 1], idx[:, 0]] if len(idx) else np.zeros(0, int)
    val = anat.image.array[idx[:, 2], idx[:, 1], idx[:, 0]] if len(idx) else np.zeros(0)
    return idx, lps, lab, val


def _linear(anat: Anatomy, idx: np.ndarray) -> np.ndarray:
    return np.ravel_multi_index((idx[:, 2], idx[:, 1], idx[:, 0]), anat.labels.array.shape)


def facet_preservation_pct(anat: Anatomy, unit_, side: str, removed_idx: np.ndarray) -> float | None:
    """Percentage of the facet joint's bone (within the facet radius) left by the plan."""
    f = unit_.facet_lps(side)
    if f is None:
        return None
    r = PARAMETERS["facet_region_radius_mm"]
    f = np.asarray(f)
    idx, lps = cylinder_voxels(anat.labels, f - [0, 0, r], f + [0, 0, r], r)
    lab = anat.labels.array[idx[:, 2], idx[:, 1], idx[:, 0]]
    sel = np.isin(lab, [unit_.upper, unit_.lower]) & (np.linalg.norm(lps - f, axis=1) <= r)
    total = int(sel.sum())
    if total == 0:
        return None
    gone = int(np.isin(_linear(anat, idx[sel]), _linear(anat, removed_idx)).sum()) if len(removed_idx) else 0
    return 100.0 * (1.0 - gone / total)


def evaluate(plan: Plan, anat: Anatomy) -> Plan:
    """Re-check a tube plan."""
    u = anat.unit(plan.level)
    c, n, lr, ap = frame(u)
    dia = float(plan.parameters["diameter_mm"])
    plan.incision_mm = dia
    idx, lps, lab, val = _working_volume(plan, anat)
    voxel_cm3 = float(np.prod(anat.labels.spacing)) * sampling_stride(anat.labels) ** 3 / 1000.0
    bone = np.isin(lab, VERTEBRA_LABELS)
    checks: list[Check] = [side_check(plan, u)]
    per = {bone_label_name(int(b)): round(float(np.sum(lab == b)) * voxel_cm3, 2)
           for b in np.unique(lab[bone])}
    total = sum(per.values())
    plan.parameters["bone_removed_cm3"] = round(total, 2)
    plan.parameters["bone_removed_by_structure_cm3"] = per
    unl = (lab == 0) & (val > PARAMETERS["bone_hu"]) if anat.image.modality == "CT" else np.zeros_like(bone)
    if np.any(unl):
        unl[unl] = isolated_bone(anat, idx[unl])
    if np.any(unl):
        checks.append(Check(CheckId.ILIAC_CREST if plan.level.endswith("S1") else CheckId.UNLABELLED_BONE, False,
                            "error", f"{unl.sum() * voxel_cm3:.2f} cm3 of unlabelled bone (iliac crest?) "
                            "in the tube bore"))
    outside = [k for k in per if k not in (L.vertebra_name(u.upper), L.vertebra_name(u.lower))]
    checks.append(Check(CheckId.BONE_IN_BORE, not outside, "ok" if not outside else "error",
                        f"laminotomy {total:.2f} cm3: " + (", ".join(f"{k} {v:.2f}" for k, v in per.items())
                                                           or "no bone")
                        + (f"; bone of {', '.join(outside)} is outside the target unit" if outside else "")))
    lo, hi = PARAMETERS["incision_range_mm"]
    checks.append(Check(CheckId.INCISION, lo <= dia <= hi, "ok" if lo <= dia <= hi else "error",
                        f"incision {dia / 10:.1f} cm for a {dia:g} mm tube (allowed {lo / 10:.1f}-{hi / 10:.1f} cm)"))
    pres = facet_preservation_pct(anat, u, plan.side, idx[bone])
    if pres is not None:
        plan.parameters["facet_preservation_pct"] = round(pres, 1)
        mn, good = PARAMETERS["facet_preservation_min_pct"], PARAMETERS["facet_preservation_good_pct"]
        sev = "ok" if pres >= mn else "warning"
        checks.append(Check(CheckId.FACET_PRESERVATION, pres >= mn, sev,
                            f"{pres:.0f} % of the {plan.side} {plan.level} facet joint preserved "
                            f"({'good' if pres >= good else 'acceptable' if pres >= mn else 'below'} "
                            f"{mn:g} %/{good:g} %)"))
    else:
        checks.append(Check.not_evaluated(CheckId.FACET_PRESERVATION,
                                          f"the {plan.side} {plan.level} facet joint was not found in the labels"))
    tree = anat.canal_tree()
    if tree is None:
        checks.append(Check.not_evaluated(CheckId.DURAL_SAC_CLEARANCE,
                                          "no dural sac (label 300) in the label map"))
    elif len(lps):
        # the approach (skin to docking point) must stay off the dural sac; the laminotomy
        # below the docking point works beside it by design
        # distance of the sac to the approach segment (skin -> dock) minus the tube radius
        sac = anat.canal_points()
        a = unit(plan.target_lps - plan.entry_lps)
        length = float(np.linalg.norm(plan.target_lps - plan.entry_lps))
        q = sac - plan.entry_lps
        t = q @ a
        radial = np.linalg.norm(q - t[:, None] * a, axis=1)
        axial = np.maximum(np.maximum(-t, t - length), 0.0)  # beyond the ends of the bore
        d = np.hypot(axial, np.maximum(radial - dia / 2, 0.0))  # distance to the solid cylinder
        dist = float(d.min()) if len(sac) else np.inf
        checks.append(Check(CheckId.DURAL_SAC_CLEARANCE, dist > 0.5, "ok" if dist > 0.5 else "error",
                            f"approach {dist:.1f} mm from the dural sac"
                            + ("" if dist > 0.5 else " (the tube would dock on the dura)")))
    m = path_metrics(plan, u)
    depth = m["depth_mm"]
    lengths = PARAMETERS["tube_lengths_mm"]
    fit = [x for x in lengths if x >= depth]
    plan.parameters["length_mm"] = fit[0] if fit else lengths[-1]
    if not fit:
        checks.append(Check(CheckId.TUBE_LENGTH, False, "warning",
                            f"skin-to-lamina depth {depth:.0f} mm exceeds the longest tube ({lengths[-1]} mm)"))
    d = unit(plan.target_lps - plan.entry_lps)
    horiz = d - n * (d @ n)
    medial = float(np.degrees(np.arctan2(abs(horiz @ lr), abs(horiz @ ap))))
    m["medial_angulation_deg"] = medial
    plan.metrics = m
    tilt = float(plan.parameters.get("contralateral_tilt_deg", 0.0))
    if tilt:
        checks.append(range_check(CheckId.CONTRALATERAL_TILT, tilt, *PARAMETERS["tube_contralateral_tilt_deg"], "deg"))
    else:
        checks.append(range_check(CheckId.MEDIAL_ANGULATION, medial, *PARAMETERS["tube_medial_angulation_deg"], "deg"))
        checks.append(range_check(CheckId.TUBE_ENTRY_MIDLINE, m["entry_midline_distance_mm"],
                                  *PARAMETERS["tube_entry_from_midline_mm"], "mm"))
    par = m["angle_to_disc_plane_deg"]
    checks.append(Check(CheckId.PARALLEL_TO_DISC, par <= 10.0, "ok" if par <= 10.0 else "warning",
                        f"{par:.1f} deg to the disc plane in the lateral view"))
    hits = facet_hits(anat, lps[bone], 1.0) if bone.any() else []
    hit_mask = (lab != 0) & (lab != L.CANAL)
    checks[1:1] = scope_checks(plan, anat, lab[hit_mask], lps[hit_mask], hits,
                               allowed_facets=(plan.side,))
    plan.checks = checks
    plan.checks.extend(lesion_checks(plan, anat, lesion_gap))
    return plan


def _dock_point(anat: Anatomy, u, side: str, lateral_mm: float, cranial_mm: float = 2.0) -> np.ndarray:
    """Interlaminar window on the chosen side, at the posterior edge of the canal."""
    c, n, lr, ap = frame(u)
    g = u.disc_geometry
    canal = u.canal_ap_mm if u.canal_ap_mm else 15.0
    back = g.ap_range_mm[1] + canal + 2.0
    return c + side_sign(side) * lateral_mm * lr + back * ap + cranial_mm * n


def propose(anat: Anatomy, level: str, side: str, *, case: dict | None = None,
            diameter_mm: float = 18.0, contralateral_tilt_deg: float = 0.0, lesion: dict | None = None,
            **_ignored) -> Plan:
    """Automatic tube: search the docking offset and medial angulation within the ranges.

    With a marked ``lesion`` (``Plan.lesion`` dict) the docking point is also tried at the
    lesion's lateral offset and height, and the plan whose working channel reaches it wins.
    """
    u = anat.unit(level)
    c, n, lr, ap = frame(u)
    s = side_sign(side)
    best, best_key = None, None
    docks = [(6.0, 2.0), (8.0, 2.0), (10.0, 2.0), (4.0, 2.0)]  # (lateral, cranial) mm
    if lesion:
        lat, _post, up = frame_coords(u, lesion_from_dict(lesion).centre_lps)
        lat, up = float(np.clip(s * lat, 4.0, 12.0)), float(np.clip(up, -8.0, 8.0))
        docks += [(lat, 2.0), (lat, up), (6.0, up)]
    for lateral, cranial in dict.fromkeys(docks):
        target = _dock_point(anat, u, side, lateral, cranial)
        angles = [contralateral_tilt_deg] if contralateral_tilt_deg else [10.0, 7.5, 12.5, 5.0, 15.0]
        for beta in angles:
            b = np.radians(beta)
            d = unit(np.cos(b) * ap + s * np.sin(b) * lr)
            entry = skin_exit_lps(anat.image, target, d)
            if entry is None:
                continue
            plan = Plan(level, side, "tube", entry, target, incision_mm=diameter_mm,
                        parameters={"diameter_mm": float(diameter_mm),
                                    "contralateral_tilt_deg": float(contralateral_tilt_deg)},
                        case=dict(case or {}), source=anat.source(), lesion=dict(lesion or {}))
            evaluate(plan, anat)
            errs = len(plan.errors())
            warns = sum(x.severity == "warning" for x in plan.checks)
            key = (errs, warns, plan.metrics.get("lesion_distance_mm", 0.0),
                   -plan.parameters.get("facet_preservation_pct", 0), abs(beta - 10))
            if best_key is None or key < best_key:
                best, best_key = plan, key
    if best is None:
        raise PlanningError(f"no skin entry found for a {side} tube at {level}")
    return best
