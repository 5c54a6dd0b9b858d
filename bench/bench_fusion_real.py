"""Benchmark: every dev MRI (../shared/data/mri_lumbar_vb_dev) registered to a copy of itself
moved by a known transform (5 degrees about an oblique axis, 8 mm), refined at L4-L5 with its
vertebral-body labels. Prints per case the error at L4-L5 of the global transform alone (the
baseline, measured in the same run) and of the fused result, the residual and the seconds.
Run: .venv/bin/python bench/bench_fusion_real.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spineplan.core.dicom.load import load_volume  # noqa: E402
from spineplan.core.registration import RigidTransform, register_mri_to_ct, unit_points_lps  # noqa: E402
from spineplan.core.volume import Volume  # noqa: E402
from spineplan.paths import shared_data_dir  # noqa: E402


def main() -> None:
    import SimpleITK as sitk

    folder = shared_data_dir() / "mri_lumbar_vb_dev"
    if not folder.is_dir():
        print(f"no dev MRI at {folder}")
        return
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"{'case':8s} {'global mm':>10s} {'fused mm':>9s} {'deg':>6s} {'residual':>9s} {'s':>5s}")
    worst = 0.0
    for img in sorted(folder.glob("case*_mri.nii.gz")):
        case = img.name.split("_")[0]
        fixed = load_volume(img)
        labels = load_volume(folder / f"{case}_vertebrae_verse.nii.gz")
        truth = RigidTransform.from_axis_angle((0.3, 0.9, 0.3), 5.0, (4.0, -3.0, 6.0), fixed.center_lps())
        ref = fixed.to_sitk()
        moving = Volume.from_sitk(sitk.Resample(sitk.Cast(ref, sitk.sitkFloat32), ref, truth.inverse().to_sitk(),
                                                sitk.sitkLinear, 0.0), modality="MR")
        r = register_mri_to_ct(fixed, moving, level="L4-L5", ct_labels=labels)
        pts = unit_points_lps(labels, "L4-L5")
        g = float(r.global_transform.displacement_mm(truth, pts).max())
        f = float(r.transform.displacement_mm(truth, pts).max())
        worst = max(worst, f)
        print(f"{case:8s} {g:10.2f} {f:9.3f} {r.transform.angle_to_deg(truth):6.3f} {r.residual_mm:9.3f} "
              f"{r.seconds:5.1f}", flush=True)
    print(f"worst fused error {worst:.3f} mm (target <= 0.5 mm)")


if __name__ == "__main__":
    main()
