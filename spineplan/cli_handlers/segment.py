"""``spineplan segment PATH -o LABELS.nii.gz [--backend NAME] [--modality CT|MR] [--json]``."""

from __future__ import annotations

import json
import time

from ..core.dicom.load import load_volume
from ..core.errors import InvalidInputError
from ..core.export.label_export import write_label_map
from ..core.modality import settle_modality
from ..core.segmentation.base import segment_volume
from ..core.segmentation.motor_units import compute_motor_units, implausible_lines
from . import print_load_warnings


def _source_files(args, vol) -> list:
    """The DICOM files of the segmented series (for a DICOM SEG output)."""
    from ..core.dicom.scan import scan

    uid = vol.meta.get("series_uid")
    if not uid:
        raise InvalidInputError("a .dcm (DICOM SEG) output needs a DICOM source series; "
                                "use .nii.gz, .nii, .nrrd or .mha")
    for s in scan(args.path).series:
        if s.uid == uid:
            return s.files
    raise InvalidInputError("source series not found again for the DICOM SEG output")


def _write_output(labels, args, vol) -> None:
    """Label map by extension: .nii.gz/.nii/.nrrd/.mha, or .dcm = DICOM SEG of the source series."""
    out = str(args.output).lower()
    if out.endswith(".dcm"):
        from ..core.export.dicom_seg import write_dicom_seg

        files = _source_files(args, vol)
        write_dicom_seg(labels, files, args.output, identity=bool(getattr(args, "identify", False)))
    elif out.endswith((".nii.gz", ".nii", ".nrrd", ".mha")):
        write_label_map(labels, args.output)
    else:
        raise InvalidInputError(f"unsupported label output '{args.output}': use .nii.gz, .nii, .nrrd, "
                                ".mha or .dcm (DICOM SEG)")


def run(args) -> int:
    vol = load_volume(args.path, series_uid=args.series)
    print_load_warnings(vol)
    if not str(args.output).lower().endswith((".nii.gz", ".nii", ".nrrd", ".mha", ".dcm")):
        _write_output(None, args, vol)  # raises the one-line error before a long run
    assumed = settle_modality(vol, getattr(args, "modality", None))
    t = time.perf_counter()
    res, seg = segment_volume(vol, args.backend, assumed=assumed)
    seconds = time.perf_counter() - t
    _write_output(res.labels, args, vol)
    units = compute_motor_units(res.labels)
    if args.json:
        # each unit: {level, measurements: {contract names, rounded}, implausible: [names]}
        print(json.dumps({"levels": res.levels, "motor_units": [u.summary_dict() for u in units],
                          "seconds": round(seconds, 3),
                          "labels_file": str(args.output), "confidence": res.confidence,
                          "flags": [f.to_dict() for f in res.flags], "evidence": res.evidence.to_dict(),
                          "needs_confirmation": res.needs_confirmation, "backend": seg.name,
                          "modality": vol.modality, "modality_assumed": bool(assumed)}))
    else:
        if assumed:
            print(f"assumed modality {assumed} from the image values (use --modality to set it)")
        print(f"{seg.name}: {', '.join(res.levels)} in {seconds:.1f} s -> {args.output}")
        for f in res.flags:
            print(f"  flag: {f.message}")
        for u in units:
            for line in implausible_lines(u):
                print(f"  implausible: {line}")
        if res.needs_confirmation:
            print(f"  levels not established (lowest confidence {res.min_confidence:.2f}): "
                  "confirm or name one level before planning")
    return 0
