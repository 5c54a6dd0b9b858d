"""The marked lesion (herniated fragment, stenosis, sequestrum) and where it lies.

A :class:`Lesion` is a centre in LPS mm with an extent (a sphere, an ellipsoid or a painted
mask's summary). :func:`locate_lesion` places it relative to the labelled anatomy: the disc
level, the side, the zone and the migration from the disc plane. No Qt, no VTK.

Zones, by the lesion centre's lateral offset ``|u|`` from the midline (the disc centre,
along the disc frame's left-right axis), with landmarks measured from the labels:

============== ==========================================================================
central        ``|u| <= ZONE_CENTRAL_FRACTION x`` dural-sac half-width
paracentral    up to the dural sac's lateral edge
subarticular   up to the facet joint (the lateral recess under the superior articular process)
foraminal      up to the lateral edge of the superior articular process (pedicle line)
extraforaminal beyond it
============== ==========================================================================

Migration sign convention: ``migration_mm`` is the signed distance of the lesion centre from
the disc plane along the disc normal, which points superiorly: **positive = cranial (up),
negative = caudal (down)**.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidInputError, PlanningError
from ..volume import Volume
from .case import ZONES

__all__ = ["LesionKind", "Lesion", "LesionLocation", "LESION_PARAMETERS", "locate_lesion",
           "lesion_from_mask", "parse_lesion_arg", "lesion_from_dict", "frame_coords",
           "lesion_summary_text", "landmarks_at", "zone_from_offset", "mark_lesion_command",
           "candidate_herniations", "NO_LESION_TEXT"]

#: What a plan without a marked lesion says (report, CLI, comparison).
NO_LESION_TEXT = "no lesion marked"

#: Named numbers of the lesion model (shown with the clinical parameters).
LESION_PARAMETERS = {
    "lesion_default_radius_mm": 5.0,     # a point mark without an extent
    "zone_central_fraction": 0.4,        # central zone: within 40 % of the sac half-width
    "sac_half_width_default_mm": 8.0,    # when no dural sac is labelled (estimated)
    "facet_offset_default_mm": 16.0,     # facet joint from the midline when not found
    "foramen_width_default_mm": 7.0,     # SAP/pedicle width lateral of the facet when not measured
    "migration_none_mm": 3.0,            # |migration| up to this: not migrated
    "landmark_slab_mm": 3.0,             # half-thickness of the slabs landmarks are measured in
    "candidate_beyond_wall_mm": 2.0,     # disc material this far behind the bodies' posterior line
    "candidate_min_mm3": 20.0,           # smaller candidates are label noise
    "candidate_bin_mm": 2.0,             # lateral bins of the posterior-wall profile
}


class LesionKind(str, enum.Enum):
    """What the surgeon marked."""

    HERNIATION = "herniation"   # contained or extruded disc material still joined to the disc
    STENOSIS = "stenosis"
    SEQUESTRUM = "sequestrum"   # a free fragment: not treated by disc ablation


@dataclass
class Lesion:
    """A marked lesion in LPS mm.

    ``radius_mm`` is a sphere's radius; ``semi_axes_mm`` (optional) an ellipsoid's along L, P
    and S; ``mask`` (optional) the summary of a painted region. :attr:`extent_mm` is the one
    radius the reach checks use.
    """

    centre_lps: np.ndarray
    radius_mm: float = LESION_PARAMETERS["lesion_default_radius_mm"]
    kind: LesionKind = LesionKind.HERNIATION
    semi_axes_mm: tuple | None = None
    mask: dict | None = None

    def __post_init__(self):
        self.centre_lps = np.asarray(self.centre_lps, float).reshape(3)
        if not np.all(np.isfinite(self.centre_lps)):
            raise InvalidInputError("the lesion centre must be 3 finite numbers (LPS mm)")
        self.kind = LesionKind(self.kind)
        if self.semi_axes_mm is not None:
            self.semi_axes_mm = tuple(float(x) for x in self.semi_axes_mm)
            if len(self.semi_axes_mm) != 3 or min(self.semi_axes_mm) <= 0:
                raise InvalidInputError("lesion semi-axes must be 3 positive numbers (mm)")
        if not (math.isfinite(self.radius_mm) and self.radius_mm > 0):
            raise InvalidInputError(f"the lesion radius must be a positive number of mm, got {self.radius_mm}")

    @property
    def extent_mm(self) -> float:
        """Radius used for reach: the sphere's, an ellipsoid's equal-volume radius."""
        if self.semi_axes_mm is not None:
            return float(np.prod(self.semi_axes_mm) ** (1.0 / 3.0))
        return float(self.radius_mm)

    def to_dict(self) -> dict:
        return {"kind": self.kind.value, "centre_lps": [float(x) for x in self.centre_lps],
                "radius_mm": float(self.radius_mm),
                "semi_axes_mm": None if self.semi_axes_mm is None else list(self.semi_axes_mm),
                "mask": self.mask}


def lesion_from_dict(d: dict) -> Lesion:
    """The :class:`Lesion` of a plan's ``lesion`` dict."""
    return Lesion(centre_lps=d["centre_lps"], radius_mm=float(d.get("radius_mm") or 5.0),
                  kind=d.get("kind", "herniation"), semi_axes_mm=d.get("semi_axes_mm"),
                  mask=d.get("mask"))


