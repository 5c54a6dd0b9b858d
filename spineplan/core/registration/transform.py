"""The rigid CT-MRI transform: one 4x4 matrix in LPS, its JSON and ITK ``.tfm`` forms.

Convention (ITK's, so Slicer reads it): the transform maps a point of the CT (the fixed
image) to the point of the MRI (the moving image) that shows the same anatomy, both in LPS
millimetres: ``mri_lps = A @ ct_lps + b``. Resampling the MRI through it puts the MRI on the
CT grid (:func:`spineplan.core.registration.rigid.mri_on_ct`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_output_path
from ..errors import InvalidInputError, OutputError

__all__ = ["RigidTransform", "TRANSFORM_JSON_KIND", "write_tfm", "read_tfm"]

TRANSFORM_JSON_KIND = "rigid-lps-ct-to-mri"
_ORTHO_TOL = 1e-5  # a stored rotation must be orthonormal to this (float rounding only)


def _rotation_about(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rotation matrix of ``angle_rad`` about the unit vector ``axis`` (Rodrigues)."""
    a = np.asarray(axis, float)
    a = a / np.linalg.norm(a)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle_rad) * K + (1 - math.cos(angle_rad)) * (K @ K)


@dataclass(frozen=True)
class RigidTransform:
    """A rigid map ``mri_lps_from_ct_lps`` (4x4, last row 0 0 0 1).

    Parameters
    ----------
    matrix : (4, 4) array
        Homogeneous matrix taking CT LPS points (mm) to MRI LPS points (mm).
    center_lps : (3,) array
        Centre of rotation used when the transform is written as an ITK Euler3DTransform
        (does not change the map; nudges rotate about it).
    """

    matrix: np.ndarray = field(default_factory=lambda: np.eye(4))
    center_lps: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, float).reshape(4, 4).copy()
        R = m[:3, :3]
        if not np.all(np.isfinite(m)) or np.abs(R.T @ R - np.eye(3)).max() > _ORTHO_TOL \
                or np.linalg.det(R) <= 0 or np.abs(m[3] - [0, 0, 0, 1]).max() > 0:
            raise InvalidInputError("the transform is not rigid (its rotation is not orthonormal)")
        m.flags.writeable = False
        c = np.asarray(self.center_lps, float).reshape(3).copy()
        c.flags.writeable = False
        object.__setattr__(self, "matrix", m)
        object.__setattr__(self, "center_lps", c)

    # ------------------------------------------------------------------ construction
    @classmethod
    def identity(cls, center_lps=(0.0, 0.0, 0.0)) -> "RigidTransform":
        """The identity (MRI and CT share one world frame)."""
        return cls(np.eye(4), np.asarray(center_lps, float))

    @classmethod
    def from_rotation_translation(cls, rotation: np.ndarray, translation_mm, center_lps=(0.0, 0.0, 0.0)
                                  ) -> "RigidTransform":
        """``mri = R (ct - c) + c + t``, as ITK's Euler3DTransform."""
        R = np.asarray(rotation, float)
        c = np.asarray(center_lps, float)
        m = np.eye(4)
        m[:3, :3] = R
        m[:3, 3] = c + np.asarray(translation_mm, float) - R @ c
        return cls(m, c)

    @classmethod
    def from_axis_angle(cls, axis, angle_deg: float, translation_mm, center_lps=(0.0, 0.0, 0.0)
                        ) -> "RigidTransform":
        """Rotation of ``angle_deg`` about ``axis`` through ``center_lps``, then a translation."""
        return cls.from_rotation_translation(_rotation_about(axis, math.radians(angle_deg)),
                                             translation_mm, center_lps)

    @classmethod
    def from_sitk(cls, tx) -> "RigidTransform":
        """From a SimpleITK rigid transform (Euler3D, VersorRigid3D, or a composite of them)."""
        import SimpleITK as sitk

        if isinstance(tx, sitk.CompositeTransform) or tx.GetName() == "CompositeTransform":
            comp = sitk.CompositeTransform(tx)
            out = cls.identity()
            # ITK applies the last-added transform first
            for n in range(comp.GetNumberOfTransforms()):
                out = out.after(cls.from_sitk(comp.GetNthTransform(n)))
            return out
        if tx.GetName() == "TranslationTransform":
            m = np.eye(4)
            m[:3, 3] = tx.GetOffset()
            return cls(m)
        if tx.GetName() == "IdentityTransform":
            return cls.identity()
        try:
            vr = tx.Downcast() if hasattr(tx, "Downcast") else tx
            R = np.array(vr.GetMatrix(), float).reshape(3, 3)
            c = np.array(vr.GetCenter(), float)
            tr = np.array(vr.GetTranslation(), float)
        except (RuntimeError, AttributeError, TypeError):
            raise InvalidInputError(f"the transform is a {tx.GetName()}, not a rigid transform") from None
        return cls.from_rotation_translation(R, tr, c)

    # ------------------------------------------------------------------ use
    @property
    def rotation(self) -> np.ndarray:
        """The 3x3 rotation."""
        return self.matrix[:3, :3]

    @property
    def angle_deg(self) -> float:
        """Rotation angle (degrees) of the transform."""
        return float(np.degrees(math.acos(np.clip((np.trace(self.rotation) - 1) / 2, -1.0, 1.0))))

    def mri_points_from_ct(self, ct_lps: np.ndarray) -> np.ndarray:
        """Map (N, 3) CT LPS points to MRI LPS points."""
        p = np.atleast_2d(np.asarray(ct_lps, float))
        return p @ self.matrix[:3, :3].T + self.matrix[:3, 3]

    def after(self, first: "RigidTransform") -> "RigidTransform":
        """``self o first``: apply ``first``, then ``self`` (centre kept from ``first``)."""
        return RigidTransform(self.matrix @ first.matrix, first.center_lps)

    def inverse(self) -> "RigidTransform":
        """The map from MRI LPS back to CT LPS."""
        return RigidTransform(np.linalg.inv(self.matrix), self.mri_points_from_ct(self.center_lps)[0])

    def with_center(self, center_lps) -> "RigidTransform":
        """The same map with another rotation centre (for nudges and the ITK form)."""
        return RigidTransform(self.matrix, np.asarray(center_lps, float))

    def nudged(self, translation_mm=(0.0, 0.0, 0.0), rotation_deg=(0.0, 0.0, 0.0)) -> "RigidTransform":
        """The transform moved by a manual nudge, in the CT frame about ``center_lps``.

        ``rotation_deg`` are rotations about the LPS x, y, z axes (applied x, then y, then z),
        ``translation_mm`` moves the CT anatomy's match in the MRI: a nudge of +1 mm in x shows
        the MRI shifted 1 mm towards -x on the CT (the point 1 mm further +x in the MRI is now
        matched with each CT point).
        """
        R = np.eye(3)
        for ax, ang in zip(np.eye(3), rotation_deg):
            if ang:
                R = _rotation_about(ax, math.radians(ang)) @ R
        delta = RigidTransform.from_rotation_translation(R, translation_mm, self.center_lps)
        return RigidTransform(self.matrix @ delta.matrix, self.center_lps)

    def displacement_mm(self, other: "RigidTransform", ct_lps: np.ndarray) -> np.ndarray:
        """Distances (mm) between where ``self`` and ``other`` put each CT point."""
        return np.linalg.norm(self.mri_points_from_ct(ct_lps) - other.mri_points_from_ct(ct_lps), axis=1)

    def angle_to_deg(self, other: "RigidTransform") -> float:
        """The angle (degrees) of the rotation between ``self`` and ``other``."""
        D = self.rotation.T @ other.rotation
        return float(np.degrees(math.acos(np.clip((np.trace(D) - 1) / 2, -1.0, 1.0))))

    def to_sitk(self):
        """A SimpleITK Euler3DTransform about ``center_lps`` (fixed = CT, moving = MRI)."""
        import SimpleITK as sitk

        tx = sitk.Euler3DTransform()
        tx.SetCenter(tuple(float(v) for v in self.center_lps))
        tx.SetMatrix(tuple(float(v) for v in self.rotation.ravel()), 1e-5)
        c = self.center_lps
        tx.SetTranslation(tuple(float(v) for v in self.matrix[:3, 3] - c + self.rotation @ c))
        return tx

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        """JSON form for the case file (exact floats: the round trip is lossless)."""
        return {"kind": TRANSFORM_JSON_KIND, "frame": "LPS", "maps": "ct_to_mri",
                "matrix": [[float(v) for v in row] for row in self.matrix],
                "center_lps": [float(v) for v in self.center_lps]}

    @classmethod
    def from_dict(cls, d) -> "RigidTransform":
        """Inverse of :meth:`to_dict`; raises InvalidInputError on anything else."""
        if not isinstance(d, dict) or d.get("kind") != TRANSFORM_JSON_KIND or d.get("frame") != "LPS" \
                or d.get("maps") != "ct_to_mri":
            raise InvalidInputError("the fusion transform is not a spineplan LPS CT-to-MRI transform")
        try:
            m = np.array(d["matrix"], float)
            c = np.array(d.get("center_lps", (0.0, 0.0, 0.0)), float)
        except (KeyError, TypeError, ValueError):
            raise InvalidInputError("the fusion transform's matrix is not a 4x4 array of numbers") from None
        if m.shape != (4, 4) or c.shape != (3,):
            raise InvalidInputError("the fusion transform's matrix is not a 4x4 array of numbers")
        return cls(m, c)


