"""Playback: a step sequence interpolated into frame states (tip, camera, layers per frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InvalidInputError
from .storyboard import Camera, Step, _unit

__all__ = ["APPROACH_ZOOM", "FrameState", "playback_frames"]


@dataclass(frozen=True)
class FrameState:
    """State of one playback frame: the step it belongs to and interpolated geometry."""

    step_index: int
    frame_in_step: int
    tip_lps: tuple[float, float, float]
    camera: Camera
    layers: dict[str, float]


#: The first step starts from a camera this many times further away (approach zoom).
APPROACH_ZOOM = 1.6


def playback_frames(steps: Sequence[Step], frames_per_step: int) -> list[FrameState]:
    """Interpolate a step sequence into ``len(steps) * frames_per_step`` frame states.

    Within step ``i`` the tip, camera and layer opacities move linearly from the state at
    the end of step ``i - 1`` (for the first step: the same view from
    :data:`APPROACH_ZOOM` times further away) to the state of step ``i``; the last frame of
    each step is exactly that step's state, so the last frame ends at the target.
    """
    if frames_per_step < 1:
        raise InvalidInputError("frames_per_step must be at least 1")
    if not steps:
        return []
    out: list[FrameState] = []
    s0 = steps[0]
    fp0 = np.asarray(s0.camera.focal_point)
    prev_cam = Camera(tuple(map(float, fp0 + (np.asarray(s0.camera.position) - fp0) * APPROACH_ZOOM)),
                      s0.camera.focal_point, s0.camera.view_up)
    prev_tip, prev_layers = np.asarray(s0.tip_lps), dict(s0.layers)
    for st in steps:
        tip = np.asarray(st.tip_lps)
        for f in range(1, frames_per_step + 1):
            t = f / frames_per_step

            def lerp(a, b):
                return (1.0 - t) * np.asarray(a, float) + t * np.asarray(b, float)

            up = _unit(lerp(prev_cam.view_up, st.camera.view_up))
            cam = Camera(tuple(map(float, lerp(prev_cam.position, st.camera.position))),
                         tuple(map(float, lerp(prev_cam.focal_point, st.camera.focal_point))),
                         tuple(map(float, up)))
            layers = {k: float((1 - t) * prev_layers.get(k, v) + t * v) for k, v in st.layers.items()}
            out.append(FrameState(st.index, f - 1, tuple(map(float, lerp(prev_tip, tip))), cam, layers))
        prev_cam, prev_tip, prev_layers = st.camera, tip, dict(st.layers)
    return out
