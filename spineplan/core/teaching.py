"""Teaching: guided rehearsal steps, practice scoring, teaching sets, presentation anonymising.

Everything here works on plan dicts (docs/PLAN_SCHEMA.md) and is pure: no Qt, no VTK.
Geometry is LPS millimetres (x = patient's left, y = posterior, z = superior).

- :func:`rehearsal_steps` turns a plan into the procedure's steps (narration, instrument tip
  on the trajectory, camera, layer opacities, structures at risk). The VTK renderer
  (``spineplan.render.rehearsal``) and the GUI presentation mode play them back.
- :func:`score_attempt` scores a resident's plan against the hidden reference plan.
- :func:`write_teaching_set` / :func:`read_teaching_set` bundle cases with their reference
  plans as a folder or a zip with a versioned ``manifest.json``.
- :func:`anonymise_for_presentation` replaces patient identity by a case title.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np

from .errors import InvalidInputError, PlanFileError
from .segmentation import labels as L

__all__ = [
    "Camera", "Structure", "Step", "rehearsal_steps", "trajectory_lps", "check_plan", "FrameState",
    "side_matches_geometry",
    "playback_frames",
    "Score", "SCORE_WEIGHTS", "SCORE_TOLERANCES", "score_attempt", "score_summary", "approach_camera",
    "instrument_view_camera",
    "TeachingCase", "TeachingSet", "TEACHING_SET_FORMAT", "TEACHING_SET_VERSION",
    "write_teaching_set", "read_teaching_set", "resident_view", "DICOM_IDENTITY_ATTRIBUTES",
    "anonymise_for_presentation", "IDENTITY_KEYS",
]

# --------------------------------------------------------------------------------------
# Named parameters of the playback (a teacher can change them).
# --------------------------------------------------------------------------------------
#: Angle (deg) between the camera's line of sight and the instrument axis, so the
#: instrument is seen as a line rather than a point ("view along the instrument").
CAMERA_OFFSET_DEG = 25.0
#: Camera distance (mm) behind the focal point at the first and at the last step.
CAMERA_DISTANCE_START_MM = 320.0
CAMERA_DISTANCE_END_MM = 170.0
#: Without a label map: distance (mm) before the target where the needle passes
#: Kambin's triangle / the cage corridor enters the disc (phantom and typical adult
#: lumbar disc: posterolateral annulus about 15-20 mm from the nucleus centre).
DISC_ENTRY_BEFORE_TARGET_MM = 18.0
#: Without a label map: distance (mm) before the cage centre where the facet joint lies.
FACET_BEFORE_TARGET_MM = 38.0
#: Fraction of the skin-to-target depth reached by the dilators (tube).
DILATOR_DEPTH_FRACTION = 0.6
#: Radius (mm) of the schematic "exiting root" region (no nerve-root segmentation exists;
#: the region is placed cranial to Kambin's triangle, where the exiting root crosses it).
ROOT_REGION_RADIUS_MM = 6.0
ROOT_REGION_CRANIAL_MM = 8.0
#: Sampling step (mm) along the trajectory when a label map locates the stations.
TRAJECTORY_SAMPLE_MM = 0.5

PROCEDURES = ("needle", "tube", "cage")


@dataclass(frozen=True)
class Camera:
    """A camera in LPS mm: ``position``, ``focal_point`` and unit ``view_up``."""

    position: tuple[float, float, float]
    focal_point: tuple[float, float, float]
    view_up: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {"position": list(self.position), "focal_point": list(self.focal_point),
                "view_up": list(self.view_up)}


@dataclass(frozen=True)
class Structure:
    """A structure at risk to highlight.

    ``labels`` are label values in the label map (VerSe convention, 300 = dural sac).
    Structures that have no label (nerve roots) carry a schematic spherical region
    ``center_lps`` / ``radius_mm`` instead; ``schematic`` says so.
    """

    name: str
    labels: tuple[int, ...] = ()
    center_lps: tuple[float, float, float] | None = None
    radius_mm: float | None = None
    schematic: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "labels": list(self.labels),
                "center_lps": None if self.center_lps is None else list(self.center_lps),
                "radius_mm": self.radius_mm, "schematic": self.schematic}


@dataclass(frozen=True)
class Step:
    """One step of a guided rehearsal.

    Attributes
    ----------
    index, key, title, narration :
        Position in the sequence, a stable key (``"kambin"``), a short title and the
        narration text shown on screen and in the handout.
    tip_lps :
        Instrument tip (LPS mm), always on the entry -> target segment.
    progress :
        Fraction of the skin-to-target depth reached by the tip (0 at the entry, 1 at the target).
    instrument :
        What is drawn: ``"marker"``, ``"needle"``, ``"dilator"``, ``"tube"``, ``"burr"``,
        ``"osteotome"``, ``"shaver"`` or ``"cage"``.
    instrument_radius_mm :
        Radius of the drawn instrument (mm).
    camera :
        Camera at the end of the step (focal point = tip).
    layers :
        Opacity 0..1 of ``"skin"``, ``"soft_tissue"`` (semi-transparent hull) and ``"bone"``.
    at_risk :
        Structures to highlight at this step.
    target_labels :
        Labels of the target structure (e.g. the target disc), highlighted as the goal.
    """

    index: int
    key: str
    title: str
    narration: str
    tip_lps: tuple[float, float, float]
    progress: float
    instrument: str
    instrument_radius_mm: float
    camera: Camera
    layers: dict[str, float]
    at_risk: tuple[Structure, ...] = ()
    target_labels: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        return {"index": self.index, "key": self.key, "title": self.title,
                "narration": self.narration, "tip_lps": list(self.tip_lps),
                "progress": self.progress, "instrument": self.instrument,
                "instrument_radius_mm": self.instrument_radius_mm,
                "camera": self.camera.to_dict(), "layers": dict(self.layers),
                "at_risk": [s.to_dict() for s in self.at_risk],
                "target_labels": list(self.target_labels)}


# --------------------------------------------------------------------------------------
# Plan access helpers
# --------------------------------------------------------------------------------------
def _vec3(plan: dict, key: str) -> np.ndarray:
    try:
        v = np.asarray(plan[key], dtype=float).reshape(3)
    except KeyError:
        raise PlanFileError(f"plan has no '{key}'; save the plan again from spineplan") from None
    except (TypeError, ValueError):
        raise PlanFileError(f"plan '{key}' must be three numbers (LPS mm)") from None
    if not np.all(np.isfinite(v)):
        raise PlanFileError(f"plan '{key}' is not finite")
    return v


def trajectory_lps(plan: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Entry, target, unit direction (entry -> target) and depth (mm) of a plan.

    Raises
    ------
    PlanFileError
        When entry or target is missing/invalid or they coincide.
    """
    entry, target = _vec3(plan, "entry_lps"), _vec3(plan, "target_lps")
    depth = float(np.linalg.norm(target - entry))
    if depth < 1.0:
        raise PlanFileError("plan entry and target coincide; the trajectory has no length")
    return entry, target, (target - entry) / depth, depth


