"""Percutaneous plasma (coblation) disc ablation: a 17 G needle through Kambin's triangle."""

from __future__ import annotations

import numpy as np

from ..segmentation import labels as L
from .common import (VERTEBRA_LABELS, bone_label_name, isolated_bone, facet_hits, frame, labels_at, lesion_checks,
                     path_metrics, path_points, range_check, scope_checks, side_check, side_sign)
from .lesion import LesionKind, frame_coords, lesion_from_dict
from .geometry import skin_exit_lps, unit
from .plan import Anatomy, Plan
from .safety import PARAMETERS, Check, CheckId

__all__ = ["propose", "evaluate", "lesion_base_lps", "lesion_gap"]


def lesion_base_lps(anat: Anatomy, lesion, level: str) -> np.ndarray:
    """The lesion's base: the point of the disc's posterior margin (disc plane, measured
    ellipse) at the lesion's lateral offset, on the disc of ``level``."""
    u = anat.unit(level)
    g = u.disc_geometry
    c, n, lr, ap = frame(u)
    lat = float(frame_coords(u, lesion.centre_lps)[0])
    lo, hi = g.ap_range_mm
    wl, wh = g.lr_range_mm
    half_w, mid_l = max((wh - wl) / 2, 1.0), (wh + wl) / 2
    x = float(np.clip((lat - mid_l) / half_w, -0.95, 0.95))
    post = (hi + lo) / 2 + (hi - lo) / 2 * np.sqrt(1.0 - x * x)
    return c + (mid_l + x * half_w) * lr + post * ap


def lesion_gap(plan: Plan, anat: Anatomy, lesion, loc):
    """Gap (mm) from the needle's path inside the disc, grown by ``needle_lesion_reach_mm``,
    to the lesion's base (on the disc of the lesion's own level)."""
    base = lesion_base_lps(anat, lesion, loc.level)
    P = path_points(plan, 0.5)
    lab, _ = labels_at(anat, P)
    inside = np.where(lab == anat.unit(plan.level).disc)[0]
    seg = P[inside[0]:] if inside.size else P[-1:]
    d = float(np.min(np.linalg.norm(seg - base, axis=1)))
    return d - PARAMETERS["needle_lesion_reach_mm"], "the needle's tip path in the disc"


def _indication_checks(plan: Plan, anat: Anatomy) -> list[Check]:
    """Sequestered or migrated lesions are not treated by ablation (warnings)."""
    if not plan.lesion:
        return []
    les = lesion_from_dict(plan.lesion)
    out = []
    if les.kind is LesionKind.SEQUESTRUM and plan.case.get("pathology") != "sequestration":
        out.append(Check(CheckId.INDICATION_SEQUESTRATION, False, "warning",
                         "the marked lesion is a sequestered fragment: not treated by disc ablation"))
    mig = abs(float(plan.lesion.get("migration_mm", 0.0)))
    lim = PARAMETERS["ablation_max_migration_mm"]
    out.append(Check(CheckId.INDICATION_MIGRATION, mig <= lim, "ok" if mig <= lim else "warning",
                     f"lesion migrated {mig:.1f} mm from the disc plane"
                     + (f" (ablation treats up to {lim:g} mm)" if mig <= lim else
                        f": beyond what ablation can treat ({lim:g} mm)")))
    return out



