"""Motor-unit measurements against the phantom's exact geometry, sanity on real scans, and the
units that label corrections must keep (issue 15: numbers a surgeon can trust)."""

from __future__ import annotations

import numpy as np
import pytest

from spineplan.core.phantom import make_phantom
from spineplan.core.segmentation import labels as L
from spineplan.core.segmentation.edit import rename_vertebra, shift_levels
from spineplan.core.segmentation.motor_units import compute_motor_units

SLIPS = {"L4-L5": 6.0, "L2-L3": -3.0}   # anterolisthesis and retrolisthesis
# (spacing mm) -> tolerances: heights mm, angle deg, slip mm, canal mm, sac area fraction
TOL = {1.0: dict(h=0.5, ang=0.5, slip=0.5, canal=0.5, sac=0.02),
       3.0: dict(h=2.5, ang=5.0, slip=2.0, canal=1.5, sac=0.07)}


@pytest.fixture(scope="module", params=sorted(TOL))
def slipped(request):
    ph = make_phantom(spacing=request.param, slip_mm=SLIPS)
    return request.param, ph, {u.name: u for u in compute_motor_units(ph.labels)}


def test_disc_heights_and_angle_match_the_phantom(slipped):
    sp, ph, units = slipped
    tol = TOL[sp]
    assert list(units) == ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    for name, u in units.items():
        t, g = ph.truth["discs"][name], u.disc_geometry
        for k in ("anterior", "middle", "posterior"):
            assert abs(getattr(g, f"{k}_height_mm") - t[f"{k}_height_mm"]) <= tol["h"], (sp, name, k)
        assert abs(u.segmental_angle_deg - t["angle_deg"]) <= tol["ang"], (sp, name)
        assert u.segmental_angle_deg > 0  # lordotic wedges: anterior taller


def test_slip_is_the_posterior_wall_offset(slipped):
    sp, ph, units = slipped
    for name, u in units.items():
        t = ph.truth["discs"][name]
        assert abs(u.slip_mm - t["slip_posterior_wall_mm"]) <= TOL[sp]["slip"], (sp, name, u.slip_mm)
    assert units["L4-L5"].slip_mm > 3.0 and units["L4-L5"].meyerding == 1   # anterolisthesis +
    assert units["L2-L3"].slip_mm < -1.5                                     # retrolisthesis -
    assert abs(units["L3-L4"].slip_mm) <= TOL[sp]["slip"]


def test_canal_ap_and_sac_area_at_the_disc_level(slipped):
    sp, ph, units = slipped
    tol = TOL[sp]
    for name in ("T12-L1", "L1-L2", "L3-L4"):  # unslipped levels: the canal's exact size
        u = units[name]
        assert abs(u.canal_ap_mm - ph.truth["canal_ap_mm"]) <= tol["canal"], (sp, name, u.canal_ap_mm)
        assert abs(u.dural_sac_area_mm2 - ph.truth["sac_area_mm2"]) <= tol["sac"] * ph.truth["sac_area_mm2"], \
            (sp, name, u.dural_sac_area_mm2)
        assert u.canal_grade == "normal"
    # a 6 mm slip narrows the bony canal by about its size
    assert units["L4-L5"].canal_ap_mm < units["L3-L4"].canal_ap_mm - 3.0


def test_bodies_only_labels_keep_the_sac_area_and_slip():
    """Label maps of the vertebral bodies alone (as MRI datasets give) do not enclose the canal:
    the sac is still measured, the bony canal is not (no arch), slips still are."""
    from spineplan.core.phantom import BODY_B

    ph = make_phantom(spacing=1.0, slip_mm={"L4-L5": 6.0})
    arr = ph.labels.array.copy()
    kji = np.argwhere(np.isin(arr, list(L.VERTEBRA_LABELS)))
    lps = ph.labels.lps_points_from_ijk(kji[:, ::-1].astype(float))
    for name, v in ph.truth["vertebrae"].items():
        sel = arr[tuple(kji.T)] == v["label"]
        w = np.asarray(v["axis_lps"])
        post = np.cross(w, [1.0, 0.0, 0.0])  # the vertebra's posterior axis
        arch = sel & ((lps - v["center_lps"]) @ post > BODY_B + 0.5)
        arr[tuple(kji[arch].T)] = 0
    units = {u.name: u for u in compute_motor_units(ph.labels.with_array(arr))}
    for name in ("L1-L2", "L3-L4"):
        u = units[name]
        assert u.canal_ap_mm is None
        assert abs(u.dural_sac_area_mm2 - ph.truth["sac_area_mm2"]) <= 0.02 * ph.truth["sac_area_mm2"], name
    assert abs(units["L4-L5"].slip_mm - ph.truth["discs"]["L4-L5"]["slip_posterior_wall_mm"]) <= 1.0