def parse_lesion_arg(text: str, kind: str = "herniation") -> Lesion:
    """``"X,Y,Z[,R]"`` (LPS mm, radius default 5 mm) -> Lesion; InvalidInputError when bad."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) not in (3, 4) or not all(math.isfinite(v) for v in vals):
        raise InvalidInputError(f"--lesion must be X,Y,Z or X,Y,Z,R (LPS mm), got {text!r}")
    r = vals[3] if len(vals) == 4 else LESION_PARAMETERS["lesion_default_radius_mm"]
    if r <= 0:
        raise InvalidInputError(f"--lesion radius must be > 0 mm, got {r:g}")
    return Lesion(vals[:3], r, kind=kind)


def lesion_from_mask(mask: Volume, image: Volume | None = None, kind: str = "herniation") -> Lesion:
    """A lesion from a painted mask (non-zero voxels): centroid, equal-volume radius, summary."""
    if image is not None and not image.same_grid(mask):
        raise InvalidInputError("the lesion mask is not on the image grid (paint it on this image)")
    kji = np.argwhere(np.asarray(mask.array) != 0)
    if len(kji) == 0:
        raise InvalidInputError("the lesion mask is empty (no non-zero voxel)")
    lps = mask.lps_points_from_ijk(kji[:, ::-1].astype(float))
    vol_mm3 = float(len(kji) * np.prod(mask.spacing))
    r = (3.0 * vol_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0)
    summary = {"voxels": int(len(kji)), "volume_mm3": round(vol_mm3, 1),
               "bbox_min_lps": [round(float(x), 2) for x in lps.min(0)],
               "bbox_max_lps": [round(float(x), 2) for x in lps.max(0)]}
    return Lesion(lps.mean(0), float(r), kind=kind, mask=summary)


@dataclass
class LesionLocation:
    """Where a lesion lies: disc level, zone, side and migration (see the module docstring)."""

    level: str
    zone: str
    side: str                 # "left" | "right" | "midline" (central zone)
    migration_mm: float       # + cranial, - caudal, from the disc plane along its normal
    migration: str            # "cranial" | "caudal" | "none"
    lateral_mm: float         # signed offset from the midline, + towards the patient's left
    posterior_mm: float       # from the disc centre along the disc's posterior axis
    landmarks: dict = field(default_factory=dict)
    estimated: list = field(default_factory=list)  # landmarks taken from defaults

    def to_dict(self) -> dict:
        return {"level": self.level, "zone": self.zone, "side": self.side,
                "migration_mm": round(float(self.migration_mm), 1), "migration": self.migration,
                "lateral_mm": round(float(self.lateral_mm), 1),
                "posterior_mm": round(float(self.posterior_mm), 1),
                "landmarks": {k: round(float(v), 1) for k, v in self.landmarks.items()},
                "estimated": list(self.estimated)}


def frame_coords(unit_, p) -> np.ndarray:
    """(lateral, posterior, cranial) mm of LPS point(s) ``p`` in the unit's disc frame."""
    g = unit_.disc_geometry
    q = np.asarray(p, float) - np.asarray(g.center_lps)
    return np.stack([q @ np.asarray(g.lr_lps), q @ np.asarray(g.ap_lps), q @ np.asarray(g.normal_lps)], -1)


