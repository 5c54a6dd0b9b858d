"""Benchmark of the built-in CT segmenter against a naive baseline.

Cases: the synthetic phantom (exact labels), the real 3 mm CT of ../shared/data
(TotalSegmentator reference), and a large 512x512x400 CT (the real CT resampled, scored
against its reference resampled the same way). Each case runs in its own subprocess so
peak memory (ru_maxrss) is per case.

Baseline: threshold at 200 HU, 3D connected components, components larger than 5 cm^3
near the midline sorted by z and named from the lowest (sacrum) upward; scored the same way.

Run:  PYTHONPATH=. python bench/bench_segmentation_ct_profile.py [--skip-large]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

CASES = ["phantom", "real_ct", "large_512x512x400"]
METHODS = ["classical-ct", "baseline-threshold-cc"]
DATA = "ct_lumbar_totalseg"


def _load(case):
    import SimpleITK as sitk

    from spineplan.core.phantom import make_phantom
    from spineplan.core.volume import Volume
    from spineplan.paths import shared_data_dir

    if case == "phantom":
        p = make_phantom(spacing=1.0)
        ref = p.labels.array.copy()
        return p.ct, ref
    d = shared_data_dir() / DATA
    img = sitk.ReadImage(str(d / "example_ct.nii.gz"))
    lab = sitk.ReadImage(str(d / "example_ct_vertebrae_verse.nii.gz"))
    disc = sitk.ReadImage(str(d / "example_ct_discs_verse.nii.gz"))
    la, da = sitk.GetArrayFromImage(lab), sitk.GetArrayFromImage(disc)
    comb = sitk.GetImageFromArray(np.where(da > 0, da, la).astype(np.uint16))
    comb.CopyInformation(lab)
    if case == "large_512x512x400":
        size = (512, 512, 400)
        sp = [img.GetSpacing()[n] * img.GetSize()[n] / size[n] for n in range(3)]
        ref = sitk.Image(size, sitk.sitkInt16)
        ref.SetSpacing(sp)
        ref.SetDirection(img.GetDirection())
        ref.SetOrigin(img.TransformContinuousIndexToPhysicalPoint([-0.5 + sp[n] / img.GetSpacing()[n] / 2
                                                                    for n in range(3)]))
        img = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, -1000, sitk.sitkInt16)
        comb = sitk.Resample(comb, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    v = Volume.from_sitk(sitk.Cast(img, sitk.sitkInt16), modality="CT")
    return v, sitk.GetArrayFromImage(comb)


def _baseline(volume):
    """Naive: bone threshold, connected components near the midline sorted by z."""
    import cc3d

    from spineplan.core.segmentation import labels as L
    from spineplan.core.segmentation.base import SegmentationResult

    a = volume.array
    bone = a > 200
    cc = cc3d.connected_components(bone, connectivity=6)
    stats = cc3d.statistics(cc)
    vox = float(np.prod(volume.spacing))
    cent = stats["centroids"]
    ids = [n for n in range(1, len(stats["voxel_counts"]))
           if stats["voxel_counts"][n] * vox > 5000.0]
    ijk = np.array([cent[n][::-1] for n in ids]) if ids else np.zeros((0, 3))
    lps = volume.lps_points_from_ijk(ijk) if len(ids) else np.zeros((0, 3))
    mid = np.median(lps[:, 0]) if len(ids) else 0.0
    keep = [(n, p) for n, p in zip(ids, lps) if abs(p[0] - mid) < 30.0]
    keep.sort(key=lambda t: t[1][2])  # caudal first (LPS z = superior)
    names = ["S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10"]
    out = np.zeros(a.shape, np.uint16)
    levels = []
    for (n, _), name in zip(keep, names):
        out[cc == n] = L.vertebra_label(name)
        levels.append(name)
    return SegmentationResult(labels=volume.with_array(out), levels=levels[::-1])


def run_case(case, method):
    import resource

    from spineplan.core.segmentation import labels as L
    from spineplan.core.segmentation.ct_profile import segment_ct

    vol, ref = _load(case)
    t = time.perf_counter()
    res = segment_ct(vol) if method == "classical-ct" else _baseline(vol)
    sec = time.perf_counter() - t
    out = res.labels.array
    dice = {}
    for lab in np.unique(ref):
        if lab == 0 or not L.is_vertebra(lab):
            continue
        A, B = out == lab, ref == lab
        dice[L.vertebra_name(lab)] = round(float(2 * (A & B).sum() / (A.sum() + B.sum())), 3)
    ref_discs = [int(x) for x in np.unique(ref) if L.is_disc(x)]
    found = [d for d in ref_discs if (out == d).any()]
    # level accuracy: a reference vertebra is right when most of its voxels carry its label
    right = 0
    ref_verts = [int(x) for x in np.unique(ref) if x and L.is_vertebra(x)]
    for lab in ref_verts:
        vals = out[ref == lab]
        vals = vals[(vals > 0) & (vals < 100)]
        if len(vals) and np.bincount(vals).argmax() == lab:
            right += 1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return dict(case=case, method=method, shape=list(vol.array.shape), seconds=round(sec, 2),
                peak_mb=round(rss, 0), dice=dice,
                mean_dice=round(float(np.mean(list(dice.values()))), 3) if dice else 0.0,
                levels_right=f"{right}/{len(ref_verts)}", discs_found=f"{len(found)}/{len(ref_discs)}",
                levels=res.levels, flags=res.flags)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(run_case(sys.argv[2], sys.argv[3])))
        return
    cases = [c for c in CASES if not ("--skip-large" in sys.argv and c.startswith("large"))]
    rows = []
    for case in cases:
        for m in METHODS:
            p = subprocess.run([sys.executable, __file__, "--one", case, m], capture_output=True,
                               text=True)
            if p.returncode:
                print(f"{case} {m} FAILED:\n{p.stderr[-2000:]}")
                continue
            rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
    import os
    print(f"machine: {os.cpu_count()} cpus, python {sys.version.split()[0]}")
    print(f"{'case':20s} {'method':22s} {'shape':16s} {'sec':>6s} {'peakMB':>7s} {'meanDice':>8s} "
          f"{'levels':>7s} {'discs':>6s}")
    for r in rows:
        print(f"{r['case']:20s} {r['method']:22s} {'x'.join(map(str, r['shape'])):16s} "
              f"{r['seconds']:6.2f} {r['peak_mb']:7.0f} {r['mean_dice']:8.3f} {r['levels_right']:>7s} "
              f"{r['discs_found']:>6s}")
    print("\nDice per level:")
    for r in rows:
        print(f"  {r['case']:20s} {r['method']:22s} " + " ".join(f"{k}:{v:.2f}" for k, v in r["dice"].items())
              + (f"  flags={r['flags']}" if r["flags"] else ""))


if __name__ == "__main__":
    main()
