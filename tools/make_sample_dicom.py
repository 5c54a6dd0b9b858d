#!/usr/bin/env python
"""Regenerate sample_dicom/ from the real CT in ../shared/data/ct_lumbar_totalseg.

The source is TotalSegmentator's test CT (Apache-2.0), a 3 mm abdomen/pelvis scan, T11 to
sacrum. It is written as a CT Image Storage series (one file per axial slice, deterministic
new UIDs, anonymous patient SAMPLE^LUMBAR, HU through RescaleIntercept), and its reference
labels are copied to sample_dicom/reference/.

Usage: python tools/make_sample_dicom.py [SHARED_DATA_DIR]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spineplan.core.dicom.write import write_series  # noqa: E402
from spineplan.core.volume import Volume  # noqa: E402

NOTICE = """Sample case for spineplan's quick start and tests.

Image: sample_dicom/IM*.dcm, written by tools/make_sample_dicom.py from example_ct.nii.gz of
TotalSegmentator's test data (https://github.com/wasserth/TotalSegmentator, commit
0e65a448d557382b1e925276212b3bec7f5aff83, folder tests/reference_files/), licensed Apache-2.0.
A real 3 mm CT of abdomen and pelvis, T11 to sacrum; patient identity replaced by SAMPLE^LUMBAR.

Reference labels (sample_dicom/reference/): TotalSegmentator MODEL PREDICTIONS, not manual
ground truth, renumbered to the VerSe convention (18 T11 tip, 19 T12, 20-24 L1-L5, 26 sacrum;
discs 119-124 = 100 + upper vertebra; 301 spinal cord). Same licence. They lie on the NIfTI grid
of the source image, which matches this series in world (LPS) coordinates.
"""


def main(shared: Path) -> None:
    src = shared / "ct_lumbar_totalseg"
    img = sitk.ReadImage(str(src / "example_ct.nii.gz"))
    # Re-orient to LPS (axial slices, rows anterior->posterior, columns right->left), the
    # usual CT acquisition, without resampling: it is a permutation/flip of the array.
    lps = sitk.DICOMOrient(img, "LPS")
    vol = Volume.from_sitk(lps, modality="CT")
    vol.array = vol.array.astype(np.int16)
    out = ROOT / "sample_dicom"
    for f in out.glob("IM*.dcm"):
        f.unlink()
    write_series(vol, out, patient_name="SAMPLE^LUMBAR", patient_id="SAMPLE",
                 description="Sample lumbar CT 3 mm (TotalSegmentator test data)",
                 uid_seed="spineplan-sample-ct-v1")
    ref = out / "reference"
    ref.mkdir(exist_ok=True)
    for name, dst in [("example_ct_vertebrae_verse.nii.gz", "vertebrae_verse.nii.gz"),
                      ("example_ct_discs_verse.nii.gz", "discs_verse.nii.gz"),
                      ("example_ct_spinal_cord.nii.gz", "spinal_cord.nii.gz"),
                      ("example_ct.nii.gz", "source_ct.nii.gz")]:
        shutil.copyfile(src / name, ref / dst)
    (out / "NOTICE").write_text(NOTICE)
    print(f"wrote {len(list(out.glob('IM*.dcm')))} slices to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data")