def _procedure(plan: dict) -> str:
    proc = plan.get("procedure")
    if proc not in PROCEDURES:
        raise PlanFileError(f"plan procedure {proc!r} is not one of {', '.join(PROCEDURES)}")
    return proc


def _side(plan: dict) -> str:
    side = plan.get("side")
    if side not in ("left", "right"):
        raise PlanFileError(f"plan side {side!r} must be 'left' or 'right'")
    return side


def _level_labels(level: str) -> dict:
    """Labels around a motor unit: upper/lower vertebra, target disc, neighbouring discs."""
    try:
        up, low = L.parse_motor_unit(level)
    except (ValueError, AttributeError):
        raise PlanFileError(f"plan level {level!r} is not a motor unit such as L4-L5") from None
    above = {1: None, 20: 19, 28: 19}.get(up, up - 1)
    below = {19: 20, 24: L.SACRUM, 25: L.SACRUM, 28: 20}.get(low, low + 1)  # typical anatomy
    disc_above = L.disc_label(above) if above else None
    disc_below = L.disc_label(low) if low != L.SACRUM and L.is_disc(L.disc_label(low)) else None
    upper_name, lower_name = L.vertebra_name(up), L.vertebra_name(low)
    return dict(up=up, low=low, disc=L.disc_label(up), disc_above=disc_above,
                disc_below=disc_below, exiting_root=upper_name,
                traversing_root=lower_name,
                unit_above=(f"{L.vertebra_name(above)}-{upper_name}" if above else None),
                unit_below=(L.motor_unit_name(low, below) if low != L.SACRUM else None))


#: How far (mm) the entry may lie on the other side of the target, in LPS x, before a plan's
#: declared side and its geometry are taken to contradict each other (a straight-down tube
#: has entry x close to target x; a posterolateral approach has the entry lateral).
SIDE_TOLERANCE_MM = 5.0


def side_matches_geometry(plan: dict) -> bool:
    """True when the entry lies on the declared side (LPS: the patient's left is +x).

    A ``"left"`` plan whose entry is more than :data:`SIDE_TOLERANCE_MM` to the patient's
    right of its target (or the reverse) describes a wrong-side approach.
    """
    entry, target, _, _ = trajectory_lps(plan)
    sgn = 1.0 if _side(plan) == "left" else -1.0
    return bool(sgn * (entry[0] - target[0]) >= -SIDE_TOLERANCE_MM)


def check_plan(plan: dict, require_consistent_side: bool = True) -> dict:
    """Validate the keys rehearsal and scoring need; return the plan.

    Raises
    ------
    PlanFileError
        Missing/invalid procedure, side, level, entry or target, or (when
        ``require_consistent_side``) an entry on the other side than the declared one.
    """
    if not isinstance(plan, dict):
        raise PlanFileError("a plan must be a JSON object")
    _procedure(plan)
    side = _side(plan)
    _level_labels(str(plan.get("level", "")))
    trajectory_lps(plan)
    if require_consistent_side and not side_matches_geometry(plan):
        other = "right" if side == "left" else "left"
        raise PlanFileError(f"plan says {side.upper()} but its entry lies on the patient's {other}; "
                            f"check the plan before teaching with it")
    return plan


# --------------------------------------------------------------------------------------
# Stations along the trajectory (optionally located in a label map)
# --------------------------------------------------------------------------------------
def _labels_along(labels, entry: np.ndarray, direction: np.ndarray, depth: float):
    """(distances from entry, label values) sampled along the trajectory in a label map."""
    n = int(math.floor(depth / TRAJECTORY_SAMPLE_MM)) + 1
    d = np.linspace(0.0, depth, n)
    pts = entry[None, :] + d[:, None] * direction[None, :]
    ijk = np.rint(labels.ijk_points_from_lps(pts)).astype(int)
    ni, nj, nk = labels.size_ijk
    inside = ((ijk >= 0) & (ijk < np.array([ni, nj, nk]))).all(axis=1)
    vals = np.zeros(n, dtype=np.int64)
    vals[inside] = labels.array[ijk[inside, 2], ijk[inside, 1], ijk[inside, 0]]
    return d, vals


def _first(d: np.ndarray, mask: np.ndarray) -> float | None:
    idx = np.flatnonzero(mask)
    return float(d[idx[0]]) if idx.size else None


