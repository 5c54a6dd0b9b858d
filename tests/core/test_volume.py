import numpy as np
import pytest

from spineplan.core.volume import Volume, orientation_code


def _oblique_volume():
    a = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    th = np.deg2rad(20)
    rot = np.array([[np.cos(th), 0, np.sin(th)], [0, 1, 0], [-np.sin(th), 0, np.cos(th)]])
    return Volume(a, spacing=(0.5, 0.7, 2.0), origin=(-10.0, 20.0, 30.0), direction=rot)


def test_lps_from_ijk_matches_sitk():
    v = _oblique_volume()
    img = v.to_sitk()
    for ijk in [(0, 0, 0), (5, 4, 3), (2, 1, 3)]:
        assert np.allclose(v.lps_points_from_ijk(ijk), img.TransformIndexToPhysicalPoint(ijk))
    back = Volume.from_sitk(img)
    assert np.array_equal(back.array, v.array)
    assert np.allclose(back.lps_from_ijk(), v.lps_from_ijk())


def test_ijk_lps_inverse_and_value():
    v = _oblique_volume()
    pts = np.array([[1.0, 2.0, 3.0], [5.0, 0.0, 1.0]])
    assert np.allclose(v.ijk_points_from_lps(v.lps_points_from_ijk(pts)), pts)
    assert v.value_at_lps(v.lps_points_from_ijk((5, 4, 3))) == v.array[3, 4, 5]
    assert np.isnan(v.value_at_lps(np.array([1e4, 0, 0])))


def test_ras_is_lps_with_xy_negated():
    v = _oblique_volume()
    p = v.lps_points_from_ijk((1, 2, 3))
    r = v.ras_from_ijk() @ np.array([1, 2, 3, 1.0])
    assert np.allclose(r[:3], [-p[0], -p[1], p[2]])


def test_orientation_code():
    assert orientation_code(np.eye(3)) == "LPS"
    assert orientation_code(np.diag([-1, -1, 1])) == "RAS"
    assert orientation_code(np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]])) == "IPL"


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        Volume(np.zeros((3, 3)))
    with pytest.raises(ValueError):
        Volume(np.zeros((3, 3, 3)), spacing=(1, 0, 1))
