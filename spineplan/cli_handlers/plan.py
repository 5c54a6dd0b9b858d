"""``spineplan plan PATH --level L4-L5 --procedure P --side S -o PLAN.json``."""

from __future__ import annotations

import json
import sys

from ..core.dicom.load import load_volume
from ..core.errors import InvalidInputError
from ..core.persistence import save_plan
from ..core.planning.case import Case
from ..core.planning.lesion import lesion_summary_text
from ..core.planning.plan import Anatomy
from ..core.planning.planner import make_plan
from . import labels_for, print_load_warnings

#: Exit code of ``spineplan plan`` when the plan it wrote has a red (error) check.
EXIT_RED_CHECK = 3


#: The lesion kind a ``--pathology`` implies for ``--lesion`` / ``--lesion-mask``.
KIND_OF_PATHOLOGY = {"herniation": "herniation", "instability": "herniation",
                     "stenosis": "stenosis", "sequestration": "sequestrum"}


def lesion_from_args(args, volume):
    """The Lesion of ``--lesion X,Y,Z[,R]`` or ``--lesion-mask MASK`` (None without either)."""
    from ..core.planning.lesion import lesion_from_mask, parse_lesion_arg

    kind = KIND_OF_PATHOLOGY.get(getattr(args, "pathology", "herniation"), "herniation")
    if getattr(args, "lesion", None):
        les = parse_lesion_arg(args.lesion, kind=kind)
        import numpy as np

        from ..core.volume import grid_corners_lps

        corners = grid_corners_lps(volume.size_ijk, volume.spacing, volume.origin,
                                   np.asarray(volume.direction).ravel())
        if np.any(les.centre_lps < corners.min(0)) or np.any(les.centre_lps > corners.max(0)):
            raise InvalidInputError("--lesion: the centre lies outside the image (LPS mm, as the "
                                    "GUI's status bar shows the cursor)")
        return les
    if getattr(args, "lesion_mask", None):
        return lesion_from_mask(load_volume(args.lesion_mask), volume, kind=kind)
    return None


def run(args) -> int:
    vol = load_volume(args.path, series_uid=args.series)
    print_load_warnings(vol)
    lesion = lesion_from_args(args, vol)  # bad input refused before segmenting
    labels, status = labels_for(args, vol)
    sources = {}
    if getattr(args, "mri", None):  # CT bone with the fused MRI's dural sac (cli_handlers/fuse.py)
        from .fuse import mri_soft_tissue

        labels, sources = mri_soft_tissue(args, vol, labels)
    case = Case(level=args.level, side=args.side, pathology=args.pathology, zone=args.zone,
                symptom_side=args.symptom_side or "", suspected_root=args.root or "")
    plan = make_plan(Anatomy(vol, labels, segmentation=status), args.level, args.procedure, args.side,
                     case=case, lesion=lesion)
    if sources:
        from ..core.fused_plan import state_structure_sources

        state_structure_sources(plan, sources)
    d = plan.to_dict()
    identity = vol.meta.get("identity") if args.identify else None
    d = save_plan(d, args.output, identity=identity)
    if args.markups:
        from ..core.export.slicer_markups import write_markups

        write_markups(d, args.markups)
    if args.report:
        from ..core.export.report import write_report

        write_report(d, args.report, volume=vol, labels=labels, identity=args.identify)
    errors = plan.errors()
    counts = plan.check_counts()
    if args.json:
        print(json.dumps({"plan_file": args.output, "motor_units_touched": d["motor_units_touched"],
                          "errors": [c.name for c in errors], "error_ids": [c.id for c in errors],
                          "check_summary": counts,
                          "not_evaluated": [c.id for c in plan.checks if not c.evaluated],
                          "metrics": d["metrics"], "lesion": d.get("lesion")}))
    else:
        print(f"{args.procedure} plan at {args.level} ({args.side}): touches "
              f"{', '.join(d['motor_units_touched']) or 'nothing'}; checks: {counts['red']} red, "
              f"{counts['amber']} amber ({counts['not_evaluated']} not evaluated), {counts['green']} green")
        print(f"  lesion: {lesion_summary_text(d.get('lesion'))}")
        for c in plan.checks:
            if c.severity != "ok":
                print(f"  {c.severity}: {c.name}: {c.detail}", file=sys.stderr)
    # the plan was written; exit 3 tells scripts it has an error check (ARCHITECTURE.md)
    return EXIT_RED_CHECK if errors else 0