def _stations(plan: dict, labels, lv: dict, entry, direction, depth) -> dict:
    """Depths (mm from the entry) of the disc entry and the first bone contact."""
    disc_entry = max(depth - DISC_ENTRY_BEFORE_TARGET_MM, 0.0)
    facet = max(depth - FACET_BEFORE_TARGET_MM, 0.0)
    located = False
    contacts: list[tuple[str, float]] = []
    if labels is not None:
        d, vals = _labels_along(labels, entry, direction, depth)
        de = _first(d, vals == lv["disc"])
        bone = _first(d, np.isin(vals, [lv["up"], lv["low"]]))
        if de is not None:
            disc_entry, located = de, True
        if bone is not None and bone < disc_entry:
            facet = bone
        # every structure met before the disc (bone of any vertebra, the canal, other discs)
        before = d < disc_entry
        for lab in np.unique(vals[before]):
            lab = int(lab)
            if lab == 0:
                continue
            if L.is_vertebra(lab):
                name = f"{L.vertebra_name(lab)} bone"
            elif lab in (L.CANAL, L.CORD):
                name = "the spinal canal"
            elif L.is_disc(lab):
                name = f"the {L.disc_name(lab)} disc"
            else:
                name = f"label {lab}"
            contacts.append((name, float(d[before][vals[before] == lab][0])))
        contacts.sort(key=lambda c: c[1])
    return dict(disc_entry=disc_entry, facet=min(facet, disc_entry), located=located,
                contacts=contacts)


# --------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _camera(tip: np.ndarray, direction: np.ndarray, distance: float) -> Camera:
    """Camera behind the tip, looking along the instrument, tilted cranially by CAMERA_OFFSET_DEG."""
    sup = np.array([0.0, 0.0, 1.0])
    perp = sup - direction * float(sup @ direction)
    if np.linalg.norm(perp) < 1e-6:  # trajectory along the column axis
        perp = np.array([0.0, -1.0, 0.0]) - direction * float(-direction[1])
    perp = _unit(perp)
    a = math.radians(CAMERA_OFFSET_DEG)
    sight = _unit(direction * math.cos(a) - perp * math.sin(a))  # camera -> focal point
    position = tip - sight * distance
    up = _unit(sup - sight * float(sup @ sight))
    if np.linalg.norm(up) < 1e-6:
        up = perp
    return Camera(tuple(map(float, position)), tuple(map(float, tip)), tuple(map(float, up)))


def approach_camera(plan: dict, distance_mm: float = CAMERA_DISTANCE_START_MM) -> Camera:
    """Camera looking at the plan's target from the approach side (along the trajectory)."""
    _, target, direction, _ = trajectory_lps(plan)
    return _camera(target, direction, float(distance_mm))


#: Distance (mm) behind the tip of the "view down the instrument" camera.
INSTRUMENT_VIEW_DISTANCE_MM = 70.0


def instrument_view_camera(plan: dict, tip_lps, distance_mm: float = INSTRUMENT_VIEW_DISTANCE_MM,
                           view_up=None) -> Camera:
    """Camera on the instrument axis, ``distance_mm`` behind the tip, looking at the tip.

    This is the "view down the instrument" (an endoscope-like view along the trajectory).
    ``view_up`` defaults to the patient's superior direction projected off the axis.
    """
    _, _, direction, _ = trajectory_lps(plan)
    tip = np.asarray(tip_lps, float).reshape(3)
    up = np.asarray(view_up if view_up is not None else (0.0, 0.0, 1.0), float)
    up = up - direction * float(up @ direction)
    if np.linalg.norm(up) < 1e-6:
        up = np.array([0.0, -1.0, 0.0]) - direction * float(-direction[1])
    return Camera(tuple(map(float, tip - direction * float(distance_mm))), tuple(map(float, tip)),
                  tuple(map(float, _unit(up))))


def _fmt_side(side: str) -> str:
    return "LEFT" if side == "left" else "RIGHT"


