"""Benchmark: what a marked lesion costs the planner (issue 16).

Per case and procedure: the re-check after one drag step without a lesion (the baseline,
measured in the same run) and with one (adds the zone landmarks, cached, and the "lesion
reached" check), the first location of a lesion (landmarks measured), the proposal with a
lesion, and the whole three-procedure comparison.
Cases: the phantom with its herniation at 1 mm, and the sample CT with its reference labels.
Run: .venv/bin/python bench/bench_lesion.py
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spineplan.core.phantom import make_phantom  # noqa: E402
from spineplan.core.planning.compare import compare_procedures  # noqa: E402
from spineplan.core.planning.lesion import Lesion, locate_lesion  # noqa: E402
from spineplan.core.planning.plan import Anatomy, Plan  # noqa: E402
from spineplan.core.planning.planner import evaluate, make_plan  # noqa: E402


def time_recheck(anat, plan, n=15):
    times = []
    for s in range(n):
        moved = Plan.from_dict(plan.to_dict())
        moved.entry_lps = plan.entry_lps + [0.5 * (s % 3), 0.5, 0.0]  # one drag step
        t = time.perf_counter()
        evaluate(moved, anat)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def cases():
    ph = make_phantom(spacing=1.0, herniation={"level": "L4-L5", "side": "left", "zone": "paracentral",
                                               "size_mm": 6.0})
    yield "phantom 1 mm", Anatomy(ph.ct, ph.labels), Lesion(ph.truth["herniation"]["center_lps"], 6.0)
    sample = Path(__file__).resolve().parent.parent / "sample_dicom"
    if (sample / "reference").is_dir():
        from spineplan.core.dicom.load import load_volume
        from spineplan.core.segmentation.importers import read_labels

        vol = load_volume(sample)
        lab = read_labels([sample / "reference" / "vertebrae_verse.nii.gz",
                           sample / "reference" / "discs_verse.nii.gz"], vol)
        anat = Anatomy(vol, lab)
        g = anat.by_name["L4-L5"].disc_geometry
        centre = (np.array(g.center_lps) + 6 * np.array(g.lr_lps)
                  + (g.ap_range_mm[1] + 3) * np.array(g.ap_lps))  # paracentral left, behind the disc
        yield "sample CT 3 mm", anat, Lesion(centre, 5.0)


def main():
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'case':<16}{'procedure':<10}{'recheck ms':>12}{'+lesion ms':>12}{'propose s':>11}{'+lesion s':>11}{'reached':>9}")
    for name, anat, les in cases():
        t = time.perf_counter()
        locate_lesion(anat, les)
        first = time.perf_counter() - t
        for proc in ("needle", "tube", "cage"):
            t = time.perf_counter()
            plain = make_plan(anat, "L4-L5", proc, "left")
            prop0 = time.perf_counter() - t
            t = time.perf_counter()
            aimed = make_plan(anat, "L4-L5", proc, "left", lesion=les)
            prop = time.perf_counter() - t
            base, with_l = time_recheck(anat, plain), time_recheck(anat, aimed)
            ok = aimed.check("lesion_reached").ok
            print(f"{name:<16}{proc:<10}{1000 * base:>12.1f}{1000 * with_l:>12.1f}{prop0:>11.2f}{prop:>11.2f}{str(ok):>9}")
        t = time.perf_counter()
        cmp = compare_procedures(anat, "L4-L5", "left", lesion=les)
        print(f"{name:<16}first location {1000 * first:.0f} ms; comparison {time.perf_counter() - t:.1f} s "
              f"-> recommended {cmp.recommended}")


if __name__ == "__main__":
    main()