def test_without_disc_labels_the_bodies_give_the_endplates():
    """Vertebra-only label maps (no discs): slip and angle from the bodies' facing endplates
    (a flat guess of the endplates read a 17.8 mm slip on an MRI dev case)."""
    ph = make_phantom(spacing=2.0, slip_mm=SLIPS)
    arr = ph.labels.array.copy()
    arr[(arr > 100) & (arr < 200)] = 0
    units = compute_motor_units(ph.labels.with_array(arr))
    assert len(units) == 6
    for u in units:
        t = ph.truth["discs"][u.name]
        assert u.disc_geometry is None and "no disc labelled" in u.warnings[0]
        assert abs(u.slip_mm - t["slip_posterior_wall_mm"]) <= 1.0, (u.name, u.slip_mm)
        assert abs(u.segmental_angle_deg - t["angle_deg"]) <= 3.5, (u.name, u.segmental_angle_deg)
        assert not u.implausible


def test_mri_bodies_only_dev_cases_are_plausible(shared_data):
    from spineplan.core.dicom.load import read_image_file

    for case in ("case01", "case02", "case05"):
        units = compute_motor_units(read_image_file(
            shared_data / "mri_lumbar_vb_dev" / f"{case}_vertebrae_verse.nii.gz"))
        assert [u.name for u in units] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5"], case
        for u in units:
            assert abs(u.slip_mm) <= 6.0 and -5.0 <= u.segmental_angle_deg <= 20.0, (case, u.name)


def _lumbar_sanity(units, has_sac):
    for u in units:
        if not u.name.startswith(("L", "T12")) or u.disc_geometry is None:
            continue
        g = u.disc_geometry
        for h in (g.anterior_height_mm, g.middle_height_mm, g.posterior_height_mm):
            assert 2.0 <= h <= 18.0, (u.name, h)
        assert -5.0 <= u.segmental_angle_deg <= 20.0, (u.name, u.segmental_angle_deg)
        assert abs(u.slip_mm) <= 6.0, (u.name, u.slip_mm)
        assert 9.0 <= u.canal_ap_mm <= 18.0, (u.name, u.canal_ap_mm)
        if has_sac:
            assert 100.0 <= u.dural_sac_area_mm2 <= 300.0, (u.name, u.dural_sac_area_mm2)
        assert not u.implausible, (u.name, u.implausible)


def test_sample_reference_labels_give_physiological_numbers(sample_dicom):
    from spineplan.core.dicom.load import load_volume
    from spineplan.core.segmentation.importers import read_labels

    ct = load_volume(sample_dicom)
    ref = sample_dicom / "reference"
    lab = read_labels([ref / "vertebrae_verse.nii.gz", ref / "discs_verse.nii.gz"], ct)
    units = {u.name: u for u in compute_motor_units(lab)}
    _lumbar_sanity(units.values(), has_sac=False)
    # the figures: canal 2.0-2.3 mm everywhere, slips of -34 mm at T12-L1
    assert abs(units["T12-L1"].slip_mm) <= 3.0 and -6.0 <= units["L4-L5"].slip_mm <= 0.0


def test_sample_segmented_canal_matches_its_dural_sac(sample_dicom):
    """On the program's own labels the canal read 2.0-2.3 mm at every level while the sac label
    is 12-18 mm AP; slips of -18 mm (T12-L1) and +12 mm (L4-L5)."""
    from spineplan.core.dicom.load import load_volume
    from spineplan.core.segmentation.base import default_for

    ct = load_volume(sample_dicom)
    res = default_for("CT").segment(ct)
    units = {u.name: u for u in compute_motor_units(res.labels)}
    _lumbar_sanity(units.values(), has_sac=L.CANAL in np.unique(res.labels.array))
    assert abs(units["T12-L1"].slip_mm) <= 3.0 and -6.0 <= units["L4-L5"].slip_mm <= 0.0


def test_shared_real_ct_gives_physiological_numbers(shared_data):
    import SimpleITK as sitk

    from spineplan.core.dicom.load import read_image_file

    d = shared_data / "ct_lumbar_totalseg"
    ct = read_image_file(d / "example_ct.nii.gz")
    v = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "example_ct_vertebrae_verse.nii.gz")))
    discs = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "example_ct_discs_verse.nii.gz")))
    units = compute_motor_units(ct.with_array(np.where(discs > 0, discs, v).astype(np.uint16)))
    assert [u.name for u in units if u.disc_geometry] == ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    _lumbar_sanity(units, has_sac=False)


# ------------------------------------------------------------- corrections keep units whole
@pytest.fixture(scope="module")
def coarse():
    return make_phantom(levels=("T11", "T12", "L1", "L2", "L3", "L4", "L5"), spacing=3.0)


def _names(labels_volume, arr):
    return [u.name for u in compute_motor_units(labels_volume.with_array(arr))]


