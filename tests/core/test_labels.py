import pytest

from spineplan.core.segmentation import labels as L


def test_names_and_numbers():
    assert L.vertebra_name(20) == "L1" and L.vertebra_name(26) == "S1" and L.vertebra_name(19) == "T12"
    assert L.vertebra_label("l4") == 23
    assert L.disc_label(23) == 123 and L.disc_name(124) == "L5/S1" and L.disc_name(119) == "T12/L1"
    assert L.parse_motor_unit("L4-L5") == (23, 24)
    assert L.parse_motor_unit("L5-S1") == (24, 26)
    assert L.parse_motor_unit("T12-L1") == (19, 20)
    assert L.craniocaudal_order([26, 24, 28, 19, 20]) == [19, 28, 20, 24, 26]
    for bad in ("L4-L6x", "L3-L5", "foo"):
        with pytest.raises(ValueError):
            L.parse_motor_unit(bad)


def test_label_counts_equal_bincount_across_chunks():
    import numpy as np

    from spineplan.core.segmentation.labels import _COUNT_CHUNK, label_counts

    rng = np.random.default_rng(3)
    arr = rng.integers(0, 30, (3, 7, _COUNT_CHUNK // 10), dtype=np.uint16)  # 2.1 chunks
    arr[2, 6, -1] = 301  # the largest value in the last, partial chunk
    assert np.array_equal(label_counts(arr), np.bincount(arr.ravel()))
    c = label_counts(arr, minlength=400)
    assert c.size == 400 and np.array_equal(c, np.bincount(arr.ravel(), minlength=400))
    assert np.array_equal(label_counts(arr[:, ::2, ::3]), np.bincount(arr[:, ::2, ::3].ravel()))
    assert label_counts(np.zeros((0, 4, 4), np.uint16), minlength=5).tolist() == [0] * 5
