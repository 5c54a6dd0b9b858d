"""Animations: frames (RGB arrays) as an animated GIF or an H.264 MP4, written atomically.

The rehearsal's frames come from ``render.rehearsal``; this module only encodes them
(imageio; MP4 through imageio-ffmpeg).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import atomic_output_path
from ..errors import InvalidInputError, SpineplanError

__all__ = ["write_animation"]


def write_animation(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 8.0) -> Path:
    """Write frames as an animated GIF (loops) or an MP4 (H.264), atomically.

    Raises
    ------
    InvalidInputError
        No frames, frames of different sizes, or an unsupported extension.
    SpineplanError
        MP4 requested but the ``imageio-ffmpeg`` package is not installed.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".gif", ".mp4"):
        raise InvalidInputError(f"animation must be .gif or .mp4, not '{ext or path.name}'")
    if not frames:
        raise InvalidInputError("no frames to write")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise InvalidInputError("all frames must have the same size")
    if not path.parent.is_dir():
        raise InvalidInputError(f"output folder {path.parent} does not exist")
    import imageio.v2 as iio

    stack = [np.ascontiguousarray(f[..., :3], dtype=np.uint8) for f in frames]
    with atomic_output_path(path) as tmp:
        if ext == ".gif":
            iio.mimwrite(tmp, stack, format="GIF", duration=1000.0 / fps, loop=0)
        else:
            try:
                import imageio_ffmpeg  # noqa: F401
            except ImportError:
                raise SpineplanError("MP4 export needs the imageio-ffmpeg package "
                                     "(pip install imageio-ffmpeg), or write a .gif") from None
            h, w = stack[0].shape[:2]
            if h % 2 or w % 2:  # H.264 (yuv420p) needs even sizes
                stack = [f[: h - h % 2, : w - w % 2] for f in stack]
            with iio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                pixelformat="yuv420p", macro_block_size=1, quality=7) as wr:
                for f in stack:
                    wr.append_data(f)
    return path
