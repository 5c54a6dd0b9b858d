"""The three-procedure comparison (issue 16 item 7) and the plan/compare command lines."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from spineplan.core.persistence import load_plan
from spineplan.core.phantom import make_phantom
from spineplan.core.planning.compare import LADDER, ContraindicationKind, compare_procedures
from spineplan.core.planning.lesion import Lesion
from spineplan.core.planning.plan import Anatomy
from spineplan.core.planning.safety import CheckId

HERNIATION = {"level": "L4-L5", "side": "left", "zone": "paracentral", "size_mm": 6.0}


def _compare(**phantom_kw):
    ph = make_phantom(spacing=1.5, herniation=HERNIATION, **phantom_kw)
    anat = Anatomy(ph.ct, ph.labels)
    return ph, compare_procedures(anat, "L4-L5", "left",
                                  lesion=Lesion(ph.truth["herniation"]["center_lps"], 6.0))


def test_contained_paracentral_herniation_all_reach_it_least_destructive_recommended():
    ph, cmp = _compare()
    d = cmp.to_dict()
    for proc in LADDER:
        o = d["procedures"][proc]
        assert o["reaches_lesion"] is True, proc
        assert o["contraindications"] == [] and o["errors"] == [], (proc, o)
        assert o["motor_units_touched"] == ["L4-L5"]
    assert d["recommended"] == "needle"
    assert "least destructive" in d["why"]
    n, t, c = (d["procedures"][p] for p in LADDER)
    # what each removes: nothing, a laminotomy, a facetectomy + discectomy
    assert n["bone_removed_cm3"] == 0.0 and n["incision_mm"] == 0.0 and n["facet_preserved_pct"] == 100.0
    assert t["bone_removed_cm3"] > 0.3 and 50.0 <= t["facet_preserved_pct"] < 100.0
    assert t["incision_mm"] == 18.0 and c["incision_mm"] > t["incision_mm"]
    assert c["facet_preserved_pct"] == 0.0 and c["bone_removed_cm3"] > 0.5
    assert n["annulus_opening_mm"] < t["annulus_opening_mm"] < c["annulus_opening_mm"]
    # muscle path: skin to the first labelled structure; the phantom's posterior skin is at
    # y = 115 and the laminae lie ~45-50 mm in front of it, so the tube's path is 50-90 mm
    assert 50.0 <= t["muscle_path_mm"] <= 90.0
    assert n["muscle_path_mm"] > t["muscle_path_mm"]  # the oblique needle crosses more muscle
    assert d["lesion"]["zone"] == "paracentral"


def test_disc_at_40_percent_of_its_neighbours_rules_out_ablation():
    # L3-L4 middle 9.5 mm, L5-S1 10.5 mm: a 4 mm L4-L5 disc is at 40 %
    ph, cmp = _compare(disc_heights={"L4": (5.0, 3.0)})
    n = cmp.options["needle"]
    assert [c.kind for c in n.contraindications] == [ContraindicationKind.DISC_HEIGHT]
    assert "40 %" in n.contraindications[0].reason
    assert cmp.recommended == "tube"
    assert "needle ruled out" in cmp.why


def test_slip_of_8_mm_recommends_fusion():
    ph, cmp = _compare(slip_mm={"L4-L5": 8.0})
    for proc in ("needle", "tube"):
        assert ContraindicationKind.INSTABILITY in [c.kind for c in cmp.options[proc].contraindications]
    assert cmp.options["cage"].contraindications == []
    assert cmp.recommended == "cage"


def test_without_a_lesion_the_comparison_says_so():
    ph = make_phantom(spacing=2.0)
    cmp = compare_procedures(Anatomy(ph.ct, ph.labels), "L4-L5", "right")
    d = cmp.to_dict()
    assert d["lesion"] is None and "no lesion marked" in d["why"]
    assert all(o["reaches_lesion"] is None for o in d["procedures"].values())
    assert d["recommended"] == "needle"


# --------------------------------------------------------------------------- command line
def cli(*args):
    return subprocess.run([sys.executable, "-m", "spineplan", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from spineplan.core.dicom.load import write_volume

    d = tmp_path_factory.mktemp("lesion_cli")
    ph = make_phantom(spacing=2.0, herniation=HERNIATION)
    write_volume(ph.ct, d / "ct.nii.gz")
    write_volume(ph.labels, d / "labels.nii.gz")
    plain = make_phantom(spacing=2.0)
    disc = ph.truth["discs"]["L4-L5"]["label"]
    mask = ((ph.labels.array == disc) & (plain.labels.array != disc)).astype(np.uint8)
    write_volume(ph.labels.with_array(mask), d / "mask.nii.gz")
    return d, ph


def test_cli_plan_with_lesion_writes_it_in_the_plan(files, tmp_path):
    d, ph = files
    c = ph.truth["herniation"]["center_lps"]
    r = cli("plan", d / "ct.nii.gz", "--labels", d / "labels.nii.gz", "--level", "L4-L5", "--procedure",
            "tube", "--side", "left", f"--lesion={c[0]},{c[1]},{c[2]},6", "-o", tmp_path / "p.json", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["lesion"]["zone"] == "paracentral"
    plan = load_plan(tmp_path / "p.json")
    les = plan["lesion"]
    assert les["centre_lps"] == pytest.approx(c) and les["radius_mm"] == 6.0
    assert (les["zone"], les["side"], les["level"]) == ("paracentral", "left", "L4-L5")
    assert abs(les["migration_mm"]) <= 1.0
    assert [x for x in plan["checks"] if x["id"] == CheckId.LESION_REACHED.value][0]["ok"]
    # a painted mask gives the same location and a mask summary
    r = cli("plan", d / "ct.nii.gz", "--labels", d / "labels.nii.gz", "--level", "L4-L5", "--procedure",
            "needle", "--side", "left", "--lesion-mask", d / "mask.nii.gz", "-o", tmp_path / "m.json")
    assert r.returncode == 0, r.stderr
    les = load_plan(tmp_path / "m.json")["lesion"]
    assert les["mask"]["voxels"] > 10 and les["zone"] == "paracentral"
    # one level up: written, with the red "lesion reached" check -> exit 3
    up = np.add(c, np.subtract(ph.truth["discs"]["L3-L4"]["center_lps"], ph.truth["discs"]["L4-L5"]["center_lps"]))
    r = cli("plan", d / "ct.nii.gz", "--labels", d / "labels.nii.gz", "--level", "L4-L5", "--procedure",
            "tube", "--side", "left", "--lesion=" + ",".join(f"{x:.2f}" for x in up), "-o", tmp_path / "u.json",
            "--json")
    assert r.returncode == 3, r.stderr
    assert CheckId.LESION_REACHED.value in json.loads(r.stdout)["error_ids"]


@pytest.mark.parametrize("extra", [["--lesion", "1,2"], ["--lesion=1,2,3,-4"], ["--lesion", "x,y,z"],
                                   ["--lesion-mask", "missing.nii.gz"], ["--lesion=1e6,0,0"],
                                   ["--lesion", "1,2,3", "--lesion-mask", "m.nii.gz"]])
def test_cli_bad_lesion_exits_2_in_one_line(files, tmp_path, extra):
    d, _ = files
    r = cli("plan", d / "ct.nii.gz", "--labels", d / "labels.nii.gz", "--level", "L4-L5", "--procedure",
            "tube", "--side", "left", *extra, "-o", tmp_path / "p.json")
    assert r.returncode == 2
    assert r.stderr.startswith("spineplan: error:") and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr and not (tmp_path / "p.json").exists()


def test_cli_lesion_mask_on_another_grid_is_refused(files, tmp_path):
    from spineplan.core.dicom.load import write_volume

    d, _ = files
    other = make_phantom(spacing=3.0)
    write_volume(other.labels.with_array((other.labels.array > 0).astype(np.uint8)), tmp_path / "o.nii.gz")
    r = cli("plan", d / "ct.nii.gz", "--labels", d / "labels.nii.gz", "--level", "L4-L5", "--procedure",
            "tube", "--side", "left", "--lesion-mask", tmp_path / "o.nii.gz", "-o", tmp_path / "p.json")
    assert r.returncode == 2 and "not on the image grid" in r.stderr


def test_cli_compare_writes_three_plans_and_recommends(files, tmp_path):
    d, ph = files
    c = ph.truth["herniation"]["center_lps"]
    r = cli("compare", d / "ct.nii.gz", "--labels", d / "labels.nii.gz", "--level", "L4-L5", "--side", "left",
            f"--lesion={c[0]},{c[1]},{c[2]},6", "-o", tmp_path / "cmp", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc["procedures"]) == {"needle", "tube", "cage"}
    assert doc["recommended"] == "needle" and doc["why"]
    for proc, o in doc["procedures"].items():
        assert {"bone_removed_cm3", "facet_preserved_pct", "disc_opened", "muscle_path_mm", "incision_mm",
                "reaches_lesion", "contraindications"} <= set(o)
        plan = load_plan(o["plan_file"])
        assert plan["procedure"] == proc and plan["lesion"]["zone"] == "paracentral"
    r = cli("compare", d / "ct.nii.gz", "--labels", d / "labels.nii.gz", "--level", "L4-L5", "--side", "left",
            "-o", tmp_path / "cmp2")
    assert r.returncode == 0 and "no lesion marked" in r.stdout and "recommended: needle" in r.stdout
    r = cli("compare", d / "ct.nii.gz", "--labels", d / "labels.nii.gz", "--level", "L9-L10", "--side", "left",
            "-o", tmp_path / "cmp3")
    assert r.returncode == 2 and r.stderr.startswith("spineplan: error:") and "Traceback" not in r.stderr


def test_compare_on_the_sample_ct_with_its_reference_labels(sample_dicom):
    """Real anatomy (the dev CT, 3 mm, TotalSegmentator labels without a dural sac): a lesion
    behind the L4-L5 disc, 6 mm left of the midline."""
    from spineplan.core.dicom.load import load_volume
    from spineplan.core.segmentation.importers import read_labels

    vol = load_volume(sample_dicom)
    ref = sample_dicom / "reference"
    anat = Anatomy(vol, read_labels([ref / "vertebrae_verse.nii.gz", ref / "discs_verse.nii.gz"], vol))
    g = anat.by_name["L4-L5"].disc_geometry
    centre = (np.array(g.center_lps) + 6.0 * np.array(g.lr_lps) + (g.ap_range_mm[1] + 3.0) * np.array(g.ap_lps))
    cmp = compare_procedures(anat, "L4-L5", "left", lesion=Lesion(centre, 5.0))
    les = cmp.lesion
    assert (les["level"], les["zone"], les["side"]) == ("L4-L5", "paracentral", "left")
    assert abs(les["migration_mm"]) <= 2.0
    assert les["estimated"] == ["sac_half_width_mm"]  # no sac label: said, not hidden
    assert all(o.reaches_lesion and not o.errors for o in cmp.options.values())
    assert cmp.recommended == "needle"
    up = np.array(anat.by_name["L3-L4"].disc_geometry.center_lps) - np.array(g.center_lps)
    cmp = compare_procedures(anat, "L4-L5", "left", lesion=Lesion(centre + up, 5.0))
    assert all(o.reaches_lesion is False for o in cmp.options.values())
    assert cmp.recommended is None and "does not reach the lesion" in cmp.why
