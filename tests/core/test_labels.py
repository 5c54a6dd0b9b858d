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
