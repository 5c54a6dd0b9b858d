"""The phantom's labels agree with the ground truth it reports."""

import numpy as np
import pytest

from spineplan.core.phantom import make_phantom
from spineplan.core.segmentation import labels as L


@pytest.fixture(scope="module")
def ph():
    return make_phantom(spacing=1.0, herniation={"level": "L4-L5", "side": "left", "zone": "paracentral"})


def test_levels_and_labels_present(ph):
    assert ph.truth["levels"] == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    present = set(np.unique(ph.labels.array).tolist())
    for name in ph.truth["levels"]:
        assert L.vertebra_label(name) in present
    assert {119, 120, 121, 122, 123, 124, L.CANAL} <= present


def test_left_marker_is_on_patient_left(ph):
    m = np.argwhere(ph.ct.array > 2000)  # the metal bead only
    centre = ph.ct.lps_points_from_ijk(m[:, ::-1].mean(0))
    assert centre[0] > 50  # +x LPS = patient's left
    assert np.allclose(centre, ph.truth["left_marker_lps"], atol=0.5)


def test_disc_height_along_normal_matches_truth(ph):
    for name, d in ph.truth["discs"].items():
        c, n = np.array(d["center_lps"]), np.array(d["normal_lps"])
        t = np.arange(-15, 15, 0.1)
        vals = [ph.labels.value_at_lps(c + s * n) for s in t]
        inside = t[np.array(vals) == d["label"]]
        assert abs((inside.max() - inside.min()) - d["middle_height_mm"]) <= 1.0, name


def test_facet_joint_gap_between_articular_processes(ph):
    f = ph.truth["facets"]["L4-L5"]
    assert f["left"][0] > 0 > f["right"][0]
    for side in ("left", "right"):
        p = np.array(f[side])
        assert ph.labels.value_at_lps(p) == 0  # joint space is not bone
        # bone of L4 medially and of L5 laterally within a few mm
        sgn = 1 if side == "left" else -1
        assert ph.labels.value_at_lps(p - [sgn * 3, 0, 0]) == 23
        assert ph.labels.value_at_lps(p + [sgn * 3, 0, 0]) == 24


def test_herniation_is_disc_inside_canal_on_left(ph):
    h = np.array(ph.truth["herniation"]["center_lps"])
    assert h[0] > 0 and ph.labels.value_at_lps(h) == 123
