"""``spineplan compare PATH --level L4-L5 --side left [--lesion ...] -o DIR [--json]``.

Plans the needle, the tube and the cage on one unit (``core.planning.compare``), writes them
as DIR/needle.json, DIR/tube.json and DIR/cage.json, and prints the comparison with the
least destructive procedure that treats the lesion. Exit 0 when the comparison was made
(whatever it recommends), 2 on bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.dicom.load import load_volume
from ..core.persistence import save_plan
from ..core.planning.case import Case
from ..core.planning.compare import compare_procedures
from ..core.planning.lesion import lesion_summary_text
from ..core.planning.plan import Anatomy
from . import labels_for, print_load_warnings
from .plan import lesion_from_args


def run(args) -> int:
    vol = load_volume(args.path, series_uid=args.series)
    print_load_warnings(vol)
    lesion = lesion_from_args(args, vol)  # bad input refused before segmenting
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        from ..core.errors import InvalidInputError

        raise InvalidInputError(f"-o {out} exists and is not a folder")
    labels, status = labels_for(args, vol)
    anat = Anatomy(vol, labels, segmentation=status)
    anat.require_established_levels()
    case = Case(level=args.level, side=args.side, pathology=args.pathology)
    cmp = compare_procedures(anat, args.level, args.side, lesion=lesion, case=case)
    out.mkdir(parents=True, exist_ok=True)
    doc = cmp.to_dict()
    for proc, opt in cmp.options.items():
        if opt.plan is not None:
            path = out / f"{proc}.json"
            save_plan(opt.plan.to_dict(), path)
            doc["procedures"][proc]["plan_file"] = str(path)
    if args.json:
        print(json.dumps(doc))
        return 0
    print(f"{args.level} {args.side}: {lesion_summary_text(doc.get('lesion'))}")
    print(f"{'procedure':<10}{'reaches':>9}{'bone cm3':>10}{'facet %':>9}{'muscle mm':>11}"
          f"{'incision':>10}  disc / contraindications")
    for proc, o in doc["procedures"].items():
        reach = {True: "yes", False: "no", None: "-"}[o["reaches_lesion"]]
        facet = "-" if o.get("facet_preserved_pct") is None else f"{o['facet_preserved_pct']:.0f}"
        ci = "; ".join(c["reason"] for c in o["contraindications"]) or "none"
        red = f"; red: {', '.join(o['errors'])}" if o["errors"] else ""
        if o.get("failure"):
            print(f"{proc:<10}  no plan: {o['failure']}")
            continue
        print(f"{proc:<10}{reach:>9}{o['bone_removed_cm3']:>10.2f}{facet:>9}{o['muscle_path_mm']:>11.0f}"
              f"{o['incision_mm']:>8.0f}mm  {o['disc_opened']}; {ci}{red}")
    print(f"recommended: {doc['recommended'] or 'none'}")
    print(f"why: {doc['why']}")
    return 0