def evaluate(plan: Plan, anat: Anatomy) -> Plan:
    """Re-check a needle plan (pure function of anatomy and plan; fast enough for dragging)."""
    u = anat.unit(plan.level)
    g = u.disc_geometry
    c, n, lr, ap = frame(u)
    P = path_points(plan, 0.5)
    lab, val = labels_at(anat, P)
    in_disc = np.where(lab == u.disc)[0]
    first = int(in_disc[0]) if in_disc.size else len(P)
    before = slice(0, first)
    checks: list[Check] = [side_check(plan, u)]
    # bone before the disc: vertebrae, or unlabelled bone (ilium) by HU
    bone = np.isin(lab, VERTEBRA_LABELS)
    if anat.image.modality == "CT":
        unl = (lab == 0) & (val > PARAMETERS["bone_hu"])
        if np.any(unl):
            ijk = np.rint(anat.labels.ijk_points_from_lps(P[unl])).astype(int)
            unl[unl] = isolated_bone(anat, ijk)
        bone = bone | unl
    hit = np.where(bone[before])[0]
    if hit.size:
        names = sorted({bone_label_name(int(x)) for x in lab[before][hit]})
        iliac = any("unlabelled" in s for s in names) and plan.level.endswith("S1")
        checks.append(Check(CheckId.NEEDLE_BONE, False, "error",
                            f"the needle meets bone before the disc: {', '.join(names)}"))
        checks.append(Check(CheckId.ILIAC_CREST, not iliac, "error" if iliac else "ok",
                            "iliac crest in the way at L5-S1: steepen or move the entry" if iliac
                            else "not in the way"))
    else:
        checks.append(Check(CheckId.NEEDLE_BONE, True, "ok", "no bone on the path"))
        if plan.level.endswith("S1"):
            checks.append(Check(CheckId.ILIAC_CREST, True, "ok", "not in the way"))
    canal = np.any(lab[before] == L.CANAL)
    tree = anat.canal_tree()
    if tree is None:  # the canal is found by its label: without it the path cannot be judged
        checks.append(Check.not_evaluated(CheckId.CANAL_CLEARANCE,
                                          "no dural sac (label 300) in the label map"))
    else:
        clear = float(tree.query(P[before])[0].min()) if first > 0 else np.inf
        checks.append(Check(CheckId.CANAL_CLEARANCE, not canal, "error" if canal else "ok",
                            "the path enters the spinal canal" if canal else
                            f"{clear:.1f} mm from the dural sac"))
    # not anterior to the posterior two thirds laterally (bowel, vessels)
    q = P[before] - c
    a, l = q @ ap, q @ lr
    lo, hi = g.ap_range_mm
    limit = hi - (2.0 / 3.0) * (hi - lo)
    lateral = np.abs(l) > max(abs(g.lr_range_mm[0]), abs(g.lr_range_mm[1]))
    too_anterior = np.any(lateral & (a < limit))
    checks.append(Check(CheckId.LATERAL_CORRIDOR, not too_anterior, "error" if too_anterior else "ok",
                        "the path passes anterior to the posterior two thirds of the disc laterally "
                        "(bowel, vessels)" if too_anterior else "posterior two thirds respected"))
    tip = plan.target_lps - c
    ta, tl = float(tip @ ap), float(tip @ lr)
    margin = ta - lo
    mneed = PARAMETERS["needle_anterior_annulus_margin_mm"]
    checks.append(Check(CheckId.ANTERIOR_ANNULUS, margin >= mneed, "ok" if margin >= mneed else "error",
                        f"tip {margin:.1f} mm from the anterior annulus (needs >= {mneed:g} mm)"))
    half_d, half_w = (hi - lo) / 2, (g.lr_range_mm[1] - g.lr_range_mm[0]) / 2
    mid_a = (hi + lo) / 2
    rho = np.hypot((ta - mid_a) / half_d, tl / half_w)
    checks.append(Check(CheckId.NUCLEUS_REACH, rho <= 0.5, "ok" if rho <= 0.5 else "warning",
                        f"tip at {100 * rho:.0f} % of the way from the disc centre to the annulus "
                        "(nucleus = inner 50 %)"))
    m = path_metrics(plan, u)
    plan.metrics = m
    checks.append(range_check(CheckId.NEEDLE_ANGLE, m["angle_to_sagittal_deg"],
                              *PARAMETERS["needle_angle_to_sagittal_deg"], "deg"))
    checks.append(range_check(CheckId.NEEDLE_ENTRY_MIDLINE, m["entry_midline_distance_mm"],
                              *PARAMETERS["needle_entry_from_midline_mm"], "mm"))
    # indication
    ratio = u.height_ratio_to_neighbours
    if ratio is None:
        checks.append(Check.not_evaluated(CheckId.INDICATION_DISC_HEIGHT,
                                          "no neighbouring disc height to compare with"))
    else:
        ok = ratio >= 0.5
        checks.append(Check(CheckId.INDICATION_DISC_HEIGHT, ok, "ok" if ok else "warning",
                            f"disc height {100 * ratio:.0f} % of the neighbours'"
                            + ("" if ok else " (< 50 %: ablation not indicated)")))
    if plan.case.get("pathology") == "sequestration":
        checks.append(Check(CheckId.INDICATION_SEQUESTRATION, False, "warning",
                            "a sequestered fragment is not treated by disc ablation"))
    hits = facet_hits(anat, P[before], PARAMETERS["needle_diameter_mm"] / 2 + 2.0)
    touched_idx = np.where((lab != 0) & (lab != L.CANAL))[0]
    checks[1:1] = scope_checks(plan, anat, lab[touched_idx], P[touched_idx], hits)
    plan.checks = checks
    plan.checks.extend(lesion_checks(plan, anat, lesion_gap))
    plan.checks.extend(_indication_checks(plan, anat))
    return plan


def propose(anat: Anatomy, level: str, side: str, *, case: dict | None = None,
            angles_deg=None, lesion: dict | None = None, **_ignored) -> Plan:
    """Automatic needle path: search angles within the allowed range for a collision-free path.

    The tip is the disc centre. With a marked ``lesion``, the path whose tip path in the disc
    comes nearest the lesion's base wins among equally safe ones (a tip moved off the centre
    towards the base would leave Kambin's triangle at the same angles: on the phantom every
    35-45 deg path then met the L5 superior articular process).
    """
    u = anat.unit(level)
    c, n, lr, ap = frame(u)
    tip = c
    s = side_sign(side)
    lo, hi = PARAMETERS["needle_angle_to_sagittal_deg"]
    angles = angles_deg if angles_deg is not None else np.arange(lo, hi + 0.5, 1.0)
    # widen the search when nothing inside the range works (reported by the range check)
    extra = [a for a in np.arange(30.0, 61.0, 1.0) if a < lo or a > hi]
    best, best_key = None, None
    for pool in (angles, extra):
        for alpha in pool:
            for tilt in (0.0, 5.0, -5.0):
                al, ti = np.radians(alpha), np.radians(tilt)
                d = unit(np.cos(al) * ap + s * np.sin(al) * lr + np.tan(ti) * n)
                entry = skin_exit_lps(anat.image, tip, d)
                if entry is None:
                    continue
                plan = Plan(level, side, "needle", entry, tip.copy(), incision_mm=0.0,
                            parameters={"diameter_mm": PARAMETERS["needle_diameter_mm"],
                                        "gauge": 17},
                            case=dict(case or {}), source=anat.source(), lesion=dict(lesion or {}))
                evaluate(plan, anat)
                errs = len(plan.errors())
                warns = sum(c_.severity == "warning" for c_ in plan.checks)
                key = (errs, warns, plan.metrics.get("lesion_distance_mm", 0.0),
                       abs(alpha - 40.0) + abs(tilt))
                if best_key is None or key < best_key:
                    best, best_key = plan, key
        if best is not None and best_key[0] == 0:
            break
    if best is None:
        from ..errors import PlanningError

        raise PlanningError(f"no skin entry found for a {side} needle at {level} (body outline not in view?)")
    return best
