"""``spineplan report PLAN.json -o REPORT.pdf [--identify]``: PDF report of a saved plan."""

from __future__ import annotations

import sys

from ..core.export.report import write_report
from ..core.persistence import load_plan


def run(args) -> int:
    """Load and validate the plan (tampered/other version -> exit 2), write the PDF."""
    plan = load_plan(args.plan)
    if args.identify and not plan.get("identity"):
        print("spineplan: warning: the plan file holds no patient identity; report is anonymous",
              file=sys.stderr)
    out = write_report(plan, args.output, identity=bool(args.identify))
    print(f"report written: {out}")
    return 0
