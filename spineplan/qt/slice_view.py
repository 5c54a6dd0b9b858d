"""A 2D slice view: reformatted slice, window/level, crosshair, labels, plan, measurements.

The view subscribes to the scene's events and never changes the model except through
``scene.set_cursor`` and undoable commands on ``scene.undo_stack``.
"""

from __future__ import annotations

import itertools

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QWidget

from ..core.measurements import POINTS_NEEDED, AddMeasurement, Measurement
from ..core.presets import auto_window
from ..core.segmentation.edit import paint_command
from ..render.slicing import (SliceRequest, blend_labels, edge_letters, plane_axes, reslice,
                              trajectory_axes, window_to_gray)

__all__ = ["SliceView", "LabelBrush", "BRUSH_TOOLS"]

BRUSH_TOOLS = ("paint", "erase")


class LabelBrush:
    """Paint / erase strokes on the scene's label map: one undo step per stroke.

    Slice views feed it LPS points; each dab is a core ``paint_command``. Dabs of one stroke
    share a ``stroke_id`` (merged into one undo step) and are spaced at most half a radius
    apart along the mouse path.

    Parameters
    ----------
    scene : Scene
        The case whose labels are edited through ``scene.undo_stack``.
    on_stroke : callable, optional
        Called with True before a stroke's first dab and with False after it has ended.
    """

    def __init__(self, scene, on_stroke=None):
        self.scene, self.on_stroke = scene, on_stroke
        self.label = 0
        self.radius_mm = 3.0
        self.erase = False
        self.keep_others = True  # paint only onto background, erase only the selected label
        self._stroke = self._axis = self._last = None
        self._ids = itertools.count(1)

    @property
    def active(self) -> bool:
        """True between ``press`` and ``release``."""
        return self._stroke is not None

    def press(self, lps, axis: int | None = None) -> bool:
        """Start a stroke with a dab at ``lps``; ``axis`` is the label array's index axis normal
        to the view (a disc on that slice), None for a sphere. False when there is nothing to paint."""
        if self.scene.labels is None or (self.label <= 0 and (not self.erase or self.keep_others)):
            return False
        self._stroke, self._axis = next(self._ids), axis
        self._last = np.asarray(lps, float)
        if self.on_stroke is not None:
            self.on_stroke(True)
        self._dab(self._last)
        return True

    def move(self, lps) -> None:
        """Continue the stroke to ``lps``."""
        if self._stroke is None:
            return
        p = np.asarray(lps, float)
        n = int(np.ceil(np.linalg.norm(p - self._last) / max(self.radius_mm / 2, 0.25)))
        for t in np.linspace(0.0, 1.0, n + 1)[1:]:
            self._dab(self._last + t * (p - self._last))
        self._last = p

    def release(self) -> None:
        """End the stroke (closes its undo step)."""
        if self._stroke is None:
            return
        self.scene.undo_stack.end_merge()
        self._stroke = None
        if self.on_stroke is not None:
            self.on_stroke(False)

    def _dab(self, centre):
        only_on = (self.label if self.erase else 0) if self.keep_others else None
        self.scene.undo_stack.push(paint_command(self.scene, centre, self.radius_mm,
                                                 0 if self.erase else self.label, axis=self._axis,
                                                 only_on=only_on, stroke_id=self._stroke))


