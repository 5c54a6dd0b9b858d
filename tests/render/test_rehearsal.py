"""Offscreen rehearsal rendering, GIF/MP4/PDF export and the ``rehearse`` CLI (small sizes)."""

from __future__ import annotations

import gc
import json
import os

import numpy as np
import pytest

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

from spineplan.cli import main  # noqa: E402
from spineplan.core import meshes as M  # noqa: E402
from spineplan.core import teaching as T  # noqa: E402
from spineplan.core.errors import InvalidInputError  # noqa: E402
from spineplan.core.persistence import save_plan  # noqa: E402
from spineplan.core.phantom import make_phantom  # noqa: E402
from spineplan.core.export.animation import write_animation  # noqa: E402
from spineplan.core.export.handout import write_handout  # noqa: E402
from spineplan.render import rehearsal as R  # noqa: E402

SIZE = (320, 240)
FPS = 2


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(spacing=2.0)


def needle_plan(phantom, side="left"):
    c = np.array(phantom.truth["discs"]["L4-L5"]["center_lps"])
    sgn = 1.0 if side == "left" else -1.0
    g = phantom.ct
    return {
        "format_version": 1,
        "source": {"series_uid": "phantom", "modality": "CT", "size": list(g.size_ijk),
                   "spacing": list(g.spacing), "origin": list(g.origin),
                   "direction": g.direction.ravel().tolist()},
        "level": "L4-L5", "side": side, "procedure": "needle",
        "entry_lps": (c + [sgn * 80.0, 85.0, 0.0]).tolist(), "target_lps": c.tolist(),
        "incision_mm": 0.0, "parameters": {"diameter_mm": 1.5},
        "metrics": {"entry_midline_distance_mm": 80.0, "angle_to_sagittal_deg": 43.3},
        "motor_units_touched": ["L4-L5"],
        "checks": [{"name": "single motor unit", "ok": True, "severity": "ok", "detail": ""}],
    }


@pytest.fixture(scope="module")
def rendered(phantom):
    plan = needle_plan(phantom)
    step_images: list = []
    frames = R.render_rehearsal(plan, phantom.ct, phantom.labels, size=SIZE, frames_per_step=FPS,
                                step_images=step_images)
    yield plan, frames, step_images
    gc.collect()


def _is_instrument(px: np.ndarray) -> np.ndarray:
    """Cyan-like pixels: the unlit instrument, possibly seen through a faint translucent layer.

    No anatomy colour (skin, muscle, bone, disc, sac, highlights) or text is cyan.
    """
    assert R.INSTRUMENT_RGB == (0.0, 1.0, 1.0)
    r, g, b = (px[..., n].astype(float) for n in range(3))
    return (g > 150) & (b > 150) & (r < 0.6 * np.minimum(g, b)) & (np.abs(g - b) < 40)


def test_frames_count_size_and_not_blank(rendered):
    plan, frames, step_images = rendered
    steps = T.rehearsal_steps(plan)
    assert len(frames) == len(steps) * FPS
    assert len(step_images) == len(steps)
    bg = np.array(R.BACKGROUND_RGB) * 255
    for f in frames:
        assert f.shape == (SIZE[1], SIZE[0], 3) and f.dtype == np.uint8
        differs = np.any(np.abs(f.astype(float) - bg) > 25, axis=-1)
        assert differs.mean() > 0.3  # anatomy fills a good part of the frame
    # consecutive frames differ (camera moves, progress bar advances)
    assert all(np.any(a != b) for a, b in zip(frames, frames[1:]))


def _segment_pixel_distance(px: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((px - a) @ ab) / max(ab @ ab, 1e-9), 0.0, 1.0)
    return np.linalg.norm(px - (a + t[:, None] * ab), axis=1)


def test_instrument_appears_where_projected(rendered):
    """Instrument-coloured pixels exist in every step image and all lie on the projected shaft."""
    plan, frames, step_images = rendered
    steps = T.rehearsal_steps(plan)
    entry, target = np.array(plan["entry_lps"]), np.array(plan["target_lps"])
    d = (target - entry) / np.linalg.norm(target - entry)
    for step, img in zip(steps, step_images):
        ys, xs = np.nonzero(_is_instrument(img))
        assert xs.size > 20, f"instrument not visible at step {step.key}"
        tip = np.array(R.project_lps_to_pixel(step.camera, SIZE, step.tip_lps))
        back = np.array(R.project_lps_to_pixel(step.camera, SIZE,
                                               entry - d * R.INSTRUMENT_OUTSIDE_MM))
        dist = _segment_pixel_distance(np.stack([xs, ys], 1).astype(float), tip, back)
        assert np.percentile(dist, 99) < 8.0, f"instrument drawn off its trajectory at {step.key}"
        # the tip end of the drawn instrument is near the projected tip
        near_tip = np.min(np.linalg.norm(np.stack([xs, ys], 1) - tip, axis=1))
        assert near_tip < 12.0 or step.key == "nucleus"  # inside the disc the tip may be covered
    assert _is_instrument(step_images[-1]).mean() < 0.15


