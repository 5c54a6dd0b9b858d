"""The storyboard of a rehearsal: :func:`rehearsal_steps` turns a plan into the procedure's steps
(narration, instrument tip on the trajectory, camera, layer opacities, structures at risk),
with the named parameters a teacher can change. Pure: no Qt, no VTK (render/ draws them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..segmentation import labels as L
from .plans import _level_labels, _procedure, _side, check_plan, trajectory_lps

__all__ = [
    "CAMERA_DISTANCE_END_MM", "CAMERA_DISTANCE_START_MM", "CAMERA_OFFSET_DEG", "Camera",
    "DILATOR_DEPTH_FRACTION", "DISC_ENTRY_BEFORE_TARGET_MM", "FACET_BEFORE_TARGET_MM",
    "INSTRUMENT_VIEW_DISTANCE_MM", "ROOT_REGION_CRANIAL_MM", "ROOT_REGION_RADIUS_MM", "Step",
    "Structure", "TRAJECTORY_SAMPLE_MM", "approach_camera", "instrument_view_camera",
    "rehearsal_steps",
]


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