def rehearsal_steps(plan: dict, labels=None) -> list[Step]:
    """Procedure-specific guided steps of a plan, ending at the target.

    Parameters
    ----------
    plan : dict
        A plan dict (docs/PLAN_SCHEMA.md): ``procedure``, ``level``, ``side``,
        ``entry_lps``, ``target_lps``, ``incision_mm``, ``parameters``, ``metrics``.
    labels : Volume, optional
        Label map of the same patient. When given, the disc entry (Kambin's triangle /
        cage corridor) and the first bone contact are found along the trajectory;
        otherwise they are placed at the documented default distances before the target.

    Returns
    -------
    list of Step
        Tube: skin mark and incision, dilators, docking on the lamina, laminotomy,
        decompression. Cage: facetectomy, disc preparation, cage insertion. Needle:
        skin entry, Kambin's triangle, nucleus. Tips lie on the entry -> target segment,
        their depth never decreases and the last tip is the target. With a label map the
        needle's Kambin step warns about anything the path meets before the disc; plan
        checks with warnings/errors are announced at the first step.

    Raises
    ------
    PlanFileError
        Invalid plan, or a declared side that contradicts the entry (wrong-side plan).
    """
    check_plan(plan)
    proc, side = _procedure(plan), _side(plan)
    level = str(plan.get("level", ""))
    lv = _level_labels(level)
    entry, target, direction, depth = trajectory_lps(plan)
    params = dict(plan.get("parameters") or {})
    metrics = dict(plan.get("metrics") or {})
    st = _stations(plan, labels, lv, entry, direction, depth)
    S = _fmt_side(side)

    sac = Structure("dural sac", (L.CANAL,))
    neighbours = tuple(
        Structure(f"{L.disc_name(lab)} disc (neighbouring unit)", (lab,))
        for lab in (lv["disc_above"], lv["disc_below"]) if lab is not None)
    units = [u for u in (lv["unit_above"], lv["unit_below"]) if u]
    facet_names = ", ".join(f"{u} facet joints" for u in units)
    neighbour_facets = (Structure(f"{facet_names} (neighbouring units, not to be touched)"),) if units else ()

    def root_region(depth_mm: float, name: str) -> Structure:
        c = entry + direction * depth_mm + np.array([0.0, 0.0, ROOT_REGION_CRANIAL_MM])
        return Structure(name, (), tuple(map(float, c)), ROOT_REGION_RADIUS_MM, schematic=True)

    exiting = root_region(st["disc_entry"], f"exiting {lv['exiting_root']} root (schematic region)")
    traversing = Structure(f"traversing {lv['traversing_root']} root (beside the dural sac)")
    target_disc = (lv["disc"],)

    midline = metrics.get("entry_midline_distance_mm")
    mid_txt = f" {midline / 10:.1f} cm from the midline" if isinstance(midline, (int, float)) else ""
    ang = metrics.get("angle_to_sagittal_deg")
    ang_txt = f", {ang:.0f} deg to the sagittal plane" if isinstance(ang, (int, float)) else ""

    contact_txt = ""
    if st["contacts"]:
        contact_txt = (" Caution: before the disc this path meets " + ", ".join(
            f"{n} at {dd:.0f} mm" for n, dd in st["contacts"]) + "; a percutaneous needle must "
            "not meet bone or enter the canal: re-plan.")
    plan_warnings = [c for c in (plan.get("checks") or [])
                     if isinstance(c, dict) and c.get("severity") in ("warning", "error")]
    checks_txt = ""
    if plan_warnings:
        checks_txt = " Plan checks: " + "; ".join(
            f"{c.get('severity')}: {c.get('name')}" for c in plan_warnings) + "."

    # (key, title, narration, depth_mm, instrument, radius, layers, at_risk, target_labels)
    rows: list[tuple] = []
    if proc == "needle":
        r = float(params.get("diameter_mm", 1.5)) / 2
        rows = [
            ("entry", "Skin entry",
             f"{level} {S} side. Needle entry on the skin{mid_txt}{ang_txt}; no incision. "
             f"Depth to the nucleus {depth:.0f} mm.",
             0.0, "needle", r, dict(skin=0.5, soft_tissue=0.25, bone=1.0), neighbours, target_disc),
            ("kambin", "Kambin's triangle",
             f"The needle passes Kambin's triangle at {st['disc_entry']:.0f} mm: exiting "
             f"{lv['exiting_root']} root above, {L.vertebra_name(lv['low'])} endplate below, "
             f"superior articular process medially. Stay off the root and out of the canal."
             + contact_txt,
             st["disc_entry"], "needle", r, dict(skin=0.0, soft_tissue=0.2, bone=1.0),
             (exiting, sac) + neighbours, target_disc),
            ("nucleus", "Nucleus",
             f"Tip in the nucleus of the {L.disc_name(lv['disc'])} disc, keeping at least 5 mm "
             f"from the anterior annulus (vessels and bowel lie anterior).",
             depth, "needle", r, dict(skin=0.0, soft_tissue=0.0, bone=0.45),
             (sac, Structure("anterior annulus (vessels, bowel beyond)")) + neighbours, target_disc),
        ]
    elif proc == "tube":
        dia = float(params.get("diameter_mm", plan.get("incision_mm") or 18.0))
        length = params.get("length_mm")
        len_txt = f", {float(length):.0f} mm long," if isinstance(length, (int, float)) else ""
        inc = float(plan.get("incision_mm") or dia)
        rows = [
            ("incision", "Skin mark and incision",
             f"{level} {S} side. Mark the entry{mid_txt}; {inc:.0f} mm skin incision "
             f"(the tube diameter).", 0.0, "marker", dia / 2,
             dict(skin=0.5, soft_tissue=0.25, bone=1.0), (), ()),
            ("dilators", "Dilators",
             f"Sequential dilators through the muscle towards the {L.vertebra_name(lv['up'])} "
             f"lamina, in the disc plane, angled medially{ang_txt}.",
             DILATOR_DEPTH_FRACTION * depth, "dilator", min(dia / 2, 6.0),
             dict(skin=0.15, soft_tissue=0.35, bone=1.0), neighbour_facets, ()),
            ("docking", "Tube docking on the lamina",
             f"Dock the {dia:.0f} mm tube{len_txt} on the interlaminar window: inferior edge of "
             f"the {L.vertebra_name(lv['up'])} lamina, medial edge of the facet. "
             f"Depth {depth:.0f} mm.",
             depth, "tube", dia / 2, dict(skin=0.0, soft_tissue=0.25, bone=1.0),
             neighbour_facets + neighbours, ()),
            ("laminotomy", "Laminotomy",
             f"Laminotomy within the bore; preserve at least 50 % of the {S.lower()} {level} "
             f"facet joint. Bone removed belongs to {level} only.",
             depth, "burr", min(dia / 2, 2.5), dict(skin=0.0, soft_tissue=0.0, bone=0.8),
             (sac, Structure(f"{S.lower()} {level} facet joint (preserve >= 50 %)")) + neighbour_facets,
             ()),
            ("decompression", "Decompression",
             f"Flavectomy and decompression of the traversing {lv['traversing_root']} root; "
             f"retract the dural sac gently and remove the herniation at {level}.",
             depth, "tube", dia / 2, dict(skin=0.0, soft_tissue=0.0, bone=0.5),
             (sac, traversing), target_disc),
        ]
    else:  # cage
        cage_len = params.get("length_mm")
        cage_txt = (f"{float(params.get('length_mm')):.0f} x {float(params.get('width_mm', 0)):.0f} x "
                    f"{float(params.get('height_mm', 0)):.0f} mm cage"
                    if isinstance(cage_len, (int, float)) else "cage")
        rows = [
            ("facetectomy", "Facetectomy",
             f"{level} {S} side. Facetectomy of the {S.lower()} {level} facet joint (deliberate, "
             f"reported); the contralateral facet joint and the neighbouring units are preserved.",
             st["facet"], "osteotome", 2.5, dict(skin=0.3, soft_tissue=0.3, bone=1.0),
             (sac, exiting) + neighbour_facets, ()),
            ("disc_preparation", "Disc preparation",
             f"Annulotomy through Kambin's triangle, keep at least 2 mm from the dural sac; "
             f"remove the disc and prepare the endplates of {level}.",
             st["disc_entry"], "shaver", 3.5, dict(skin=0.0, soft_tissue=0.0, bone=0.7),
             (sac, exiting) + neighbours, target_disc),
            ("cage_insertion", "Cage insertion",
             f"Insert the {cage_txt} obliquely{ang_txt}; final position across the disc space, "
             f"centre near the midline in the anterior half.",
             depth, "cage", float(params.get("height_mm", 10.0)) / 2,
             dict(skin=0.0, soft_tissue=0.0, bone=0.45), (sac,) + neighbours, target_disc),
        ]

    if checks_txt:
        first = list(rows[0])
        first[2] = first[2] + checks_txt
        rows[0] = tuple(first)
    steps: list[Step] = []
    n = len(rows)
    for i, (key, title, text, dmm, instr, rad, layers, risk, tgt) in enumerate(rows):
        dmm = float(min(max(dmm, 0.0), depth))
        tip = target.copy() if dmm >= depth else entry + direction * dmm
        frac = i / (n - 1) if n > 1 else 1.0
        dist = CAMERA_DISTANCE_START_MM + (CAMERA_DISTANCE_END_MM - CAMERA_DISTANCE_START_MM) * frac
        if risk:
            text = text + " At risk: " + ", ".join(s.name for s in risk) + "."
        steps.append(Step(index=i, key=key, title=title, narration=text,
                          tip_lps=tuple(map(float, tip)), progress=dmm / depth,
                          instrument=instr, instrument_radius_mm=float(rad),
                          camera=_camera(tip, direction, dist), layers=dict(layers),
                          at_risk=tuple(risk), target_labels=tuple(tgt)))
    return steps


