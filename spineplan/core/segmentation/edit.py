"""Corrections of a label map as undoable commands (level shift, rename, merge)."""

from __future__ import annotations

import numpy as np

from ..commands import Command
from ..errors import SegmentationError
from . import labels as L

__all__ = ["shift_levels", "rename_label", "merge_labels", "split_label_at_plane", "paint_sphere",
           "paint_disc_on_slice", "brush_voxels_kji", "LabelEdit", "shift_levels_command", "rename_command",
           "merge_command", "split_command", "paint_command", "renamed_from_one"]

_STANDARD = list(range(1, 25))  # C1..L5 in order; the sacrum stays the sacrum


def shift_levels(arr: np.ndarray, steps: int) -> np.ndarray:
    """Rename every vertebra (and its disc) ``steps`` levels caudally (+) or cranially (-).

    The most common labelling error is an off-by-one count; the sacrum keeps its label.
    """
    present = [v for v in np.unique(arr).tolist() if v in _STANDARD]
    lut = np.arange(max(int(arr.max()) + 1, 400), dtype=arr.dtype)
    for v in present:
        n = v + steps
        if not 1 <= n <= 24:
            raise SegmentationError(f"cannot shift {L.vertebra_name(v)} by {steps}: no such level")
        lut[v] = n
        if L.disc_label(v) < len(lut):
            lut[L.disc_label(v)] = L.disc_label(n)
    taken = set(lut[present].tolist())
    if L.SACRUM in taken:
        raise SegmentationError("shift would collide with the sacrum")
    return lut[arr]


def renamed_from_one(arr: np.ndarray, label: int, name: str, *, keep_sacrum: bool = False) -> np.ndarray:
    """Every vertebra renamed by counting from one the user named: ``label`` becomes ``name``
    and the others keep their place in the column (a gap stays a gap), discs with the
    vertebra above them.

    Parameters
    ----------
    arr : ndarray
        Label map (VerSe numbering).
    label : int
        A vertebra present in ``arr``.
    name : str
        Its true name (``"L4"``; ``"L6"``/``"T13"`` for transitional anatomy).
    keep_sacrum : bool
        The sacrum was recognised as such: it keeps its label and only the vertebrae above it
        are renamed. Otherwise (a crop where the lowest vertebra was only assumed to be S1) it
        is counted like the others.
    """
    present = [v for v in np.unique(arr).tolist() if L.is_vertebra(v)]
    if label not in present:
        raise SegmentationError(f"{L.vertebra_name(label)} is not in the label map")
    target = L.vertebra_label(name)
    seq = list(range(1, 20)) + ([28] if 28 in present or target == 28 else []) + list(range(20, 25)) \
        + ([25] if 25 in present or target == 25 else []) + [L.SACRUM]
    moving = [v for v in present if not (keep_sacrum and v == L.SACRUM)]
    if label not in moving:
        raise SegmentationError("the recognised sacrum keeps its name; name a vertebra above it")
    off = seq.index(target) - seq.index(label)
    lut = np.arange(max(int(arr.max()) + 1, 400), dtype=arr.dtype)
    new_of = {}
    for v in moving:
        n = seq.index(v) + off
        if not 0 <= n < len(seq) or (keep_sacrum and seq[n] == L.SACRUM):
            raise SegmentationError(f"naming {L.vertebra_name(label)} {name} leaves {L.vertebra_name(v)} "
                                    "without a level name (six lumbar vertebrae: name the lowest L6)")
        new_of[v] = seq[n]
    kept = set(present) - set(moving)
    if kept & set(new_of.values()):
        raise SegmentationError(f"naming {L.vertebra_name(label)} {name} collides with the sacrum")
    for v, n in new_of.items():
        lut[v] = n
        if L.disc_label(v) < len(lut):
            lut[L.disc_label(v)] = L.disc_label(n) if n != L.SACRUM else 0
    return lut[arr]


def rename_label(arr: np.ndarray, old: int, new: int) -> np.ndarray:
    """Rename one label (merging into ``new`` if it exists)."""
    out = arr.copy()
    out[arr == old] = new
    return out