def _nearest_unit(anat, centre):
    best, best_d = None, np.inf
    for u in anat.units:
        if u.disc_geometry is None:
            continue
        lat, post, up = frame_coords(u, centre)
        d = abs(up) + 1e-3 * math.hypot(lat, post)  # nearest disc plane; ties by distance
        if d < best_d:
            best, best_d = u, d
    if best is None:
        raise PlanningError("no labelled disc to place the lesion against")
    return best


def _landmarks(anat, u) -> tuple[dict, list]:
    """Sac half-width, facet offset and SAP lateral edge (mm from the midline) at unit ``u``."""
    P = LESION_PARAMETERS
    slab = P["landmark_slab_mm"]
    out, est = {}, []
    sac = anat.canal_points()
    half = None
    if len(sac):
        lat, post, up = frame_coords(u, sac).T
        sel = (np.abs(up) <= slab) & (np.abs(lat) <= 30) & (np.abs(post) <= 60)
        if sel.sum() >= 5:
            half = float((lat[sel].max() - lat[sel].min()) / 2)
    if half is None:
        half = P["sac_half_width_default_mm"]
        est.append("sac_half_width_mm")
    out["sac_half_width_mm"] = half
    offs, facets = [], []
    for side in ("left", "right"):
        f = u.facet_lps(side)
        if f is not None:
            offs.append(abs(float(frame_coords(u, f)[0])))
            facets.append(np.asarray(f, float))
    if offs:
        fu = float(np.mean(offs))
    else:
        fu = P["facet_offset_default_mm"]
        est.append("facet_offset_mm")
    out["facet_offset_mm"] = max(fu, half)
    edge = None
    if facets:
        lab = anat.labels
        lo = np.min(facets, 0) - 40.0
        hi = np.max(facets, 0) + 40.0
        ijk = np.array([lab.ijk_points_from_lps(np.array([[x, y, z]]))[0]
                        for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        a = np.clip(np.floor(ijk.min(0)).astype(int), 0, np.array(lab.size_ijk))
        b = np.clip(np.ceil(ijk.max(0)).astype(int) + 1, 0, np.array(lab.size_ijk))
        sub = lab.array[a[2]:b[2], a[1]:b[1], a[0]:b[0]]
        kji = np.argwhere(sub == u.lower)
        if len(kji):
            pts = lab.lps_points_from_ijk((kji[:, ::-1] + a).astype(float))
            lat, post, up = frame_coords(u, pts).T
            edges = []
            for f in facets:
                fl, fp, fw = frame_coords(u, f)
                sel = (np.abs(post - fp) <= slab) & (np.abs(up - fw) <= slab) & (lat * np.sign(fl) > 0)
                if sel.any():
                    edges.append(float(np.abs(lat[sel]).max()))
            if edges:
                edge = float(np.mean(edges))
    if edge is None or edge <= out["facet_offset_mm"]:
        edge = out["facet_offset_mm"] + P["foramen_width_default_mm"]
        est.append("foramen_lateral_mm")
    out["foramen_lateral_mm"] = edge
    return out, est


def landmarks_at(anat, u) -> dict:
    """The zone landmarks (mm from the midline) at unit ``u``, cached on the anatomy."""
    cache = anat.__dict__.setdefault("_lesion_landmarks", {})
    if u.name not in cache:
        cache[u.name] = _landmarks(anat, u)
    return cache[u.name][0]


def zone_from_offset(lateral_abs_mm: float, landmarks: dict) -> str:
    """The zone of a lateral offset (mm from the midline) given the measured landmarks."""
    half = landmarks["sac_half_width_mm"]
    if lateral_abs_mm <= LESION_PARAMETERS["zone_central_fraction"] * half:
        return ZONES[0]
    if lateral_abs_mm <= half:
        return ZONES[1]
    if lateral_abs_mm <= landmarks["facet_offset_mm"]:
        return ZONES[2]
    if lateral_abs_mm <= landmarks["foramen_lateral_mm"]:
        return ZONES[3]
    return ZONES[4]


def _disc_plane(anat, u, lesion: Lesion):
    """Centre and normal (LPS) of the disc of ``u`` refitted without the herniated material.

    Disc material that left the disc (the herniation itself, labelled as disc) tilts a fit of
    the whole label towards it; the plane is refitted on the disc voxels inside the disc's
    footprint and away from the lesion. Falls back to the motor unit's frame.
    """
    g = u.disc_geometry
    c0, n0 = np.asarray(g.center_lps, float), np.asarray(g.normal_lps, float)
    if u.disc is None:
        return c0, n0
    lab = anat.labels
    half = max(abs(g.ap_range_mm[0]), abs(g.ap_range_mm[1]), abs(g.lr_range_mm[0]),
               abs(g.lr_range_mm[1])) + 5.0
    corners = np.array([c0 + np.array([x, y, z]) for x in (-half, half) for y in (-half, half)
                        for z in (-half, half)])
    ijk = lab.ijk_points_from_lps(corners)
    a = np.clip(np.floor(ijk.min(0)).astype(int), 0, np.array(lab.size_ijk))
    b = np.clip(np.ceil(ijk.max(0)).astype(int) + 1, 0, np.array(lab.size_ijk))
    kji = np.argwhere(lab.array[a[2]:b[2], a[1]:b[1], a[0]:b[0]] == u.disc)
    if len(kji) < 50:
        return c0, n0
    pts = lab.lps_points_from_ijk((kji[:, ::-1] + a).astype(float))
    lat, post, _up = frame_coords(u, pts).T
    lo, hi = g.ap_range_mm
    wl, wh = g.lr_range_mm
    inside = (((post - (lo + hi) / 2) / max((hi - lo) / 2, 1.0)) ** 2
              + ((lat - (wl + wh) / 2) / max((wh - wl) / 2, 1.0)) ** 2 <= 0.85 ** 2)
    away = np.linalg.norm(pts - lesion.centre_lps, axis=1) > lesion.extent_mm + 3.0
    sel = pts[inside & away]
    if len(sel) < 50:
        return c0, n0
    c = sel.mean(0)
    n = np.linalg.svd(sel - c, full_matrices=False)[2][-1]
    return c, (n if n @ n0 > 0 else -n)


def locate_lesion(anat, lesion: Lesion) -> LesionLocation:
    """Disc level, zone, side and migration of ``lesion`` on the labelled anatomy.

    Parameters
    ----------
    anat : Anatomy
        Labels with discs (and the dural sac where present) and their motor units.
    lesion : Lesion

    Returns
    -------
    LesionLocation
        Cached per anatomy and lesion centre (the checks re-use it while dragging).
    """
    cache = anat.__dict__.setdefault("_lesion_locations", {})
    key = tuple(np.round(lesion.centre_lps, 3))
    if key in cache:
        return cache[key]
    u = _nearest_unit(anat, lesion.centre_lps)
    lat, post, _ = (float(x) for x in frame_coords(u, lesion.centre_lps))
    c, n = _disc_plane(anat, u, lesion)
    up = float((lesion.centre_lps - c) @ n)
    landmarks_at(anat, u)
    marks, est = anat.__dict__["_lesion_landmarks"][u.name]
    zone = zone_from_offset(abs(lat), marks)
    side = "midline" if zone == "central" else ("left" if lat > 0 else "right")
    none = LESION_PARAMETERS["migration_none_mm"]
    mig = "none" if abs(up) <= none else ("cranial" if up > 0 else "caudal")
    loc = LesionLocation(u.name, zone, side, up, mig, lat, post, marks, est)
    cache[key] = loc
    return loc


def lesion_summary_text(lesion: dict | None) -> str:
    """One line for reports and the CLI: ``"herniation at L4-L5, paracentral left, ..."``."""
    if not lesion:
        return NO_LESION_TEXT
    mig = float(lesion.get("migration_mm", 0.0))
    where = (f"{lesion.get('zone', '?')} {lesion.get('side', '')}".strip())
    m = ("not migrated" if lesion.get("migration") == "none" else
         f"migrated {abs(mig):.1f} mm {'up' if mig > 0 else 'down'}")
    ext = (f"mask {lesion['mask']['volume_mm3']:.0f} mm3" if lesion.get("mask")
           else f"radius {float(lesion.get('radius_mm', 0)):.1f} mm")
    c = ", ".join(f"{float(x):.1f}" for x in lesion.get("centre_lps", []))
    return (f"{lesion.get('kind', 'lesion')} at {lesion.get('level', '?')}, {where}, {m} "
            f"(centre LPS {c}; {ext}; migration + = cranial)")


def _posterior_wall(lat, post, bins, gap_mm):
    """Per lateral bin, the bodies' posterior wall: the end of the first run of bone going
    posteriorly from the body centre (the canal is the first gap), NaN where unknown."""
    wall = np.full(len(bins) - 1, np.nan)
    which = np.digitize(lat, bins) - 1
    for b in range(len(bins) - 1):
        p = np.sort(post[(which == b) & (post >= 0)])
        if len(p) < 3:
            continue
        gaps = np.where(np.diff(p) > gap_mm)[0]
        wall[b] = p[gaps[0]] if len(gaps) else p[-1]
    return wall


def candidate_herniations(anat, levels=None) -> list[tuple[str, Lesion]]:
    """Candidate herniations for the surgeon to accept or edit: disc material behind the
    posterior line of the adjacent vertebral bodies (into the canal or the foramen).

    Parameters
    ----------
    anat : Anatomy
    levels : sequence of str, optional
        Motor units to search (default: every unit with a disc).

    Returns
    -------
    list of (level, Lesion)
        Each connected group of such disc voxels of at least ``candidate_min_mm3``: its
        centroid, equal-volume radius and mask summary; largest first within a level.
    """
    from scipy import ndimage

    P = LESION_PARAMETERS
    lab = anat.labels
    voxel_mm3 = float(np.prod(lab.spacing))
    gap = 2.0 * max(lab.spacing)
    out = []
    arr = lab.array
    objs = ndimage.find_objects(arr if arr.dtype in (np.uint8, np.uint16, np.int16, np.int32)
                                else arr.astype(np.int32))

    def voxels(value):  # (k, j, i) of a label, searched in its bounding box only
        if value - 1 >= len(objs) or objs[value - 1] is None:
            return np.zeros((0, 3), int)
        box = objs[value - 1]
        return np.argwhere(arr[box] == value) + [s.start for s in box]

    for u in anat.units:
        if u.disc is None or u.disc_geometry is None or (levels and u.name not in levels):
            continue
        g = u.disc_geometry
        kji = voxels(u.disc)
        if len(kji) == 0:
            continue
        D = lab.lps_points_from_ijk(kji[:, ::-1].astype(float))
        dl, dp, du = frame_coords(u, D).T
        half = max(abs(g.lr_range_mm[0]), abs(g.lr_range_mm[1]))
        bins = np.arange(-half, half + P["candidate_bin_mm"], P["candidate_bin_mm"])
        walls = []
        for vert, sgn in ((u.upper, 1.0), (u.lower, -1.0)):
            vk = voxels(vert)
            V = lab.lps_points_from_ijk(vk[:, ::-1].astype(float))
            vl, vp, vu = frame_coords(u, V).T
            band = (sgn * vu >= g.middle_height_mm / 2 + 1.0) & (sgn * vu <= g.middle_height_mm / 2 + 8.0)
            walls.append(_posterior_wall(vl[band], vp[band], bins, gap))
        wall = np.fmax(walls[0], walls[1])  # NaN only where neither body has a wall
        if np.all(np.isnan(wall)):
            continue
        which = np.clip(np.digitize(dl, bins) - 1, 0, len(wall) - 1)
        w = wall[which]
        beyond = np.isfinite(w) & (dp > w + P["candidate_beyond_wall_mm"])
        if not beyond.any():
            continue
        sel = kji[beyond]
        lo = sel.min(0)
        mask = np.zeros(tuple(sel.max(0) - lo + 1), bool)
        mask[tuple((sel - lo).T)] = True
        comp, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
        found = []
        for k in range(1, n + 1):
            pts = np.argwhere(comp == k) + lo
            vol = len(pts) * voxel_mm3
            if vol < P["candidate_min_mm3"]:
                continue
            lps = lab.lps_points_from_ijk(pts[:, ::-1].astype(float))
            r = (3.0 * vol / (4.0 * np.pi)) ** (1.0 / 3.0)
            found.append(Lesion(lps.mean(0), float(r), mask={
                "voxels": int(len(pts)), "volume_mm3": round(vol, 1),
                "bbox_min_lps": [round(float(x), 2) for x in lps.min(0)],
                "bbox_max_lps": [round(float(x), 2) for x in lps.max(0)]}))
        out += [(u.name, les) for les in sorted(found, key=lambda x: -x.mask["volume_mm3"])]
    return out


def mark_lesion_command(scene, lesion: Lesion | None):
    """The undoable step that sets (or, with None, clears) ``scene.lesion``; pushing it emits
    ``scene.events.lesion`` after do and undo."""
    from ..commands import SetAttrCommand

    return SetAttrCommand(scene, "lesion", lesion, notify=lambda: scene.events.lesion.emit(scene.lesion),
                          text="Clear lesion" if lesion is None else "Mark lesion")
