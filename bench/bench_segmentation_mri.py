"""Benchmark of the built-in MRI segmenter (classical-mri) on every MRI case of ../shared/data:
Dice per level (vertebral bodies L1-L5 on mri_lumbar_vb_dev, discs L1/L2-L5/S1 on
mri_lumbar_ivd_dev), level accuracy, seconds and peak memory. Baseline measured in the same
run: Otsu threshold + connected components in the central sagittal third, the five largest
named top-down as L1..L5 (bodies: below the threshold; discs: above it).

Each case runs in a subprocess so that its peak memory (ru_maxrss) is its own.
Run: .venv/bin/python bench/bench_segmentation_mri.py [case-substring ...]
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASE_CODE = r"""
import json, resource, sys, time
import numpy as np
from scipy import ndimage
sys.path.insert(0, sys.argv[1])
from spineplan.core.dicom.load import read_image_file
from spineplan.core.segmentation.importers import read_labels
from spineplan.core.segmentation import labels as L
from spineplan.core.segmentation.mri import segment_mri
image, ref_path, method = sys.argv[2], sys.argv[3], sys.argv[4]
vol = read_image_file(image)
vol.modality = "MR"
ref = read_labels([ref_path], vol).array
discs = any(L.is_disc(int(v)) for v in np.unique(ref) if v)
t = time.perf_counter()
if method == "spineplan":
    res = segment_mri(vol)
    out = res.labels.array
    levels = res.levels
else:  # naive baseline: Otsu + connected components, named top-down
    a = vol.array.astype(np.float32)
    hist, edges = np.histogram(a, bins=256)
    c = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist); w1 = w0[-1] - w0
    m0 = np.cumsum(hist * c) / np.maximum(w0, 1)
    m1 = ((hist * c).sum() - np.cumsum(hist * c)) / np.maximum(w1, 1)
    thr = c[np.argmax(w0 * w1 * (m0 - m1) ** 2)]
    b = (a > thr) if discs else (a > 0.5 * thr) & (a < thr)
    nk = a.shape[0]
    b[: nk // 3] = False
    b[2 * nk // 3:] = False
    b = ndimage.binary_opening(b, iterations=2)
    lab, n = ndimage.label(b)
    sizes = ndimage.sum(b, lab, range(1, n + 1))
    big = [k + 1 for k in np.argsort(sizes)[::-1][:5]]
    # array axis 2 is i; the grid's i axis points inferior on these files (IPL) or superior
    ip = [ndimage.center_of_mass(lab == k)[2] for k in big]
    if vol.direction[2, 0] > 0:  # i towards superior: top-down is decreasing i
        ip = [-x for x in ip]
    order = [k for _, k in sorted(zip(ip, big))]
    out = np.zeros(a.shape, np.uint16)
    for k, v in zip(order, [20, 21, 22, 23, 24]):
        out[lab == k] = v + (100 if discs else 0)
    levels = []
secs = time.perf_counter() - t
res = {"seconds": secs, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
       "kind": "discs" if discs else "bodies", "levels": levels}
want = [v for v in sorted(int(x) for x in np.unique(ref) if x)]
dices, ok = {}, []
for v in want:
    name = L.disc_name(v) if L.is_disc(v) else L.vertebra_name(v)
    a_, b_ = out == v, ref == v
    dices[name] = round(2 * (a_ & b_).sum() / max(a_.sum() + b_.sum(), 1), 3)
    # level identification: the found label of its kind meeting this reference level most is its own
    got, cnt = np.unique(out[b_], return_counts=True)
    same_kind = np.array([L.is_disc(int(g)) if discs else L.is_vertebra(int(g)) for g in got], bool)
    cnt = np.where(same_kind, cnt, 0)
    ok.append(bool(cnt.max() > 0 and int(got[np.argmax(cnt)]) == v))
# and each found label of the reference's kind overlaps its own reference level most
for v in sorted(int(x) for x in np.unique(out) if x):
    if (L.is_disc(v) if discs else (L.is_vertebra(v) and v != L.SACRUM)) and v not in want:
        hit = ref[out == v]
        if (hit > 0).mean() > 0.5:  # mostly on a reference level that is not its own
            ok.append(False)
res["dice"] = dices
res["levels_right"] = f"{sum(ok)}/{len(ok)}"
res["levels_ok"] = all(ok)
print(json.dumps(res))
"""


def cases(data: Path) -> list[tuple[str, Path, Path]]:
    out = []
    for img in sorted((data / "mri_lumbar_vb_dev").glob("case*_mri.nii.gz")):
        out.append((img.name[:6], img, img.with_name(img.name.replace("_mri", "_vertebrae_verse"))))
    for img in sorted((data / "mri_lumbar_ivd_dev").glob("case*_mri.nii.gz")):
        out.append((img.name[:6] + " (T2 discs)", img, img.with_name(img.name.replace("_mri", "_discs_verse"))))
    return out


def run(image: Path, ref: Path, method: str) -> dict:
    r = subprocess.run([sys.executable, "-c", CASE_CODE, str(ROOT), str(image), str(ref), method],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr else "failed"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    data = ROOT.parent / "shared" / "data"
    if not (data / "mri_lumbar_vb_dev").is_dir():
        print(f"skipped: no MRI data at {data} (../shared/data beside the checkout)")
        return 0
    todo = [c for c in cases(data) if not argv or any(a in c[0] for a in argv)]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| case | method | Dice per level | mean Dice | levels right | s | peak MB |")
    print("|---|---|---|---|---|---|---|")
    means: dict[str, list[float]] = {}
    for name, img, ref in todo:
        for method in ("spineplan", "naive"):
            r = run(img, ref, method)
            if "error" in r:
                print(f"| {name} | {method} | error: {r['error']} | | | | |")
                continue
            d = r["dice"]
            m = sum(d.values()) / len(d)
            means.setdefault(f"{method} {r['kind']}", []).append(m)
            per = " ".join(f"{k} {v:.2f}" for k, v in d.items())
            print(f"| {name} | {method} | {per} | {m:.3f} | {r['levels_right']} | {r['seconds']:.1f} | "
                  f"{r['peak_mb']:.0f} |")
    print()
    for k, v in means.items():
        print(f"mean Dice, {k}: {sum(v) / len(v):.3f} over {len(v)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
