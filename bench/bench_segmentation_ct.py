"""Benchmark of the built-in CT segmenter: Dice per level, level accuracy, discs, seconds and
peak memory, for the phantom, the real CT (../shared/data or the bundled sample) and a
~512x512x400 CT. Baseline measured in the same run: threshold + connected components sorted by
height, named from the bottom as the sacrum upward (what a naive tool would do).

Each case runs in a subprocess so that its peak memory (ru_maxrss) is its own: reading the
volume and segmenting it (phantoms are written to temporary NIfTI files first).
Run: .venv/bin/python bench/bench_segmentation_ct.py
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASE_CODE = r"""
import json, resource, sys, time
import numpy as np
from scipy import ndimage
sys.path.insert(0, sys.argv[1])
from spineplan.core.segmentation import labels as L
from spineplan.core.segmentation.ct import segment_ct
from spineplan.core.errors import SegmentationError
case, method = sys.argv[2], sys.argv[3]
if case.startswith("phantom"):  # written beforehand: the peak is the segmenter's, not the phantom's
    from spineplan.core.dicom.load import read_image_file
    ct = read_image_file(sys.argv[4] + "_ct.nii")
    ct.modality = "CT"
    ref = read_image_file(sys.argv[4] + "_labels.nii").array
else:
    from spineplan.core.dicom.load import read_image_file, load_volume
    from spineplan.core.segmentation.importers import read_labels
    d = sys.argv[4]
    if case == "real":
        ct = read_image_file(d + "/example_ct.nii.gz")
        names = ["example_ct_vertebrae_verse.nii.gz", "example_ct_discs_verse.nii.gz"]
    elif case == "dicom20":  # 20 thoracic slices, JPEG 2000, labels on a LAS grid
        ct = load_volume(d + "/example_ct_dicom")
        names = ["example_ct_dicom_vertebrae_verse.nii.gz"]
    else:
        ct = load_volume(d)
        names = ["reference/vertebrae_verse.nii.gz", "reference/discs_verse.nii.gz"]
    ct.modality = "CT"
    ref = read_labels([d + "/" + n for n in names], ct).array
t = time.perf_counter()
flags = []
if method == "spineplan":
    try:
        r = segment_ct(ct)
        out, flags = r.labels.array, [f.message for f in r.flags]
    except SegmentationError as exc:
        out, flags = np.zeros(ct.array.shape, np.uint16), ["refused: " + str(exc)]
else:  # naive baseline
    b = ndimage.binary_opening(ct.array > 200)
    c, n = ndimage.label(b)
    sizes = ndimage.sum(b, c, range(1, n + 1))
    big = [k + 1 for k in np.argsort(sizes)[::-1][:8]]
    zc = [ndimage.center_of_mass(c == k)[0] for k in big]
    order = [k for _, k in sorted(zip(zc, big))]
    if ct.direction[2, 2] < 0:
        order = order[::-1]
    out = np.zeros(ct.array.shape, np.uint16)
    names = [26, 24, 23, 22, 21, 20, 19, 18]
    for k, v in zip(order, names):
        out[c == k] = v
secs = time.perf_counter() - t
res = {"seconds": secs, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "flags": flags}
dices = {}
for v in sorted(int(x) for x in np.unique(ref) if x):
    if L.is_vertebra(v) and (ref == v).sum() > 500 or L.is_disc(v):
        a, b = out == v, ref == v
        dices[L.vertebra_name(v) if L.is_vertebra(v) else L.disc_name(v)] = round(2 * (a & b).sum() / max(a.sum() + b.sum(), 1), 3)
res["dice"] = dices
# level identification: each reference vertebra's voxels are mostly given its own name
ok = []
for v in sorted(int(x) for x in np.unique(ref) if L.is_vertebra(int(x)) and (ref == x).sum() > 500):
    got, cnt = np.unique(out[ref == v], return_counts=True)
    cnt = np.where(got == 0, 0, cnt)
    ok.append(int(got[np.argmax(cnt)]) == v)
res["levels_ok"] = all(ok)
res["levels_right"] = f"{sum(ok)}/{len(ok)}"
print(json.dumps(res))
"""


def run(case, method, data=""):
    r = subprocess.run([sys.executable, "-c", CASE_CODE, str(ROOT), case, method, data],
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr else "failed"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def write_phantom(spacing: float, stem: Path, **options) -> str:
    """The phantom (``make_phantom`` options as JSON values) as uncompressed NIfTI files, made
    in a subprocess of its own."""
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]); import SimpleITK as sitk; "
            "from spineplan.core.phantom import make_phantom; "
            "p = make_phantom(spacing=float(sys.argv[2]), **json.loads(sys.argv[4])); "
            "sitk.WriteImage(p.ct.to_sitk(), sys.argv[3] + '_ct.nii'); "
            "sitk.WriteImage(p.labels.to_sitk(), sys.argv[3] + '_labels.nii')")
    subprocess.run([sys.executable, "-c", code, str(ROOT), str(spacing), str(stem), json.dumps(options)], check=True)
    return str(stem)


def main():
    shared = ROOT.parent / "shared" / "data" / "ct_lumbar_totalseg"
    tmp = Path(tempfile.mkdtemp(prefix="spineplan-bench-"))
    cases = [("phantom 1.5 mm", "phantom:1.5", write_phantom(1.5, tmp / "p15")),
             ("phantom 1.5 mm, T12 ribs", "phantom:1.5", write_phantom(1.5, tmp / "p15r", ribs=["T12"])),
             ("phantom 1.5 mm, aorta 170 HU", "phantom:1.5", write_phantom(1.5, tmp / "p15a", aorta_hu=170)),
             ("phantom 1.0 mm", "phantom:1.0", write_phantom(1.0, tmp / "p10"))]
    cases.append(("sample_dicom CT 3 mm", "sample", str(ROOT / "sample_dicom")))
    if shared.is_dir():
        cases.append(("real CT 3 mm (TotalSeg ref.)", "real", str(shared)))
        cases.append(("real CT DICOM 20 sl. T11-T12", "dicom20", str(shared)))
    else:
        print(f"(../shared/data not found at {shared}: real-CT cases skipped)")
    cases.append(("phantom 0.6 mm ~513x450x473", "phantom:0.6", write_phantom(0.6, tmp / "p06")))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for name, case, data in cases:
        for method in ("spineplan", "naive"):
            r = run(case, method, data)
            if "error" in r:
                print(f"{name:30s} {method:9s} error: {r['error']}")
                continue
            d = r["dice"]
            verts = [v for k, v in d.items() if "/" not in k]
            discs = [v for k, v in d.items() if "/" in k]
            print(f"{name:30s} {method:9s} {r['seconds']:6.2f} s {r['peak_mb']:7.0f} MB  levels "
                  f"{r['levels_right']} right  mean vertebra Dice {np.mean(verts):.3f}  "
                  f"mean disc Dice {np.mean(discs) if discs else float('nan'):.3f}")
            print("    " + "  ".join(f"{k} {v:.2f}" for k, v in d.items())
                  + ("  flags: " + "; ".join(r["flags"]) if r.get("flags") else ""))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import numpy as np

    main()
