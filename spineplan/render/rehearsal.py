"""Offscreen VTK rendering of a guided rehearsal and of the practice comparison image.

No Qt here: the scene is rendered in an offscreen render window (EGL or Xvfb, see
docs/HEADLESS notes) and returned as RGB numpy frames, row 0 at the top. The steps come
from :func:`spineplan.core.teaching.rehearsal_steps`; this module only draws them:

- meshes of the label map (vertebrae, discs, dural sac; the target disc in green and the
  structures at risk of the current step in red), or a bone iso-surface when no labels;
- the skin (CT > -300 HU) and a semi-transparent soft-tissue hull (CT > -30 HU), both
  peeled away step by step;
- the planned path, the instrument (needle, dilator, tube, burr, cage, ...), and an inset
  "view down the instrument";
- the narration in a large font, the step title and the case line (level, SIDE, procedure).
"""

from __future__ import annotations

import os
import textwrap
from typing import Callable, Sequence

import numpy as np

from ..core.export.instrument_stl import cage_frame_lps, cage_polydata
from ..core.errors import InvalidInputError, OutputError, SpineplanError
from ..core.hounsfield import BONE_HU
from ..core import meshes
from ..core.segmentation import labels as L
from ..core.tasks import Cancelled
from ..core.teaching import (INSTRUMENT_VIEW_DISTANCE_MM, Camera, FrameState, Step,
                             instrument_view_camera, playback_frames, rehearsal_steps,
                             trajectory_lps)
from ..core.volume import Volume

__all__ = ["Rehearsal", "render_rehearsal", "render_comparison", "comparison_camera",
           "project_lps_to_pixel", "INSTRUMENT_RGB"]

# Colours (RGB 0..1), high contrast on a dark background (readable on a projector).
BACKGROUND_RGB = (0.04, 0.04, 0.07)
SKIN_RGB = (0.93, 0.74, 0.60)
SOFT_RGB = (0.80, 0.35, 0.35)
BONE_RGB = (0.93, 0.90, 0.80)  # the bone iso-surface when there is no label map
TARGET_RGB = (0.15, 0.85, 0.25)
RISK_RGB = (1.00, 0.12, 0.08)
PATH_RGB = (1.00, 1.00, 1.00)
RISK_TEXT_RGB = (1.00, 0.55, 0.50)  # readable red on the dark background
#: Unlit, so its pixels keep exactly this colour wherever nothing covers it.
INSTRUMENT_RGB = (0.0, 1.0, 1.0)
#: Thinnest instrument drawn (mm radius): a 1.5 mm needle would be sub-pixel in an overview.
INSTRUMENT_MIN_VISUAL_RADIUS_MM = 1.0
#: How far the instrument sticks out of the skin (mm).
INSTRUMENT_OUTSIDE_MM = 40.0
SKIN_HU = -300.0
SOFT_TISSUE_HU = -30.0
#: Inset "view down the instrument": viewport (x0, y0, x1, y1) and distance behind the tip (mm).
INSET_VIEWPORT = (0.70, 0.46, 0.99, 0.84)
INSET_DISTANCE_MM = INSTRUMENT_VIEW_DISTANCE_MM
#: Largest fraction of the frame height the narration may cover (the font shrinks to fit).
NARRATION_MAX_HEIGHT = 0.30
#: Camera distance (mm) from the target for the practice comparison overview.
CAMERA_OVERVIEW_MM = 340.0
#: Cranial tilt (deg) of the posterior comparison view.
COMPARISON_CRANIAL_TILT_DEG = 30.0


