"""``spineplan rehearse PLAN.json -o OUT.gif|OUT.mp4 [--handout OUT.pdf]``: teaching animation.

The image comes from ``--image``, else from the plan's ``source.path``, else the bundled
sample series; ``--labels`` adds the anatomy (vertebrae, discs, dural sac) and lets the
steps find Kambin's triangle in the label map. The image must match the plan's source
geometry (a plan is never shown on another scan).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..core.errors import InvalidInputError, PlanFileError
from ..core.volume import Volume

__all__ = ["run", "read_plan", "load_volume"]

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def read_plan(path: str | Path) -> dict:
    """Read and validate a plan file (the project's loader when present, else plain JSON)."""
    from ..core import teaching

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"plan file not found: {path}")
    plan = None
    try:
        from ..core.persistence import load_plan  # type: ignore[attr-defined]
    except ImportError:
        load_plan = None
    if load_plan is not None:
        obj = load_plan(path)
        plan = obj if isinstance(obj, dict) else obj.to_dict()
    else:
        try:
            plan = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise PlanFileError(f"{path.name} is not a JSON plan file") from None
    if not isinstance(plan, dict):
        raise PlanFileError(f"{path.name} is not a plan (expected a JSON object)")
    return teaching.check_plan(plan)


def load_volume(path: str | Path) -> Volume:
    """Load a CT or label map (NIfTI/NRRD/MHA file or a DICOM series folder) as a Volume."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"image not found: {path}")
    try:
        from ..core.dicom.load import load_volume as project_loader  # type: ignore[attr-defined]
    except ImportError:
        project_loader = None
    if project_loader is not None:
        # the project's loader checks NIfTI headers before ITK reads them (a NaN affine would
        # otherwise print VNL's matrix dump) and refuses zero/NaN spacing with one line
        vol = project_loader(path)
        if isinstance(vol, Volume):
            if not path.is_dir():
                vol.modality = ""  # an image file does not say (as before: no guess here)
            return vol
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            ids = reader.GetGDCMSeriesIDs(str(path))
            if not ids:
                raise InvalidInputError(f"no DICOM series in {path}")
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), ids[0]))
            img = reader.Execute()
            modality = "CT"
        else:
            img = sitk.ReadImage(str(path))
            modality = ""
    except RuntimeError:
        raise InvalidInputError(f"cannot read {path.name} as an image "
                                f"(NIfTI, NRRD, MHA or a DICOM folder)") from None
    try:
        return Volume.from_sitk(img, modality=modality)
    except ValueError as exc:
        raise InvalidInputError(f"{path.name}: {exc}") from None


def _check_matches_source(vol: Volume, plan: dict, what: str) -> None:
    """Refuse an image whose geometry differs from the plan's source series."""
    src = plan.get("source") or {}
    problems = []
    if "size" in src and list(map(int, src["size"])) != list(vol.size_ijk):
        problems.append("size")
    if "spacing" in src and not np.allclose(src["spacing"], vol.spacing, atol=1e-3):
        problems.append("spacing")
    if "origin" in src and not np.allclose(src["origin"], vol.origin, atol=1e-2):
        problems.append("origin")
    if "direction" in src and not np.allclose(np.asarray(src["direction"], float).reshape(3, 3),
                                              vol.direction, atol=1e-4):
        problems.append("direction")
    if problems:
        raise InvalidInputError(f"{what} does not match the plan's series ({', '.join(problems)} "
                                f"differ); pass the image the plan was made on")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InvalidInputError(f"--size must be WIDTHxHEIGHT, e.g. 640x480, not '{text}'") from None
    if w < 64 or h < 48 or w > 4096 or h > 4096:
        raise InvalidInputError("--size must be between 64x48 and 4096x4096")
    return w, h


def run(args) -> int:
    """Render the rehearsal of a plan to a GIF/MP4 and optionally a PDF handout."""
    from ..paths import sample_dicom_dir

    out = Path(args.output)
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise InvalidInputError(f"-o must end in .gif or .mp4, not '{out.name}'")
    if not out.parent.is_dir():
        raise InvalidInputError(f"output folder {out.parent} does not exist")
    handout = Path(args.handout) if getattr(args, "handout", None) else None
    if handout is not None and handout.suffix.lower() != ".pdf":
        raise InvalidInputError(f"--handout must end in .pdf, not '{handout.name}'")
    if handout is not None and not handout.parent.is_dir():
        raise InvalidInputError(f"handout folder {handout.parent} does not exist")
    size = _parse_size(getattr(args, "size", None) or "640x480")
    fps_step = int(getattr(args, "frames_per_step", None) or 12)
    if not 1 <= fps_step <= 240:
        raise InvalidInputError("--frames-per-step must be between 1 and 240")
    fps = float(getattr(args, "fps", None) or 8.0)
    if not 0.5 <= fps <= 60:
        raise InvalidInputError("--fps must be between 0.5 and 60")

    plan = read_plan(args.plan)
    image = getattr(args, "image", None)
    if not image and (plan.get("source") or {}).get("path"):
        image = Path(plan["source"]["path"])
        if not image.is_absolute():  # relative to the plan file
            image = Path(args.plan).resolve().parent / image
    if not image:
        sample = sample_dicom_dir()
        if sample.is_dir() and any(sample.iterdir()):
            image = sample
    if not image:
        raise InvalidInputError("no image for this plan: pass --image CT (the series the plan was made on)")
    ct = load_volume(image)
    from . import print_load_warnings

    print_load_warnings(ct)
    _check_matches_source(ct, plan, "the image")
    labels = None
    if getattr(args, "labels", None):
        labels = load_volume(args.labels)
        if labels.array.dtype.kind == "f":
            labels = labels.with_array(np.rint(labels.array).astype(np.int32))
    # the stored checks are not trusted: recomputed on this image (and labels, else the
    # built-in segmenter's), every stored result that differs is warned about
    from . import recheck_loaded_plan

    recheck_loaded_plan(plan, ct, labels)

    from ..core.teaching import rehearsal_steps
    from ..render.rehearsal import render_rehearsal, write_animation, write_handout

    title = getattr(args, "title", None)
    step_images: list = []
    frames = render_rehearsal(plan, ct, labels, size=size, frames_per_step=fps_step,
                              inset=not getattr(args, "no_inset", False), title=title,
                              step_images=step_images)
    write_animation(frames, out, fps=fps)
    if handout is not None:
        steps = rehearsal_steps(plan, labels)
        name = title or f"{plan.get('level')} {str(plan.get('side')).upper()} {plan.get('procedure')}"
        write_handout(steps, step_images, handout, title=name)
    print(f"wrote {out} ({len(frames)} frames)" + (f" and {handout}" if handout else ""),
          file=sys.stderr)
    return 0
