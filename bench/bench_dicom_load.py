"""Benchmark: scan + load a 300-slice 512x512 CT series.

Compares spineplan (metadata scan, full load) with SimpleITK's ImageSeriesReader and a
naive pydicom loop (read all, sort, stack), all measured in the same run on the same files.
Run: .venv/bin/python bench/bench_dicom_load.py [--slices 300]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spineplan.core.dicom.load import load_series, load_volume  # noqa: E402
from spineplan.core.dicom.scan import scan  # noqa: E402
from spineplan.core.dicom.write import write_series  # noqa: E402
from spineplan.core.volume import Volume  # noqa: E402


def best_of(fn, n=3):
    times = []
    out = None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        arr = rng.integers(-1000, 2000, size=(args.slices, 512, 512), dtype=np.int16)
        vol = Volume(arr, spacing=(0.7, 0.7, 1.0), origin=(-180, -180, 0), modality="CT")
        write_series(vol, tmp, uid_seed="bench")
        files = sorted(Path(tmp).glob("*.dcm"))

        import pydicom
        import SimpleITK as sitk

        def naive():
            dss = [pydicom.dcmread(f) for f in files]
            dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
            return np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)
                             for d in dss])

        def sitk_read():
            r = sitk.ImageSeriesReader()
            r.SetFileNames(r.GetGDCMSeriesFileNames(tmp))
            return sitk.GetArrayFromImage(r.Execute())

        rows = []
        t_scan, res = best_of(lambda: scan(tmp))
        t_load_only, _ = best_of(lambda: load_series(res.series[0]))
        t_full, v = best_of(lambda: load_volume(tmp))
        t_sitk, a_sitk = best_of(sitk_read)
        t_naive, _ = best_of(naive, n=1)
        assert np.array_equal(v.array, arr) and np.array_equal(a_sitk, arr)
        rows = [("spineplan metadata scan", t_scan), ("spineplan load (after scan)", t_load_only),
                ("spineplan scan + load", t_full), ("SimpleITK ImageSeriesReader", t_sitk),
                ("naive pydicom read+sort+stack", t_naive)]
        print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}; {len(files)} files 512x512 int16 (best of 3)")
        print(f"{'step':34s} {'seconds':>8s}")
        for name, t in rows:
            print(f"{name:34s} {t:8.3f}")
        print(f"{'scan per 300 files':34s} {t_scan * 300 / len(files):8.3f}")
        print(f"spineplan full load / SimpleITK = {t_full / t_sitk:.2f}")


if __name__ == "__main__":
    main()
