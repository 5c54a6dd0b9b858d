"""Benchmark: ``fuse`` (register an MRI to a CT, then the MRI on the CT grid) on a
512x512x300 CT with a 1 mm MRI: the phantom at 1 mm resampled onto a 512x512x300 grid
(0.6 x 0.52 x 0.85 mm) and its T2-like MRI phantom at 1 mm (8 degrees, 15 mm).

Baseline, measured in the same run: a single-resolution global registration (no pyramid:
shrink 1, no smoothing, on the same working grid), then the same local stage.
Reports seconds, the error at L4-L5 against the known transform, and the residual.
Run: .venv/bin/python bench/bench_fusion.py [--quick]
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spineplan.core.labelmaps import labels_on_grid  # noqa: E402
from spineplan.core.phantom import make_phantom  # noqa: E402
from spineplan.core.phantom_mri import make_mri_phantom  # noqa: E402
from spineplan.core.registration import (RegistrationSettings, mri_on_ct, register_mri_to_ct,  # noqa: E402
                                         unit_points_lps)
from spineplan.core.volume import Volume  # noqa: E402

LEVEL = "L4-L5"


def big_ct(ph, shape_ijk=(512, 512, 300)) -> Volume:
    """The phantom CT resampled (linear) onto a grid of ``shape_ijk`` voxels over its box."""
    import SimpleITK as sitk

    lo, hi = ph.ct.bounds_lps()
    sp = (hi - lo) / np.array(shape_ijk)
    img = sitk.Resample(ph.ct.to_sitk(), [int(n) for n in shape_ijk], sitk.Transform(), sitk.sitkLinear,
                        tuple(lo + sp / 2), tuple(sp), tuple(np.eye(3).ravel()), -1000.0, sitk.sitkInt16)
    return Volume.from_sitk(img, modality="CT")


def fuse(ct, mri, labels, settings):
    """(wall seconds, CPU seconds of all threads, result) of one fuse."""
    t, c = time.perf_counter(), time.process_time()
    res = register_mri_to_ct(ct, mri, level=LEVEL, ct_labels=labels, settings=settings)
    mri_on_ct(mri, ct, res.transform)
    return time.perf_counter() - t, time.process_time() - c, res


def main() -> None:
    quick = "--quick" in sys.argv
    ph = make_phantom(spacing=1.0)
    ct = big_ct(ph, (256, 256, 150) if quick else (512, 512, 300))
    labels = labels_on_grid(ph.labels, ct)
    mp = make_mri_phantom(ph, spacing_mm=1.0)
    pts = unit_points_lps(labels, LEVEL)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"CT {ct.array.shape[::-1]} at {tuple(round(s, 2) for s in ct.spacing)} mm, "
          f"MRI {mp.mri.array.shape[::-1]} at 1 mm")
    default = RegistrationSettings()
    # the baseline: one level at the working grid, with the iterations of all three levels
    single = replace(default, shrink_factors=(1,), smoothing_mm=(0.0,),
                     iterations=default.iterations * len(default.shrink_factors))
    rows = []
    for name, st in (("baseline: single resolution", single), ("fuse (pyramid 4-2-1, then local)", default)):
        sec, cpu, res = fuse(ct, mp.mri, labels, st)
        err = float(res.transform.displacement_mm(mp.ct_to_mri, pts).max())
        deg = res.transform.angle_to_deg(mp.ct_to_mri)
        rows.append((name, sec, cpu, err, deg, res.residual_mm))
        print("  stages (s):", {k: round(v, 1) for k, v in res.timings.items()}, flush=True)
    print(f"{'method':34s} {'wall s':>7s} {'CPU s':>7s} {'err L4-L5 mm':>13s} {'deg':>6s} {'residual mm':>12s}")
    for name, sec, cpu, err, deg, resid in rows:
        print(f"{name:34s} {sec:7.1f} {cpu:7.1f} {err:13.2f} {deg:6.2f} {resid:12.2f}")
    print(f"load average after the run {os.getloadavg()[0]:.1f} (on 2 idle cores the wall time lies between CPU s / 2 and CPU s)")
    print(f"target: fuse <= 15 s on 2 cores; speed-up over the baseline {rows[0][1] / rows[1][1]:.2f}x wall, "
          f"{rows[0][2] / rows[1][2]:.2f}x CPU")


if __name__ == "__main__":
    main()
