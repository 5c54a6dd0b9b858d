"""The 3D spine view: CPU volume rendering (CT: the CT-bone preset, ``presets.CT_BONE_VOLUME``),
label meshes, the plan's instrument, camera presets."""

from __future__ import annotations

import numpy as np
import vtkmodules.qt

vtkmodules.qt.PyQtImpl = "PySide6"

# only the VTK modules the view uses (``import vtk`` loads every module: ~1 s of the start)
import vtkmodules.vtkInteractionStyle  # noqa: E402,F401  (the interactor's default style)
import vtkmodules.vtkRenderingFreeType  # noqa: E402,F401  (the orientation cube's letters)
import vtkmodules.vtkRenderingOpenGL2  # noqa: E402,F401  (the OpenGL render window)
import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: E402,F401  (the ray cast's image display)
from PySide6.QtCore import Signal  # noqa: E402
from vtkmodules import (vtkCommonDataModel, vtkCommonMath, vtkFiltersSources,  # noqa: E402
                        vtkInteractionWidgets, vtkRenderingAnnotation, vtkRenderingCore,
                        vtkRenderingVolume)
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor  # noqa: E402
from vtkmodules.util import numpy_support  # noqa: E402

from ..core.presets import CT_BONE_VOLUME  # noqa: E402
from ..core.volume import Volume  # noqa: E402
from .workers import LatestJob  # noqa: E402

__all__ = ["View3D", "CAMERA_PRESETS"]

# direction from the focal point to the camera (LPS), and view-up
CAMERA_PRESETS = {
    "anterior": ((0, -1, 0), (0, 0, 1)),
    "posterior": ((0, 1, 0), (0, 0, 1)),
    "left": ((1, 0, 0), (0, 0, 1)),
    "right": ((-1, 0, 0), (0, 0, 1)),
    "superior": ((0, 0, 1), (0, -1, 0)),
}


def _vtk_image(vol: Volume, max_voxels: int = 2_500_000):
    """vtkImageData of a (possibly downsampled) volume, and its 4x4 LPS user matrix."""
    stride = max(1, int(np.ceil((vol.array.size / max_voxels) ** (1 / 3))))
    arr = np.ascontiguousarray(vol.array[::stride, ::stride, ::stride]).astype(np.int16)
    img = vtkCommonDataModel.vtkImageData()
    img.SetDimensions(arr.shape[2], arr.shape[1], arr.shape[0])
    img.GetPointData().SetScalars(numpy_support.numpy_to_vtk(arr.ravel(), deep=True))
    m = vol.lps_from_ijk() @ np.diag([stride, stride, stride, 1.0])
    mat = vtkCommonMath.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            mat.SetElement(r, c, m[r, c])
    return img, mat


def _mat_spacing(mat) -> np.ndarray:
    """Voxel size (mm) along i, j, k of a 4x4 ``vtkMatrix4x4`` from voxel to LPS."""
    m = np.array([[mat.GetElement(r, c) for c in range(3)] for r in range(3)])
    return np.linalg.norm(m, axis=0)


class View3D(QVTKRenderWindowInteractor):
    """VTK render window embedded in Qt, subscribed to the scene.

    The plan's entry and target are draggable handles; a drag is reported through
    ``plan_point_moved(which, lps, finished)`` (the window re-checks and records it).
    """

    plan_point_moved = Signal(str, object, bool)

    def __init__(self, scene, parent=None):
        super().__init__(parent)
        self.scene = scene
        self.renderer = vtkRenderingCore.vtkRenderer()
        self.renderer.SetBackground(0.05, 0.05, 0.07)
        self.GetRenderWindow().AddRenderer(self.renderer)
        # one headlight of our own (its ambient colour lights the CPU ray cast's shading)
        self._light = vtkRenderingCore.vtkLight()
        self._light.SetLightTypeToHeadlight()
        self._light.SetAmbientColor(1.0, 1.0, 1.0)
        self._light.SetDiffuseColor(1.0, 1.0, 1.0)
        self._light.SetSpecularColor(1.0, 1.0, 1.0)
        self._volume_light = 1.0
        self.renderer.AddLight(self._light)
        self._volume_actor = None
        self._mesh_actors: list = []
        self._mesh_by_label: dict = {}
        self._mesh_job = LatestJob(lambda polys, error: self._show_meshes(polys or {}))
        self._plan_actors: list = []
        self.handles: dict = {}
        self.preset = "bone"
        self._marker = None
        scene.events.volume.connect(self._on_volume)
        scene.events.labels.connect(self._on_labels)
        scene.events.plan.connect(self._on_plan)
        self._init_marker()

    def _init_marker(self):
        cube = vtkRenderingAnnotation.vtkAnnotatedCubeActor()
        # VTK's +x is our LPS +x (patient's left)
        cube.SetXPlusFaceText("L")
        cube.SetXMinusFaceText("R")
        cube.SetYPlusFaceText("P")
        cube.SetYMinusFaceText("A")
        cube.SetZPlusFaceText("S")
        cube.SetZMinusFaceText("I")
        cube.GetCubeProperty().SetColor(0.3, 0.35, 0.45)
        self._marker = vtkInteractionWidgets.vtkOrientationMarkerWidget()
        self._marker.SetOrientationMarker(cube)
        self._marker.SetInteractor(self)
        self._marker.SetViewport(0.0, 0.0, 0.18, 0.18)
        self._marker.SetEnabled(1)
        self._marker.InteractiveOff()

    def _on_volume(self, vol):
        if self._volume_actor is not None:
            self.renderer.RemoveVolume(self._volume_actor)
        img, mat = _vtk_image(vol)
        mapper = vtkRenderingVolume.vtkFixedPointVolumeRayCastMapper()  # CPU: interactive without a GPU
        mapper.SetInputData(img)
        # rays sampled every half voxel of the (downsampled) grid, at least every 1 mm: a 3 mm
        # CT is not sampled three times per voxel (opacity is per mm, so the look is the same)
        mapper.SetSampleDistance(max(1.0, 0.5 * min(np.abs(_mat_spacing(mat)))))
        prop = vtkRenderingCore.vtkVolumeProperty()
        prop.SetInterpolationTypeToLinear()
        ctf, otf = vtkRenderingCore.vtkColorTransferFunction(), vtkCommonDataModel.vtkPiecewiseFunction()
        if vol.modality == "CT":  # bone first: the CT-bone preset, shaded
            preset = CT_BONE_VOLUME
            for v, r, g, b in preset.color:
                ctf.AddRGBPoint(v, r, g, b)
            for v, a in preset.opacity:
                otf.AddPoint(v, a)
            prop.ShadeOn()
            prop.SetAmbient(preset.ambient)
            prop.SetDiffuse(preset.diffuse)
            prop.SetSpecular(preset.specular)
            prop.SetSpecularPower(preset.specular_power)
            self._volume_light = preset.light_intensity
        else:
            prop.ShadeOn()
            lo, hi = np.percentile(vol.array[::4, ::4, ::4], [60, 99.5])
            ctf.AddRGBPoint(lo, 0.3, 0.3, 0.35)
            ctf.AddRGBPoint(hi, 1, 1, 1)
            otf.AddPoint(lo, 0.0)
            otf.AddPoint(hi, 0.5)
            self._volume_light = 1.0
        prop.SetColor(ctf)
        prop.SetScalarOpacity(otf)
        actor = vtkRenderingCore.vtkVolume()
        actor.SetMapper(mapper)
        actor.SetProperty(prop)
        actor.SetUserMatrix(mat)
        self._volume_actor = actor
        self.renderer.AddVolume(actor)
        self._update_light()
        self.set_camera("anterior")

    def _update_light(self):
        """The headlight: the volume preset's intensity while the volume rendering shows, 1
        over label meshes."""
        shown = self._volume_actor is not None and self._volume_actor.GetVisibility()
        self._light.SetIntensity(self._volume_light if shown else 1.0)

    _deferred = False
    _stale = False

    def defer_label_meshes(self, defer: bool):
        """While ``defer`` (a paint stroke), label changes only mark the meshes stale; they
        are rebuilt once when deferring ends."""
        self._deferred = defer
        if not defer and self._stale:
            self._on_labels(self.scene.labels)

    def _on_labels(self, labels, region=None):
        """Label meshes rebuilt from the whole map (``region``, the part edited in place, is
        not used: a stroke defers the rebuild to its end). The meshes are built in the thread
        pool from a snapshot of the labels (1-2 s on a full-size CT); the old ones stay on
        screen until the new ones arrive, and a newer change drops a running build's result."""
        if self._deferred:
            self._stale = True
            return
        self._stale = False
        if labels is None:
            self._mesh_job.supersede()
            self._show_meshes({})
            return
        from ..core import meshes

        snapshot = self.scene.labels_snapshot()  # subscribed to the scene: these are its labels
        self._mesh_job.start(lambda progress=None, cancel=None: meshes.label_meshes_lps(
            snapshot, voxel_mm=meshes.DISPLAY_VOXEL_MM, max_triangles=meshes.DISPLAY_MAX_TRIANGLES))

    @property
    def meshes_pending(self) -> bool:
        """Label meshes of the current labels are being built."""
        return self._mesh_job.pending

    def _show_meshes(self, polys: dict):
        from ..core.segmentation.labels import label_rgb

        for a in self._mesh_actors:
            self.renderer.RemoveActor(a)
        self._mesh_actors = []
        self._mesh_by_label = {}
        for v, poly in polys.items():
            if v in (300, 301):
                continue
            m = vtkRenderingCore.vtkPolyDataMapper()
            m.SetInputData(poly)
            m.ScalarVisibilityOff()
            a = vtkRenderingCore.vtkActor()
            a.SetMapper(m)
            a.GetProperty().SetColor(*(c / 255.0 for c in label_rgb(v)))
            a.GetProperty().SetSpecular(0.2)
            self._mesh_by_label[v] = a
            self._mesh_actors.append(a)
            self.renderer.AddActor(a)
        if self._volume_actor is not None:
            self._volume_actor.SetVisibility(not polys)  # meshes replace the volume rendering
        self._update_light()
        plan = self.scene.plan
        self._highlight(plan.level if plan is not None else None)
        self.render()

    def _on_plan(self, plan):
        for a in self._plan_actors:
            self.renderer.RemoveActor(a)
        self._plan_actors = []
        if plan is None:
            self._highlight(None)
            for h in self.handles.values():
                h.EnabledOff()
            self.render()
            return
        from ..core.export.instrument_stl import instrument_polydata

        d = plan.to_dict()
        inst = self._add_poly(instrument_polydata(d), (0.2, 0.9, 0.3), 0.55 if plan.procedure == "tube" else 1.0)
        self._plan_actors.append(inst)
        # the path from the skin (thin line) and the skin entry mark with its incision
        line = vtkFiltersSources.vtkLineSource()
        line.SetPoint1(*plan.entry_lps)
        line.SetPoint2(*plan.target_lps)
        line.Update()
        la = self._add_poly(line.GetOutput(), (1.0, 1.0, 0.3), 1.0)
        la.GetProperty().SetLineWidth(2)
        self._plan_actors.append(la)
        mark = vtkFiltersSources.vtkSphereSource()
        mark.SetCenter(*plan.entry_lps)
        mark.SetRadius(3.0)
        mark.Update()
        self._plan_actors.append(self._add_poly(mark.GetOutput(), (1.0, 0.3, 0.2), 1.0))
        if plan.incision_mm > 0:
            inc = vtkFiltersSources.vtkLineSource()
            half = np.array([0.0, 0.0, plan.incision_mm / 2])  # cranio-caudal skin incision
            inc.SetPoint1(*(plan.entry_lps - half))
            inc.SetPoint2(*(plan.entry_lps + half))
            inc.Update()
            ia = self._add_poly(inc.GetOutput(), (1.0, 0.3, 0.2), 1.0)
            ia.GetProperty().SetLineWidth(5)
            self._plan_actors.append(ia)
        self._highlight(plan.level)
        self._place_handles(plan)
        self.render()

    def _place_handles(self, plan):
        for which in ("entry", "target"):
            h = self.handles.get(which)
            if h is None:
                rep = vtkInteractionWidgets.vtkPointHandleRepresentation3D()
                rep.SetHandleSize(14)
                rep.GetProperty().SetColor(1.0, 0.8, 0.2)
                h = vtkInteractionWidgets.vtkHandleWidget()
                h.SetInteractor(self)
                h.SetRepresentation(rep)
                h.AddObserver("InteractionEvent", lambda o, e, w=which: self._handle_moved(w, False))
                h.AddObserver("EndInteractionEvent", lambda o, e, w=which: self._handle_moved(w, True))
                self.handles[which] = h
            h.GetRepresentation().SetWorldPosition(list(map(float, getattr(plan, f"{which}_lps"))))
            h.EnabledOn()

    def _handle_moved(self, which: str, finished: bool):
        pos = np.array(self.handles[which].GetRepresentation().GetWorldPosition())
        self.plan_point_moved.emit(which, pos, finished)

    def _add_poly(self, poly, rgb, opacity):
        m = vtkRenderingCore.vtkPolyDataMapper()
        m.SetInputData(poly)
        m.ScalarVisibilityOff()
        a = vtkRenderingCore.vtkActor()
        a.SetMapper(m)
        a.GetProperty().SetColor(*rgb)
        a.GetProperty().SetOpacity(opacity)
        self.renderer.AddActor(a)
        return a

    def _highlight(self, level: str | None):
        """Target unit opaque, the rest of the spine dimmed (all opaque when no plan)."""
        from ..core.segmentation.labels import disc_label, parse_motor_unit

        keep = set()
        if level:
            up, low = parse_motor_unit(level)
            keep = {up, low, disc_label(up)}
        for lab, a in self._mesh_by_label.items():
            a.GetProperty().SetOpacity(1.0 if not keep or lab in keep else 0.2)

    def set_camera(self, name: str):
        if self.scene.volume is None:
            return
        d, up = CAMERA_PRESETS[name]
        lo, hi = self.scene.volume.bounds_lps()
        c = (lo + hi) / 2
        cam = self.renderer.GetActiveCamera()
        cam.SetFocalPoint(*c)
        cam.SetPosition(*(c + np.array(d) * 3 * np.linalg.norm(hi - lo)))
        cam.SetViewUp(*up)
        self.renderer.ResetCamera()
        self.render()

    def render(self):
        if self.isVisible():
            self.GetRenderWindow().Render()

    def grab_array(self) -> np.ndarray:
        """The rendered 3D view as an (H, W, 3) uint8 array (VTK pixels, not QWidget.grab)."""
        rw = self.GetRenderWindow()
        rw.Render()
        f = vtkRenderingCore.vtkWindowToImageFilter()
        f.SetInput(rw)
        f.ReadFrontBufferOn()  # the frame just rendered (and swapped): no second render
        f.ShouldRerenderOff()
        f.Update()
        img = f.GetOutput()
        w, h, _ = img.GetDimensions()
        arr = numpy_support.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(h, w, -1)[::-1, :, :3]
        return np.ascontiguousarray(arr)

    def close_vtk(self):
        """Release the render window (avoids X errors at exit under Xvfb)."""
        self._mesh_job.close()
        for h in self.handles.values():
            h.EnabledOff()
        self.handles = {}
        if self._marker is not None:
            self._marker.SetEnabled(0)
            self._marker = None
        self.GetRenderWindow().Finalize()
        self.SetRenderWindow(None) if hasattr(self, "SetRenderWindow") else None