@dataclass(frozen=True)
class FrameState:
    """State of one playback frame: the step it belongs to and interpolated geometry."""

    step_index: int
    frame_in_step: int
    tip_lps: tuple[float, float, float]
    camera: Camera
    layers: dict[str, float]


#: The first step starts from a camera this many times further away (approach zoom).
APPROACH_ZOOM = 1.6


def playback_frames(steps: Sequence[Step], frames_per_step: int) -> list[FrameState]:
    """Interpolate a step sequence into ``len(steps) * frames_per_step`` frame states.

    Within step ``i`` the tip, camera and layer opacities move linearly from the state at
    the end of step ``i - 1`` (for the first step: the same view from
    :data:`APPROACH_ZOOM` times further away) to the state of step ``i``; the last frame of
    each step is exactly that step's state, so the last frame ends at the target.
    """
    if frames_per_step < 1:
        raise InvalidInputError("frames_per_step must be at least 1")
    if not steps:
        return []
    out: list[FrameState] = []
    s0 = steps[0]
    fp0 = np.asarray(s0.camera.focal_point)
    prev_cam = Camera(tuple(map(float, fp0 + (np.asarray(s0.camera.position) - fp0) * APPROACH_ZOOM)),
                      s0.camera.focal_point, s0.camera.view_up)
    prev_tip, prev_layers = np.asarray(s0.tip_lps), dict(s0.layers)
    for st in steps:
        tip = np.asarray(st.tip_lps)
        for f in range(1, frames_per_step + 1):
            t = f / frames_per_step

            def lerp(a, b):
                return (1.0 - t) * np.asarray(a, float) + t * np.asarray(b, float)

            up = _unit(lerp(prev_cam.view_up, st.camera.view_up))
            cam = Camera(tuple(map(float, lerp(prev_cam.position, st.camera.position))),
                         tuple(map(float, lerp(prev_cam.focal_point, st.camera.focal_point))),
                         tuple(map(float, up)))
            layers = {k: float((1 - t) * prev_layers.get(k, v) + t * v) for k, v in st.layers.items()}
            out.append(FrameState(st.index, f - 1, tuple(map(float, lerp(prev_tip, tip))), cam, layers))
        prev_cam, prev_tip, prev_layers = st.camera, tip, dict(st.layers)
    return out


# --------------------------------------------------------------------------------------
# Practice scoring
# --------------------------------------------------------------------------------------
#: Weights of the overall 0-100 score (sum 1). Each geometric term is
#: ``max(0, 1 - error / tolerance)``; checks = fraction of the attempt's checks that
#: passed (1 when it has none); motor units = 1 when the attempt touches exactly the
#: reference's motor units. A wrong side, level or procedure scores 0 overall.
SCORE_WEIGHTS = {"entry": 0.25, "angle": 0.25, "target": 0.25, "checks": 0.10, "motor_units": 0.15}
#: Error (mm or degrees) at which a geometric term reaches 0 points.
SCORE_TOLERANCES = {"entry_mm": 20.0, "angle_deg": 20.0, "target_mm": 10.0}


