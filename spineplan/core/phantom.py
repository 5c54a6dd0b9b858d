"""Synthetic lumbar-spine CT phantom with exact ground truth.

The phantom is built in LPS millimetres from simple solids, so every number a
test needs (disc heights, segmental angles, facet-joint centres, canal size, the
left marker) is known exactly. It is CT-like (HU) with an axial identity grid;
other acquisitions are made by resampling/re-writing it in tests.

Geometry of one vertebra, in its own frame (u = patient left, v = posterior,
w = along the column, origin at the body centre): elliptic body (half-width
``BODY_A``, half-depth ``BODY_B``, height ``BODY_H``), pedicles, laminae, a
spinous process, transverse processes, and articular processes around each
disc level: the inferior articular process (IAP) of the upper vertebra medial,
the superior articular process (SAP) of the lower vertebra lateral, the facet
joint gap between them. Lordosis comes from wedge-shaped discs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .segmentation import labels as L
from .volume import Volume

__all__ = ["Phantom", "make_phantom", "DEFAULT_DISC_HEIGHTS"]

# Body and posterior-element dimensions (mm), named so tests and docs can refer to them.
BODY_A = 26.0      # half-width of the vertebral body (left-right)
BODY_B = 20.0      # half-depth (antero-posterior)
BODY_H = 26.0      # body height
CANAL_V = BODY_B + 9.0   # canal centre, posterior of the body centre
CANAL_A = 10.0     # canal half-width
CANAL_B = 8.0      # canal half-depth (bony AP diameter = 16 mm)
SAC_A, SAC_B = 8.5, 6.5  # dural sac half-axes
IAP_U = (10.0, 15.0)   # |u| range of the inferior articular process (upper vertebra)
FACET_GAP_U = (15.0, 17.0)  # |u| range of the facet joint space
SAP_U = (17.0, 23.0)   # |u| range of the superior articular process (lower vertebra)
FACET_V = (CANAL_V + 1.0, CANAL_V + 12.0)  # v range of the articular processes
FACET_W = (-10.0, 8.0)  # w range of the joint, relative to the disc centre
AORTA_UV = (17.0, -26.0)  # aorta centre (radius 12): overlaps the body's front ellipse by 1 mm
RIB_HEAD_UVW = (25.0, 14.0, 4.0)  # rib head centre (radius 4.5): 1 mm lateral of the pedicle
RIB_TP_END_U = 28.0     # a rib-bearing vertebra's transverse processes end here
SKIN_POSTERIOR_Y = 115.0  # posterior skin, LPS y of the midline at the L3 body centre level

HU = dict(air=-1000, fat=-90, soft=40, csf=10, epidural=-60, disc=90, nucleus=105,
          cancellous=220, cortical=800, posterior=650, marker=2500, ilium=600)

# Disc heights (anterior, posterior) in mm for the disc BELOW each vertebra.
DEFAULT_DISC_HEIGHTS = {
    "T12": (8.0, 6.0), "L1": (9.0, 7.0), "L2": (10.0, 7.0), "L3": (11.0, 8.0),
    "L4": (12.0, 8.0), "L5": (13.0, 8.0), "L6": (12.0, 8.0), "T11": (7.0, 6.0),
    "T13": (7.0, 6.0),
}
# Above T11 the discs are thin and nearly parallel (no lordosis); C1-T10 take this.
_UPPER_DISC = (5.0, 5.0)


def _frame(theta: float) -> np.ndarray:
    """Columns u, v, w (LPS) of a frame tilted by ``theta`` (rad) about the left axis."""
    u = np.array([1.0, 0.0, 0.0])
    v = np.array([0.0, np.cos(theta), np.sin(theta)])
    w = np.array([0.0, -np.sin(theta), np.cos(theta)])
    return np.stack([u, v, w], axis=1)


@dataclass
class Phantom:
    """A synthetic CT with exact labels and the ground-truth numbers behind it."""

    ct: Volume
    labels: Volume
    truth: dict = field(default_factory=dict)


class _Canvas:
    def __init__(self, lo: np.ndarray, shape_ijk: tuple[int, int, int], spacing: float):
        self.lo, self.s = lo, spacing
        ni, nj, nk = shape_ijk
        self.ct = np.full((nk, nj, ni), HU["air"], np.int16)
        self.lab = np.zeros((nk, nj, ni), np.uint16)

    def paint(self, origin, R, box_local, inside: Callable, hu, label=None, where=None):
        """Paint voxels whose local coords (u, v, w) satisfy ``inside`` within ``box_local``."""
        corners = np.array([[a, b, c] for a in box_local[0] for b in box_local[1]
                            for c in box_local[2]])
        pts = corners @ R.T + origin
        lo = np.floor((pts.min(0) - self.lo) / self.s).astype(int) - 1
        hi = np.ceil((pts.max(0) - self.lo) / self.s).astype(int) + 2
        nk, nj, ni = self.ct.shape
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, [ni, nj, nk])
        if np.any(hi <= lo):
            return
        x = self.lo[0] + self.s * np.arange(lo[0], hi[0])
        y = self.lo[1] + self.s * np.arange(lo[1], hi[1])
        z = self.lo[2] + self.s * np.arange(lo[2], hi[2])
        Z, Y, X = np.meshgrid(z, y, x, indexing="ij")
        d = np.stack([X - origin[0], Y - origin[1], Z - origin[2]], -1)
        loc = d @ R  # local coordinates (u, v, w)
        m = inside(loc[..., 0], loc[..., 1], loc[..., 2])
        sl = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        if where is not None:
            m &= where(self.ct[sl], self.lab[sl])
        if callable(hu):
            self.ct[sl][m] = hu(loc[..., 0], loc[..., 1], loc[..., 2])[m]
        else:
            self.ct[sl][m] = hu
        if label is not None:
            self.lab[sl][m] = label


def _box(u, v, w):
    return lambda U, V, W: ((U >= u[0]) & (U <= u[1]) & (V >= v[0]) & (V <= v[1])
                            & (W >= w[0]) & (W <= w[1]))


def _mirror(u):
    return [(u[0], u[1]), (-u[1], -u[0])]


def make_phantom(levels: Sequence[str] = ("T12", "L1", "L2", "L3", "L4", "L5"),
                 spacing: float = 1.0,
                 disc_heights: dict | None = None,
                 sacral_slope_deg: float = 30.0,
                 slip_mm: dict | None = None,
                 herniation: dict | None = None,
                 iliac_crest: bool = True,
                 aorta_hu: float | None = None,
                 left_marker: bool = True,
                 ribs: Sequence[str] = (),
                 sacralised_l5: bool = False) -> Phantom:
    """Build a lumbar-spine CT phantom with exact labels.

    Parameters
    ----------
    levels : sequence of str
        Vertebrae from cranial to caudal, e.g. ``("L1", ..., "L5")``; a sacrum (S1)
        is always added below the last one. ``"L6"`` makes a transitional spine.
    spacing : float
        Isotropic voxel size in mm.
    disc_heights : dict
        ``{"L4": (anterior_mm, posterior_mm)}`` for the disc below that vertebra.
    sacral_slope_deg : float
        Tilt of the S1 endplate from the axial plane (facing anteriorly).
    slip_mm : dict
        ``{"L4-L5": 5.0}``: anterior slip of the upper vertebra over the lower one.
    herniation : dict
        ``{"level": "L4-L5", "side": "left", "zone": "paracentral", "size_mm": 6,
        "migration_mm": 0}``: disc material protruding posteriorly into the canal (labelled as
        that disc), its centre ``migration_mm`` from the disc plane along the disc normal
        (+ cranial, - caudal); the truth adds ``center_lps`` and ``migration_mm``.
    iliac_crest : bool
        Add iliac wings beside L5-S1 (bone, label 0).
    aorta_hu : float, optional
        A contrast-filled aorta of this HU (label 0), 24 mm across, on the left in front of
        the bodies and touching them, down to L4 (where it divides).
    ribs : sequence of str
        Vertebrae carrying a pair of ribs (bone, label 0), e.g. ``("T11", "T12")``: the
        last rib-bearing vertebra is how T12 is told from L1.
    sacralised_l5 : bool
        The lowest lumbar vertebra's transverse processes grow down into the sacral ala on
        both sides (a bony bar, labelled as that vertebra): Castellvi type III transitional
        anatomy.
    left_marker : bool
        A 5 mm metal bead in the soft tissue on the patient's LEFT (+x, LPS).

    Returns
    -------
    Phantom
        ``ct`` (int16 HU), ``labels`` (uint16, VerSe numbering + 300 canal) and ``truth``.
    """
    heights = dict(DEFAULT_DISC_HEIGHTS)
    heights.update(disc_heights or {})
    slip_mm = dict(slip_mm or {})
    names = list(levels) + ["S1"]
    for n in names:
        if n not in L.LABEL_FROM_NAME:
            raise ValueError(f"unknown vertebra name {n!r}")

    # --- stack the column from the sacrum upward -----------------------------------
    theta = np.deg2rad(sacral_slope_deg)
    R_s = _frame(theta)
    # S1 top endplate centre placed so that the column's middle is near y = 0.
    top = np.array([0.0, 0.0, 0.0])
    verts: list[dict] = []
    discs: list[dict] = []
    verts.append(dict(name="S1", label=L.SACRUM, theta=theta, R=R_s,
                      center=top - R_s[:, 2] * BODY_H / 2, top=top))
    for name in reversed(list(levels)):
        lower = verts[-1]
        ha, hp = heights.get(name, _UPPER_DISC)
        a = 2.0 * np.arctan((ha - hp) / (4.0 * BODY_B))  # wedge angle, exact
        th_mid = lower["theta"] - a / 2
        th_up = lower["theta"] - a
        Rm, Ru = _frame(th_mid), _frame(th_up)
        h_mid = (ha + hp) / 2
        mu = f"{name}-{lower['name']}"
        slip = float(slip_mm.get(mu, 0.0))
        bottom = lower["top"] + Rm[:, 2] * h_mid - Rm[:, 1] * slip
        center = bottom + Ru[:, 2] * BODY_H / 2
        disc_center = lower["top"] + Rm[:, 2] * h_mid / 2 - Rm[:, 1] * slip / 2
        discs.append(dict(upper=name, lower=lower["name"], label=L.disc_label(L.vertebra_label(name)),
                          theta=th_mid, R=Rm, R_low=lower["R"], R_up=Ru, low_top=lower["top"],
                          up_bottom=bottom, center=disc_center, ha=ha, hp=hp, hm=h_mid,
                          angle=np.rad2deg(a), slip=slip, name=mu))
        verts.append(dict(name=name, label=L.vertebra_label(name), theta=th_up, R=Ru,
                          center=center, top=center + Ru[:, 2] * BODY_H / 2, bottom=bottom))
    # recentre so the middle of the column sits at z = 0, y = 0 of the body centres
    mid = np.mean([v["center"] for v in verts], axis=0)
    shift = -mid
    for v in verts:
        for k in ("center", "top", "bottom"):
            if k in v:
                v[k] = v[k] + shift
    for d in discs:
        for k in ("low_top", "up_bottom", "center"):
            d[k] = d[k] + shift

    # --- canvas ----------------------------------------------------------------------
    zs = [v["center"][2] for v in verts]
    zlo, zhi = min(zs) - 45.0, max(zs) + 30.0
    lo = np.array([-150.0, -140.0, zlo])
    hi = np.array([150.0, SKIN_POSTERIOR_Y + 8.0, zhi])
    shape = tuple(int(np.ceil((hi[n] - lo[n]) / spacing)) + 1 for n in range(3))
    cv = _Canvas(lo, shape, spacing)

    # body outline: soft tissue with a subcutaneous fat layer
    body_c = np.array([0.0, (SKIN_POSTERIOR_Y - 130.0) / 2, 0.0])
    body_a, body_b = 140.0, (SKIN_POSTERIOR_Y + 130.0) / 2
    I3 = np.eye(3)
    xg = lo[0] + spacing * np.arange(shape[0]) - body_c[0]
    yg = lo[1] + spacing * np.arange(shape[1]) - body_c[1]
    e = (xg[None, :] / body_a) ** 2 + (yg[:, None] / body_b) ** 2
    ei = (xg[None, :] / (body_a - 15)) ** 2 + (yg[:, None] / (body_b - 15)) ** 2
    axial = np.where(ei <= 1, HU["soft"], np.where(e <= 1, HU["fat"], HU["air"])).astype(np.int16)
    cv.ct[:] = axial[None]

    # canal along every vertebra and disc (contents first, bone paints over)
    def canal_segments():
        for v in verts:
            yield v["center"], v["R"], (-BODY_H / 2 - 2, BODY_H / 2 + 2)
        for d in discs:
            yield d["center"], d["R"], (-d["hm"] / 2 - 3, d["hm"] / 2 + 3)

    # (each segment ends at its own w range: a segment running on beyond it, tilted against its
    # neighbour, would widen the canal's cross-section at the disc planes beyond the truth)
    for c, R, wr in canal_segments():
        box = [(-CANAL_A, CANAL_A), (CANAL_V - CANAL_B, CANAL_V + CANAL_B), wr]
        cv.paint(c, R, box, lambda U, V, W, wr=wr: ((U / CANAL_A) ** 2 + ((V - CANAL_V) / CANAL_B) ** 2 <= 1)
                 & (W >= wr[0]) & (W <= wr[1]), HU["epidural"])
        cv.paint(c, R, box, lambda U, V, W, wr=wr: ((U / SAC_A) ** 2 + ((V - CANAL_V) / SAC_B) ** 2 <= 1)
                 & (W >= wr[0]) & (W <= wr[1]), HU["csf"], label=L.CANAL)

    # discs (wedges between the endplates; nucleus = inner half)
    for d in discs:
        Rm = d["R"]
        n_low, n_up = d["R_low"][:, 2], d["R_up"][:, 2]
        lt, ub = d["low_top"], d["up_bottom"]
        c = d["center"]

        def disc_inside(U, V, W, d=d, n_low=n_low, n_up=n_up, lt=lt, ub=ub, c=c, Rm=Rm, f=1.0):
            P = c + np.stack([U, V, W], -1) @ Rm.T
            above = (P - lt) @ n_low >= 0
            below = (P - ub) @ n_up <= 0
            foot = (U / (BODY_A * f)) ** 2 + ((V + d["slip"] / 2) / (BODY_B * f)) ** 2 <= 1
            return above & below & foot

        box = [(-BODY_A, BODY_A), (-BODY_B - 10, BODY_B + 10), (-d["hm"], d["hm"])]
        cv.paint(c, Rm, box, disc_inside, HU["disc"], label=d["label"])
        cv.paint(c, Rm, box, lambda U, V, W, f=disc_inside: f(U, V, W, f=0.7), HU["nucleus"],
                 label=d["label"])

    # vertebrae
    half = BODY_H / 2
    for v in verts:
        c, R, lab = v["center"], v["R"], v["label"]
        is_sac = v["name"] == "S1"
        if is_sac:
            # sacrum: a wide block tapering downwards, with a body-like top
            def sac(U, V, W):
                wfrac = np.clip((W + 40) / 40 + 0.3, 0.3, 1.0)
                return ((np.abs(U) <= 45 * wfrac) & (V >= -BODY_B) & (V <= CANAL_V + 14)
                        & (W >= -40) & (W <= half) & ~((U / CANAL_A) ** 2 + ((V - CANAL_V) / CANAL_B) ** 2 <= 1))
            cv.paint(c, R, [(-46, 46), (-BODY_B, CANAL_V + 14), (-40, half)], sac, HU["cancellous"],
                     label=lab)
        body = lambda U, V, W: ((U / BODY_A) ** 2 + (V / BODY_B) ** 2 <= 1) & (np.abs(W) <= half)

        def body_hu(U, V, W):
            inner = (((U / (BODY_A - 2)) ** 2 + (V / (BODY_B - 2)) ** 2 <= 1)
                     & (np.abs(W) <= half - 1.5))
            return np.where(inner, HU["cancellous"], HU["cortical"]).astype(np.int16)

        cv.paint(c, R, [(-BODY_A, BODY_A), (-BODY_B, BODY_B), (-half, half)], body, body_hu, label=lab)
        if is_sac:
            continue
        pe = HU["posterior"]
        # pedicles (elliptic cylinders along v)
        for uc in (15.0, -15.0):
            cv.paint(c, R, [(uc - 5, uc + 5), (BODY_B - 4, CANAL_V + 8), (-5, 11)],
                     lambda U, V, W, uc=uc: ((U - uc) / 4.5) ** 2 + ((W - 3) / 7.0) ** 2 <= 1, pe, label=lab)
        # laminae, spinous process, transverse processes
        cv.paint(c, R, [(-IAP_U[1], IAP_U[1]), (CANAL_V + 7, CANAL_V + 13), (-12, 8)],
                 _box((-IAP_U[1], IAP_U[1]), (CANAL_V + 7, CANAL_V + 13), (-12, 8)), pe, label=lab)
        cv.paint(c, R, [(-3, 3), (CANAL_V + 12, CANAL_V + 40), (-12, 6)],
                 _box((-3, 3), (CANAL_V + 12, CANAL_V + 40), (-12, 6)), pe, label=lab)
        # (a rib-bearing vertebra's transverse processes are short: its rib runs beside them)
        for ur in _mirror((SAP_U[0] + 1, RIB_TP_END_U if v["name"] in ribs else 42.0)):
            cv.paint(c, R, [ur, (CANAL_V - 5, CANAL_V + 1), (0, 8)],
                     _box(ur, (CANAL_V - 5, CANAL_V + 1), (0, 8)), pe, label=lab)

    # articular processes around each disc, in the disc's mid frame
    by_name = {v["name"]: v for v in verts}
    for d in discs:
        c, R = d["center"], d["R"]
        up, low = by_name[d["upper"]], by_name[d["lower"]]
        w_up = (up["center"] - c) @ R[:, 2]    # > 0
        w_low = (low["center"] - c) @ R[:, 2]  # < 0
        for ur in _mirror(IAP_U):
            # IAP from the upper lamina down to below the joint
            cv.paint(c, R, [ur, FACET_V, (FACET_W[0], w_up)], _box(ur, FACET_V, (FACET_W[0], w_up)),
                     HU["posterior"], label=up["label"])
        for ur in _mirror(SAP_U):
            cv.paint(c, R, [ur, (FACET_V[0] - 2, FACET_V[1]), (w_low, FACET_W[1] + 4)],
                     _box(ur, (FACET_V[0] - 2, FACET_V[1]), (w_low, FACET_W[1] + 4)),
                     HU["posterior"], label=low["label"])

    # herniation: disc material bulging posteriorly into the canal
    hern_truth = None
    if herniation:
        d = next((x for x in discs if x["name"] == herniation["level"]), None)
        if d is None:
            raise ValueError(f"herniation level {herniation['level']} not in the phantom")
        sgn = 1.0 if herniation.get("side", "left") == "left" else -1.0
        zone_u = {"central": 0.0, "paracentral": 6.0, "subarticular": 10.0, "foraminal": 19.0,
                  "extraforaminal": 26.0}[herniation.get("zone", "paracentral")]
        r = float(herniation.get("size_mm", 6.0))
        mig = float(herniation.get("migration_mm", 0.0))
        hc_local = np.array([sgn * zone_u, BODY_B + r * 0.5, mig])
        cv.paint(d["center"], d["R"], [(hc_local[0] - r, hc_local[0] + r),
                                       (hc_local[1] - r, hc_local[1] + r), (mig - r, mig + r)],
                 lambda U, V, W: ((U - hc_local[0]) ** 2 + (V - hc_local[1]) ** 2
                                  + ((W - mig) / 0.6) ** 2 <= r ** 2) & (V > BODY_B - 2),
                 HU["disc"], label=d["label"], where=lambda ct, lab: (lab == 0) | (lab == L.CANAL))
        hern_truth = dict(herniation, center_lps=(d["center"] + d["R"] @ hc_local).tolist(),
                          migration_mm=mig)

    if sacralised_l5:
        low = verts[1]  # the lowest mobile vertebra (verts run from the sacrum upward)
        for ur in _mirror((30.0, 42.0)):
            cv.paint(low["center"], low["R"], [ur, (CANAL_V - 5, CANAL_V + 1), (-45, 4)],
                     _box(ur, (CANAL_V - 5, CANAL_V + 1), (-45, 4)), HU["posterior"],
                     label=low["label"], where=lambda ct, lab: lab == 0)

    # iliac wings beside L5-S1
    if iliac_crest:
        s1 = by_name["S1"]
        for sgn in (1.0, -1.0):
            cv.paint(s1["center"], s1["R"], [(sgn * 60 - 5, sgn * 60 + 5), (-20, 45), (-40, 30)],
                     lambda U, V, W, s=sgn: (np.abs(U - s * 60) <= 4) & (V >= -20) & (V <= 45)
                     & (W >= -40) & (W <= 30 - 0.3 * np.abs(V - 10)), HU["ilium"])

    # ribs (label 0): the head beside the pedicle, across a costovertebral joint gap, the neck
    # past the transverse process's tip, then outwards, curving forwards and down
    for name in ribs:
        v = by_name[name]
        t = np.linspace(0.0, 1.0, 40)
        for sgn in (1.0, -1.0):
            neck = np.linspace(0.0, 1.0, 8)[:-1, None]
            head = np.array(RIB_HEAD_UVW) + neck * (np.array([34.0, CANAL_V - 2.0, 4.0]) - RIB_HEAD_UVW)
            pts = np.vstack([head, np.stack([34.0 + 75.0 * t, CANAL_V - 2.0 - 60.0 * t ** 2, 4.0 - 25.0 * t], 1)])
            pts[:, 0] *= sgn
            for u, vv, w in pts:
                cv.paint(v["center"], v["R"], [(u - 6, u + 6), (vv - 6, vv + 6), (w - 6, w + 6)],
                         lambda U, V, W, u=u, vv=vv, w=w: (U - u) ** 2 + (V - vv) ** 2 + (W - w) ** 2 <= 4.5 ** 2,
                         HU["posterior"], where=lambda ct, lab: lab == 0)

    if aorta_hu is not None:  # (ending with the column at the top, as a field of view cuts both)
        for n, v in enumerate(verts):
            if v["name"] in ("L5", "S1"):
                continue
            top = half if n == len(verts) - 1 else 25.0
            cv.paint(v["center"], v["R"], [(AORTA_UV[0] - 13, AORTA_UV[0] + 13), (AORTA_UV[1] - 13, AORTA_UV[1] + 13), (-25, top)],
                     lambda U, V, W: (U - AORTA_UV[0]) ** 2 + (V - AORTA_UV[1]) ** 2 <= 12.0 ** 2,
                     int(aorta_hu), where=lambda ct, lab: lab == 0)

    marker_lps = None
    if left_marker:
        marker_lps = np.array([90.0, 20.0, verts[len(verts) // 2]["center"][2]])
        cv.paint(marker_lps, I3, [(-3, 3)] * 3, lambda U, V, W: U ** 2 + V ** 2 + W ** 2 <= 2.5 ** 2,
                 HU["marker"])

    ct = Volume(cv.ct, spacing=(spacing,) * 3, origin=tuple(lo), direction=np.eye(3), modality="CT",
                meta={"description": "spineplan synthetic lumbar phantom", "series_uid": "phantom"})
    lab = ct.with_array(cv.lab, modality="SEG")

    truth = dict(
        levels=[v["name"] for v in reversed(verts)],
        vertebrae={v["name"]: dict(label=v["label"], center_lps=v["center"].tolist(),
                                   axis_lps=v["R"][:, 2].tolist()) for v in verts},
        discs={},
        facets={},
        left_marker_lps=None if marker_lps is None else marker_lps.tolist(),
        herniation=hern_truth,
        canal_ap_mm=2 * CANAL_B, canal_width_mm=2 * CANAL_A,
        sac_area_mm2=float(np.pi * SAC_A * SAC_B),  # dural-sac cross-section at every disc plane
        body_depth_mm=2 * BODY_B, body_width_mm=2 * BODY_A, body_height_mm=BODY_H,
        skin_posterior_y=SKIN_POSTERIOR_Y,
    )
    for d in discs:
        R = d["R"]
        truth["discs"][d["name"]] = dict(
            label=d["label"], center_lps=d["center"].tolist(), normal_lps=R[:, 2].tolist(),
            anterior_height_mm=d["ha"], posterior_height_mm=d["hp"], middle_height_mm=d["hm"],
            angle_deg=float(d["angle"]), slip_mm=d["slip"],
            # the radiological slip: posterior-inferior corner of the upper body over the
            # posterior-superior corner of the lower one, along the lower endplate's AP axis
            # (differs from the nominal slip by the disc's wedge, < 1 mm)
            slip_posterior_wall_mm=float(((d["low_top"] + d["R_low"][:, 1] * (
                CANAL_V - CANAL_B if d["lower"] == "S1" else BODY_B))  # the sacral block reaches the canal
                                          - (d["up_bottom"] + d["R_up"][:, 1] * BODY_B)) @ d["R_low"][:, 1]),
            slip_percent=100.0 * d["slip"] / (2 * BODY_B),
        )
        gap_u = sum(FACET_GAP_U) / 2
        fv = sum(FACET_V) / 2
        fw = sum(FACET_W) / 2
        truth["facets"][d["name"]] = {
            side: (d["center"] + R @ np.array([sgn * gap_u, fv, fw])).tolist()
            for side, sgn in (("left", 1.0), ("right", -1.0))
        }
    # the ordering in truth["levels"] is cranial -> caudal
    truth["levels"] = [v["name"] for v in sorted(verts, key=lambda v: -v["center"][2])]
    return Phantom(ct=ct, labels=lab, truth=truth)
