"""``spineplan segment PATH -o LABELS.nii.gz [--backend NAME] [--json]``."""

from __future__ import annotations

import json
import time

from ..core.dicom.load import load_volume
from ..core.errors import SegmentationError
from ..core.export.label_export import write_label_map
from ..core.segmentation.base import default_for, get
from ..core.segmentation.motor_units import compute_motor_units


def run(args) -> int:
    vol = load_volume(args.path, series_uid=args.series)
    seg = default_for(vol.modality) if args.backend == "auto" else get(args.backend)
    if not seg.is_available():
        raise SegmentationError(f"segmenter '{seg.name}' is not available: {'; '.join(seg.missing_dependencies)}")
    t = time.perf_counter()
    res = seg.segment(vol)
    seconds = time.perf_counter() - t
    write_label_map(res.labels, args.output)
    units = [u.name for u in compute_motor_units(res.labels)]
    if args.json:
        print(json.dumps({"levels": res.levels, "motor_units": units, "seconds": round(seconds, 3),
                          "labels_file": str(args.output), "confidence": res.confidence,
                          "flags": res.flags, "backend": seg.name}))
    else:
        print(f"{seg.name}: {', '.join(res.levels)} in {seconds:.1f} s -> {args.output}")
        for f in res.flags:
            print(f"  flag: {f}")
    return 0
