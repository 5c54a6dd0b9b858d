"""``spineplan batch``: issue 19's name for ``spineplan cohort`` (same options, same handler).

``spineplan batch INPUTS... -o OUT_DIR [--table measurements.csv] [--workers N]
[--scheduler tcp://HOST:PORT]``; see :mod:`spineplan.cli_handlers.cohort`.
"""

from __future__ import annotations

from .cohort import EXIT_SOME_FAILED, run

__all__ = ["run", "EXIT_SOME_FAILED"]