def write_tfm(transform: RigidTransform, path: str | os.PathLike) -> Path:
    """Write ``transform`` as an ITK transform file (``.tfm``/``.txt``/``.h5``), atomically.

    Slicer reads it as a transform that, applied to the MRI, lays it onto the CT.
    """
    import SimpleITK as sitk

    p = Path(path)
    if not p.name.lower().endswith((".tfm", ".txt", ".h5")):
        raise InvalidInputError(f"{p.name}: a transform file must end in .tfm, .txt or .h5")
    if not p.parent.is_dir():
        raise OutputError(f"cannot write {p}: {p.parent} is not a folder")
    with atomic_output_path(p) as tmp:
        try:
            sitk.WriteTransform(transform.to_sitk(), str(tmp))
        except RuntimeError:
            raise OutputError(f"cannot write {p}: the transform writer failed") from None
    return p


def read_tfm(path: str | os.PathLike) -> RigidTransform:
    """Read an ITK rigid transform file written by :func:`write_tfm` (or Slicer)."""
    import SimpleITK as sitk

    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"{p.name}: no such transform file")
    try:
        tx = sitk.ReadTransform(str(p))
    except RuntimeError:
        raise InvalidInputError(f"{p.name} is not an ITK transform file") from None
    return RigidTransform.from_sitk(tx)
