"""``spineplan rehearse PLAN.json -o OUT.gif|OUT.mp4 [--handout OUT.pdf]``: teaching animation.

The image comes from ``--image``, else from the plan's ``source.path``, else the bundled
sample series; ``--labels`` adds the anatomy (vertebrae, discs, dural sac) and lets the
steps find Kambin's triangle in the label map. Image and labels are read as ``plan`` reads
them (``core.dicom.load.load_volume``, ``importers.read_labels``), and the image must match
the plan's source (``persistence.check_plan_matches_volume``: a plan is never shown on
another scan).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.dicom.load import load_volume
from ..core.errors import InvalidInputError
from ..core.persistence import check_plan_matches_volume

__all__ = ["run", "read_plan"]


def read_plan(path: str | Path) -> dict:
    """Read and validate a plan file (``persistence.load_plan``, then the teaching checks)."""
    from ..core import teaching
    from ..core.persistence import load_plan

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"plan file not found: {path}")
    return teaching.check_plan(load_plan(path))


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
    check_plan_matches_volume(plan, ct, Path(args.plan).name)
    labels = None
    if getattr(args, "labels", None):
        from ..core.segmentation.importers import read_labels

        labels = read_labels([args.labels], ct)
    # the stored checks are not trusted: recomputed on this image (and labels, else the
    # built-in segmenter's), every stored result that differs is warned about
    from . import recheck_loaded_plan

    recheck_loaded_plan(plan, ct, labels)

    from ..core.teaching import rehearsal_steps
    from ..core.export.animation import write_animation
    from ..core.export.handout import write_handout
    from ..render.rehearsal import render_rehearsal

    title = getattr(args, "title", None)
    steps = rehearsal_steps(plan, labels)  # the storyboard, once: frames and handout
    step_images: list = []
    frames = render_rehearsal(plan, ct, labels, size=size, frames_per_step=fps_step,
                              inset=not getattr(args, "no_inset", False), title=title,
                              step_images=step_images, steps=steps)
    write_animation(frames, out, fps=fps)
    if handout is not None:
        name = title or f"{plan.get('level')} {str(plan.get('side')).upper()} {plan.get('procedure')}"
        write_handout(steps, step_images, handout, title=name)
    print(f"wrote {out} ({len(frames)} frames)" + (f" and {handout}" if handout else ""),
          file=sys.stderr)
    return 0
