"""``spineplan report PLAN.json -o REPORT.pdf [--identify] [--image PATH] [--labels L]``.

The plan's stored checks are not trusted: with the image (``--image`` or the plan's source
path) every check is recomputed on it and the report shows the recomputed results, with every
stored result that differs in red; without an image, page 1 says in red that they are unverified.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.export.report import write_report
from ..core.persistence import check_plan_matches_volume, load_plan
from . import plan_image_path, print_load_warnings, recheck_loaded_plan


def run(args) -> int:
    """Load and validate the plan (tampered/other version -> exit 2), recheck, write the PDF."""
    plan = load_plan(args.plan)
    if args.identify and not plan.get("identity"):
        print("spineplan: warning: the plan file holds no patient identity; report is anonymous",
              file=sys.stderr)
    vol = labels = None
    image = plan_image_path(plan, args.plan, getattr(args, "image", None))
    if image is not None:
        from ..core.dicom.load import load_volume

        vol = load_volume(image)
        print_load_warnings(vol)
        check_plan_matches_volume(plan, vol, Path(args.plan).name)
        if getattr(args, "labels", None):
            from ..core.segmentation.importers import read_labels
            from ..core.segmentation.fit import check_labels_fit_image
            from ..core.errors import InvalidInputError

            labels = read_labels([args.labels], vol)
            fit = check_labels_fit_image(vol, labels)
            if not fit.ok:
                raise InvalidInputError(f"{fit.message}; pass the label map made on this image")
    recheck, labels = recheck_loaded_plan(plan, vol, labels)
    out = write_report(plan, args.output, identity=bool(args.identify), volume=vol, labels=labels,
                       recheck=recheck)
    print(f"report written: {out}")
    return 0
