"""Field-of-view and variation suite: every dev case and its generated variants, counted as
right, flagged, silently wrong and crashed, with the calibration of the confidence.

Cases: the real lumbar CT (../shared/data/ct_lumbar_totalseg), CT phantoms (full lumbar with the
last ribs; thoracolumbar T9-L3 with ribs and no sacrum), and the 24 sagittal lumbar MRIs of
../shared/data/mri_lumbar_vb_dev, split by case number: odd cases are the tuning half, even cases
the validation half (reported apart). Variants (spineplan.core.segmentation.evaluate.variants):
crops through every reference level from the top and from the bottom, resamplings, noise,
intensity scaling, reversed stacks, left-right flips of the stored array; for MRI also inverted
contrast and a bias field.

Baseline from the same run: "trust the segmenter's names" is what a tool without flags does; it
is counted as the share of variants whose names are wrong (what the flags must catch).

Each case runs in its own worker process. Writes bench/results/fov_suite.json.
Run: .venv/bin/python bench/bench_fov_suite.py [--jobs 2] [--quick] [substring ...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("SPINEPLAN_SHARED_DATA", ROOT.parent / "shared" / "data"))
BANDS = [(0.0, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 0.9), (0.9, 1.01)]


def case_specs(quick: bool) -> list[dict]:
    specs = [{"group": "CT phantom", "case": "phantom-lumbar-ribs", "modality": "CT"},
             {"group": "CT phantom", "case": "phantom-T9-L3-ribs", "modality": "CT"}]
    if (DATA / "ct_lumbar_totalseg" / "example_ct.nii.gz").exists():
        specs.append({"group": "CT real", "case": "example_ct", "modality": "CT"})
    mri = sorted((DATA / "mri_lumbar_vb_dev").glob("case*_mri.nii.gz"))
    for p in mri:
        n = int(p.name[4:6])
        if n == 33:  # duplicate of case32 (README)
            continue
        specs.append({"group": "MRI tune (odd)" if n % 2 else "MRI validation (even)",
                      "case": p.name[:6], "modality": "MR"})
    if quick:
        specs = [s for s in specs if s["modality"] == "CT"] + [s for s in specs if s["modality"] == "MR"][:4]
    return specs


def _load(spec):
    from spineplan.core.dicom.load import read_image_file
    from spineplan.core.segmentation.importers import read_labels
    from spineplan.core.phantom import make_phantom

    c = spec["case"]
    if c == "phantom-lumbar-ribs":
        ph = make_phantom(spacing=1.5, ribs=("T12",))
        return ph.ct, ph.labels
    if c == "phantom-T9-L3-ribs":
        ph = make_phantom(levels=("T9", "T10", "T11", "T12", "L1", "L2", "L3"), spacing=1.5,
                          ribs=("T9", "T10", "T11", "T12"), iliac_crest=False)
        # no sacrum in view: cut above the L3/L4 disc
        from spineplan.core.segmentation.evaluate import _crop_axis, _reference_extent, _si_axis
        from spineplan.core.segmentation import labels as L
        ax = _si_axis(ph.labels)
        ext = _reference_extent(ph.labels, ax)
        a, b = ext[L.vertebra_label("L3")]
        s0, s1 = ext[L.SACRUM]
        up = ph.ct.direction[2, 2 - ax] > 0
        if up:   # index grows to the head: keep above the sacrum
            k0, k1 = s1 + 1 + 2, ph.ct.array.shape[0]
        else:
            k0, k1 = 0, s0 - 2
        return _crop_axis(ph.ct, ax, k0, k1), _crop_axis(ph.labels, ax, k0, k1)
    if c == "example_ct":
        d = DATA / "ct_lumbar_totalseg"
        img = read_image_file(str(d / "example_ct.nii.gz"))
        img.modality = "CT"
        return img, read_labels([str(d / "example_ct_vertebrae_verse.nii.gz")], img)
    d = DATA / "mri_lumbar_vb_dev"
    img = read_image_file(str(d / f"{c}_mri.nii.gz"))
    img.modality = "MR"
    return img, read_labels([str(d / f"{c}_vertebrae_verse.nii.gz")], img)


def run_case(spec: dict) -> list[dict]:
    warnings.simplefilter("ignore")
    from spineplan.core.segmentation.evaluate import run_and_judge, variants
    from spineplan.core.segmentation.ct import segment_ct
    from spineplan.core.segmentation.mri import segment_mri

    img, ref = _load(spec)
    mr = spec["modality"] == "MR"
    seg = segment_mri if mr else segment_ct
    if mr:
        spacings = () if spec.get("quick") else (2.0,)
    elif spec["case"] == "example_ct":
        spacings = (1.5,) if spec.get("quick") else (1.5, 0.7)
    else:
        spacings = (3.0,)
    out = []
    for name, vimg, vref in variants(img, ref, modality=spec["modality"], spacings=spacings,
                                     noise=0.05, seed=1):
        vimg.modality = spec["modality"]
        t = time.perf_counter()
        j = run_and_judge(seg, vimg, vref)
        out.append({**{k: spec[k] for k in ("group", "case", "modality")}, "variant": name,
                    "outcome": j.outcome.value, "levels_right": j.levels_right, "wrong": j.wrong,
                    "min_confidence": round(j.min_confidence, 3), "flags": j.flags,
                    "dice": {k: round(v, 3) for k, v in j.dice.items()},
                    "mean_dice": round(j.mean_dice, 3), "seconds": round(time.perf_counter() - t, 2),
                    "error": j.error[-400:]})
    return out


def _table(rows: list[list], head: list[str]) -> str:
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda r: "| " + " | ".join(str(x).ljust(n) for x, n in zip(r, w)) + " |"  # noqa: E731
    return "\n".join([fmt(head), "|" + "|".join("-" * (n + 2) for n in w) + "|"] + [fmt(r) for r in rows])


def report(records: list[dict]) -> str:
    lines = []
    by_group = defaultdict(list)
    for r in records:
        by_group[r["group"]].append(r)
    rows = []
    for g, rs in by_group.items():
        c = Counter(r["outcome"] for r in rs)
        wrong_names = sum(1 for r in rs if r["wrong"])
        rows.append([g, len(rs), c["right"], c["flagged"], c["silent"], c["crashed"], wrong_names])
    tot = Counter(r["outcome"] for r in records)
    rows.append(["all", len(records), tot["right"], tot["flagged"], tot["silent"], tot["crashed"],
                 sum(1 for r in records if r["wrong"])])
    lines.append("Suite counts (baseline: names wrong = silent if nothing flagged them)")
    lines.append(_table(rows, ["group", "variants", "right", "flagged", "SILENT", "crashed",
                               "baseline: names wrong"]))
    # calibration: cases (variants) whose names were judged, by their lowest confidence
    cal = []
    for lo, hi in BANDS:
        rs = [r for r in records if r["outcome"] != "crashed" and not r["error"]
              and lo <= r["min_confidence"] < hi]
        ok = sum(1 for r in rs if r["levels_right"])
        cal.append([f"{lo:.1f}-{min(hi, 1.0):.1f}", len(rs), ok, f"{ok / len(rs):.2f}" if rs else "-"])
    lines.append("\nCalibration (lowest confidence of a variant -> share with every named level right)")
    lines.append(_table(cal, ["confidence", "variants", "all right", "share right"]))
    # per-case originals
    per = []
    for r in records:
        if r["variant"] == "original":
            per.append([r["group"], r["case"], r["outcome"], r["min_confidence"],
                        ",".join(r["flags"]) or "-", r["mean_dice"],
                        ",".join(f"{k}->{v}" for k, v in r["wrong"].items()) or "-", r["seconds"]])
    lines.append("\nPer case, original image")
    lines.append(_table(per, ["group", "case", "outcome", "min conf", "flags", "mean Dice",
                              "wrong", "s"]))
    bad = [r for r in records if r["outcome"] in ("silent", "crashed")]
    if bad:
        lines.append("\nSilent and crashed variants")
        lines.append(_table([[r["case"], r["variant"], r["outcome"], r["min_confidence"],
                              ",".join(f"{k}->{v}" for k, v in r["wrong"].items()) or r["error"][-80:].replace("\n", " ")]
                             for r in bad], ["case", "variant", "outcome", "min conf", "wrong/error"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fov_suite.json"))
    ap.add_argument("only", nargs="*")
    a = ap.parse_args(argv)
    specs = case_specs(a.quick)
    if a.only:
        specs = [s for s in specs if any(o in s["case"] or o in s["group"] for o in a.only)]
    for s in specs:
        s["quick"] = a.quick
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(a.jobs, maxtasksperchild=1) as pool:
        records = [r for rs in pool.imap_unordered(run_case, specs) for r in rs]
    records.sort(key=lambda r: (r["group"], r["case"], r["variant"]))
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{len(specs)} cases, {len(records)} variants, {time.perf_counter() - t0:.0f} s with {a.jobs} jobs")
    print(report(records))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
