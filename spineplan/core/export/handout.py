"""The rehearsal handout: a PDF with one page per storyboard step (its image and narration),
written atomically (reportlab). The images are handed in (``render.rehearsal``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import atomic_output_path
from ..errors import InvalidInputError
from ..teaching.storyboard import Step

__all__ = ["write_handout"]


def write_handout(steps: Sequence[Step], images: Sequence[np.ndarray], path: str | os.PathLike,
                  title: str = "Rehearsal") -> Path:
    """Write a PDF handout: one page per step with its image and narration (atomic).

    Raises
    ------
    InvalidInputError
        When the number of images differs from the number of steps.
    """
    path = Path(path)
    if len(steps) != len(images) or not steps:
        raise InvalidInputError(f"handout needs one image per step ({len(steps)} steps, "
                                f"{len(images)} images)")
    if not path.parent.is_dir():
        raise InvalidInputError(f"output folder {path.parent} does not exist")
    from PIL import Image
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.lib.utils import ImageReader
    from reportlab.platypus import Paragraph
    from reportlab.pdfgen import canvas
    from xml.sax.saxutils import escape

    styles = getSampleStyleSheet()
    body = styles["BodyText"].clone("narr", fontSize=14, leading=18)
    risk = styles["BodyText"].clone("risk", fontSize=12, leading=15, textColor="#b00000")
    W, H = landscape(A4)
    with atomic_output_path(path) as tmp:
        c = canvas.Canvas(str(tmp), pagesize=(W, H))
        c.setTitle(title)
        c.setAuthor("spineplan")
        for st, img in zip(steps, images):
            c.setFont("Helvetica-Bold", 20)
            c.drawString(15 * mm, H - 18 * mm, f"{title} - step {st.index + 1}/{len(steps)}: {st.title}")
            im = Image.fromarray(np.asarray(img, np.uint8)[..., :3])
            iw, ih = im.size
            box_w, box_h = W * 0.58, H - 40 * mm
            s = min(box_w / iw, box_h / ih)
            c.drawImage(ImageReader(im), 15 * mm, H - 25 * mm - ih * s, iw * s, ih * s)
            x0 = 15 * mm + box_w + 8 * mm
            fw = W - x0 - 12 * mm
            text = st.narration.split(" At risk: ")[0]
            p = Paragraph(escape(text), body)
            _, ph = p.wrap(fw, H)
            p.drawOn(c, x0, H - 25 * mm - ph)
            y = H - 25 * mm - ph - 8 * mm
            if st.at_risk:
                r = Paragraph("<b>At risk:</b> " + escape(", ".join(s.name for s in st.at_risk)), risk)
                _, rh = r.wrap(fw, H)
                r.drawOn(c, x0, y - rh)
            c.setFont("Helvetica", 8)
            c.drawString(15 * mm, 8 * mm, "spineplan teaching handout - planning aid, not a substitute "
                                          "for clinical judgement. Geometry in LPS mm.")
            c.showPage()
        c.save()
    return path