@dataclass(frozen=True)
class Score:
    """Result of :func:`score_attempt` (errors in mm and degrees, overall 0-100)."""

    entry_error_mm: float
    target_error_mm: float
    angle_difference_deg: float
    depth_difference_mm: float
    checks_passed: tuple[str, ...]
    checks_failed: tuple[str, ...]
    motor_units_reference: tuple[str, ...]
    motor_units_attempt: tuple[str, ...]
    motor_units_match: bool
    same_side: bool
    same_level: bool
    same_procedure: bool
    components: dict[str, float]
    overall: float
    remarks: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two vectors (degrees), robust near 0 and 180 degrees."""
    return float(np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b)), float(a @ b))))


def score_attempt(reference_plan: dict, attempt_plan: dict) -> Score:
    """Score a resident's attempt against the reference plan.

    Parameters
    ----------
    reference_plan, attempt_plan : dict
        Plan dicts of the same case (the attempt's ``checks`` are those computed for it).

    Returns
    -------
    Score
        Entry / target distances (mm), trajectory angle difference (deg), checks the
        attempt passed and failed, motor units touched, and an overall 0-100 score
        weighted by :data:`SCORE_WEIGHTS` with :data:`SCORE_TOLERANCES`.
    """
    check_plan(reference_plan)
    check_plan(attempt_plan, require_consistent_side=False)
    e_r, t_r, d_r, depth_r = trajectory_lps(reference_plan)
    e_a, t_a, d_a, depth_a = trajectory_lps(attempt_plan)
    entry_err = float(np.linalg.norm(e_a - e_r))
    target_err = float(np.linalg.norm(t_a - t_r))
    angle = _angle_deg(d_r, d_a)

    passed, failed = [], []
    for c in attempt_plan.get("checks") or []:
        name = str(c.get("name", "check"))
        ok = bool(c.get("ok")) and c.get("severity", "ok") != "error"
        (passed if ok else failed).append(name)
    mu_r = tuple(sorted(str(u) for u in reference_plan.get("motor_units_touched") or []))
    mu_a = tuple(sorted(str(u) for u in attempt_plan.get("motor_units_touched") or []))
    same_side = reference_plan.get("side") == attempt_plan.get("side")
    same_level = reference_plan.get("level") == attempt_plan.get("level")
    same_proc = reference_plan.get("procedure") == attempt_plan.get("procedure")

    def term(err: float, tol: float) -> float:
        return max(0.0, 1.0 - err / tol)

    comp = {
        "entry": term(entry_err, SCORE_TOLERANCES["entry_mm"]),
        "angle": term(angle, SCORE_TOLERANCES["angle_deg"]),
        "target": term(target_err, SCORE_TOLERANCES["target_mm"]),
        "checks": (len(passed) / (len(passed) + len(failed))) if (passed or failed) else 1.0,
        "motor_units": 1.0 if mu_a == mu_r else 0.0,
    }
    overall = 100.0 * sum(SCORE_WEIGHTS[k] * v for k, v in comp.items())
    remarks = []
    if not same_side:
        remarks.append("wrong side: the attempt is planned on the other side of the patient")
    elif not side_matches_geometry(attempt_plan):
        remarks.append(f"wrong side: the attempt's entry lies on the patient's other side than "
                       f"'{attempt_plan.get('side')}'")
    if not same_level:
        remarks.append(f"wrong level: {attempt_plan.get('level')} instead of {reference_plan.get('level')}")
    if not same_proc:
        remarks.append(f"other procedure: {attempt_plan.get('procedure')} instead of "
                       f"{reference_plan.get('procedure')}")
    if remarks:
        overall = 0.0
    if failed:
        remarks.append("failed checks: " + ", ".join(failed))
    if mu_a != mu_r:
        remarks.append(f"motor units touched {list(mu_a)} instead of {list(mu_r)}")
    return Score(entry_error_mm=entry_err, target_error_mm=target_err, angle_difference_deg=angle,
                 depth_difference_mm=float(depth_a - depth_r), checks_passed=tuple(passed),
                 checks_failed=tuple(failed), motor_units_reference=mu_r, motor_units_attempt=mu_a,
                 motor_units_match=mu_a == mu_r, same_side=same_side, same_level=same_level,
                 same_procedure=same_proc, components=comp, overall=round(overall, 2),
                 remarks=tuple(remarks))


def score_summary(score: Score) -> list[str]:
    """Lines for showing a score beside the two plans (GUI, comparison image, reports)."""
    n_checks = len(score.checks_passed) + len(score.checks_failed)
    lines = [
        f"Score {score.overall:.0f}/100",
        f"Entry point {score.entry_error_mm:.1f} mm off",
        f"Trajectory angle {score.angle_difference_deg:.1f} deg off",
        f"Target {score.target_error_mm:.1f} mm off",
        f"Checks passed {len(score.checks_passed)}/{n_checks}",
        "Motor units " + (", ".join(score.motor_units_attempt) or "none")
        + (" (match)" if score.motor_units_match else
           f" (reference: {', '.join(score.motor_units_reference) or 'none'})"),
    ]
    return lines + [r[0].upper() + r[1:] for r in score.remarks]


# --------------------------------------------------------------------------------------
# Presentation anonymising
# --------------------------------------------------------------------------------------
#: Keys (compared lower-case without ``_``, ``-`` and spaces) that identify a patient or
#: study and are removed in presentation mode / teaching material.
IDENTITY_KEYS = frozenset({
    "identity", "patientname", "patientid", "patientsname", "patientbirthdate", "birthdate",
    "patientbirthname", "patientmothersbirthname", "otherpatientids", "otherpatientnames",
    "patientaddress", "patienttelephonenumbers", "patientage", "patientsex", "patientweight",
    "patientsize", "accessionnumber", "institutionname", "institutionaddress",
    "referringphysicianname", "performingphysicianname", "operatorsname", "physiciansofrecord",
    "studydate", "seriesdate", "acquisitiondate", "contentdate", "studytime", "seriestime",
    "studyid", "studyinstanceuid", "studyuid", "seriesinstanceuid", "seriesuid",
    "sopinstanceuid", "frameofreferenceuid", "stationname", "deviceserialnumber",
    "studydescription", "seriesdescription", "description", "notes", "checksum",
    "path", "filename", "sourcepath",
})


def _norm_key(k: str) -> str:
    return "".join(ch for ch in str(k).lower() if ch.isalnum())


def _strip_identity(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_identity(v) for k, v in obj.items() if _norm_key(k) not in IDENTITY_KEYS}
    if isinstance(obj, list):
        return [_strip_identity(v) for v in obj]
    return copy.deepcopy(obj)


def anonymise_for_presentation(plan_or_meta: dict, title: str) -> dict:
    """A copy of a plan dict or volume meta with patient identity replaced by a case title.

    Removes every identifying key at any depth (:data:`IDENTITY_KEYS`: identity block,
    names, IDs, dates, UIDs, descriptions, free-text notes, file paths, checksum) and adds
    ``"case_title": title``. Views and reports in presentation mode show the case title
    where they would show the patient. The source dict is not modified.

    Raises
    ------
    InvalidInputError
        When ``plan_or_meta`` is not a dict or ``title`` is empty.
    """
    if not isinstance(plan_or_meta, dict):
        raise InvalidInputError("anonymise_for_presentation expects a plan dict or metadata dict")
    title = str(title or "").strip()
    if not title:
        raise InvalidInputError("a presentation needs a case title (e.g. 'Case 1: L4-L5 herniation')")
    out = _strip_identity(plan_or_meta)
    out["case_title"] = title
    return out


# --------------------------------------------------------------------------------------
# Teaching sets
# --------------------------------------------------------------------------------------
TEACHING_SET_FORMAT = "spineplan-teaching-set"
TEACHING_SET_VERSION = 1
_MANIFEST = "manifest.json"
#: Plan keys a resident may see in practice mode (the case, never the answer).
RESIDENT_KEYS = ("format_version", "generator", "source", "level", "side", "procedure", "case")


def resident_view(plan: dict) -> dict:
    """The reference plan as a resident may see it: the case without the answer.

    Keeps only :data:`RESIDENT_KEYS` (level, side, procedure, clinical case, source
    geometry); entry, target, parameters, metrics, checks and motor units are removed,
    and so is any identity.
    """
    out = {k: copy.deepcopy(plan[k]) for k in RESIDENT_KEYS if k in plan}
    if isinstance(out.get("source"), dict):
        out["source"] = {k: v for k, v in out["source"].items() if _norm_key(k) not in IDENTITY_KEYS}
    return out


@dataclass
class TeachingCase:
    """One case of a teaching set; paths are absolute (extracted for a zip)."""

    id: str
    title: str
    image_path: Path
    labels_path: Path | None
    reference_plan: dict

    def resident_view(self) -> dict:
        """The case as shown to a resident (see :func:`resident_view`), with its title."""
        v = resident_view(self.reference_plan)
        v["case_title"] = self.title
        return v


@dataclass
class TeachingSet:
    """A set of teaching cases read by :func:`read_teaching_set`."""

    title: str
    cases: list[TeachingCase] = field(default_factory=list)
    root: Path | None = None
    manifest: dict = field(default_factory=dict)


#: DICOM attributes that must be empty in images put into a (shared) teaching set.
DICOM_IDENTITY_ATTRIBUTES = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs",
                             "OtherPatientNames", "PatientAddress", "AccessionNumber")
# (a subset of privacy.DICOM_IDENTITY_ATTRIBUTES: the ones that block putting an image in a set)


def _dicom_identity_found(src: Path) -> bool:
    """True when a DICOM file, or any DICOM file in a folder, carries patient identity."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    files = [src] if src.is_file() else [f for f in sorted(src.rglob("*")) if f.is_file()]
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True,
                                 specific_tags=list(DICOM_IDENTITY_ATTRIBUTES))
        except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError):
            continue  # not DICOM (NIfTI, NRRD, a README): nothing to check here
        for attr in DICOM_IDENTITY_ATTRIBUTES:
            if str(ds.get(attr, "") or "").strip():
                return True
    return False


