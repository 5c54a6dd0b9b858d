"""Benchmark: time to re-check a plan after one drag step (the live check while dragging), and
to propose it (the planner's search; the GUI runs it in the thread pool).

Cases: the phantom at 1 mm, the sample CT with its reference labels, and a 512x512x400 CT
(the phantom at 0.75 mm in-plane). Baseline measured in the same run: a naive check that
voxelises the instrument over the WHOLE volume grid (no cropping).
Run: .venv/bin/python bench/bench_plan_check.py
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
from spineplan.core.planning.plan import Anatomy, Plan  # noqa: E402
from spineplan.core.planning.planner import evaluate, make_plan  # noqa: E402


def naive_full_grid(anat: Anatomy, plan: Plan, radius: float) -> int:
    vol = anat.labels
    k, j, i = np.indices(vol.array.shape)
    lps = vol.lps_points_from_ijk(np.stack([i.ravel(), j.ravel(), k.ravel()], 1).astype(float))
    a = plan.target_lps - plan.entry_lps
    L = np.linalg.norm(a)
    a = a / L
    q = lps - plan.entry_lps
    t = q @ a
    r2 = np.einsum("ij,ij->i", q, q) - t * t
    inside = (t >= 0) & (t <= L) & (r2 <= radius ** 2)
    return int(np.unique(vol.array.ravel()[inside]).size)


def time_recheck(anat, plan, n=20):
    times = []
    for s in range(n):
        moved = Plan.from_dict(plan.to_dict())
        moved.entry_lps = plan.entry_lps + [0.5 * (s % 3), 0.5, 0.0]  # one drag step
        t = time.perf_counter()
        evaluate(moved, anat)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def cases():
    yield "phantom 1 mm", make_phantom(spacing=1.0)
    sample = Path(__file__).resolve().parent.parent / "sample_dicom"
    if (sample / "reference").is_dir():
        from spineplan.core.dicom.load import load_volume
        from spineplan.core.segmentation.importers import read_labels

        vol = load_volume(sample)
        lab = read_labels([sample / "reference" / "vertebrae_verse.nii.gz",
                           sample / "reference" / "discs_verse.nii.gz"], vol)

        class S:
            ct, labels = vol, lab
        yield "sample CT 122x101x112", S
    yield "512x512x~400 phantom", make_phantom(spacing=0.586)


def main():
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'case':26s} {'grid':>16s} {'procedure':>9s} {'propose s':>10s} {'re-check ms':>12s} {'naive ms':>10s}")
    for name, ph in cases():
        anat = Anatomy(ph.ct, ph.labels)
        for proc in ("needle", "tube", "cage"):
            t = time.perf_counter()
            plan = make_plan(anat, "L4-L5", proc, "left")
            propose = time.perf_counter() - t
            ms = 1000 * time_recheck(anat, plan)
            t = time.perf_counter()
            naive_full_grid(anat, plan, plan.parameters.get("diameter_mm", 1.5) / 2)
            naive = 1000 * (time.perf_counter() - t)
            grid = "x".join(map(str, ph.ct.size_ijk))
            print(f"{name:26s} {grid:>16s} {proc:>9s} {propose:10.2f} {ms:12.1f} {naive:10.0f}")


if __name__ == "__main__":
    main()
