"""``spineplan report PLAN.json -o REPORT.pdf [--identify]``."""

from __future__ import annotations

from ..core.export.report import write_report
from ..core.persistence import load_plan


def run(args) -> int:
    plan = load_plan(args.plan)
    write_report(plan, args.output, identity=args.identify)
    print(f"wrote {args.output}")
    return 0