def rename_vertebra(arr: np.ndarray, old: int, new: int) -> np.ndarray:
    """Rename one vertebra and the disc below it (100 + old becomes 100 + new), so that the
    motor unit keeps its disc; refuses a name already in use."""
    present = set(np.unique(arr).tolist())
    if new in present:
        raise SegmentationError(f"{L.vertebra_name(new)} is already in the label map. Rename it first, "
                                "or use Merge into to join two parts of one vertebra.")
    out = rename_label(arr, old, new)
    if L.is_vertebra(old) and L.is_vertebra(new) and L.disc_label(old) in present \
            and L.disc_label(new) not in present:
        out[arr == L.disc_label(old)] = L.disc_label(new)
    return out


def merge_labels(arr: np.ndarray, keep: int, absorb: int) -> np.ndarray:
    """Merge label ``absorb`` into ``keep`` (e.g. a vertebra split in two by mistake)."""
    return rename_label(arr, absorb, keep)


def split_label_at_plane(arr: np.ndarray, labels_volume, label: int, point_lps, normal_lps,
                         new_label: int) -> np.ndarray:
    """Give the part of ``label`` on the side of the plane the normal points to ``new_label``."""
    idx = np.argwhere(arr == label)
    if len(idx) == 0:
        raise SegmentationError(f"label {label} is not in the label map")
    lps = labels_volume.lps_points_from_ijk(idx[:, ::-1].astype(float))
    side = (lps - np.asarray(point_lps, float)) @ np.asarray(normal_lps, float) > 0
    out = arr.copy()
    k, j, i = idx[side].T
    out[k, j, i] = new_label
    return out


def brush_voxels_kji(labels_volume, center_lps, radius_mm: float, axis: int | None = None):
    """(k, j, i) index arrays of the voxels within ``radius_mm`` of ``center_lps`` (LPS).

    Only the brush's bounding box is visited. With ``axis`` (0 = i, 1 = j, 2 = k) the brush is
    a disc on the one slice through the centre normal to that index axis.
    """
    c = labels_volume.ijk_points_from_lps(np.asarray(center_lps, float))
    r = np.array([radius_mm / s for s in labels_volume.spacing])
    lo = np.maximum(np.floor(c - r).astype(int), 0)
    hi = np.minimum(np.ceil(c + r).astype(int) + 1, np.array(labels_volume.size_ijk))
    if axis is not None:
        n = int(np.rint(c[axis]))
        lo[axis], hi[axis] = max(n, 0), min(n + 1, labels_volume.size_ijk[axis])
    if np.any(hi <= lo):
        e = np.zeros(0, int)
        return e, e, e
    I, J, K = np.meshgrid(*(np.arange(lo[n], hi[n]) for n in range(3)), indexing="ij")
    ijk = np.stack([I.ravel(), J.ravel(), K.ravel()], 1)
    pts = labels_volume.lps_points_from_ijk(ijk.astype(float))
    inside = np.linalg.norm(pts - np.asarray(center_lps, float), axis=1) <= radius_mm
    i, j, k = ijk[inside].T
    return k, j, i


def paint_sphere(arr: np.ndarray, labels_volume, center_lps, radius_mm: float, value: int,
                 only_on: int | None = None) -> np.ndarray:
    """Paint (value > 0) or erase (value 0) a sphere; ``only_on`` restricts to one label."""
    return _paint(arr, brush_voxels_kji(labels_volume, center_lps, radius_mm), value, only_on)


def paint_disc_on_slice(arr: np.ndarray, labels_volume, center_lps, radius_mm: float, value: int,
                        axis: int, only_on: int | None = None) -> np.ndarray:
    """Paint/erase a disc brush on the one slice through ``center_lps`` normal to index ``axis``.

    ``axis`` is the index axis (0 = i, 1 = j, 2 = k) held fixed: the slice shown in a 2D view.
    """
    return _paint(arr, brush_voxels_kji(labels_volume, center_lps, radius_mm, axis), value, only_on)


def _paint(arr, kji, value, only_on):
    k, j, i = kji
    if only_on is not None:
        sel = arr[k, j, i] == only_on
        k, j, i = k[sel], j[sel], i[sel]
    out = arr.copy()
    out[k, j, i] = value
    return out


