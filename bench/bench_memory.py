"""Peak memory of ``spineplan info``, ``convert`` and ``segment`` on a 512x512x1000 int16 CT.

The CT (0.5 GB raw) is the lumbar phantom made at 0.6 mm, cut/padded to 512x512 in-plane and
stretched to 1000 slices along k (nearest slice), with its bone, discs, air and soft tissue;
written once as a DICOM series (1000 files) and as a .nii.gz into a temporary folder. Every
command runs in a fresh process; its peak is that process's ru_maxrss (``os.wait4``).
Baselines measured in the same run: the interpreter with numpy + SimpleITK imported,
SimpleITK ReadImage + WriteImage of the same .nii.gz, nibabel load of it.

Run: .venv/bin/python bench/bench_memory.py [--keep DIR] [--only info,convert,segment]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPE_KJI = (1000, 512, 512)
RAW_BYTES = SHAPE_KJI[0] * SHAPE_KJI[1] * SHAPE_KJI[2] * 2

MAKE_CODE = r"""
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from spineplan.core.phantom import make_phantom
from spineplan.core.volume import Volume
from spineplan.core.dicom.load import write_volume
from spineplan.core.dicom.write import write_series
out = sys.argv[2]
p = make_phantom(spacing=0.6)
a = p.ct.array  # [k, j, i]
nk, nj, ni = a.shape
big = np.full((1000, 512, 512), -1000, np.int16)
j0, i0 = max(0, (nj - 512) // 2), max(0, (ni - 512) // 2)
sub = a[:, j0:j0 + 512, i0:i0 + 512]
dj, di = (512 - sub.shape[1]) // 2, (512 - sub.shape[2]) // 2
ks = np.rint(np.linspace(0, nk - 1, 1000)).astype(int)
big[:, dj:dj + sub.shape[1], di:di + sub.shape[2]] = np.clip(sub[ks], -1024, 3000)
sk = 0.6 * (nk - 1) / 999
origin = np.array(p.ct.origin) + np.array([0.6 * (i0 - di), 0.6 * (j0 - dj), 0.0])
vol = Volume(big, spacing=(0.6, 0.6, sk), origin=tuple(origin), modality="CT")
write_volume(vol, out + "/ct.nii.gz")
write_series(vol, out + "/series", uid_seed="bench-memory")
"""

BASELINES = {
    "python + numpy + SimpleITK imported": "import numpy, SimpleITK",
    "SimpleITK ReadImage of the .nii.gz": "import SimpleITK as s; i = s.ReadImage(sys.argv[1])",
    "SimpleITK ReadImage + WriteImage .nii.gz": ("import SimpleITK as s; "
                                                 "s.WriteImage(s.ReadImage(sys.argv[1]), sys.argv[2], True)"),
    "nibabel load + voxels (int16)": ("import nibabel as n, numpy as np; "
                                      "a = np.asanyarray(n.load(sys.argv[1]).dataobj)"),
}


def peak_mb(cmd: list[str], env: dict | None = None) -> tuple[float, float, int, str]:
    """(peak MB, seconds, exit code, last stderr line) of one child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, cwd=str(ROOT))
    err = proc.stderr.read().decode(errors="replace")
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    last = err.strip().splitlines()[-1] if err.strip() else ""
    return ru.ru_maxrss / 1024, time.perf_counter() - t, proc.returncode, last


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="folder for the test data (kept; reused when present)")
    ap.add_argument("--only", default="baseline,info,convert,segment")
    args = ap.parse_args()
    only = set(args.only.split(","))
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="spineplan-mem-"))
    tmp.mkdir(parents=True, exist_ok=True)
    if not (tmp / "ct.nii.gz").exists() or not (tmp / "series").is_dir():
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", MAKE_CODE, str(ROOT), str(tmp)], check=True)
        print(f"(test data written in {time.perf_counter() - t:.0f} s)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    sp = [sys.executable, "-m", "spineplan"]
    rows = []
    if "baseline" in only:
        for name, code in BASELINES.items():
            rows.append((name, *peak_mb([sys.executable, "-c", "import sys\n" + code,
                                         str(tmp / "ct.nii.gz"), str(tmp / "base.nii.gz")])))
    cmds = []
    if "info" in only:
        cmds += [("spineplan info CT.nii.gz", ["info", tmp / "ct.nii.gz"]),
                 ("spineplan info DICOM folder", ["info", tmp / "series"])]
    if "convert" in only:
        cmds += [("spineplan convert CT.nii.gz -> .nii.gz", ["convert", tmp / "ct.nii.gz", "-o", tmp / "o1.nii.gz"]),
                 ("spineplan convert DICOM -> .nii.gz", ["convert", tmp / "series", "-o", tmp / "o2.nii.gz"])]
    if "segment" in only:
        cmds += [("spineplan segment CT.nii.gz", ["segment", tmp / "ct.nii.gz", "-o", tmp / "l1.nii.gz"]),
                 ("spineplan segment DICOM", ["segment", tmp / "series", "-o", tmp / "l2.nii.gz"])]
    for name, a in cmds:
        rows.append((name, *peak_mb(sp + [str(x) for x in a], env)))
    print(f"raw array 512x512x1000 int16 = {RAW_BYTES / 2**20:.0f} MB; {os.cpu_count()} cores")
    print(f"{'command':42s} {'peak MB':>8s} {'x raw':>6s} {'s':>6s}  exit")
    for name, mb, secs, rc, last in rows:
        print(f"{name:42s} {mb:8.0f} {mb * 2**20 / RAW_BYTES:6.2f} {secs:6.1f}  {rc}"
              + (f"  {last[:80]}" if rc else ""))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
