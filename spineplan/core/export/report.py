"""PDF report of a plan (reportlab): checks first, then case, parameters, metrics, images.

Page 1 carries the title, the case line, a banner (``PLAN HAS ERRORS`` in red when any
check is an error), the check summary with errors first (red), then warnings, then
passed checks, and the trajectory (entry/target in LPS mm with the patient side
spelled out). Parameters, metrics, the measurement table and images follow.
Patient identity is printed only with ``identity=True`` and when the plan holds it.

Images: PNG paths or RGB ``uint8`` arrays (optionally ``(caption, image)`` pairs)
from the caller (2D/3D views). Without them, when a ``volume`` (and optionally a
``labels`` map) is passed, axial and sagittal overviews through the target are
resampled in LPS and drawn with the trajectory (numpy only, no VTK). Axial images
use the radiological convention: the patient's right on the image left.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
from pathlib import Path
from typing import Any, Iterable
from xml.sax.saxutils import escape

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import InvalidInputError
from ..segmentation import labels as L
from ..persistence import as_plan_dict

__all__ = ["write_report", "report_pdf_bytes", "render_overview_images",
           "render_trajectory_diagrams", "sorted_checks"]

_SEV_ORDER = {"error": 0, "warning": 1, "ok": 2}
_SEV_COLOUR = {"error": "#c62828", "warning": "#e08a00", "ok": "#2e7d32"}
_SEV_TEXT = {"error": "ERROR", "warning": "WARNING", "ok": "OK"}


def sorted_checks(checks: Iterable[dict]) -> list[dict]:
    """Checks ordered errors first, then warnings, then passed (stable within a severity)."""
    return sorted(checks, key=lambda c: _SEV_ORDER.get(c.get("severity", "ok"), 3))


# --------------------------------------------------------------------------- overview images
def _label_colour(lab: np.ndarray) -> np.ndarray:
    """RGB 0..1 of each label (the labels' palette, as on screen)."""
    return L.LABEL_RGB[np.clip(lab, 0, len(L.LABEL_RGB) - 1)] / 255.0


def _draw_disc(img: np.ndarray, r: float, c: float, radius: float, colour) -> None:
    h, w = img.shape[:2]
    rr, cc = np.ogrid[:h, :w]
    img[(rr - r) ** 2 + (cc - c) ** 2 <= radius ** 2] = colour


def _draw_segment(img: np.ndarray, p0, p1, colour, width: float = 1.5) -> None:
    """Paint pixels within ``width`` of the segment p0-p1 (row, col coordinates)."""
    h, w = img.shape[:2]
    rr, cc = np.mgrid[:h, :w].astype(float)
    a, b = np.asarray(p0, float), np.asarray(p1, float)
    d = b - a
    L2 = float(d @ d)
    t = np.zeros_like(rr) if L2 == 0 else np.clip(((rr - a[0]) * d[0] + (cc - a[1]) * d[1]) / L2, 0, 1)
    dist2 = (rr - a[0] - t * d[0]) ** 2 + (cc - a[1] - t * d[1]) ** 2
    img[dist2 <= width ** 2] = colour


def render_overview_images(plan: dict, volume, labels=None, *, pixel_mm: float | None = None):
    """Axial and sagittal RGB overviews through the target with the trajectory drawn.

    Parameters
    ----------
    plan : dict
        Plan dict (``entry_lps``, ``target_lps``).
    volume : Volume
        The image the plan was made on (any orientation; resampled in LPS).
    labels : Volume, optional
        Label map on the same grid, blended in colour.
    pixel_mm : float, optional
        Output pixel size (default: the smallest voxel spacing, at least 0.5 mm).

    Returns
    -------
    list of (caption, ndarray)
        ``uint8`` images ``(rows, cols, 3)``. Axial: columns run from the patient's
        right (image left) to the patient's left (image right), rows from anterior
        (top) to posterior. Sagittal: columns anterior -> posterior, rows superior
        (top) -> inferior. The entry is green, the target red, the path yellow.
    """
    from scipy.ndimage import map_coordinates

    plan = as_plan_dict(plan)
    s = float(pixel_mm or max(0.5, min(volume.spacing)))
    lo, hi = volume.bounds_lps()
    entry = np.asarray(plan["entry_lps"], float)
    target = np.asarray(plan["target_lps"], float)
    lo = np.minimum(lo, np.minimum(entry, target) - 10)
    hi = np.maximum(hi, np.maximum(entry, target) + 10)
    if volume.modality == "MR":
        a, b = np.percentile(volume.array, [1, 99.5])
    else:
        a, b = -250.0, 1250.0

    def sample(pts_lps, vol, order, cval):
        ijk = vol.ijk_points_from_lps(pts_lps.reshape(-1, 3))
        vals = map_coordinates(vol.array, ijk[:, ::-1].T, order=order, mode="constant", cval=cval)
        return vals.reshape(pts_lps.shape[:-1])

    def make(rows_axis, cols_axis, fixed_axis, fixed_value, row_flip):
        rv = np.arange(lo[rows_axis], hi[rows_axis] + s / 2, s)
        if row_flip:
            rv = rv[::-1]
        cv = np.arange(lo[cols_axis], hi[cols_axis] + s / 2, s)
        pts = np.zeros((rv.size, cv.size, 3))
        pts[..., rows_axis] = rv[:, None]
        pts[..., cols_axis] = cv[None, :]
        pts[..., fixed_axis] = fixed_value
        grey = np.clip((sample(pts, volume, 1, a) - a) / (b - a), 0, 1)
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        if labels is not None:
            lab = sample(pts, labels, 0, 0).astype(int)
            m = lab > 0
            rgb[m] = 0.6 * rgb[m] + 0.4 * _label_colour(lab)[m]
        img = (rgb * 255).astype(np.uint8)

        def rc(p):
            r = (p[rows_axis] - rv[0]) / (rv[1] - rv[0])
            c = (p[cols_axis] - cv[0]) / s
            return r, c

        _draw_segment(img, rc(entry), rc(target), (255, 220, 0))
        _draw_disc(img, *rc(entry), 3.0, (0, 200, 0))
        _draw_disc(img, *rc(target), 3.0, (230, 0, 0))
        return img

    side = plan.get("side", "")
    axial = _letter(_letter(make(1, 0, 2, target[2], row_flip=False), "R", left=True), "L",
                    left=False)
    sagittal = make(2, 1, 0, target[0], row_flip=True)
    return [
        (f"Axial through the target (z = {target[2]:.1f} mm LPS), radiological view: patient's "
         f"RIGHT on the image left, LEFT on the image right; {side}-side plan; entry green, "
         f"target red, path projected in yellow.", axial),
        (f"Sagittal through the target (x = {target[0]:.1f} mm LPS): anterior on the left, "
         f"superior at the top.", sagittal),
    ]


def render_trajectory_diagrams(plan: dict, *, size_px: int = 320):
    """Schematic projections of the trajectory when no image is available.

    Returns ``[(caption, rgb)]``: an axial projection (x horizontal with the patient's
    right on the image left, anterior at the top) and a lateral projection (anterior on
    the left, superior at the top), 10 mm grid, entry green, target red.
    """
    plan = as_plan_dict(plan)
    entry = np.asarray(plan["entry_lps"], float)
    target = np.asarray(plan["target_lps"], float)
    out = []
    for name, (ca, ra), flip_rows in (("Axial projection", (0, 1), False),
                                      ("Lateral projection", (1, 2), True)):
        pts = np.array([entry, target])
        centre = pts.mean(0)
        half = max(40.0, 0.65 * float(np.max(np.abs(pts - centre)[:, [ca, ra]])) * 2)
        mm_per_px = 2 * half / size_px
        img = np.full((size_px, size_px, 3), 250, np.uint8)
        for g in np.arange(-half, half, 10.0):  # 10 mm grid
            for axis in (ca, ra):
                v = int(round((g + half) / mm_per_px))
                if 0 <= v < size_px:
                    if axis == ca:
                        img[:, v] = 225
                    else:
                        img[v, :] = 225

        def rc(p):
            c = (p[ca] - (centre[ca] - half)) / mm_per_px
            r = (p[ra] - (centre[ra] - half)) / mm_per_px
            return (size_px - 1 - r if flip_rows else r), c

        _draw_segment(img, rc(entry), rc(target), (200, 150, 0), width=2.0)
        _draw_disc(img, *rc(entry), 5.0, (0, 160, 0))
        _draw_disc(img, *rc(target), 5.0, (220, 0, 0))
        if ca == 0:
            img = _letter(_letter(img, "R", left=True, fill=(0, 0, 0)), "L", left=False,
                          fill=(0, 0, 0))
            cap = (f"{name} of the trajectory (no image available): patient's RIGHT on the "
                   f"image left, LEFT on the image right, anterior at the top; grid 10 mm; "
                   f"entry green, target red.")
        else:
            img = _letter(_letter(img, "A", left=True, fill=(0, 0, 0)), "P", left=False,
                          fill=(0, 0, 0))
            cap = (f"{name}: anterior on the left, superior at the top; grid 10 mm.")
        out.append((cap, img))
    return out


def _letter(img: np.ndarray, text: str, *, left: bool, fill=(255, 255, 255)) -> np.ndarray:
    """Burn an orientation letter into the top-left or top-right corner of ``img``."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    pil = PILImage.fromarray(img)
    draw = ImageDraw.Draw(pil)
    size = max(10, img.shape[0] // 16)
    try:
        from PIL import ImageFont
        font = ImageFont.load_default(size=size)
    except (TypeError, OSError):  # old Pillow: fixed-size bitmap font
        font = None
    x = 4 if left else img.shape[1] - size - 4
    draw.text((x, 4), text, fill=tuple(fill), font=font)
    return np.asarray(pil).copy()


# --------------------------------------------------------------------------- PDF
def _png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255 if arr.max() <= 1.0 else 1), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    buf = io.BytesIO()
    PILImage.fromarray(arr[..., :3]).save(buf, format="PNG")
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 0.05 or v == 0 else f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            return "(" + ", ".join(f"{float(x):.1f}" for x in v) + ")"
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)


def _measurement_rows(plan: dict) -> list[list[str]]:
    rows: list[list[str]] = []
    meas = plan.get("measurements")
    if isinstance(meas, dict):
        meas = [dict(name=k, value=v) for k, v in meas.items()]
    if isinstance(meas, list):
        for m in meas:
            if isinstance(m, dict):
                name = m.get("name") or m.get("level") or ""
                value = m.get("value")
                rest = {k: v for k, v in m.items() if k not in ("name", "value", "unit", "level")}
                if value is None:
                    value = rest
                    rest = {}
                unit = m.get("unit", "")
                label = f"{m['level']} {name}".strip() if "level" in m and m.get("name") else name
                rows.append([str(label), f"{_fmt(value)} {unit}".strip(), _fmt(rest) if rest else ""])
    return rows


def _level_evidence(seg: dict | None, P, escape, small) -> list:
    """Page 1's line on how the levels were named: the anchor, who confirmed them, the flags."""
    from ..segmentation.result import Flag, LevelEvidence

    if not seg:
        return [P("<b>Levels:</b> no record of how the levels were named.", small)]
    ev = LevelEvidence.from_dict(seg.get("evidence"))
    level = ev.confirmed_level or (seg.get("levels") or ["?"])[-1]
    conf = seg.get("confidence") or {}
    text = (f"<b>Levels</b> ({escape(str(seg.get('backend') or 'segmentation'))}): named "
            f"{escape(ev.describe(level))}")
    if conf and ev.anchor.value not in ("user", "labels_file"):
        text += f"; lowest confidence {min(conf.values()):.2f}"
    out = [P(text + ".")]
    flags = [Flag.from_dict(f) for f in seg.get("flags") or []]
    for f in flags:
        out.append(P(f'<font color="#c62828"><b>Level flag:</b> {escape(f.message)}</font>', small))
    if seg.get("needs_confirmation") and ev.anchor.value not in ("user", "labels_file"):
        out.append(P('<font color="#c62828"><b>LEVELS NOT ESTABLISHED: not confirmed by the user.</b></font>'))
    return out


#: Readable names of the motor-unit measurements (MotorUnit.measurements keys).
MEASUREMENT_NAMES = {
    "disc_height_anterior_mm": "Disc height, anterior", "disc_height_middle_mm": "Disc height, middle",
    "disc_height_posterior_mm": "Disc height, posterior", "segmental_angle_deg": "Segmental angle (lordosis +)",
    "slip_mm": "Slip (anterolisthesis +)", "canal_ap_mm": "Bony canal AP", "sac_area_mm2": "Dural sac area",
}


def motor_unit_rows(mu: dict) -> list[tuple[str, str, bool]]:
    """(readable name, value text, implausible) of a ``{level, measurements, implausible}`` dict;
    an implausible value is never given as a plain number: its text says IMPLAUSIBLE and the
    plausible range."""
    from ..segmentation.motor_units import PLAUSIBLE_RANGES

    meas = mu.get("measurements") if isinstance(mu, dict) else None
    if not isinstance(meas, dict):
        return []
    bad = set(mu.get("implausible") or [])
    out = []
    for k, v in meas.items():
        r = PLAUSIBLE_RANGES.get(k)
        unit = r.unit if r else ""
        name = MEASUREMENT_NAMES.get(k, k.replace("_", " "))
        try:
            num = f"{float(v):.1f} {unit}".strip()
        except (TypeError, ValueError):
            num = str(v)
        if k in bad:
            rng = f"{r.low:g} to {r.high:g} {unit}" if r else "its physiological range"
            out.append((name, f"IMPLAUSIBLE ({num} measured, outside {rng}): check the labels", True))
        else:
            out.append((name, num, False))
    return out


def _recheck_story(recheck, P, escape, small) -> list:
    """Page-1 lines on the checks recomputed on load (red where the file's result differs)."""
    from ..planning.recheck import RecheckStatus

    red = "#c62828"
    if recheck.status is not RecheckStatus.RECOMPUTED:
        return [P(f'<font color="{red}"><b>CHECKS NOT RECOMPUTED ({escape(recheck.reason)}): the '
                  'results below are as stored in the file and unverified.</b></font>')]
    if not recheck.differences:
        return [P("Every check was recomputed from the image and labels when the plan was "
                  "loaded: the results agree with the file.", small)]
    out = [P(f'<font color="{red}"><b>THE FILE\'S STORED RESULTS DIFFER FROM THE CHECKS '
             f'RECOMPUTED ON LOADING ({len(recheck.differences)}): the plan may have been edited '
             'outside spineplan. The summary below shows the recomputed results.</b></font>')]
    out += [P(f'<font color="{red}">&bull; {escape(d.describe())}</font>', small)
            for d in recheck.differences]
    return out


def report_pdf_bytes(plan: dict, *, images=None, identity: bool = False, volume=None,
                     labels=None, recheck=None) -> bytes:
    """The report as PDF bytes (see :func:`write_report`)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import (Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer,
                                    Table, TableStyle)

    plan = as_plan_dict(plan)
    if recheck is not None and recheck.checks:  # report the recomputed result
        plan = dict(plan, checks=[c.to_dict() for c in recheck.checks],
                    motor_units_touched=list(recheck.motor_units_touched))
    ss = getSampleStyleSheet()
    body = ss["BodyText"]
    small = ParagraphStyle("small", parent=body, fontSize=8, leading=10)
    cell = ParagraphStyle("cell", parent=body, fontSize=8.5, leading=10.5)
    h2 = ss["Heading2"]

    def P(text: str, style=body) -> Paragraph:
        return Paragraph(text, style)

    def esc(v: Any) -> str:
        return escape(_fmt(v))

    def table(rows, widths, header=True, extra=()):
        t = Table([[P(c, cell) if isinstance(c, str) else c for c in r] for r in rows],
                  colWidths=widths, repeatRows=1 if header else 0)
        style = [("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                 ("VALIGN", (0, 0), (-1, -1), "TOP"),
                 ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]
        if header:
            style.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e0e0e0")))
        t.setStyle(TableStyle(style + list(extra)))
        return t

    proc, level, side = plan.get("procedure", "?"), plan.get("level", "?"), plan.get("side", "?")
    case = plan.get("case") or {}
    checks = sorted_checks(plan.get("checks") or [])
    n_err = sum(c.get("severity") == "error" for c in checks)
    n_warn = sum(c.get("severity") == "warning" for c in checks)

    story: list = [P(f"spineplan surgical plan: {escape(str(proc))} at {escape(str(level))}, "
                     f"{escape(str(side)).upper()} side", ss["Title"])]
    ident = plan.get("identity") if identity else None
    if ident:
        story.append(P("<b>Patient:</b> " + escape(str(ident.get("patient_name", ""))) +
                       " &nbsp; <b>ID:</b> " + escape(str(ident.get("patient_id", "")))))
    else:
        story.append(P("Patient identity not included.", small))
    story.append(P(
        f"<b>Case:</b> level {esc(case.get('level', level))}, side {esc(case.get('side', side))} "
        f"(patient's {esc(side)}), procedure {esc(proc)}, pathology {esc(case.get('pathology', '-'))}"
        + (f" ({esc(case['zone'])})" if case.get("zone") else "")
        + f". Motor units touched: {esc(plan.get('motor_units_touched', []))}."))
    from ..planning.lesion import lesion_summary_text

    story.append(P(f"<b>Lesion:</b> {esc(lesion_summary_text(plan.get('lesion')))}"
                   + ("" if not plan.get("lesion") else
                      f"; zone from the labels: {esc(plan['lesion'].get('zone', '-'))}, migration "
                      f"{float(plan['lesion'].get('migration_mm', 0.0)):+.1f} mm")))
    story += _level_evidence(plan.get("segmentation"), P, escape, small)
    if recheck is not None:
        story += _recheck_story(recheck, P, escape, small)
    story.append(Spacer(1, 0.2 * cm))

    if n_err:
        banner, colour = f"PLAN HAS ERRORS ({n_err} error{'s' if n_err > 1 else ''}" + (
            f", {n_warn} warning{'s' if n_warn > 1 else ''})" if n_warn else ")"), "#c62828"
    elif n_warn:
        banner, colour = f"Plan has {n_warn} warning{'s' if n_warn > 1 else ''}", "#e08a00"
    elif checks:
        banner, colour = "All checks passed", "#2e7d32"
    else:
        banner, colour = "No checks recorded", "#616161"
    bt = Table([[P(f'<font color="white" size="14"><b>{escape(banner)}</b></font>', body)]],
               colWidths=[17 * cm])
    bt.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(colour)),
                            ("TOPPADDING", (0, 0), (-1, -1), 6),
                            ("BOTTOMPADDING", (0, 0), (-1, -1), 6)]))
    from ..planning.safety import check_counts

    cnt = check_counts(checks)
    story += [bt, Spacer(1, 0.2 * cm), P("Check summary", h2),
              P(f"Checks: {cnt['red']} red, {cnt['amber']} amber ({cnt['not_evaluated']} not evaluated), "
                f"{cnt['green']} green.")]
    rows = [["Status", "Check", "Detail"]]
    extra = []
    for n, c in enumerate(checks, start=1):
        sev = c.get("severity", "ok")
        col = _SEV_COLOUR.get(sev, "#000000")
        status = "NOT EVALUATED" if c.get("status") == "not_evaluated" else _SEV_TEXT.get(sev, sev)
        rows.append([f'<font color="{col}"><b>{status}</b></font>',
                     f'<font color="{col}">{escape(str(c.get("name", "")))}</font>',
                     escape(str(c.get("detail", "")))])
        if sev == "error":
            extra.append(("BACKGROUND", (0, n), (-1, n), colors.HexColor("#fde0e0")))
    story.append(table(rows, [3.0 * cm, 4.8 * cm, 9.2 * cm], extra=extra) if checks
                 else P("No checks in this plan."))

    entry, target = plan.get("entry_lps", [0, 0, 0]), plan.get("target_lps", [0, 0, 0])
    story += [P("Trajectory (LPS mm: +x = patient's left, +y = posterior, +z = superior)", h2),
              table([["Point", "x", "y", "z"],
                     ["skin entry", *(f"{float(v):.1f}" for v in entry)],
                     ["target", *(f"{float(v):.1f}" for v in target)]],
                    [4 * cm, 4.3 * cm, 4.3 * cm, 4.4 * cm]),
              P(f"Approach from the patient's <b>{escape(str(side)).upper()}</b>: entry x = "
                f"{float(entry[0]):+.1f} mm, on the patient's "
                f"{'left' if float(entry[0]) > float(target[0]) else 'right'} of the target. "
                f"Incision {esc(plan.get('incision_mm', 0))} mm.", small)]

    case_rows = [["Field", "Value"]] + [[k.replace("_", " "), esc(v)] for k, v in case.items()
                                        if k != "concordance" and v not in (None, "", [])]
    if len(case_rows) > 1:
        story += [P("Case", h2), table(case_rows, [5 * cm, 12 * cm])]
    conc = case.get("concordance") or []
    if conc:
        story += [P("Clinical concordance", h2),
                  table([["Status", "Check", "Detail"]] +
                        [[_SEV_TEXT.get(c.get("severity", "ok"), "?"), escape(str(c.get("name", ""))),
                          escape(str(c.get("detail", "")))] for c in sorted_checks(conc)],
                        [2.2 * cm, 5.3 * cm, 9.5 * cm])]
    par = plan.get("parameters") or {}
    if par:
        story += [P("Parameters", h2),
                  table([["Parameter", "Value"]] + [[escape(k), esc(v)] for k, v in par.items()],
                        [6 * cm, 11 * cm])]
    met = plan.get("metrics") or {}
    if met:
        story += [P("Metrics", h2),
                  table([["Metric", "Value"]] + [[escape(k), esc(v)] for k, v in met.items()],
                        [6 * cm, 11 * cm])]
    mrows = _measurement_rows(plan)
    if mrows:
        story += [P("Measurements", h2),
                  table([["Measurement", "Value", "Other"]] + [[escape(a), escape(b), escape(c)]
                                                               for a, b, c in mrows],
                        [6 * cm, 4 * cm, 7 * cm])]

    murows = motor_unit_rows(plan.get("motor_unit") or {})
    if murows:
        lvl = (plan.get("motor_unit") or {}).get("level", level)
        extra_mu = [("BACKGROUND", (0, n), (-1, n), colors.HexColor("#fde0e0"))
                    for n, (_a, _b, bad) in enumerate(murows, start=1) if bad]
        story += [P(f"Motor unit {escape(str(lvl))}", h2),
                  table([["Measurement", "Value"]] +
                        [[escape(a), f'<font color="#c62828"><b>{escape(b)}</b></font>' if bad else escape(b)]
                         for a, b, bad in murows], [6 * cm, 11 * cm], extra=extra_mu)]

    items = list(images or [])
    if not items and volume is not None:
        items = render_overview_images(plan, volume, labels)
    elif not items:
        items = render_trajectory_diagrams(plan)
    if items:
        story.append(P("Images", h2))
    for n, item in enumerate(items, start=1):
        caption, img = item if isinstance(item, tuple) else (f"Figure {n}", item)
        if isinstance(img, (str, os.PathLike)):
            from reportlab.lib.utils import ImageReader
            if not Path(img).is_file():
                raise InvalidInputError(f"report image {Path(img).name} does not exist")
            try:
                reader = ImageReader(str(img))
                reader.getSize()
            except Exception:  # noqa: BLE001 - reportlab/PIL raise many types for bad images
                raise InvalidInputError(f"report image {Path(img).name} is not a readable "
                                        f"PNG/JPEG image") from None
            src: Any = str(img)
        else:
            data = _png_bytes(img)
            from reportlab.lib.utils import ImageReader
            reader = ImageReader(io.BytesIO(data))
            src = io.BytesIO(data)
        w, h = reader.getSize()
        scale = min(17 * cm / w, 11 * cm / h)
        story.append(KeepTogether([Image(src, width=w * scale, height=h * scale),
                                   P(escape(str(caption)), small), Spacer(1, 0.3 * cm)]))

    story += [Spacer(1, 0.4 * cm), P(
        f"Generated by {escape(str(plan.get('generator', 'spineplan')))} on "
        f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC; plan created "
        f"{escape(str(plan.get('created', '-')))}; series "
        f"{escape(str(((ident or {}).get('series_description')) or '-'))}. "
        "Planning aid only: verify every plan against the images before surgery.", small)]

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=2 * cm, rightMargin=2 * cm,
                            topMargin=1.5 * cm, bottomMargin=1.5 * cm,
                            title=f"spineplan plan {proc} {level} {side}", author="spineplan",
                            subject="surgical plan report", creator="spineplan")
    doc.build(story)
    return buf.getvalue()


def write_report(plan: dict, path: str | os.PathLike, *, images=None, identity: bool = False,
                 volume=None, labels=None, recheck=None) -> Path:
    """Write the plan's PDF report atomically; return the path.

    Parameters
    ----------
    plan : dict
        Plan dict (PLAN_SCHEMA); ``measurements``/``motor_unit`` keys are tabulated if present.
    path : path
        Output ``.pdf``.
    images : list, optional
        PNG paths or RGB arrays, or ``(caption, image)`` pairs (2D/3D views with the plan).
    identity : bool
        Print the plan's ``identity`` (patient name/ID) when True and present.
    volume, labels : Volume, optional
        Used to render axial/sagittal overviews when no ``images`` are given.
    recheck : planning.recheck.Recheck, optional
        The checks recomputed on loading: the summary shows them, and every stored result
        that differs is listed in red (or, when not recomputed, a red line says so).
    """
    data = report_pdf_bytes(plan, images=images, identity=identity, volume=volume, labels=labels,
                            recheck=recheck)
    return atomic_write_bytes(path, data)
