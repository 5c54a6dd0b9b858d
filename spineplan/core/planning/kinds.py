"""The plan's vocabulary: which procedures, which sides, which check severities.

One definition, used by ``Plan``, the plan-file validation (persistence), teaching, the
command line's choices and the GUI's menus. Plain tuples (the plan file stores the strings).
"""

from __future__ import annotations

__all__ = ["PROCEDURES", "SIDES", "SEVERITIES"]

#: Percutaneous needle (discography, nucleoplasty), tubular retractor, interbody cage.
PROCEDURES = ("needle", "tube", "cage")
#: The patient's side of the approach.
SIDES = ("left", "right")
#: A check's outcome, from harmless to refusing.
SEVERITIES = ("ok", "warning", "error")