def _copy_into(src: Path, dst_dir: Path, name: str) -> str:
    """Copy a file or a folder (DICOM series) into ``dst_dir``; return the relative name."""
    if src.is_dir():
        shutil.copytree(src, dst_dir / name)
        return name
    if not src.is_file():
        raise InvalidInputError(f"teaching-set image not found: {src}")
    suffix = "".join(src.suffixes[-2:]) if src.name.endswith(".nii.gz") else src.suffix
    fname = name + suffix
    shutil.copy2(src, dst_dir / fname)
    return fname


def write_teaching_set(path: str | os.PathLike, cases: Sequence[dict], title: str = "Teaching set",
                       allow_identified_images: bool = False) -> Path:
    """Bundle cases and their reference plans as a folder or (``.zip``) a zip file.

    Parameters
    ----------
    path : path
        Destination folder (must not exist or be empty) or ``*.zip`` file.
    cases : sequence of dict
        ``{"title", "image_path", "labels_path" (optional), "reference_plan"}``; the
        reference plan is a plan dict or the path of a plan JSON file.
    title : str
        Title of the set.
    allow_identified_images : bool
        By default a DICOM image carrying patient identity (name, ID, birth date, ...)
        is refused: teaching sets are shared. Set True only for internal use.

    Returns
    -------
    Path
        The written folder or zip. Images are copied as given (use de-identified images,
        e.g. NIfTI); reference plans are stored without identity. Written atomically.
    """
    path = Path(path)
    if not cases:
        raise InvalidInputError("a teaching set needs at least one case")
    as_zip = path.suffix.lower() == ".zip"
    if not as_zip and path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InvalidInputError(f"teaching-set folder {path} exists and is not empty; choose a new folder")
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".teach-", dir=parent))
    os.chmod(tmp, 0o755)  # mkdtemp creates 0700; the set is meant to be shared
    try:
        entries = []
        for n, c in enumerate(cases, start=1):
            cid = f"case{n:02d}"
            if "title" not in c or "image_path" not in c or "reference_plan" not in c:
                raise InvalidInputError(f"teaching case {n} needs title, image_path and reference_plan")
            plan = c["reference_plan"]
            if not isinstance(plan, dict):
                try:
                    plan = json.loads(Path(plan).read_text())
                except (OSError, ValueError) as exc:
                    raise InvalidInputError(f"reference plan of case {n} unreadable: {exc}") from None
            check_plan(plan)  # procedure, side, level, entry/target, side vs geometry
            src = Path(c["image_path"])
            if not src.exists():
                raise InvalidInputError(f"teaching-set image of case {n} not found: {src}")
            if not allow_identified_images and _dicom_identity_found(src):
                raise InvalidInputError(f"the image of case {n} carries patient identity (DICOM "
                                        f"name/ID); anonymise it or export it as NIfTI first")
            cdir = tmp / cid
            cdir.mkdir()
            image = _copy_into(src, cdir, "image")
            labels = None
            if c.get("labels_path"):
                labels = _copy_into(Path(c["labels_path"]), cdir, "labels")
            from .privacy import without_identity

            clean = {k: v for k, v in without_identity(plan).items() if k != "checksum"}
            (cdir / "reference_plan.json").write_text(json.dumps(clean, indent=2, sort_keys=True))
            entries.append({"id": cid, "title": str(c["title"]),
                            "image": f"{cid}/{image}",
                            "labels": f"{cid}/{labels}" if labels else None,
                            "reference_plan": f"{cid}/reference_plan.json",
                            "level": plan.get("level"), "procedure": plan.get("procedure")})
        manifest = {"format": TEACHING_SET_FORMAT, "format_version": TEACHING_SET_VERSION,
                    "title": str(title),
                    "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "cases": entries}
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2))
        if as_zip:
            tmpzip = parent / f".{path.name}.tmp"
            with zipfile.ZipFile(tmpzip, "w", zipfile.ZIP_DEFLATED) as zf:
                for f in sorted(tmp.rglob("*")):
                    if f.is_file():
                        zf.write(f, f.relative_to(tmp).as_posix())
            os.replace(tmpzip, path)
        else:
            if path.exists():
                path.rmdir()
            os.replace(tmp, path)
            tmp = None  # moved
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _safe_member(name: str) -> str:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not name:
        raise InvalidInputError(f"teaching set contains an unsafe path {name!r}")
    return name


