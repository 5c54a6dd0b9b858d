"""PDF report of a plan (reportlab): check summary first, then parameters and images.

Patient identity appears only when asked for (``identity=True``) and present in the plan.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["write_report", "overview_images"]

_RED, _AMBER, _GREEN = (0.80, 0.10, 0.10), (0.85, 0.55, 0.0), (0.10, 0.55, 0.20)


def overview_images(plan: dict, image, labels=None, size_px: int = 360) -> list[np.ndarray]:
    """Axial and sagittal reformats through the target with the trajectory drawn (RGB uint8).

    Radiological display: patient's right on the image's left in the axial view.
    """
    from scipy import ndimage

    target = np.asarray(plan["target_lps"], float)
    entry = np.asarray(plan["entry_lps"], float)
    out = []
    half = 90.0
    s = np.linspace(-half, half, size_px)
    for view in ("axial", "sagittal"):
        if view == "axial":
            # rows: anterior -> posterior (y), columns: patient right -> left (x): radiological
            U, V = np.meshgrid(s, s)
            pts = np.stack([target[0] + U, target[1] + V, np.full_like(U, target[2])], -1)
        else:
            # rows: superior -> inferior, columns: anterior -> posterior
            U, V = np.meshgrid(s, s)
            pts = np.stack([np.full_like(U, target[0]), target[1] + U, target[2] - V], -1)
        ijk = image.ijk_points_from_lps(pts.reshape(-1, 3))
        vals = ndimage.map_coordinates(image.array.astype(np.float32), ijk[:, ::-1].T, order=1,
                                       cval=float(image.array.min())).reshape(U.shape)
        lo, hi = (-200.0, 1200.0) if image.modality == "CT" else np.percentile(vals, [1, 99])
        g = (np.clip((vals - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
        rgb = np.stack([g, g, g], -1)
        if labels is not None:
            lab = ndimage.map_coordinates(labels.array, ijk[:, ::-1].T, order=0).reshape(U.shape)
            edge = (lab > 0) & (ndimage.grey_erosion(lab, size=3) != lab)
            rgb[edge] = (0.6 * rgb[edge] + [0, 90, 140]).clip(0, 255).astype(np.uint8)

        def to_px(p):
            d = p - target
            if view == "axial":
                u, v = d[0], d[1]
            else:
                u, v = d[1], -d[2]
            return (u + half) / (2 * half) * (size_px - 1), (v + half) / (2 * half) * (size_px - 1)

        for t in np.linspace(0, 1, 600):
            x, y = to_px(entry + t * (target - entry))
            xi, yi = int(round(x)), int(round(y))
            if 1 <= xi < size_px - 1 and 1 <= yi < size_px - 1:
                rgb[yi - 1:yi + 2, xi - 1:xi + 2] = (40, 230, 60)
        out.append(rgb)
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.1f}"
    if isinstance(v, list) and all(isinstance(x, (int, float)) for x in v):
        return "(" + ", ".join(f"{x:.1f}" for x in v) + ")"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items()) or "-"
    return str(v)


def write_report(plan: dict, path: str | os.PathLike, *, images=None, identity: bool = False,
                 title: str | None = None) -> Path:
    """Write the plan report as PDF (atomically). ``images``: RGB arrays or PNG paths."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".part")
    os.close(fd)
    W, H = A4
    c = canvas.Canvas(tmp, pagesize=A4)
    c.setTitle(title or f"spineplan {plan['procedure']} plan {plan['level']} {plan['side']}")
    y = H - 50
    c.setFont("Helvetica-Bold", 16)
    c.drawString(40, y, title or f"Plan: {plan['procedure']} at {plan['level']}, {plan['side'].upper()} side")
    y -= 20
    c.setFont("Helvetica", 10)
    ident = plan.get("identity") if identity else None
    if ident:
        c.drawString(40, y, f"Patient: {ident.get('patient_name', '')}   ID: {ident.get('patient_id', '')}")
    else:
        c.drawString(40, y, "Patient identity not included")
    y -= 14
    case = plan.get("case") or {}
    c.drawString(40, y, f"Pathology: {case.get('pathology', '-')}  zone: {case.get('zone', '-')}  "
                        f"symptom side: {case.get('symptom_side', '-') or '-'}  "
                        f"suspected root: {case.get('suspected_root', '-') or '-'}")
    y -= 24
    checks = plan.get("checks", [])
    errors = [k for k in checks if k["severity"] == "error"]
    warns = [k for k in checks if k["severity"] == "warning"]
    if errors:
        c.setFillColorRGB(*_RED)
        c.rect(36, y - 6, W - 72, 22, fill=1, stroke=0)
        c.setFillColorRGB(1, 1, 1)
        c.setFont("Helvetica-Bold", 13)
        c.drawString(44, y, f"PLAN HAS ERRORS: {len(errors)} error(s), {len(warns)} warning(s)")
        y -= 30
    c.setFillColorRGB(0, 0, 0)
    c.setFont("Helvetica-Bold", 12)
    c.drawString(40, y, f"Check summary: {len(errors)} error(s), {len(warns)} warning(s), "
                        f"{len(checks) - len(errors) - len(warns)} ok")
    y -= 16
    c.setFont("Helvetica", 9)
    order = {"error": 0, "warning": 1, "ok": 2}
    for k in sorted(checks, key=lambda k: order[k["severity"]]):
        col = {"error": _RED, "warning": _AMBER, "ok": _GREEN}[k["severity"]]
        c.setFillColorRGB(*col)
        c.circle(46, y + 3, 3.5, fill=1, stroke=0)
        c.setFillColorRGB(0, 0, 0)
        c.drawString(56, y, f"[{k['severity'].upper()}] {k['name']}: {k['detail']}"[:130])
        y -= 12
        if y < 80:
            c.showPage()
            y = H - 50
            c.setFont("Helvetica", 9)
    y -= 8
    c.setFont("Helvetica-Bold", 11)
    c.drawString(40, y, f"Motor units touched: {', '.join(plan.get('motor_units_touched', [])) or '-'}")
    y -= 16
    c.setFont("Helvetica", 9)
    c.drawString(40, y, f"Entry (LPS mm): {_fmt(plan['entry_lps'])}   Target (LPS mm): {_fmt(plan['target_lps'])}")
    y -= 12
    c.drawString(40, y, "LPS: x = patient's left, y = posterior, z = superior.")
    c.showPage()
    # page 2: parameters, metrics, images
    y = H - 50
    c.setFont("Helvetica-Bold", 12)
    c.drawString(40, y, "Parameters and metrics")
    y -= 16
    c.setFont("Helvetica", 9)
    for section in ("parameters", "metrics"):
        for k, v in (plan.get(section) or {}).items():
            c.drawString(48, y, f"{k}: {_fmt(v)}"[:120])
            y -= 11
    y -= 10
    imgs = list(images or [])
    x = 40
    for im in imgs:
        if isinstance(im, (str, Path)):
            reader = ImageReader(str(im))
        else:
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(np.asarray(im, np.uint8)).save(buf, format="PNG")
            buf.seek(0)
            reader = ImageReader(buf)
        w = (W - 100) / 2
        if y - w < 40:
            c.showPage()
            y = H - 50
        c.drawImage(reader, x, y - w, width=w, height=w)
        x += w + 20
        if x > W - w:
            x = 40
            y -= w + 20
    c.showPage()
    c.save()
    os.chmod(tmp, 0o644)
    os.replace(tmp, p)
    return p