class SliceView(QWidget):
    """One of the axial / coronal / sagittal views."""

    status = Signal(str)
    plan_point_moved = Signal(str, object, bool)  # "entry"/"target", LPS, drag finished

    def __init__(self, scene, orientation: str, parent=None):
        super().__init__(parent)
        self.scene, self.orientation = scene, orientation
        self.convention = "radiological"
        self.level, self.width_ = 400.0, 1800.0
        self.zoom = 1.0
        self.pan_mm = np.zeros(2)
        self.tool = "crosshair"  # or "distance", "angle", "cobb", "paint", "erase"
        self.brush: LabelBrush | None = None  # used by the "paint" / "erase" tools
        self._hover = None
        self.overlay_scale = 1.0  # presentation mode: large type, thick lines
        self._pending: list = []
        self._drag = None
        self._image: QImage | None = None
        self._req: SliceRequest | None = None
        self._gray: np.ndarray | None = None  # the windowed image slice of _image, (H, W) uint8
        self._rgb: np.ndarray | None = None  # _image's pixels: grey with the labels blended, (H, W, 3)
        self._fill_for, self._fill = None, 0.0  # the image array whose minimum _fill is
        self.fusion = None  # registration.Fusion shown over the image (set_fusion)
        self.setMinimumSize(160, 160)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setMouseTracking(True)
        self.setAttribute(Qt.WA_OpaquePaintEvent)
        ev = scene.events
        ev.volume.connect(self._on_volume)
        ev.cursor.connect(self._on_cursor)
        ev.labels.connect(self._on_labels)
        ev.annotations.connect(self._on_annotations)
        ev.plan.connect(self._on_annotations)

    # ---------------------------------------------------------------- model events
    def _on_volume(self, vol):
        self.level, self.width_ = auto_window(vol)
        self.zoom, self.pan_mm = 1.0, np.zeros(2)
        self._image = None
        self.update()

    def _on_cursor(self, lps):
        # a cursor move within this view's plane changes only the crosshair, not the pixels
        _, _, normal = self.axes()
        depth = round(float(np.asarray(lps) @ normal), 3)
        if depth != getattr(self, "_depth", None):
            self._depth = depth
            self._image = None
        self.update()

    def _on_labels(self, labels, region=None):
        """A new label map redraws the view; an edit in place (``region``: the (k, j, i) slices
        changed) re-blends only the pixels showing those voxels, and nothing when this view's
        plane does not cross them."""
        if (region is None or labels is None or self._image is None or self._rgb is None
                or self._image.size() != self.size() or (self.fusion is not None and self.fusion.active)):
            self._image = None
            self.update()
            return
        rect = self._pixels_showing(labels, region)
        if rect is None:
            return
        x0, y0, x1, y1 = rect
        lab = reslice(labels, self._req, order=0, cval=0, window=rect)
        self._rgb[y0:y1, x0:x1] = blend_labels(self._gray[y0:y1, x0:x1], lab)
        self._image = self._qimage()
        self.update(x0, y0, x1 - x0, y1 - y0)

    def _pixels_showing(self, labels, region):
        """Pixel rectangle (x0, y0, x1, y1) of the shown image that can sample the voxels of
        ``region`` (nearest neighbour), or None when the view's plane misses them."""
        req = self._req
        lo = np.array([r.start for r in region[::-1]], float) - 0.51  # i, j, k
        hi = np.array([r.stop - 1 for r in region[::-1]], float) + 0.51
        corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        d = labels.lps_points_from_ijk(corners) - req.center_lps
        depth = d @ np.cross(req.right, req.down)
        if depth.min() > 1e-9 or depth.max() < -1e-9:
            return None
        x = d @ req.right / req.mm_per_px + (req.width - 1) / 2
        y = d @ req.down / req.mm_per_px + (req.height - 1) / 2
        x0, x1 = max(int(np.floor(x.min())), 0), min(int(np.ceil(x.max())) + 1, req.width)
        y0, y1 = max(int(np.floor(y.min())), 0), min(int(np.ceil(y.max())) + 1, req.height)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def _on_annotations(self, *_):
        if self.follows_plan:
            self._image = None  # the plane itself follows the plan
        self.update()

    # ---------------------------------------------------------------- geometry
    def axes(self):
        if self.orientation in ("along", "down"):
            plan = self.scene.plan
            if plan is None:
                return plane_axes("axial", self.convention)
            return trajectory_axes(plan.entry_lps, plan.target_lps, self.orientation)
        return plane_axes(self.orientation, self.convention)

    @property
    def follows_plan(self) -> bool:
        """Oblique views along / down the planned trajectory."""
        return self.orientation in ("along", "down")

    def request(self) -> SliceRequest | None:
        vol = self.scene.volume
        if vol is None or self.scene.cursor_lps is None:
            return None
        right, down, normal = self.axes()
        lo, hi = vol.bounds_lps()
        centre = (lo + hi) / 2
        if self.follows_plan and self.scene.plan is not None:
            centre = np.asarray(self.scene.plan.target_lps, float)
            if self.orientation == "along":
                centre = (centre + np.asarray(self.scene.plan.entry_lps, float)) / 2
        # in-plane position from the volume centre (plus pan); through-plane from the cursor
        c = centre + normal * float((self.scene.cursor_lps - centre) @ normal)
        c = c + self.pan_mm[0] * right + self.pan_mm[1] * down
        extent = max(float(np.abs((hi - lo) @ right)), float(np.abs((hi - lo) @ down)), 1.0) + max(vol.spacing)
        if self.follows_plan and self.scene.plan is not None:
            extent = 1.4 * float(np.linalg.norm(np.subtract(self.scene.plan.target_lps, self.scene.plan.entry_lps)))
            extent = extent if self.orientation == "along" else 80.0
        w, h = max(self.width(), 2), max(self.height(), 2)
        mm_per_px = extent / min(w, h) / self.zoom
        return SliceRequest(c, right, down, mm_per_px, w, h)

    def lps_to_pixel(self, p) -> tuple[float, float]:
        """Widget pixel (x, y) where an LPS point is drawn (on this view's plane)."""
        req = self.request()
        return req.px_from_lps(p)

    def pixel_to_lps(self, x: float, y: float) -> np.ndarray:
        return self.request().lps_from_px(x, y)

    def brush_axis(self) -> int | None:
        """Index axis (0 = i, 1 = j, 2 = k) of the label map normal to this view, or None
        when the view is oblique to the label grid (trajectory views: sphere brush)."""
        lab = self.scene.labels
        if lab is None or self.follows_plan:
            return None
        _, _, normal = self.axes()
        c = np.abs(np.asarray(lab.direction, float).T @ normal)
        a = int(np.argmax(c))
        return a if c[a] > 0.999 else None

    def slice_index(self) -> int:
        """Index of the displayed slice along this view's normal, in voxels of the volume."""
        vol = self.scene.volume
        _, _, normal = self.axes()
        step = float(np.max(np.abs(vol.direction.T @ normal) * np.array(vol.spacing)))
        lo, hi = vol.bounds_lps()
        base = min(lo @ normal, hi @ normal)
        return int(round((self.scene.cursor_lps @ normal - base) / step))

    def _step_mm(self) -> float:
        vol = self.scene.volume
        _, _, normal = self.axes()
        return float(np.max(np.abs(vol.direction.T @ normal) * np.array(vol.spacing)))

    # ---------------------------------------------------------------- rendering
    def render_image(self) -> QImage:
        req = self.request()
        vol = self.scene.volume
        if self._fill_for is not vol.array:  # outside the grid: the darkest value, once per image
            self._fill_for, self._fill = vol.array, float(vol.array.min())
        data = reslice(vol, req, order=1, cval=self._fill)
        self._gray = window_to_gray(data, self.level, self.width_)
        lab = reslice(self.scene.labels, req, order=0, cval=0) if self.scene.labels is not None else None
        self._rgb = blend_labels(self._gray, lab)
        fusion = self.fusion
        if fusion is not None and fusion.active:  # the second series over the CT (render/fusion.py)
            from ..render.fusion import fused_rgb, mri_gray_on_view

            g, inside = mri_gray_on_view(fusion.mri, fusion.transform, req, fusion.window)
            self._rgb = fused_rgb(self._rgb, g, inside, fusion.display, fusion.opacity,
                                  checker_px=max(4, int(round(fusion.checker_mm / req.mm_per_px))))
        self._req = req
        return self._qimage()

    def set_fusion(self, fusion) -> None:
        """Show ``fusion`` (a ``registration.Fusion``) over the image; redraw on its changes."""
        self.fusion = fusion
        fusion.changed.connect(self._on_fusion)
        self._on_fusion(fusion)

    def _on_fusion(self, *_):
        self._image = None
        self.update()

    def _qimage(self) -> QImage:
        arr = self._rgb
        img = QImage(arr.data, arr.shape[1], arr.shape[0], 3 * arr.shape[1], QImage.Format_RGB888)
        # converted once here (a copy that owns its pixels) into the window's own pixel format,
        # so that every later paint (crosshair moves, the other views' scrolls) is a plain blit
        return img.convertToFormat(QImage.Format_RGB32)

    def paintEvent(self, _event):
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(8, 8, 10))
        if self.scene.volume is None:
            p.setPen(QColor(140, 140, 150))
            p.drawText(self.rect(), Qt.AlignCenter, "Open a CT or MRI (File > Open)")
            p.end()
            return
        if self._image is None or self._image.size() != self.size():
            self._image = self.render_image()
        p.drawImage(0, 0, self._image)
        self._draw_overlays(p)
        p.end()

    def _draw_overlays(self, p: QPainter):
        req = self._req
        cur = self.scene.cursor_lps
        x, y = req.px_from_lps(cur)
        k = self.overlay_scale
        p.setPen(QPen(QColor(255, 200, 0, 160), 1 * k))
        p.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        p.drawLine(QPointF(0, y), QPointF(self.width(), y))
        # orientation letters on every edge
        letters = edge_letters(self.orientation, self.convention, axes=self.axes())
        f = QFont()
        f.setPointSize(int(12 * k))
        f.setBold(True)
        p.setFont(f)
        p.setPen(QColor(120, 220, 255))
        w, h = self.width(), self.height()
        p.drawText(6, h // 2 + 6, letters["left"])
        p.drawText(int(w - 18 * k), h // 2 + 6, letters["right"])
        p.drawText(w // 2 - 5, int(18 * k), letters["top"])
        p.drawText(w // 2 - 5, h - 8, letters["bottom"])
        # scale bar: 50 mm (or 10 mm when zoomed in)
        bar_mm = 50.0 if 50.0 / req.mm_per_px < w / 3 else 10.0
        bar_px = bar_mm / req.mm_per_px
        p.setPen(QPen(QColor(230, 230, 230), 2))
        p.drawLine(QPointF(w - 16 - bar_px, h - 24), QPointF(w - 16, h - 24))
        f.setPointSize(int(9 * k))
        f.setBold(False)
        p.setFont(f)
        p.drawText(int(w - 16 - bar_px), h - 28, f"{bar_mm:.0f} mm")
        p.drawText(6, 16, f"{self.orientation}  {self.convention[:5]}.  W {self.width_:.0f} L {self.level:.0f}")
        # plan trajectory projected on the view
        plan = self.scene.plan
        if plan is not None:
            e, t = req.px_from_lps(plan.entry_lps), req.px_from_lps(plan.target_lps)
            p.setPen(QPen(QColor(60, 230, 90), 3 * k))
            p.drawLine(QPointF(*e), QPointF(*t))
            p.setBrush(QColor(60, 230, 90))
            p.drawEllipse(QPointF(*e), 4, 4)
        if plan is not None and self.orientation == "down":
            r_mm = float(plan.parameters.get("diameter_mm", plan.parameters.get("width_mm", 2.0))) / 2
            tx, ty = req.px_from_lps(plan.target_lps)
            p.setBrush(Qt.NoBrush)
            p.setPen(QPen(QColor(60, 230, 90), 2 * k))
            p.drawEllipse(QPointF(tx, ty), r_mm / req.mm_per_px, r_mm / req.mm_per_px)
        # measurements of this view
        p.setPen(QPen(QColor(255, 120, 60), 2 * k))
        for m in self.scene.annotations:
            if m.view != self.orientation:
                continue
            pts = [QPointF(*req.px_from_lps(q)) for q in m.points_lps]
            for a, b in zip(pts[:-1], pts[1:]):
                if m.kind == "cobb" and pts.index(a) == 1:
                    continue
                p.drawLine(a, b)
            p.drawText(pts[-1] + QPointF(6, -6), m.text())
        for q in self._pending:
            p.drawEllipse(QPointF(*req.px_from_lps(q)), 3, 3)
        if self.tool in BRUSH_TOOLS and self.brush is not None and self._hover is not None:
            r = self.brush.radius_mm / req.mm_per_px
            p.setBrush(Qt.NoBrush)
            p.setPen(QPen(QColor(255, 90, 90) if self.tool == "erase" else QColor(90, 200, 255), 1))
            p.drawEllipse(QPointF(*self._hover), r, r)

    def grab_array(self) -> np.ndarray:
        """The rendered view as an (H, W, 3) uint8 array (for tests and screenshots)."""
        img = self.grab().toImage().convertToFormat(QImage.Format_RGB888)
        ptr = img.constBits()
        arr = np.frombuffer(ptr, np.uint8, img.bytesPerLine() * img.height()).reshape(img.height(), img.bytesPerLine())
        return arr[:, : img.width() * 3].reshape(img.height(), img.width(), 3).copy()

    # ---------------------------------------------------------------- interaction
    def set_convention(self, convention: str):
        self.convention = convention
        self._image = None
        self.update()

    def set_window(self, level: float, width: float):
        self.level, self.width_ = float(level), max(float(width), 1.0)
        self._image = None
        self.update()

    def scroll(self, steps: int):
        """Move the slice (and the scene cursor) by ``steps`` voxels along the view normal."""
        if self.scene.volume is None:
            return
        _, _, normal = self.axes()
        step = self._step_mm()
        lo, hi = self.scene.volume.bounds_lps()
        base = min(lo @ normal, hi @ normal)
        target = base + (self.slice_index() + steps) * step  # snap onto voxel planes
        cur = self.scene.cursor_lps
        self.scene.set_cursor(cur + normal * (target - cur @ normal))

    def wheelEvent(self, e):
        n = 1 if e.angleDelta().y() > 0 else -1
        if e.modifiers() & Qt.ControlModifier:
            self.zoom = float(np.clip(self.zoom * (1.15 if n > 0 else 1 / 1.15), 0.2, 20))
            self._image = None
            self.update()
        else:
            self.scroll(n)

    def keyPressEvent(self, e):
        k = e.key()
        if k in (Qt.Key_Up, Qt.Key_PageUp):
            self.scroll(1 if k == Qt.Key_Up else 10)
        elif k in (Qt.Key_Down, Qt.Key_PageDown):
            self.scroll(-1 if k == Qt.Key_Down else -10)
        elif k == Qt.Key_Escape:
            self._pending = []
            self.update()
        else:
            super().keyPressEvent(e)

    def mousePressEvent(self, e):
        if self.scene.volume is None or (self._drag is not None and self._drag[0] == "brush"):
            return
        pos = e.position()
        if e.button() == Qt.LeftButton:
            lps = self.pixel_to_lps(pos.x(), pos.y())
            grab = self._plan_handle_at(pos.x(), pos.y())
            if grab is not None:
                self._drag = ("plan", grab)
                return
            if self.tool in BRUSH_TOOLS:
                if self.brush is not None and self.brush.press(lps, self.brush_axis()):
                    self._drag = ("brush",)
            elif self.tool == "crosshair":
                self.scene.set_cursor(lps)
            else:
                self._pending.append(lps)
                if len(self._pending) == POINTS_NEEDED[self.tool]:
                    m = Measurement(self.tool, [list(map(float, q)) for q in self._pending], self.orientation)
                    self._pending = []
                    self.scene.undo_stack.push(AddMeasurement(self.scene, m))
                self.update()
        elif e.button() in (Qt.RightButton, Qt.MiddleButton):
            self._drag = (e.button(), pos, self.level, self.width_, self.pan_mm.copy())

    def mouseMoveEvent(self, e):
        pos = e.position()
        if self.scene.volume is not None and self._req is not None:
            lps = self.pixel_to_lps(pos.x(), pos.y())
            val = self.scene.volume.value_at_lps(lps)
            unit = " HU" if self.scene.volume.modality == "CT" else ""
            self.status.emit(f"{self.orientation}: LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm"
                             + ("" if np.isnan(val) else f"   value {val:.0f}{unit}"))
            if self.tool in BRUSH_TOOLS:
                self._hover = (pos.x(), pos.y())
                self.update()
        if self._drag is None:
            return
        if self._drag[0] == "brush":
            self.brush.move(self.pixel_to_lps(pos.x(), pos.y()))
            return
        if self._drag[0] == "plan":
            self.plan_point_moved.emit(self._drag[1], self._moved_point(self._drag[1], pos), False)
            return
        button, start, level, width, pan = self._drag
        dx, dy = pos.x() - start.x(), pos.y() - start.y()
        if button == Qt.RightButton:
            self.set_window(level - dy * width / 400.0, width + dx * width / 200.0)
        else:
            self.pan_mm = pan - np.array([dx, dy]) * (self._req.mm_per_px if self._req else 1.0)
            self._image = None
            self.update()

    def mouseReleaseEvent(self, e):
        if self._drag is not None and self._drag[0] == "brush":
            if e.button() == Qt.LeftButton:
                self.brush.release()
                self._drag = None
            return
        if self._drag is not None and self._drag[0] == "plan":
            self.plan_point_moved.emit(self._drag[1], self._moved_point(self._drag[1], e.position()), True)
        self._drag = None

    def _plan_handle_at(self, x, y, tol_px: float = 10.0):
        plan = self.scene.plan
        if plan is None or self._req is None:
            return None
        for which in ("entry", "target"):
            px, py = self._req.px_from_lps(getattr(plan, f"{which}_lps"))
            if np.hypot(px - x, py - y) <= tol_px:
                return which
        return None

    def _moved_point(self, which, pos):
        """The plan point moved within this view's plane (its through-plane coordinate kept)."""
        old = np.asarray(getattr(self.scene.plan, f"{which}_lps"), float)
        _, _, normal = self.axes()
        new = self.pixel_to_lps(pos.x(), pos.y())
        return new + normal * float((old - new) @ normal)

    def leaveEvent(self, e):
        self._hover = None
        self.update()
        super().leaveEvent(e)

    def resizeEvent(self, e):
        self._image = None
        super().resizeEvent(e)