def read_teaching_set(path: str | os.PathLike, extract_to: str | os.PathLike | None = None) -> TeachingSet:
    """Read a teaching set folder or zip written by :func:`write_teaching_set`.

    A zip is extracted to ``extract_to`` (default: a new temporary folder) so the images
    can be loaded from files. Raises :class:`PlanFileError` for an unknown format or a
    newer format version, :class:`InvalidInputError` for missing files or unsafe paths.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"teaching set not found: {path}")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise InvalidInputError(f"{path} is neither a teaching-set folder nor a zip")
        root = Path(extract_to) if extract_to else Path(tempfile.mkdtemp(prefix="spineplan-teach-"))
        root.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path) as zf:
            for m in zf.namelist():
                _safe_member(m)
            zf.extractall(root)
    else:
        root = path
    mf = root / _MANIFEST
    try:
        manifest = json.loads(mf.read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"teaching set {path} has no {_MANIFEST}") from None
    except ValueError:
        raise PlanFileError(f"teaching set {path}: {_MANIFEST} is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != TEACHING_SET_FORMAT:
        raise PlanFileError(f"{path} is not a spineplan teaching set")
    ver = manifest.get("format_version")
    if not isinstance(ver, int) or ver < 1 or ver > TEACHING_SET_VERSION:
        raise PlanFileError(f"teaching set format version {ver!r} is not supported "
                            f"(this spineplan reads up to {TEACHING_SET_VERSION}); update spineplan")
    cases = []
    for e in manifest.get("cases") or []:
        try:
            img = root / _safe_member(e["image"])
            lab = root / _safe_member(e["labels"]) if e.get("labels") else None
            plan_file = root / _safe_member(e["reference_plan"])
            plan = json.loads(plan_file.read_text())
        except (KeyError, TypeError):
            raise PlanFileError(f"teaching set {path}: a case entry is incomplete") from None
        except FileNotFoundError as exc:
            raise InvalidInputError(f"teaching set {path} is missing {exc.filename}") from None
        except ValueError:
            raise PlanFileError(f"teaching set {path}: a reference plan is not valid JSON") from None
        if not img.exists() or (lab is not None and not lab.exists()):
            raise InvalidInputError(f"teaching set {path} is missing the files of case {e.get('id')}")
        cases.append(TeachingCase(id=str(e.get("id")), title=str(e.get("title", "")), image_path=img,
                                  labels_path=lab, reference_plan=plan))
    if not cases:
        raise PlanFileError(f"teaching set {path} has no cases")
    return TeachingSet(title=str(manifest.get("title", "")), cases=cases, root=root, manifest=manifest)
