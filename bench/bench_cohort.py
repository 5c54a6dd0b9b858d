"""Cohort benchmark: the same N cases in a plain loop (baseline) and on Dask with 1 and 2
workers (`spineplan.core.cohort.run_cohort`), seconds per case, speed-up over the loop, and
whether every mode found the same levels.

Baseline, measured in the same run: `run_case` called in a loop in this process (load, segment,
motor units, labels and JSON written: exactly a worker's work), without process start-up or
imports per case, so the speed-ups are conservative. The Dask rows include starting the
LocalCluster and its worker processes. Cases: the first N sagittal lumbar MRIs of
../shared/data/mri_lumbar_vb_dev (default; the issue's "batch of 8 dev MRI studies"), or CT
phantoms at 1.5 mm (--phantom, or when the shared data is absent).

The machine this was written on has 2 cores: 2 workers is the most that can pay; a third
worker only competes for them.
Run: .venv/bin/python bench/bench_cohort.py [-n 8] [--phantom] [--workers 1,2]
Writes bench/results/cohort.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _inputs(n: int, phantom: bool, tmp: Path) -> tuple[list[Path], str]:
    from spineplan.paths import shared_data_dir

    mri = shared_data_dir() / "mri_lumbar_vb_dev"
    if not phantom and mri.is_dir():
        images = sorted(mri.glob("*_mri.nii.gz"))
        return images[:n], f"{min(n, len(images))} dev MRI studies ({mri.name})"
    from spineplan.core.dicom.load import write_volume
    from spineplan.core.phantom import make_phantom

    ct = make_phantom(spacing=1.5).ct
    paths = []
    for k in range(n):
        p = tmp / "inputs" / f"phantom{k}.nii.gz"
        p.parent.mkdir(parents=True, exist_ok=True)
        write_volume(ct, p)
        paths.append(p)
    return paths, f"{n} CT phantoms at 1.5 mm"


def _loop(paths: list[Path], out: Path, modality: str | None) -> tuple[float, list]:
    from spineplan.core.cohort.cases import discover_cases, run_case, tasks_for

    (out / "cases").mkdir(parents=True)
    tasks = tasks_for(discover_cases(paths), b"bench" * 8, out, {"modality": modality or ""})
    t = time.perf_counter()
    records = [run_case(task) for task in tasks]
    return time.perf_counter() - t, records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=8, help="number of cases (default 8)")
    ap.add_argument("--phantom", action="store_true", help="CT phantoms instead of the dev MRIs")
    ap.add_argument("--workers", default="1,2", help="Dask worker counts (default 1,2)")
    args = ap.parse_args()

    from spineplan.core.cohort import run_cohort

    tmp = Path(tempfile.mkdtemp(prefix="bench_cohort_"))
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    try:
        paths, what = _inputs(args.n, args.phantom, tmp)
        modality = None if args.phantom or "phantom" in what else "MR"
        rows = []
        secs, recs = _loop(paths, tmp / "loop", modality)
        ref = [r.get("levels") for r in recs]
        rows.append(dict(mode="plain loop (baseline)", workers=1, seconds=secs, records=recs))
        for w in [int(x) for x in args.workers.split(",") if x.strip()]:
            t = time.perf_counter()
            res = run_cohort(paths, tmp / f"dask{w}", workers=w, modality=modality, engine="dask")
            rows.append(dict(mode="dask LocalCluster", workers=w, seconds=time.perf_counter() - t,
                             records=res.records))
        n = len(paths)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"\ncohort of {what}; {os.cpu_count()} cores ({platform.machine()}), "
              f"load average {load0:.1f} at the start, {load:.1f} at the end (other work on the "
              "machine slows every row)")
        print(f"{'mode':<24}{'workers':>8}{'total s':>10}{'s/case':>9}{'speed-up':>10}"
              f"{'one case s':>12}{'its CPU s':>11}{'ok':>5}  same levels")
        result = []
        for r in rows:
            ok = sum(x["status"] == "ok" for x in r["records"])
            same = [x.get("levels") for x in r["records"]] == ref
            speed = rows[0]["seconds"] / r["seconds"]
            # one case's own wall time in its worker: the same work, so a rise means shared cores
            one = sum((x.get("seconds") or {}).get("total", 0.0) for x in r["records"]) / n
            cpu = sum((x.get("seconds") or {}).get("cpu", 0.0) for x in r["records"]) / n
            print(f"{r['mode']:<24}{r['workers']:>8}{r['seconds']:>10.1f}{r['seconds'] / n:>9.2f}"
                  f"{speed:>9.2f}x{one:>12.2f}{cpu:>11.2f}{ok:>5}  {'yes' if same else 'NO'}")
            result.append(dict(mode=r["mode"], workers=r["workers"], seconds=round(r["seconds"], 2),
                               seconds_per_case=round(r["seconds"] / n, 2), speedup=round(speed, 2),
                               one_case_seconds=round(one, 2), one_case_cpu_seconds=round(cpu, 2),
                               ok=ok, same_levels=same))
        out = ROOT / "bench" / "results" / "cohort.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({"cases": what, "n": n, "cores": os.cpu_count(), "load_average": [load0, load],
                                   "rows": result},
                                  indent=1) + "\n")
        print(f"-> {out.relative_to(ROOT)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
