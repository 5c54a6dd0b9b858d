"""``spineplan fuse CT MRI -o MRI_ON_CT.nii.gz [--level L4-L5] [--labels CT_LABELS]
[--mri-labels MRI_LABELS] [--transform OUT.tfm] [--json]``: register an MRI to a CT."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..core.dicom.load import load_volume, write_volume
from ..core.errors import InvalidInputError
from ..core.registration import FusionFlagKind, mri_on_ct, register_mri_to_ct, write_tfm
from ..core.segmentation.importers import read_labels
from . import labels_for, print_load_warnings, warn

_IMAGE_OUT = (".nii.gz", ".nii", ".nrrd", ".mha")


def _check_outputs(args) -> None:
    """Refuse bad output names before the long run (one line, exit 2)."""
    if not str(args.output).lower().endswith(_IMAGE_OUT):
        raise InvalidInputError(f"{Path(args.output).name}: output must end in .nii.gz, .nii, .nrrd or .mha")
    if args.transform and not str(args.transform).lower().endswith((".tfm", ".txt", ".h5")):
        raise InvalidInputError(f"{Path(args.transform).name}: a transform file must end in .tfm, .txt or .h5")
    for out in filter(None, (args.output, args.transform)):
        if not Path(out).resolve().parent.is_dir():
            raise InvalidInputError(f"cannot write {out}: {Path(out).parent} is not a folder")


def _ct_labels(args, ct):
    """The CT's labels: the given file(s), else (only when a level is asked for) the built-in
    CT segmenter's."""
    if args.labels:
        return read_labels(args.labels, ct)
    if not args.level:
        return None

    args.confirm_levels = False
    labels, res = labels_for(args, ct)
    if getattr(res, "needs_confirmation", False):
        raise InvalidInputError("the CT's levels are not established: pass --labels CT_LABELS.nii.gz "
                                "with the vertebrae named")
    return labels


def mri_soft_tissue(args, ct, ct_labels):
    """``spineplan plan --mri``: register the MRI at the plan's level and take its dural sac
    (``--mri-labels``, else the built-in MRI segmenter's) onto the CT labels.

    Returns (labels, {label value: image name}) for ``fused_plan.state_structure_sources``.
    """
    from ..core.fused_plan import MRI_STRUCTURES, labels_with_mri_soft_tissue
    from ..core.segmentation.base import default_for

    mri = load_volume(args.mri)
    print_load_warnings(mri)
    mri.modality = mri.modality or "MR"
    if args.mri_labels:
        mri_labels = read_labels(args.mri_labels, mri)
    else:
        mri_labels = default_for("MR").segment(mri).labels
    res = register_mri_to_ct(ct, mri, level=args.level, ct_labels=ct_labels)
    for f in res.flags:
        if f.kind is not FusionFlagKind.NO_LOCAL:
            warn(f.message)
    if res.residual_mm is not None:
        print(f"fused the MRI at {args.level}: residual {res.residual_mm:.2f} mm", file=sys.stderr)
    return (labels_with_mri_soft_tissue(ct_labels, mri_labels, res.transform),
            {v: "MRI (fused)" for v in MRI_STRUCTURES})


def run(args) -> int:
    from ..core.segmentation import labels as L

    _check_outputs(args)
    if args.level:
        try:
            L.parse_motor_unit(args.level)
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None
    ct = load_volume(args.ct)
    print_load_warnings(ct)
    if not ct.modality:
        ct.modality = "CT"
    mri = load_volume(args.mri)
    print_load_warnings(mri)
    if not mri.modality:
        mri.modality = "MR"
    ct_labels = _ct_labels(args, ct)
    mri_labels = read_labels(args.mri_labels, mri) if args.mri_labels else None
    res = register_mri_to_ct(ct, mri, level=args.level, ct_labels=ct_labels, mri_labels=mri_labels)
    write_volume(mri_on_ct(mri, ct, res.transform), args.output)
    if args.transform:
        write_tfm(res.transform, args.transform)
    for f in res.flags:
        if f.kind is not FusionFlagKind.NO_LOCAL:
            warn(f.message)
    if args.json:
        doc = res.to_dict()
        doc.update(output=str(args.output), transform_file=args.transform)
        print(json.dumps(doc))
    else:
        print(f"fused in {res.seconds:.1f} s -> {args.output}")
        g = res.global_transform
        print(f"  global: rotation {g.angle_deg:.2f} deg, Mattes MI {res.metric_global:.4f}")
        if res.local_transform is not None:
            print(f"  {res.level}: local correction {res.local_correction_mm:.2f} mm, "
                  f"residual {res.residual_mm:.2f} mm, Mattes MI {res.metric_local:.4f}")
        for name, d in res.dice.items():
            print(f"  Dice {name}: {d:.3f}")
        if args.transform:
            print(f"  transform (ITK, LPS, CT -> MRI) -> {args.transform}")
    return 0
