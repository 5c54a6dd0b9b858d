"""One colour palette for labels (segmentation/labels.py): distinct neighbours, the same
colours in the slice overlay, the rehearsal and the report."""

import numpy as np
import pytest

from spineplan.core.export import report
from spineplan.core.segmentation import labels as L
from spineplan.render import rehearsal, slicing


def _lab(rgb):
    """CIE L*a*b* (D65) of an sRGB colour 0-255."""
    c = np.asarray(rgb, float) / 255
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ c / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _delta_e(a, b) -> float:
    return float(np.linalg.norm(_lab(a) - _lab(b)))


LEVELS = [L.vertebra_label(n) for n in [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)]
          + [f"L{i}" for i in range(1, 6)] + ["S1"]]


def test_neighbouring_vertebrae_and_discs_are_told_apart():
    for n, v in enumerate(LEVELS):
        for w in LEVELS[n + 1:n + 3]:  # the next two levels down
            assert _delta_e(L.label_rgb(v), L.label_rgb(w)) >= 45, (L.vertebra_name(v), L.vertebra_name(w))
        for other in (L.DISC_RGB, L.CANAL_RGB, (0, 255, 255), (255, 31, 20), (38, 217, 64), (255, 140, 0)):
            # disc, canal; the rehearsal's instrument, structures at risk, target, practice attempt
            assert _delta_e(L.label_rgb(v), other) >= 35, (L.vertebra_name(v), other)
    l4, l5, s1 = (L.label_rgb(L.vertebra_label(n)) for n in ("L4", "L5", "S1"))
    assert _delta_e(l4, s1) > 45 and _delta_e(l5, L.DISC_RGB) > 45  # the pairs the issue found
    assert L.label_rgb(L.vertebra_label("L6")) == L.TRANSITIONAL_RGB
    assert all(L.label_rgb(d) == L.DISC_RGB for d in (119, 123, 124))


@pytest.mark.parametrize("name", ["L4", "L5", "S1", "disc", "canal"])
def test_one_palette_in_every_view(name):
    v = {"disc": 123, "canal": L.CANAL}.get(name) or L.vertebra_label(name)
    rgb = np.array(L.label_rgb(v))
    assert np.array_equal(slicing.label_rgba(np.array([[v]]))[0, 0, :3], rgb)  # slice overlay
    assert np.allclose(np.array(rehearsal._label_rgb(v)) * 255, rgb)  # rehearsal meshes
    assert np.allclose(report._label_colour(np.array([v])) [0] * 255, rgb)  # report overview