class LabelEdit(Command):
    """Change the scene's label map by ``fn(array)`` (or ``sparse_fn``); undo restores it.

    Only the changed voxels are kept (flat indices, old and new values), not a full copy, and
    do / undo write them into the scene's array in place (``Scene.edit_labels``), whose labels
    event carries the bounding box of the change.
    """

    edits_labels = True  # dropped from the history when the scene gets a new label map

    def __init__(self, scene, fn, text: str, merge_id=None, sparse_fn=None):
        self.scene, self.fn, self.text, self.merge_id = scene, fn, text, merge_id
        self.sparse_fn = sparse_fn  # arr -> (flat indices, new values): avoids whole-array work
        self._idx = self._old = self._new = None

    def merge(self, other: Command) -> bool:
        """Consecutive strokes of one paint drag become one undo step."""
        if not isinstance(other, LabelEdit) or other.scene is not self.scene:
            return False
        keep = ~np.isin(other._idx, self._idx)
        self._idx = np.concatenate([self._idx, other._idx[keep]])
        self._old = np.concatenate([self._old, other._old[keep]])
        cur = self.scene.labels.array.reshape(-1)
        self._new = cur[self._idx].copy()
        return True

    def do(self):
        lab = self.scene.labels
        if self._idx is None and self.sparse_fn is not None:
            idx, vals = self.sparse_fn(lab.array)
            old = lab.array.reshape(-1)[idx]
            ch = old != vals
            self._idx, self._old = idx[ch], old[ch].copy()
            self._new = np.asarray(vals, lab.array.dtype)[ch].copy()
        elif self._idx is None:
            new = self.fn(lab.array)
            self._idx = np.flatnonzero(new != lab.array)
            self._old = lab.array.reshape(-1)[self._idx].copy()
            self._new = new.reshape(-1)[self._idx].copy()
        self.scene.edit_labels(self._idx, self._new)

    def undo(self):
        self.scene.edit_labels(self._idx, self._old)


def shift_levels_command(scene, steps: int) -> LabelEdit:
    """Undoable level shift (vertebrae and discs renamed together)."""
    return LabelEdit(scene, lambda a: shift_levels(a, steps),
                     f"Shift levels {'down' if steps > 0 else 'up'} by {abs(steps)}")


def rename_command(scene, old: int, new: int) -> LabelEdit:
    """Undoable rename of one label (e.g. one vertebra named wrongly)."""
    return LabelEdit(scene, lambda a: rename_vertebra(a, old, new), f"Rename label {old} to {new}")


def merge_command(scene, keep: int, absorb: int) -> LabelEdit:
    """Undoable merge of ``absorb`` into ``keep``."""
    return LabelEdit(scene, lambda a: merge_labels(a, keep, absorb), f"Merge {absorb} into {keep}")


def split_command(scene, label: int, point_lps, normal_lps, new_label: int) -> LabelEdit:
    """Undoable split of ``label`` at a plane (LPS point + normal)."""
    return LabelEdit(scene, lambda a: split_label_at_plane(a, scene.labels, label, point_lps, normal_lps,
                                                           new_label), f"Split {label}")


def paint_command(scene, center_lps, radius_mm: float, value: int, *, axis: int | None = None,
                  only_on: int | None = None, stroke_id=None) -> LabelEdit:
    """One dab of a paint (value > 0) / erase (0) stroke: sphere, or disc on a slice when ``axis``.

    Dabs pushed with the same ``stroke_id`` merge into one undo step (end with
    ``undo_stack.end_merge()`` on mouse release).
    """
    def sparse(a):
        k, j, i = brush_voxels_kji(scene.labels, center_lps, radius_mm, axis)
        if only_on is not None:
            sel = a[k, j, i] == only_on
            k, j, i = k[sel], j[sel], i[sel]
        idx = np.ravel_multi_index((k, j, i), a.shape)
        return idx, np.full(idx.shape, value, a.dtype)

    return LabelEdit(scene, None, "Erase" if value == 0 else "Paint",
                     merge_id=("paint", stroke_id) if stroke_id is not None else None, sparse_fn=sparse)