def test_label_meshes_and_iso_surface_in_lps(phantom):
    """Meshes land where the anatomy is (LPS), also for a volume stored mirrored (RAS-like)."""
    from vtkmodules.util import numpy_support

    lab = phantom.labels
    meshes = M.label_meshes_lps(lab, values=[23, 300], voxel_mm=M.DISPLAY_VOXEL_MM,
                                max_triangles=M.DISPLAY_MAX_TRIANGLES)
    pts = numpy_support.vtk_to_numpy(meshes[23].GetPoints().GetData())
    k, j, i = np.nonzero(lab.array == 23)
    vox = lab.lps_points_from_ijk(np.stack([i, j, k], 1))
    half = np.array(lab.spacing) / 2  # the surface lies between voxel centres
    assert np.all(pts.min(0) >= vox.min(0) - half - 0.5) and np.all(pts.max(0) <= vox.max(0) + half + 0.5)
    assert np.allclose(pts.min(0), vox.min(0), atol=2.5) and np.allclose(pts.max(0), vox.max(0), atol=2.5)
    bead = M.iso_surface_lps(phantom.ct, 2000.0, voxel_mm=2.0, smooth_iterations=0)
    bp = numpy_support.vtk_to_numpy(bead.GetPoints().GetData())
    assert np.allclose(bp.mean(0), phantom.truth["left_marker_lps"], atol=1.5)  # the LEFT bead, +x
    # the same label map stored with flipped i and j axes (direction diag(-1, -1, 1))
    ni, nj, _ = lab.size_ijk
    flipped = lab.with_array(np.ascontiguousarray(lab.array[:, ::-1, ::-1]),
                             direction=np.diag([-1.0, -1.0, 1.0]),
                             origin=tuple(lab.lps_points_from_ijk([ni - 1, nj - 1, 0])))
    fl = numpy_support.vtk_to_numpy(M.label_meshes_lps(flipped, values=[23], voxel_mm=M.DISPLAY_VOXEL_MM,
                                                   max_triangles=M.DISPLAY_MAX_TRIANGLES)[23]
                                    .GetPoints().GetData())
    assert np.allclose(fl.mean(0), pts.mean(0), atol=1.0)


@pytest.mark.parametrize("procedure", ["tube", "cage"])
def test_other_procedures_render(phantom, procedure):
    c = np.array(phantom.truth["discs"]["L4-L5"]["center_lps"])
    plan = needle_plan(phantom)
    plan["procedure"] = procedure
    if procedure == "tube":
        plan["target_lps"] = (c + [9.0, 44.0, 4.0]).tolist()
        plan["entry_lps"] = (c + [21.0, 106.0, 4.0]).tolist()
        plan["parameters"] = {"diameter_mm": 18.0, "length_mm": 60.0}
    else:
        plan["target_lps"] = (c + [0.0, -4.0, 0.0]).tolist()
        plan["entry_lps"] = (c + [70.0, 90.0, 0.0]).tolist()
        plan["parameters"] = {"length_mm": 26.0, "width_mm": 10.0, "height_mm": 11.0}
    imgs: list = []
    frames = R.render_rehearsal(plan, phantom.ct, phantom.labels, size=SIZE, frames_per_step=1,
                                inset=False, step_images=imgs)
    assert len(frames) == len(T.rehearsal_steps(plan))
    assert all(_is_instrument(f).any() for f in frames)