def test_levels_up_keeps_the_lowest_unit(coarse):
    lab = coarse.labels
    up = shift_levels(lab.array, -1)
    names = _names(lab, up)
    assert names == ["T10-T11", "T11-T12", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-S1"]
    u = compute_motor_units(lab.with_array(up))[-1]
    assert u.disc == L.disc_label(L.vertebra_label("L4")) and u.disc_geometry is not None


def test_rename_l5_to_l6_gives_l4_l6_and_l6_s1(coarse):
    lab = coarse.labels
    arr = rename_vertebra(lab.array, L.vertebra_label("L5"), L.vertebra_label("L6"))
    units = compute_motor_units(lab.with_array(arr))
    assert [u.name for u in units][-2:] == ["L4-L6", "L6-S1"]
    assert all(u.disc_geometry is not None for u in units[-2:])


def test_rename_t12_to_t13_keeps_both_units(coarse):
    lab = coarse.labels
    arr = rename_vertebra(lab.array, L.vertebra_label("T12"), L.vertebra_label("T13"))
    names = _names(lab, arr)
    assert names[:2] == ["T11-T13", "T13-L1"] and len(names) == 7


def test_a_vertebra_missing_from_the_labels_is_no_unit(coarse):
    lab = coarse.labels
    arr = lab.array.copy()
    arr[arr == L.vertebra_label("L2")] = 0
    names = _names(lab, arr)
    assert "L1-L3" not in names and "L1-L2" not in names and "L3-L4" in names


# ------------------------------------------------------------- implausible numbers are marked
def shifted_vertebra(labels_volume, name: str, posterior_mm: float):
    """The label map with one vertebra's label moved posteriorly (+y, LPS) by ``posterior_mm``:
    a labelling error that reads as an impossible retrolisthesis below it."""
    assert np.allclose(labels_volume.direction, np.eye(3))
    arr = labels_volume.array.copy()
    lab = L.vertebra_label(name)
    m = arr == lab
    arr[m] = 0
    shift = int(round(posterior_mm / labels_volume.spacing[1]))
    moved = np.roll(m, shift, axis=1)  # array axis 1 = j = +y
    arr[moved] = lab
    return labels_volume.with_array(arr)


@pytest.fixture(scope="module")
def bad_slip():
    ph = make_phantom(spacing=2.5)
    return ph, shifted_vertebra(ph.labels, "L1", 20.0)


def test_shifted_vertebra_is_an_implausible_slip(bad_slip):
    from spineplan.core.segmentation.motor_units import PLAUSIBLE_RANGES

    _ph, lab = bad_slip
    units = {u.name: u for u in compute_motor_units(lab)}
    u = units["L1-L2"]
    assert u.slip_mm < PLAUSIBLE_RANGES["slip_mm"].low and "slip_mm" in u.implausible
    assert all(not units[n].implausible for n in ("L2-L3", "L3-L4", "L4-L5", "L5-S1"))
    d = u.summary_dict()
    assert d["level"] == "L1-L2" and "slip_mm" in d["implausible"] and d["measurements"]["slip_mm"] < -12


def test_implausible_slip_marked_in_segment_json_and_report(bad_slip, tmp_path, monkeypatch, capsys):
    import json

    from pypdf import PdfReader

    from spineplan import cli
    from spineplan.core.dicom.load import write_volume
    from spineplan.core.export.report import write_report
    from spineplan.core.planning.plan import Anatomy
    from spineplan.core.planning.planner import make_plan
    from spineplan.core.segmentation import base
    from spineplan.core.segmentation.base import SegmentationResult

    ph, lab = bad_slip

    class Stub:
        name, modalities = "stub", ("CT",)
        missing_dependencies: list = []

        def is_available(self):
            return True

        def segment(self, volume, *, progress=None, cancel=None):
            return SegmentationResult(lab, levels=["T12", "L1", "L2", "L3", "L4", "L5", "S1"])

    base._load_optional()
    monkeypatch.setattr(base, "_REGISTRY", {"stub": Stub()})
    write_volume(ph.ct, tmp_path / "ct.nii.gz")
    rc = cli.main(["segment", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "l.nii.gz"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    by = {u["level"]: u for u in doc["motor_units"]}
    assert list(by) == ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    assert set(by["L1-L2"]["measurements"]) >= {"disc_height_anterior_mm", "disc_height_middle_mm",
                                                "disc_height_posterior_mm", "segmental_angle_deg",
                                                "slip_mm", "canal_ap_mm", "sac_area_mm2"}
    assert "slip_mm" in by["L1-L2"]["implausible"] and by["L4-L5"]["implausible"] == []
    # text mode says it too
    cli.main(["segment", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "l.nii.gz")])
    assert "implausible: L1-L2 slip_mm" in capsys.readouterr().out

    plan = make_plan(Anatomy(ph.ct, lab), "L1-L2", "tube", "left")
    assert "slip_mm" in plan.motor_unit["implausible"]
    pdf = write_report(plan.to_dict(), tmp_path / "r.pdf")
    text = " ".join(" ".join((p.extract_text() or "").split()) for p in PdfReader(str(pdf)).pages)
    slip = plan.motor_unit["measurements"]["slip_mm"]
    assert f"Slip (anterolisthesis +) IMPLAUSIBLE ({slip:.1f} mm measured" in text
    assert "Bony canal AP" in text
