"""PDF report: parses, check summary with errors on page 1, identity only when asked; CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfReader

from spineplan.cli import main
from spineplan.core.export.report import render_overview_images, sorted_checks, write_report
from spineplan.core.persistence import save_plan

from .plan_dicts import make_plan, phantom

IDENTITY = {"patient_name": "DOE^JANE", "patient_id": "PID-778899"}


def pages_text(path) -> list[str]:
    return [" ".join((p.extract_text() or "").split()) for p in PdfReader(str(path)).pages]


def test_first_page_has_check_summary_errors_first(tmp_path):
    plan = make_plan("needle", "left", errors=True)
    plan["measurements"] = [{"level": "L4-L5", "name": "disc height", "value": 10.5, "unit": "mm"}]
    f = write_report(plan, tmp_path / "r.pdf")
    text = pages_text(f)
    first = text[0]
    assert "PLAN HAS ERRORS" in first
    for c in plan["checks"]:
        assert c["name"] in first
    # errors before warnings before passed checks
    i_err = first.index("needle-bone collision")
    i_warn = first.index("canal clearance")
    i_ok = first.index("motor units touched", first.index("Check summary"))
    assert i_err < i_warn < i_ok
    assert "LEFT side" in first and "L4-L5" in first and "herniation" in first
    x = plan["entry_lps"][0]
    assert x > 0 and f"entry x = {x:+.1f} mm, on the patient's left of the target" in first
    full = " ".join(text)
    assert "disc height" in full and "10.5 mm" in full
    assert "diameter_mm" in full and "depth_mm" in full
    assert "DOE" not in full


def test_no_banner_when_all_checks_pass(tmp_path):
    text = pages_text(write_report(make_plan("tube", "right"), tmp_path / "r.pdf"))
    assert "PLAN HAS ERRORS" not in text[0] and "All checks passed" in text[0]
    assert "RIGHT side" in text[0] and "on the patient's right of the target" in text[0]


def test_pdftotext_reads_it(tmp_path):
    f = write_report(make_plan("cage", "left", errors=True), tmp_path / "r.pdf")
    r = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(f), "-"], capture_output=True,
                       text=True)
    if r.returncode != 0 and "not found" in r.stderr:
        pytest.skip("pdftotext missing")
    assert r.returncode == 0
    assert "PLAN HAS ERRORS" in r.stdout and "needle-bone collision" in r.stdout


def test_identity_only_when_asked(tmp_path):
    plan = make_plan()
    plan["identity"] = IDENTITY
    anon = " ".join(pages_text(write_report(plan, tmp_path / "a.pdf")))
    assert "DOE" not in anon and "778899" not in anon
    assert b"DOE" not in (tmp_path / "a.pdf").read_bytes()
    named = pages_text(write_report(plan, tmp_path / "b.pdf", identity=True))[0]
    assert "DOE^JANE" in named and "PID-778899" in named
    # asked, but the plan holds none: still anonymous, no crash
    plain = pages_text(write_report(make_plan(), tmp_path / "c.pdf", identity=True))[0]
    assert "identity not included" in plain


def test_overview_images_put_the_left_entry_on_the_image_right():
    ph = phantom()
    for side in ("left", "right"):
        plan = make_plan("needle", side)
        (cap_ax, axial), (_, sag) = render_overview_images(plan, ph.ct, ph.labels, pixel_mm=1.0)
        assert axial.dtype == np.uint8 and axial.ndim == 3
        green = np.argwhere((axial[..., 1] == 200) & (axial[..., 0] == 0))
        red = np.argwhere((axial[..., 0] == 230) & (axial[..., 1] == 0))
        assert len(green) and len(red)
        # radiological view: patient's left (+x) on the image right
        assert (green[:, 1].mean() > red[:, 1].mean()) == (side == "left")
        # the phantom's left marker (+x) is on the image right too
        assert "patient's RIGHT on the image left" in cap_ax
        # sagittal: entry (posterior) to the right of the target
        g = np.argwhere((sag[..., 1] == 200) & (sag[..., 0] == 0))[:, 1].mean()
        r = np.argwhere((sag[..., 0] == 230) & (sag[..., 1] == 0))[:, 1].mean()
        assert g > r


def test_images_embedded(tmp_path):
    ph = phantom()
    plan = make_plan("tube", "left")
    f1 = write_report(plan, tmp_path / "auto.pdf", volume=ph.ct, labels=ph.labels)
    imgs = [im for p in PdfReader(str(f1)).pages for im in p.images]
    assert len(imgs) == 2
    png = tmp_path / "view.png"
    from PIL import Image
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(png)
    f2 = write_report(plan, tmp_path / "given.pdf",
                      images=[png, ("3D view", np.zeros((30, 30, 3), np.uint8))])
    reader = PdfReader(str(f2))
    assert sum(len(p.images) for p in reader.pages) == 2
    assert "3D view" in " ".join(pages_text(f2))


def test_sorted_checks_order():
    cs = [{"name": "a", "severity": "ok"}, {"name": "b", "severity": "warning"},
          {"name": "c", "severity": "error"}, {"name": "d", "severity": "ok"}]
    assert [c["name"] for c in sorted_checks(cs)] == ["c", "b", "a", "d"]


def test_cli_report(tmp_path, capsys):
    plan_file = tmp_path / "plan.json"
    save_plan(make_plan("needle", "left", errors=True), plan_file, identity=IDENTITY)
    out = tmp_path / "report.pdf"
    assert main(["report", str(plan_file), "-o", str(out)]) == 0
    first = pages_text(out)[0]
    assert "PLAN HAS ERRORS" in first and "needle-bone collision" in first
    assert "DOE" not in " ".join(pages_text(out))
    assert main(["report", str(plan_file), "-o", str(tmp_path / "id.pdf"), "--identify"]) == 0
    assert "DOE^JANE" in pages_text(tmp_path / "id.pdf")[0]


def test_cli_report_tampered_exit_2(tmp_path):
    plan_file = tmp_path / "plan.json"
    save_plan(make_plan("needle", "left"), plan_file)
    plan_file.write_text(plan_file.read_text().replace('"side": "left"', '"side": "right"'))
    out = tmp_path / "r.pdf"
    r = subprocess.run([sys.executable, "-m", "spineplan", "report", str(plan_file), "-o", str(out)],
                       capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spineplan: error:") and "tampered" in lines[0]
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_cli_report_missing_or_not_a_plan(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope.json"), "-o", str(tmp_path / "r.pdf")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert main(["report", str(bad), "-o", str(tmp_path / "r.pdf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("spineplan: error:") for line in err) and len(err) == 2


def test_axial_overview_marks_r_on_left_and_l_on_right():
    ph = phantom()
    (_, axial), _ = render_overview_images(make_plan(), ph.ct, None, pixel_mm=1.0)
    white = np.all(axial == 255, axis=-1)
    h, w = white.shape
    top = white[: h // 8]
    assert top[:, : w // 8].sum() > 5 and top[:, -w // 8:].sum() > 5
    assert not top[:, w // 4: 3 * w // 4].any()


@pytest.mark.parametrize("flip_axis", [0, 1, 2])
def test_overview_is_the_same_for_a_flipped_acquisition(flip_axis):
    """The overview is resampled in LPS: storing the scan with a flipped axis changes nothing."""
    ph = phantom()
    ct = ph.ct
    n = ct.size_ijk[flip_axis]
    d = ct.direction.copy()
    d[:, flip_axis] *= -1
    origin = ct.lps_points_from_ijk(np.eye(3)[flip_axis] * (n - 1))
    arr = np.flip(ct.array, axis=2 - flip_axis)
    flipped = ct.with_array(np.ascontiguousarray(arr), direction=d, origin=tuple(origin))
    assert np.allclose(flipped.center_lps(), ct.center_lps())
    plan = make_plan("needle", "left")
    a = render_overview_images(plan, ct, None, pixel_mm=1.0)
    b = render_overview_images(plan, flipped, None, pixel_mm=1.0)
    for (_, x), (_, y) in zip(a, b):
        assert x.shape == y.shape
        assert np.mean(np.abs(x.astype(int) - y.astype(int)) > 2) < 0.001


@pytest.mark.parametrize("side", ["left", "right"])
def test_trajectory_diagram_without_images(tmp_path, side):
    from spineplan.core.export.report import render_trajectory_diagrams

    plan = make_plan("needle", side)
    (cap, axial), (_, lateral) = render_trajectory_diagrams(plan)
    green = np.argwhere((axial[..., 1] == 160) & (axial[..., 0] == 0))[:, 1].mean()
    red = np.argwhere((axial[..., 0] == 220) & (axial[..., 1] == 0))[:, 1].mean()
    assert (green > red) == (side == "left")          # patient's left on the image right
    assert "RIGHT on the image left" in cap
    g_rows = np.argwhere((lateral[..., 1] == 160) & (lateral[..., 0] == 0))[:, 0].mean()
    r_rows = np.argwhere((lateral[..., 0] == 220) & (lateral[..., 1] == 0))[:, 0].mean()
    assert g_rows < r_rows                            # entry is 8 mm superior: higher up
    f = write_report(plan, tmp_path / "r.pdf")
    assert sum(len(p.images) for p in PdfReader(str(f)).pages) == 2


def test_motor_unit_measurement_table(tmp_path):
    plan = make_plan("cage", "left")
    plan["motor_unit"] = {"level": "L4-L5", "measurements": {"disc_height_posterior_mm": 8.0,
                                                           "segmental_angle_deg": 8.9},
                          "implausible": []}
    plan["measurements"] = {"canal_ap_mm": 16.0}
    text = " ".join(pages_text(write_report(plan, tmp_path / "m.pdf")))
    assert "Measurements" in text
    for s in ("Motor unit L4-L5", "Disc height, posterior 8.0 mm", "Segmental angle (lordosis +) 8.9 deg",
              "canal_ap_mm", "16.0"):
        assert s in text
    assert "IMPLAUSIBLE" not in text


def test_bad_image_and_bad_output_folder(tmp_path, capsys):
    from spineplan.core.errors import InvalidInputError

    plan = make_plan()
    with pytest.raises(InvalidInputError, match="does not exist"):
        write_report(plan, tmp_path / "r.pdf", images=[tmp_path / "missing.png"])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(InvalidInputError, match="not a readable"):
        write_report(plan, tmp_path / "r.pdf", images=[junk])
    assert not (tmp_path / "r.pdf").exists()
    plan_file = tmp_path / "plan.json"
    save_plan(plan, plan_file)
    assert main(["report", str(plan_file), "-o", str(tmp_path / "no" / "such" / "r.pdf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spineplan: error:")


@pytest.mark.shared_data
def test_overview_on_real_ct_puts_the_target_on_its_disc(shared_data):
    """Real RAS-stored NIfTI CT: the resampled label overlay and the plan agree in LPS."""
    import SimpleITK as sitk

    from spineplan.core.volume import Volume

    d = shared_data / "ct_lumbar_totalseg"
    ct = Volume.from_sitk(sitk.ReadImage(str(d / "example_ct.nii.gz")), modality="CT")
    discs = Volume.from_sitk(sitk.ReadImage(str(d / "example_ct_discs_verse.nii.gz")))
    ijk = np.argwhere(discs.array == 123)[:, ::-1].mean(0)      # L4/L5 disc centroid
    target = ct.lps_points_from_ijk(ijk)
    plan = make_plan("needle", "left")
    plan["target_lps"] = target.tolist()
    plan["entry_lps"] = (target + [70.0, 60.0, 0.0]).tolist()
    (_, axial), (_, sag) = render_overview_images(plan, ct, discs, pixel_mm=1.0)
    centres = []
    for img in (axial, sag):
        red = np.argwhere((img[..., 0] == 230) & (img[..., 1] == 0) & (img[..., 2] == 0))
        r, c = np.rint(red.mean(0)).astype(int)
        centres.append(c)
        ring = img[r - 6:r + 7, c - 6:c + 7].reshape(-1, 3).astype(int)
        # around the red target dot the disc overlay (cyan-tinted: blue > red) is visible
        tinted = (ring[:, 2] - ring[:, 0] > 30) & (ring[:, 1] - ring[:, 0] > 30)
        assert tinted.sum() > 10
    green = np.argwhere((axial[..., 1] == 200) & (axial[..., 0] == 0))[:, 1].mean()
    assert green > centres[0]  # left entry on the image right


def test_first_page_says_how_the_levels_were_named(tmp_path):
    """The segmentation's evidence and flags travel into page 1; an unconfirmed count says so."""
    from spineplan.core.segmentation.confirm import confirmed
    from spineplan.core.segmentation.result import Anchor, Flag, FlagKind, LevelEvidence, SegmentationResult

    res = SegmentationResult(None, levels=["L3", "L4", "L5", "S1"], confidence={"L4": 0.9, "L5": 0.9},
                             flags=[Flag(FlagKind.LEVEL_UNKNOWN, "level unknown: name one vertebra")],
                             evidence=LevelEvidence(Anchor.ASSUMED, {"L4": 2}), backend="classical-ct")
    plan = make_plan("needle", "left")
    plan["segmentation"] = res.summary_dict()
    first = pages_text(write_report(plan, tmp_path / "a.pdf"))[0]
    assert "named from an assumed level" in first and "lowest confidence 0.10" in first
    assert "Level flag: level unknown: name one vertebra" in first and "LEVELS NOT ESTABLISHED" in first
    plan["segmentation"] = confirmed(res, "L4-L5").summary_dict()
    first = pages_text(write_report(plan, tmp_path / "b.pdf"))[0]
    assert "confirmed by the user (L4-L5)" in first and "LEVELS NOT ESTABLISHED" not in first
    plan.pop("segmentation")
    first = pages_text(write_report(plan, tmp_path / "c.pdf"))[0]
    assert "no record of how the levels were named" in first