def test_write_gif_and_mp4_frame_count(tmp_path, rendered):
    import imageio.v2 as iio

    _, frames, _ = rendered
    gif = write_animation(frames, tmp_path / "r.gif", fps=5)
    back = iio.mimread(gif)
    assert len(back) == len(frames)
    assert np.asarray(back[0]).shape[:2] == (SIZE[1], SIZE[0])
    pytest.importorskip("imageio_ffmpeg")
    mp4 = write_animation(frames, tmp_path / "r.mp4", fps=5)
    rd = iio.get_reader(mp4)
    try:
        assert rd.count_frames() == len(frames)
    finally:
        rd.close()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    with pytest.raises(InvalidInputError):
        write_animation(frames, tmp_path / "r.avi")
    with pytest.raises(InvalidInputError):
        write_animation([], tmp_path / "e.gif")


def test_handout_one_page_per_step(tmp_path, rendered):
    pypdf = pytest.importorskip("pypdf")
    plan, _, step_images = rendered
    steps = T.rehearsal_steps(plan)
    pdf = write_handout(steps, step_images, tmp_path / "h.pdf", title="Case 1")
    reader = pypdf.PdfReader(str(pdf))
    assert len(reader.pages) == len(steps)
    for page, st in zip(reader.pages, steps):
        text = page.extract_text()
        assert st.title in text and "Case 1" in text
    with pytest.raises(InvalidInputError):
        write_handout(steps, step_images[:-1], tmp_path / "bad.pdf")


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def cli_files(phantom, tmp_path_factory):
    import SimpleITK as sitk

    d = tmp_path_factory.mktemp("rehearse")
    ct, lab = d / "ct.nii.gz", d / "labels.nii.gz"
    sitk.WriteImage(phantom.ct.to_sitk(), str(ct))
    sitk.WriteImage(phantom.labels.to_sitk(), str(lab))
    plan = d / "plan.json"
    save_plan(needle_plan(phantom), plan)
    return d, ct, lab, plan


def test_cli_rehearse_writes_gif_and_handout(cli_files, capsys):
    pypdf = pytest.importorskip("pypdf")
    import imageio.v2 as iio

    d, ct, lab, plan = cli_files
    out, pdf = d / "out.gif", d / "out.pdf"
    rc = main(["rehearse", str(plan), "-o", str(out), "--handout", str(pdf), "--image", str(ct),
               "--labels", str(lab), "--size", "160x120", "--frames-per-step", "2", "--no-inset"])
    assert rc == 0, capsys.readouterr().err
    assert len(iio.mimread(out)) == 3 * 2
    assert len(pypdf.PdfReader(str(pdf)).pages) == 3


@pytest.mark.parametrize("case", ["missing_target", "bad_json", "wrong_image", "bad_ext", "no_image"])
def test_cli_rehearse_bad_input_exit_2(cli_files, phantom, capsys, case, monkeypatch):
    d, ct, lab, plan = cli_files
    p = d / f"{case}.json"
    args = [str(p), "-o", str(d / "x.gif"), "--image", str(ct), "--size", "160x120",
            "--frames-per-step", "1"]
    good = needle_plan(phantom)
    if case == "missing_target":
        good.pop("target_lps")
        p.write_text(json.dumps(good))  # save_plan itself refuses an incomplete plan
    elif case == "bad_json":
        p.write_text("{not json")
    elif case == "wrong_image":
        good["source"]["spacing"] = [1.0, 1.0, 1.0]
        save_plan(good, p)
    elif case == "bad_ext":
        save_plan(good, p)
        args[2] = str(d / "x.avi")
    else:
        good["source"].pop("path", None)
        save_plan(good, p)
        args = args[:3] + args[5:]
        monkeypatch.setattr("spineplan.paths.sample_dicom_dir", lambda: d / "no_sample_here")
    rc = main(["rehearse"] + args)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("spineplan: error: ") and err.count("\n") == 1, err
    assert not (d / "x.gif").exists()


# ----------------------------------------------------------------------------- practice
def _colour_mask(img, rgb):
    return np.all(np.abs(img.astype(float) - np.array(rgb) * 255) < 40, axis=-1)