def _ensure_headless_default() -> None:
    """Without a display, use EGL (Mesa llvmpipe) rather than trying X first."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def _vtk():
    _ensure_headless_default()
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL factories)
    import vtkmodules.vtkRenderingFreeType  # noqa: F401  (text)
    import vtkmodules.vtkInteractionStyle  # noqa: F401
    import vtkmodules.all as vtk

    return vtk


# --------------------------------------------------------------------------------------
# Instrument geometry
# --------------------------------------------------------------------------------------
def _cylinder(p0: np.ndarray, p1: np.ndarray, radius: float, sides: int = 24):
    vtk = _vtk()
    line = vtk.vtkLineSource()
    line.SetPoint1(*map(float, p0))
    line.SetPoint2(*map(float, p1))
    tube = vtk.vtkTubeFilter()
    tube.SetInputConnection(line.GetOutputPort())
    tube.SetRadius(float(radius))
    tube.SetNumberOfSides(sides)
    tube.CappingOn()
    tube.Update()
    return tube.GetOutput()


def _append(polys):
    vtk = _vtk()
    ap = vtk.vtkAppendPolyData()
    for p in polys:
        ap.AddInputData(p)
    ap.Update()
    return ap.GetOutput()


def _instrument_poly(step: Step, tip: np.ndarray, plan: dict):
    entry, target, d, depth = trajectory_lps(plan)
    r = max(step.instrument_radius_mm, INSTRUMENT_MIN_VISUAL_RADIUS_MM)
    outside = entry - d * INSTRUMENT_OUTSIDE_MM
    kind = step.instrument
    params = plan.get("parameters") or {}
    if kind == "marker":
        # skin mark: a thin disc of the incision diameter on the skin
        return _cylinder(tip - d * 1.0, tip + d * 1.0, r, sides=48)
    if kind == "tube":
        length = float(params.get("length_mm") or (depth + INSTRUMENT_OUTSIDE_MM))
        return _cylinder(tip, tip - d * length, r, sides=48)
    if kind == "cage":  # the plan's cage (its frame and size), on its way in to the tip
        _, axis, _, _, (length, _, _) = cage_frame_lps(plan, tip)
        back = tip - axis * length / 2
        return _append([cage_polydata(plan, tip), _cylinder(back, outside, 2.0)])
    return _cylinder(tip, outside, r)


# --------------------------------------------------------------------------------------
# Scene
# --------------------------------------------------------------------------------------
def _actor(poly, rgb, opacity=1.0, lit=True):
    vtk = _vtk()
    mp = vtk.vtkPolyDataMapper()
    mp.SetInputData(poly)
    mp.ScalarVisibilityOff()
    a = vtk.vtkActor()
    a.SetMapper(mp)
    p = a.GetProperty()
    p.SetColor(*rgb)
    p.SetOpacity(opacity)
    if not lit:
        p.SetLighting(False)
        p.SetAmbient(1.0)
        p.SetDiffuse(0.0)
        p.SetSpecular(0.0)
    else:
        p.SetSpecular(0.2)
    return a


def _set_camera(cam, c: Camera, view_angle: float = 30.0) -> None:
    cam.SetPosition(*c.position)
    cam.SetFocalPoint(*c.focal_point)
    cam.SetViewUp(*c.view_up)
    cam.SetViewAngle(view_angle)
    cam.OrthogonalizeViewUp()


def project_lps_to_pixel(camera: Camera, size: tuple[int, int], point_lps,
                         view_angle: float = 30.0) -> tuple[float, float]:
    """Pixel (column, row; row 0 at the top) where an LPS point appears in a rendered frame.

    Pure perspective projection with the same camera model as VTK (vertical view angle).
    """
    pos, fp = np.asarray(camera.position, float), np.asarray(camera.focal_point, float)
    fwd = fp - pos
    fwd /= np.linalg.norm(fwd)
    up = np.asarray(camera.view_up, float)
    up = up - fwd * (up @ fwd)
    up /= np.linalg.norm(up)
    right = np.cross(fwd, up)
    v = np.asarray(point_lps, float) - pos
    z = v @ fwd
    if z <= 0:
        raise ValueError("point is behind the camera")
    w, h = size
    f = 1.0 / np.tan(np.radians(view_angle) / 2)
    ndc_x = (v @ right) / z * f * h / w
    ndc_y = (v @ up) / z * f
    return (ndc_x + 1) / 2 * w, (1 - ndc_y) / 2 * h


def _label_rgb(v: int) -> tuple[float, float, float]:
    """A label's colour (0..1): the labels' palette, as in the 3D view."""
    return tuple(c / 255.0 for c in L.label_rgb(v))


def _anatomy_actors(ct: Volume | None, labels: Volume | None, rep=lambda f, m: None):
    """Skin, soft-tissue hull, label actors {value: actor} and bone iso-surface actors."""
    skin = soft = None
    if ct is not None:
        rep(0.05, "skin surface")
        skin = _actor(meshes.iso_surface_lps(ct, SKIN_HU, outer_only=True), SKIN_RGB)
        rep(0.15, "soft-tissue hull")
        soft = _actor(meshes.iso_surface_lps(ct, SOFT_TISSUE_HU, outer_only=True), SOFT_RGB)
    label_actors: dict[int, object] = {}
    bone_actors: list = []
    if labels is not None:
        rep(0.3, "label meshes")
        for v, poly in meshes.label_meshes_lps(labels, voxel_mm=meshes.DISPLAY_VOXEL_MM,
                                               max_triangles=meshes.DISPLAY_MAX_TRIANGLES).items():
            a = _actor(poly, _label_rgb(v))
            a._base_rgb = _label_rgb(v)  # type: ignore[attr-defined]
            label_actors[v] = a
    elif ct is not None:
        rep(0.3, "bone surface")
        bone_actors.append(_actor(meshes.iso_surface_lps(ct, BONE_HU, voxel_mm=meshes.DISPLAY_VOXEL_MM), BONE_RGB))
    return skin, soft, label_actors, bone_actors


def _crosshair_actor(half: float = 0.06, rgb=(1.0, 1.0, 1.0)):
    """A 2D crosshair at the centre of a viewport (normalised viewport coordinates)."""
    vtk = _vtk()
    pts = vtk.vtkPoints()
    for x, y in ((0.5 - half, 0.5), (0.5 + half, 0.5), (0.5, 0.5 - half), (0.5, 0.5 + half)):
        pts.InsertNextPoint(x, y, 0.0)
    lines = vtk.vtkCellArray()
    for a, b in ((0, 1), (2, 3)):
        lines.InsertNextCell(2)
        lines.InsertCellPoint(a)
        lines.InsertCellPoint(b)
    poly = vtk.vtkPolyData()
    poly.SetPoints(pts)
    poly.SetLines(lines)
    coord = vtk.vtkCoordinate()
    coord.SetCoordinateSystemToNormalizedViewport()
    mp = vtk.vtkPolyDataMapper2D()
    mp.SetInputData(poly)
    mp.SetTransformCoordinate(coord)
    act = vtk.vtkActor2D()
    act.SetMapper(mp)
    act.GetProperty().SetColor(*rgb)
    act.GetProperty().SetLineWidth(2.0)
    return act


class Rehearsal:
    """An offscreen VTK scene for one plan; renders frame states to RGB arrays."""

    def __init__(self, plan: dict, ct: Volume | None, labels: Volume | None,
                 size: tuple[int, int] = (640, 480), inset: bool = True, title: str | None = None,
                 progress: Callable[[float, str], None] | None = None, render_window=None,
                 steps: Sequence[Step] | None = None):
        """Build the scene.

        ``render_window``: draw into an existing vtkRenderWindow (e.g. the GUI's presentation
        view: call :meth:`apply` then ``render_window.Render()``); by default an offscreen
        window of ``size`` is created and owned (released by :meth:`close`). ``steps``: the
        plan's storyboard when the caller has built it (else built here, once).
        """
        vtk = _vtk()
        self.plan = plan
        self.size = (int(size[0]), int(size[1]))
        if self.size[0] < 64 or self.size[1] < 48:
            raise InvalidInputError("rehearsal frames must be at least 64 x 48 pixels")
        self.steps = list(steps) if steps is not None else rehearsal_steps(plan, labels)
        self.entry, self.target, self.direction, self.depth = trajectory_lps(plan)
        rep = progress or (lambda f, m: None)

        self.ren = vtk.vtkRenderer()
        self.ren.SetBackground(*BACKGROUND_RGB)
        self.ren.SetUseDepthPeeling(1)
        self.ren.SetMaximumNumberOfPeels(3)
        self.ren.SetOcclusionRatio(0.1)
        self._owns_window = render_window is None
        if render_window is None:
            self.rw = vtk.vtkRenderWindow()
            self.rw.SetOffScreenRendering(1)
            self.rw.SetMultiSamples(0)
            self.rw.SetSize(*self.size)
        else:
            self.rw = render_window
        self.rw.SetAlphaBitPlanes(1)
        self.rw.AddRenderer(self.ren)
        self.inset = None
        if inset:
            self.inset = vtk.vtkRenderer()
            self.inset.SetViewport(*INSET_VIEWPORT)
            self.inset.SetBackground(0.0, 0.0, 0.0)
            self.inset.SetUseDepthPeeling(1)
            self.rw.AddRenderer(self.inset)

        # ---- anatomy -------------------------------------------------------------
        self.skin, self.soft, self.label_actors, self.bone_actors = _anatomy_actors(ct, labels, rep)
        self.root_actors: dict[str, object] = {}
        for st in self.steps:
            for s in st.at_risk:
                if s.center_lps is not None and s.name not in self.root_actors:
                    sp = vtk.vtkSphereSource()
                    sp.SetCenter(*s.center_lps)
                    sp.SetRadius(float(s.radius_mm or 5.0))
                    sp.SetThetaResolution(24)
                    sp.SetPhiResolution(16)
                    sp.Update()
                    self.root_actors[s.name] = _actor(sp.GetOutput(), RISK_RGB, 0.55)
        # planned path and target marker
        path = _cylinder(self.entry, self.target, 0.35, sides=8)
        self.path = _actor(path, PATH_RGB, 0.9, lit=False)
        tsp = vtk.vtkSphereSource()
        tsp.SetCenter(*self.target)
        tsp.SetRadius(2.0)
        tsp.Update()
        self.target_marker = _actor(tsp.GetOutput(), TARGET_RGB, 1.0, lit=False)
        self.instrument = _actor(_cylinder(self.entry, self.entry - self.direction, 1.0),
                                 INSTRUMENT_RGB, 1.0, lit=False)
        for a in self._all_actors():
            self.ren.AddActor(a)
            # the inset camera sits on the instrument axis: leave the instrument and path out
            if self.inset is not None and a is not self.instrument and a is not self.path:
                self.inset.AddActor(a)

        # ---- text ----------------------------------------------------------------
        h = self.size[1]
        self.font = max(12, int(round(h / 24)))
        self.title_text = self._text(max(14, int(round(h / 18))), (0.02, 0.97), bold=True)
        self.narration = self._text(self.font, (0.02, 0.03))
        self.case_text = self._text(max(12, int(round(h / 22))), (0.02, 0.87), bold=True)
        side = str(plan.get("side", "")).upper()
        case = f"{plan.get('level', '')}  {side}  {plan.get('procedure', '')}"
        self.case_text.SetInput(f"{title}\n{case}" if title else case)
        self.risk_font = max(10, int(round(h / 32)))
        self.risk_text = self._text(self.risk_font, (0.02, 0.74 if title else 0.78))
        self.risk_text.GetTextProperty().SetColor(*RISK_TEXT_RGB)
        self.inset_text = None
        if self.inset is not None:
            self.inset_text = self._text(max(10, int(round(h / 34))), (0.03, 0.97),
                                         renderer=self.inset)
            self.inset_text.SetInput("view down the instrument")
            self.inset.AddViewProp(_crosshair_actor())
        rep(0.5, "scene ready")

    def _all_actors(self):
        out = [a for a in (self.skin, self.soft) if a is not None]
        out += list(self.label_actors.values()) + self.bone_actors + list(self.root_actors.values())
        out += [self.path, self.target_marker, self.instrument]
        return out

    def _text(self, size: int, pos, bold=False, right=False, renderer=None):
        vtk = _vtk()
        t = vtk.vtkTextActor()
        tp = t.GetTextProperty()
        tp.SetFontSize(size)
        tp.SetColor(1.0, 1.0, 1.0)
        tp.SetBold(bold)
        tp.SetBackgroundColor(0.0, 0.0, 0.0)
        tp.SetBackgroundOpacity(0.6)
        if right:
            tp.SetJustificationToRight()
        tp.SetVerticalJustificationToBottom() if pos[1] < 0.5 else tp.SetVerticalJustificationToTop()
        t.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
        t.GetPositionCoordinate().SetValue(*pos)
        (renderer or self.ren).AddViewProp(t)
        return t

    def _wrap(self, text: str, font: int, width_fraction: float = 0.96) -> list[str]:
        chars = max(16, int(width_fraction * self.size[0] / (font * 0.55)))
        return textwrap.wrap(text, chars)

    def _fit_narration(self, text: str) -> tuple[str, int]:
        """Wrap the narration, shrinking the font (not below 10 px) to stay within
        NARRATION_MAX_HEIGHT of the frame so the instrument stays visible."""
        h = self.size[1]
        font = self.font
        while True:
            lines = self._wrap(text, font)
            if len(lines) * font * 1.25 <= NARRATION_MAX_HEIGHT * h or font <= 10:
                return "\n".join(lines), font
            font -= 1

    def apply(self, fs: FrameState) -> None:
        """Set the scene to one frame state (camera, layers, highlights, instrument, text)."""
        st = self.steps[fs.step_index]
        if self.skin is not None:
            self.skin.SetVisibility(fs.layers.get("skin", 0) > 0.01)
            self.skin.GetProperty().SetOpacity(fs.layers.get("skin", 0))
        if self.soft is not None:
            self.soft.SetVisibility(fs.layers.get("soft_tissue", 0) > 0.01)
            self.soft.GetProperty().SetOpacity(fs.layers.get("soft_tissue", 0))
        bone = fs.layers.get("bone", 1.0)
        risk_labels = {lab for s in st.at_risk for lab in s.labels}
        for v, a in self.label_actors.items():
            p = a.GetProperty()
            if v in risk_labels:
                p.SetColor(*RISK_RGB)
                p.SetOpacity(max(0.6, bone))
            elif v in st.target_labels:
                p.SetColor(*TARGET_RGB)
                p.SetOpacity(max(0.5, min(bone, 0.7)))
            else:
                p.SetColor(*a._base_rgb)
                p.SetOpacity(bone)
            a.SetVisibility(p.GetOpacity() > 0.01)
        for a in self.bone_actors:
            a.GetProperty().SetOpacity(bone)
        names = {s.name for s in st.at_risk}
        for n, a in self.root_actors.items():
            a.SetVisibility(n in names)
        self.instrument.GetMapper().SetInputData(_instrument_poly(st, np.asarray(fs.tip_lps), self.plan))
        self.title_text.SetInput(f"Step {st.index + 1}/{len(self.steps)}: {st.title}")
        main, _, risk = st.narration.partition(" At risk: ")
        text, font = self._fit_narration(main)
        self.narration.GetTextProperty().SetFontSize(font)
        self.narration.SetInput(text)
        if st.at_risk:
            items = [n for s in st.at_risk for n in self._wrap("- " + s.name, self.risk_font, 0.32)]
            self.risk_text.SetInput("At risk:\n" + "\n".join(items))
            self.risk_text.SetVisibility(True)
        else:
            self.risk_text.SetVisibility(False)
        _set_camera(self.ren.GetActiveCamera(), fs.camera)
        self.ren.ResetCameraClippingRange()
        if self.inset is not None:
            cam = instrument_view_camera(self.plan, fs.tip_lps, INSET_DISTANCE_MM, fs.camera.view_up)
            _set_camera(self.inset.GetActiveCamera(), cam, view_angle=40.0)
            self.inset.ResetCameraClippingRange()

    def capture(self, overlays: bool = True) -> np.ndarray:
        """Render and return the window as an RGB uint8 array (row 0 at the top).

        ``overlays=False`` hides the narration and the risk list (handout images); the step
        title and case line stay.
        """
        vtk = _vtk()
        from vtkmodules.util import numpy_support

        hidden = []
        if not overlays:
            for t in (self.narration, self.risk_text):
                if t.GetVisibility():
                    t.SetVisibility(False)
                    hidden.append(t)
        try:
            self.rw.Render()
            w2i = vtk.vtkWindowToImageFilter()
            w2i.SetInput(self.rw)
            w2i.SetInputBufferTypeToRGB()
            w2i.ReadFrontBufferOff()
            w2i.Update()  # re-renders by itself: overlays must stay hidden until here
            img = w2i.GetOutput()
        finally:
            for t in hidden:
                t.SetVisibility(True)
        w, h, _ = img.GetDimensions()
        a = numpy_support.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(h, w, 3)
        return np.ascontiguousarray(a[::-1])

    def close(self) -> None:
        """Release the render window if owned (needed before Xvfb goes away), else detach."""
        if self.rw is None:
            return
        if self._owns_window:
            self.rw.Finalize()
        else:
            self.rw.RemoveRenderer(self.ren)
            if self.inset is not None:
                self.rw.RemoveRenderer(self.inset)
        self.rw = None


def _progress_bar(frame: np.ndarray, n: int, total: int) -> None:
    """Paint a thin playback-progress bar at the bottom of a frame (in place)."""
    h, w, _ = frame.shape
    bh = max(2, h // 120)
    x = int(round(w * (n + 1) / total))
    frame[h - bh:, :x] = (255, 200, 0)
    frame[h - bh:, x:] = (40, 40, 40)


def render_rehearsal(plan: dict, ct: Volume | None, labels: Volume | None = None,
                     size: tuple[int, int] = (640, 480), frames_per_step: int = 12,
                     inset: bool = True, title: str | None = None,
                     progress: Callable[[float, str], None] | None = None,
                     cancel: Callable[[], bool] | None = None,
                     step_images: list | None = None,
                     steps: Sequence[Step] | None = None) -> list[np.ndarray]:
    """Render a guided rehearsal of a plan as RGB frames.

    Parameters
    ----------
    plan : dict
        Plan dict (docs/PLAN_SCHEMA.md).
    ct, labels : Volume
        The planning CT (skin and soft-tissue layers) and its label map (anatomy and the
        structures at risk); either may be None.
    size : (width, height)
        Frame size in pixels.
    frames_per_step : int
        Frames per step (camera, tip and layers interpolated within a step).
    inset : bool
        Show the inset "view down the instrument".
    title : str
        Case title shown instead of any identity (presentation mode).
    progress, cancel : callables
        ``progress(fraction, message)``; ``cancel() -> True`` stops with
        :class:`spineplan.core.tasks.Cancelled`.
    step_images : list, optional
        When given, the last frame of each step, without the narration overlay, is
        appended to it (handout images).
    steps : sequence of Step, optional
        The plan's storyboard (``teaching.rehearsal_steps``) when the caller built it for the
        handout too; built here otherwise.

    Returns
    -------
    list of ndarray
        ``len(steps) * frames_per_step`` RGB uint8 frames ``(height, width, 3)``.
    """
    rep = progress or (lambda f, m: None)
    scene = Rehearsal(plan, ct, labels, size=size, inset=inset, title=title,
                      progress=lambda f, m: rep(0.3 * f, m), steps=steps)
    try:
        states = playback_frames(scene.steps, frames_per_step)
        frames = []
        for n, fs in enumerate(states):
            if cancel is not None and cancel():
                raise Cancelled()
            scene.apply(fs)
            img = scene.capture()
            _progress_bar(img, n, len(states))
            frames.append(img)
            if step_images is not None and fs.frame_in_step == frames_per_step - 1:
                # the handout prints the narration beside the image: capture it without
                step_images.append(scene.capture(overlays=False))
            rep(0.3 + 0.7 * (n + 1) / len(states), f"frame {n + 1}/{len(states)}")
        return frames
    finally:
        scene.close()


REFERENCE_RGB = (0.15, 1.0, 0.15)
ATTEMPT_RGB = (1.0, 0.55, 0.0)


def comparison_camera(reference: dict) -> Camera:
    """Posterior view of the reference target tilted cranially (practice comparison).

    Lateral and cranio-caudal differences show directly, and the patient's left is on
    the viewer's left, as when standing behind the prone patient.
    """
    _, tref, _, _ = trajectory_lps(reference)
    a = np.radians(COMPARISON_CRANIAL_TILT_DEG)
    sight = np.array([0.0, -np.cos(a), -np.sin(a)])  # camera -> target (anterior, inferior)
    return Camera(tuple(map(float, tref - sight * CAMERA_OVERVIEW_MM)), tuple(map(float, tref)),
                  (0.0, float(-np.sin(a)), float(np.cos(a))))


def render_comparison(reference: dict, attempt: dict, ct: Volume | None, labels: Volume | None = None,
                      size: tuple[int, int] = (1024, 512), score=None,
                      title: str | None = None) -> np.ndarray:
    """Side-by-side image for practice mode: reference plan (left) and the resident's (right).

    Both halves share one camera (from the reference's approach side) and the anatomy
    (bone semi-transparent, skin and muscle peeled). Left: the reference trajectory in
    green. Right: the attempt in orange with the reference faint green for comparison,
    and the score lines (:func:`spineplan.core.teaching.score_summary`) when ``score`` is
    given. Returns an RGB uint8 array (row 0 at the top).
    """
    from ..core.teaching import check_plan, score_summary

    vtk = _vtk()
    check_plan(reference)
    check_plan(attempt, require_consistent_side=False)  # a resident's mistake is shown, not refused
    w, h = int(size[0]), int(size[1])
    if w < 128 or h < 64:
        raise InvalidInputError("comparison image must be at least 128 x 64 pixels")
    _, _, label_actors, bone_actors = _anatomy_actors(None, labels) if labels is not None else \
        _anatomy_actors(ct, None)
    lv = reference.get("level", "")
    try:
        up, _ = L.parse_motor_unit(str(lv))
        target_disc = L.disc_label(up)
    except ValueError:
        target_disc = None
    for v, a in label_actors.items():
        a.GetProperty().SetOpacity(0.55 if L.is_vertebra(v) else 0.9)
        if v == target_disc:
            a.GetProperty().SetColor(*TARGET_RGB)

    def path_actors(plan, rgb, radius, opacity):
        e, t, d, _ = trajectory_lps(plan)
        shaft = _actor(_cylinder(t, e - d * INSTRUMENT_OUTSIDE_MM, radius), rgb, opacity, lit=False)
        sp = vtk.vtkSphereSource()
        sp.SetCenter(*map(float, e))
        sp.SetRadius(radius * 2.5)
        sp.Update()
        return [shaft, _actor(sp.GetOutput(), rgb, opacity, lit=False)]

    cam = comparison_camera(reference)
    rw = vtk.vtkRenderWindow()
    rw.SetOffScreenRendering(1)
    rw.SetMultiSamples(0)
    rw.SetSize(w, h)
    halves = []
    for n, (label_text, extra) in enumerate((
            ("Reference", path_actors(reference, REFERENCE_RGB, 1.5, 1.0)),
            ("Your plan", path_actors(attempt, ATTEMPT_RGB, 1.5, 1.0)
             + path_actors(reference, REFERENCE_RGB, 0.6, 0.5)))):
        ren = vtk.vtkRenderer()
        ren.SetViewport(0.5 * n, 0.0, 0.5 * (n + 1), 1.0)
        ren.SetBackground(*BACKGROUND_RGB)
        ren.SetUseDepthPeeling(1)
        for a in list(label_actors.values()) + bone_actors + extra:
            ren.AddActor(a)
        _set_camera(ren.GetActiveCamera(), cam)
        ren.ResetCameraClippingRange()
        t = vtk.vtkTextActor()
        tp = t.GetTextProperty()
        tp.SetFontSize(max(14, h // 20))
        tp.SetBold(True)
        tp.SetColor(*(REFERENCE_RGB if n == 0 else ATTEMPT_RGB))
        tp.SetVerticalJustificationToTop()
        t.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
        t.GetPositionCoordinate().SetValue(0.03, 0.97)
        head = f"{label_text}: {lv} {str(reference.get('side', '')).upper()} {reference.get('procedure', '')}"
        t.SetInput(f"{title}\n{head}" if (title and n == 0) else head)
        ren.AddViewProp(t)
        if n == 1 and score is not None:
            st = vtk.vtkTextActor()
            sp = st.GetTextProperty()
            sp.SetFontSize(max(12, h // 28))
            sp.SetColor(1.0, 1.0, 1.0)
            sp.SetBackgroundColor(0.0, 0.0, 0.0)
            sp.SetBackgroundOpacity(0.6)
            st.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
            st.GetPositionCoordinate().SetValue(0.03, 0.03)
            st.SetInput("\n".join(score_summary(score)))
            ren.AddViewProp(st)
        rw.AddRenderer(ren)
        halves.append(ren)
    try:
        from vtkmodules.util import numpy_support

        rw.Render()
        w2i = vtk.vtkWindowToImageFilter()
        w2i.SetInput(rw)
        w2i.SetInputBufferTypeToRGB()
        w2i.ReadFrontBufferOff()
        w2i.Update()
        img = w2i.GetOutput()
        iw, ih, _ = img.GetDimensions()
        a = numpy_support.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(ih, iw, 3)
        return np.ascontiguousarray(a[::-1])
    finally:
        rw.Finalize()
