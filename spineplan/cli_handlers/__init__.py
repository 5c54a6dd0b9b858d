"""Subcommand handlers: ``<name>.run(args) -> int`` (see spineplan/cli.py)."""

from __future__ import annotations

import sys

__all__ = ["print_load_warnings"]


def print_load_warnings(volume) -> None:
    """Print the loader's named warnings (missing slices, tilt, ...) as ``spineplan: warning:``.

    Every command that loads an image calls it, so a series with a gap is warned about the
    same way by convert, segment, plan and rehearse.
    """
    for w in volume.warnings:
        print(f"spineplan: warning: {w}", file=sys.stderr)
