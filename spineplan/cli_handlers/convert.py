"""``spineplan convert PATH -o OUT.nii.gz``: the loaded (tilt-corrected) volume as NIfTI/NRRD/MHA."""

from __future__ import annotations

import sys

from ..core.dicom.load import load_volume, write_volume


def run(args) -> int:
    vol = load_volume(args.path, series_uid=args.series)
    out = write_volume(vol, args.output)
    for w in vol.warnings:
        print(f"spineplan: warning: {w}", file=sys.stderr)
    i, j, k = vol.size_ijk
    print(f"wrote {out} ({i}x{j}x{k}, {vol.orientation()})")
    return 0
