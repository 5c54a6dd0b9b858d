"""``spineplan info PATH [--json]``: the series found under PATH (metadata only)."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.dicom.load import read_image_header
from ..core.dicom.scan import is_image_file, scan
from ..core.errors import InvalidInputError


def _image_file_record(path: Path) -> dict:
    # the header only: the modality is not judged from voxels that are not read
    h = read_image_header(path)
    return {"uid": "", "modality": "", "description": path.name, "size": h["size"],
            "spacing": h["spacing"], "origin": h["origin"], "direction": h["direction"],
            "n_files": 1, "warnings": h["warnings"]}


def run(args) -> int:
    path = Path(args.path)
    if not path.exists():
        raise InvalidInputError(f"{path} does not exist")
    if path.is_file() and is_image_file(path):
        series, others, warnings = [_image_file_record(path)], [], []
    else:
        res = scan(path)
        series = [s.to_json() for s in res.series]
        others = [{"file": o.path.name, "kind": o.kind, "modality": o.modality} for o in res.other_objects]
        warnings = res.warnings
        if not series:
            hint = f" ({'; '.join(warnings[:3])})" if warnings else ""
            raise InvalidInputError(f"no loadable image series under {path}{hint}")
    if args.json:
        print(json.dumps({"series": series, "other_objects": others, "warnings": warnings}))
        return 0
    for s in series:
        sz, sp = s["size"], s["spacing"]
        print(f"{s['modality'] or '?':3s} {s['uid'] or '(no series UID)'}")
        print(f"    {s['description']!s:40.40s} {sz[0]}x{sz[1]}x{sz[2]} voxels, "
              f"{sp[0]:.3g}x{sp[1]:.3g}x{sp[2]:.3g} mm, {s['n_files']} files")
        for w in s["warnings"]:
            print(f"    warning: {w}")
        if s.get("unloadable"):
            print(f"    not loadable: {s['unloadable']}")
    for o in others:
        print(f"other: {o['file']} ({o['kind']})")
    for w in warnings:
        print(f"warning: {w}")
    return 0
