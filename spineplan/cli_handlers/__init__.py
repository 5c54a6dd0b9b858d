"""Subcommand handlers: ``<name>.run(args) -> int`` (see spineplan/cli.py)."""

from __future__ import annotations

import warnings

__all__ = ["warn", "print_load_warnings", "labels_for", "plan_image_path", "recheck_loaded_plan"]


class CommandWarning(UserWarning):
    """A warning of a command: ``spineplan.cli.main`` prints it as ``spineplan: warning:``
    after the command succeeded, and holds it back behind the one error line otherwise."""


def warn(message: str) -> None:
    """Warn the user (printed once the command has succeeded)."""
    warnings.warn(str(message), CommandWarning, stacklevel=2)


def print_load_warnings(volume) -> None:
    """Warn about the loader's named warnings (missing slices, tilt, ...).

    Every command that loads an image calls it, so a series with a gap is warned about the
    same way by convert, segment, plan, report and rehearse.
    """
    for w in volume.warnings:
        warn(w)


def labels_for(args, volume):
    """(labels, level status): the given label maps, or the built-in segmenter's result with
    its flags (confirmed by the user with ``--confirm-levels``)."""
    from ..core.errors import InvalidInputError, SegmentationError
    from ..core.segmentation import labels as L
    from ..core.segmentation.confirm import confirmed, labels_file_result
    from ..core.segmentation.importers import read_labels

    if args.labels:
        from ..core.segmentation.fit import check_labels_fit_image

        lab = read_labels(args.labels, volume)
        fit = check_labels_fit_image(volume, lab)
        if not fit.ok:
            raise InvalidInputError(f"{fit.message}; pass the label map made on this image")
        import numpy as np

        names = [L.vertebra_name(v) for v in L.craniocaudal_order(
            int(x) for x in np.unique(lab.array) if L.is_vertebra(int(x)))]
        return lab, labels_file_result(names)
    from ..core.segmentation.base import default_for

    if not volume.modality:  # judged from the values (recorded in the plan's source)
        from ..core.modality import guess_modality

        volume.modality = guess_modality(volume)
    seg = default_for(volume.modality)
    if not seg.is_available():
        raise SegmentationError(f"segmenter '{seg.name}' is not available "
                                f"({'; '.join(seg.missing_dependencies)}); pass --labels LABELS.nii.gz")
    res = seg.segment(volume)
    if getattr(args, "confirm_levels", False) and res.needs_confirmation:
        res = confirmed(res, args.level)
    return res.labels, res


def plan_image_path(plan: dict, plan_path, image=None):
    """The image a plan is checked on: ``image`` if given, else the plan's ``source.path``
    (relative to the plan file), else None."""
    from pathlib import Path

    if image:
        return Path(image)
    src = (plan.get("source") or {}).get("path")
    if not src:
        return None
    p = Path(src)
    return p if p.is_absolute() else Path(plan_path).resolve().parent / p


def recheck_loaded_plan(plan: dict, volume=None, labels=None):
    """Recompute a loaded plan's checks on ``volume`` (+ ``labels``, else the built-in
    segmenter's) and warn on stderr about every stored result that differs.

    Returns
    -------
    (Recheck, labels or None)
    """
    from ..core.errors import SpineplanError
    from ..core.planning.plan import Anatomy
    from ..core.planning.recheck import not_rechecked, recheck_plan

    if volume is None:
        r = not_rechecked("no image given: pass --image (and --labels) to recompute them")
    else:
        try:
            if labels is None:
                from ..core.modality import guess_modality
                from ..core.segmentation.base import default_for

                if not volume.modality:
                    volume.modality = guess_modality(volume)
                labels = default_for(volume.modality).segment(volume).labels
            r = recheck_plan(plan, Anatomy(volume, labels))
        except SpineplanError as exc:
            r = not_rechecked(f"no anatomy to recompute them on: {exc}")
    if not r.agrees:
        if r.differences:
            for d in r.differences:
                warn(f"stored result differs from the recomputed check: {d.describe()}")
        else:
            warn(f"the plan's checks were not recomputed ({r.reason}); its stored results are "
                 "unverified")
    return r, labels
