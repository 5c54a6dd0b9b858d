"""Slicer markups export: schema-valid, LPS numbers, left stays left after Slicer's LPS->RAS."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from spineplan.core.export.instrument_stl import cage_corners_lps
from spineplan.core.export.slicer_markups import write_markups

from .plan_dicts import make_plan, phantom

SCHEMA = json.loads((Path(__file__).parent.parent / "data" /
                     "slicer_markups_schema_v1.0.3.json").read_text())


def slicer_ras_points(markup: dict) -> np.ndarray:
    """Control points in Slicer's RAS world, converted as Slicer's markups reader does."""
    p = np.array([cp["position"] for cp in markup["controlPoints"]], float)
    if markup.get("coordinateSystem", "LPS") == "LPS":
        p = p * np.array([-1.0, -1.0, 1.0])
    return p


@pytest.mark.parametrize("procedure", ["needle", "tube", "cage"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_markups_valid_and_left_is_left(tmp_path, procedure, side):
    plan = make_plan(procedure, side)
    f = write_markups(plan, tmp_path / "plan.mrk.json")
    doc = json.loads(f.read_text())
    jsonschema.validate(doc, SCHEMA)
    line, fid = doc["markups"]
    assert line["type"] == "Line" and fid["type"] == "Fiducial"
    assert line["name"] == f"spineplan {procedure} L4-L5 {side}"
    assert line["coordinateSystem"] == "LPS"
    entry, target = (np.array(cp["position"]) for cp in line["controlPoints"])
    assert np.allclose(entry, plan["entry_lps"]) and np.allclose(target, plan["target_lps"])
    midline_x = phantom().truth["discs"]["L4-L5"]["center_lps"][0]
    sign = 1.0 if side == "left" else -1.0
    assert sign * (entry[0] - midline_x) > 10  # LPS: the patient's left is +x
    ras = slicer_ras_points(line)
    assert sign * ras[0, 0] < -10              # RAS: the patient's left is R < 0
    assert np.isclose(ras[0, 1], -plan["entry_lps"][1]) and np.isclose(ras[0, 2], plan["entry_lps"][2])
    assert np.isclose(line["measurements"][0]["value"],
                      np.linalg.norm(np.subtract(plan["target_lps"], plan["entry_lps"])))
    n_points = 10 if procedure == "cage" else 2
    assert len(fid["controlPoints"]) == n_points


def test_cage_corners_in_fiducials(tmp_path):
    plan = make_plan("cage", "left")
    doc = json.loads(write_markups(plan, tmp_path / "c.mrk.json").read_text())
    corners = np.array([cp["position"] for cp in doc["markups"][1]["controlPoints"][2:]])
    assert np.allclose(corners, cage_corners_lps(plan))
    assert np.allclose(corners.mean(0), plan["parameters"]["center_lps"])


def test_ras_option_gives_the_same_slicer_points(tmp_path):
    plan = make_plan("needle", "left")
    lps = json.loads(write_markups(plan, tmp_path / "a.mrk.json").read_text())
    ras = json.loads(write_markups(plan, tmp_path / "b.mrk.json",
                                   coordinate_system="RAS").read_text())
    jsonschema.validate(ras, SCHEMA)
    assert ras["markups"][0]["coordinateSystem"] == "RAS"
    assert np.allclose(slicer_ras_points(lps["markups"][0]), slicer_ras_points(ras["markups"][0]))


def test_schema_rejects_a_broken_file(tmp_path):
    doc = json.loads(write_markups(make_plan(), tmp_path / "a.mrk.json").read_text())
    doc["markups"][0]["coordinateSystem"] = "XYZ"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)
    doc["markups"][0]["coordinateSystem"] = "LPS"
    doc["markups"][0]["controlPoints"][0]["position"] = [1.0, 2.0]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_slicer_reader_accepts_schema_id_and_plan_objects(tmp_path):
    import re

    class FakePlan:  # anything with to_dict(), like planning.Plan
        def to_dict(self):
            return make_plan("tube", "left")

    doc = json.loads(write_markups(FakePlan(), tmp_path / "t.mrk.json").read_text())
    # Slicer's reader accepts @schema matching this (lower-cased) pattern, any minor/patch version
    assert re.search(r".*markups-schema-v1\.[0-9]+\.[0-9]+\.json#*$", doc["@schema"].lower())
    assert doc["markups"][0]["controlPoints"][0]["positionStatus"] == "defined"
    assert doc["markups"][0]["coordinateUnits"] == "mm"
