"""``spineplan convert PATH -o OUT.nii.gz``: the loaded (tilt-corrected) volume as NIfTI/NRRD/MHA."""

from __future__ import annotations

from ..core.dicom.load import load_volume, write_volume
from . import print_load_warnings


def run(args) -> int:
    vol = load_volume(args.path, series_uid=args.series)
    out = write_volume(vol, args.output)
    print_load_warnings(vol)
    i, j, k = vol.size_ijk
    print(f"wrote {out} ({i}x{j}x{k}, {vol.orientation()})")
    return 0