@pytest.mark.parametrize("side", ["left", "right"])
def test_practice_comparison_side_by_side_and_left_is_left(phantom, side):
    """Reference (green) on the left half, attempt (orange) on the right half; in the posterior
    view the patient's left is on the viewer's left, so a left plan's needle lies left of its target."""
    ref = needle_plan(phantom, side=side)
    att = json.loads(json.dumps(ref))
    att["entry_lps"] = (np.array(ref["entry_lps"]) + [0.0, 0.0, 20.0]).tolist()
    score = T.score_attempt(ref, att)
    w, h = 480, 240
    img = R.render_comparison(ref, att, phantom.ct, phantom.labels, size=(w, h), score=score)
    assert img.shape == (h, w, 3)
    left, right = img[:, : w // 2], img[:, w // 2:]
    assert _colour_mask(left, R.REFERENCE_RGB).sum() > 30
    assert _colour_mask(left, R.ATTEMPT_RGB).sum() == 0
    assert _colour_mask(right, R.ATTEMPT_RGB).sum() > 30
    ys, xs = np.nonzero(_colour_mask(left, R.REFERENCE_RGB)[h // 5:])  # below the heading text
    c = np.array(ref["target_lps"])
    cam = R.comparison_camera(ref)
    tx, _ = R.project_lps_to_pixel(cam, (w // 2, h), c)
    lx, _ = R.project_lps_to_pixel(cam, (w // 2, h), c + [50.0, 0.0, 0.0])  # patient's left
    assert lx < tx  # posterior view: the patient's left on the viewer's left
    assert (np.median(xs) < tx) if side == "left" else (np.median(xs) > tx)


def test_presentation_text_never_shows_identity(phantom, tmp_path):
    """Every overlay text of every frame and the handout show the case title, never identity."""
    pypdf = pytest.importorskip("pypdf")
    plan = needle_plan(phantom)
    plan["identity"] = {"patient_name": "DOE^JANE", "patient_id": "PID-778"}
    plan["source"]["description"] = "DOE JANE lumbar CT"
    plan["case"] = {"notes": "Jane Doe, teacher"}
    scene = R.Rehearsal(plan, None, None, size=(320, 240), title="Case 7: L4-L5")
    try:
        texts = set()
        for fs in T.playback_frames(scene.steps, 1):
            scene.apply(fs)
            for actor in (scene.title_text, scene.narration, scene.case_text, scene.inset_text,
                          scene.risk_text):
                texts.add(actor.GetInput())
        assert scene.capture().shape == (240, 320, 3)
    finally:
        scene.close()
    blob = "\n".join(texts)
    assert "Case 7: L4-L5" in blob and "LEFT" in blob
    for secret in ("DOE", "Doe", "JANE", "PID-778"):
        assert secret not in blob
    pdf = write_handout(scene.steps, [np.zeros((24, 32, 3), np.uint8)] * len(scene.steps),
                          tmp_path / "h.pdf", title="Case 7: L4-L5")
    text = "".join(p.extract_text() for p in pypdf.PdfReader(str(pdf)).pages)
    assert "Case 7" in text and "DOE" not in text and "PID-778" not in text


@pytest.mark.shared_data
def test_rehearsal_on_real_ct_with_reference_labels(shared_data):
    """Real CT (RAS NIfTI, 3 mm) with TotalSegmentator labels: Kambin's triangle is found in the
    L4/L5 disc along a left posterolateral path and the playback renders the instrument."""
    from spineplan.core.dicom.load import load_volume

    d = shared_data / "ct_lumbar_totalseg"
    ct = load_volume(d / "example_ct.nii.gz")
    vert = load_volume(d / "example_ct_vertebrae_verse.nii.gz")
    discs = load_volume(d / "example_ct_discs_verse.nii.gz")
    lab = vert.with_array(np.where(discs.array > 0, discs.array, vert.array).astype(np.int32))
    k, j, i = np.nonzero(lab.array == 123)
    centre = lab.lps_points_from_ijk(np.stack([i, j, k], 1)).mean(0)
    k, j, i = np.nonzero(lab.array == 23)
    l4 = lab.lps_points_from_ijk(np.stack([i, j, k], 1)).mean(0)
    # entry on the skin along a left posterolateral direction (this scan is larger than the phantom)
    u = np.array([80.0, 85.0, 0.0]) / np.hypot(80.0, 85.0)
    depth = next(s for s in np.arange(20.0, 300.0, 1.0) if ct.value_at_lps(centre + u * s) < -300)
    plan = {"level": "L4-L5", "side": "left", "procedure": "needle",
            "entry_lps": (centre + u * depth).tolist(), "target_lps": centre.tolist(),
            "parameters": {"diameter_mm": 1.5}}
    assert l4[1] > centre[1] - 40  # sanity: LPS y of the vertebra near the disc, not mirrored
    steps = T.rehearsal_steps(plan, lab)
    kambin = np.asarray(steps[1].tip_lps)
    assert lab.value_at_lps(kambin) == 123
    assert 5.0 < np.linalg.norm(kambin - centre) < 40.0
    imgs: list = []
    frames = R.render_rehearsal(plan, ct, lab, size=SIZE, frames_per_step=1, step_images=imgs)
    assert len(frames) == 3
    assert all(_is_instrument(f).sum() > 10 for f in frames)


def test_outputs_are_ordinary_readable_files(tmp_path, rendered):
    _, frames, _ = rendered
    gif = write_animation(frames[:2], tmp_path / "p.gif")
    assert gif.stat().st_mode & 0o044 == 0o044  # group/others may read teaching material


def test_rehearsal_shows_the_3d_views_label_meshes(phantom):
    """The rehearsal's anatomy is core.meshes' display meshes (the 3D view's and, at full
    resolution, the STL export's), not a mesher of its own."""
    from vtkmodules.util import numpy_support

    scene = R.Rehearsal(needle_plan(phantom), None, phantom.labels, size=(96, 72), inset=False)
    try:
        display = M.label_meshes_lps(phantom.labels, voxel_mm=M.DISPLAY_VOXEL_MM,
                                     max_triangles=M.DISPLAY_MAX_TRIANGLES)
        assert sorted(scene.label_actors) == sorted(display)
        for v, a in scene.label_actors.items():
            shown = numpy_support.vtk_to_numpy(a.GetMapper().GetInput().GetPoints().GetData())
            assert np.allclose(shown, numpy_support.vtk_to_numpy(display[v].GetPoints().GetData()))
    finally:
        scene.close()


def test_scene_draws_into_a_given_render_window(phantom):
    """The GUI's presentation view can host the scene in its own render window."""
    import vtkmodules.all as vtk

    rw = vtk.vtkRenderWindow()
    rw.SetOffScreenRendering(1)
    rw.SetSize(200, 150)
    plan = needle_plan(phantom)
    scene = R.Rehearsal(plan, None, phantom.labels, size=(200, 150), render_window=rw)
    try:
        scene.apply(T.playback_frames(scene.steps, 1)[-1])
        img = scene.capture()
        assert img.shape == (150, 200, 3) and _is_instrument(img).any()
    finally:
        scene.close()
    assert rw.GetRenderers().GetNumberOfItems() == 0  # detached, window left to its owner
    rw.Finalize()


def test_render_reports_progress_and_can_be_cancelled(phantom):
    from spineplan.core.tasks import Cancelled

    plan = needle_plan(phantom)
    seen = []
    with pytest.raises(Cancelled):
        R.render_rehearsal(plan, None, phantom.labels, size=(160, 120), frames_per_step=2,
                           progress=lambda f, m: seen.append(f), cancel=lambda: len(seen) > 3)
    assert seen and all(0.0 <= f <= 1.0 for f in seen) and seen == sorted(seen)


def test_mp4_without_ffmpeg_is_a_clear_error(tmp_path, rendered, monkeypatch):
    import sys

    from spineplan.core.errors import SpineplanError

    _, frames, _ = rendered
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails
    with pytest.raises(SpineplanError, match="imageio-ffmpeg"):
        write_animation(frames, tmp_path / "r.mp4")
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_cli_uses_plan_source_path_relative_to_plan(cli_files, phantom):
    import imageio.v2 as iio

    d, ct, lab, _ = cli_files
    plan = needle_plan(phantom)
    plan["source"]["path"] = ct.name  # relative to the plan file's folder
    sub = d / "rel.json"
    save_plan(plan, sub)
    out = d / "rel.gif"
    assert main(["rehearse", str(sub), "-o", str(out), "--size", "160x120",
                 "--frames-per-step", "1", "--no-inset"]) == 0
    assert len(iio.mimread(out)) == 3


def test_handout_images_have_no_narration_overlay(phantom):
    plan = needle_plan(phantom)
    scene = R.Rehearsal(plan, None, phantom.labels, size=(320, 240), inset=False)
    try:
        scene.apply(T.playback_frames(scene.steps, 1)[1])
        with_text, clean, again = scene.capture(), scene.capture(overlays=False), scene.capture()
    finally:
        scene.close()
    assert np.array_equal(with_text, again)  # overlays restored
    diff = np.any(with_text != clean, axis=-1)
    assert diff.mean() > 0.02
    rows = np.nonzero(diff.any(axis=1))[0]
    assert rows.max() > 240 * 0.7  # the narration box at the bottom is gone


def test_plan_made_from_a_nifti_rehearses(sample_dicom, tmp_path, capsys):
    """`plan` on a NIfTI, then `rehearse` on that NIfTI and on the series it was converted from:
    one loader and one plan/image check (persistence.check_plan_matches_volume), so the plan
    that `plan` wrote is accepted; a grid moved by 0.5 mm is still refused."""
    import imageio.v2 as iio

    from spineplan.core.persistence import load_plan

    nii, plan, gif = tmp_path / "ct.nii.gz", tmp_path / "plan.json", tmp_path / "r.gif"
    ref = sample_dicom / "reference"
    assert main(["convert", str(sample_dicom), "-o", str(nii)]) == 0
    assert main(["plan", str(nii), "--level", "L4-L5", "--procedure", "needle", "--side", "left",
                 "--labels", str(ref / "vertebrae_verse.nii.gz"), "--labels", str(ref / "discs_verse.nii.gz"),
                 "-o", str(plan)]) == 0
    capsys.readouterr()
    for image in (nii, sample_dicom):
        rc = main(["rehearse", str(plan), "--image", str(image), "--labels", str(ref / "vertebrae_verse.nii.gz"),
                   "-o", str(gif), "--size", "160x120", "--frames-per-step", "1", "--no-inset"])
        assert rc == 0, capsys.readouterr().err
        assert len(iio.mimread(gif)) == 3
        gif.unlink()
        capsys.readouterr()
    moved = load_plan(plan)
    moved["source"]["origin"][2] += 0.5
    save_plan(moved, tmp_path / "moved.json")
    rc = main(["rehearse", str(tmp_path / "moved.json"), "--image", str(nii), "-o", str(gif),
               "--size", "160x120", "--frames-per-step", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "origin differs by 0.5 mm" in err and err.count("\n") == 1, err
    assert not gif.exists()


def test_rehearsal_cage_is_the_plans_cage(phantom):
    """One cage frame: the rehearsal's cage at the last step is the STL export's box (same
    corners), and a cage plan without its size is refused rather than drawn at a default."""
    from vtkmodules.util import numpy_support

    from spineplan.core.errors import PlanningError
    from spineplan.core.export.instrument_stl import cage_corners_lps

    c = np.array(phantom.truth["discs"]["L4-L5"]["center_lps"])
    plan = needle_plan(phantom)
    plan.update(procedure="cage", target_lps=(c + [0.0, -4.0, 0.0]).tolist(),
                entry_lps=(c + [70.0, 90.0, 0.0]).tolist())
    plan["parameters"] = {"length_mm": 30.0, "width_mm": 12.0, "height_mm": 9.0,
                          "axis_lps": (-np.array([70.0, 90.0, 0.0]) / np.hypot(70.0, 90.0)).tolist()}
    step = [s for s in T.rehearsal_steps(plan) if s.instrument == "cage"][-1]
    tip = np.asarray(step.tip_lps)
    drawn = numpy_support.vtk_to_numpy(R._instrument_poly(step, tip, plan).GetPoints().GetData())
    corners = cage_corners_lps(dict(plan, parameters=dict(plan["parameters"], center_lps=tip.tolist())))
    for corner in corners:  # every corner of the planned box is a vertex of the drawn cage
        assert np.min(np.linalg.norm(drawn - corner, axis=1)) < 1e-3
    del plan["parameters"]["width_mm"]
    with pytest.raises(PlanningError, match="width_mm"):
        R._instrument_poly(step, tip, plan)


def test_storyboard_is_built_once_for_frames_and_handout(phantom, tmp_path, monkeypatch):
    """The caller's storyboard drives the frames (no second rehearsal_steps), and the same
    steps make the handout: one page per step, one handout image per step."""
    pypdf = pytest.importorskip("pypdf")
    plan = needle_plan(phantom)
    steps = T.rehearsal_steps(plan, phantom.labels)

    def again(*a, **k):
        raise AssertionError("storyboard built a second time")

    monkeypatch.setattr(R, "rehearsal_steps", again)
    imgs: list = []
    frames = R.render_rehearsal(plan, None, phantom.labels, size=(96, 72), frames_per_step=2,
                                inset=False, step_images=imgs, steps=steps)
    assert len(frames) == 2 * len(steps) and len(imgs) == len(steps)
    pdf = write_handout(steps, imgs, tmp_path / "h.pdf")
    assert len(pypdf.PdfReader(str(pdf)).pages) == len(steps)
