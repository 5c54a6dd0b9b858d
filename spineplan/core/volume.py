"""Volume: a 3D image on a voxel grid placed in LPS patient space.

The array is indexed ``[k, j, i]`` (slice, row, column), exactly as SimpleITK's
``GetArrayFromImage`` returns it. ``spacing`` is ``(si, sj, sk)`` in mm and the
columns of ``direction`` are the LPS unit vectors of the i, j and k axes. The
centre of voxel (0, 0, 0) is at ``origin`` (LPS, mm). This matches DICOM and ITK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Volume", "orientation_code", "GEOMETRY_TOL_MM", "grid_corners_lps", "source_from_volume",
           "geometry_differences"]

#: Two grids are the same when they place every voxel within this distance (mm) of each
#: other: far below a voxel, above the rounding of a header written as float32 (NIfTI).
GEOMETRY_TOL_MM = 0.01


@dataclass
class Volume:
    """A 3D scalar image with LPS geometry.

    Parameters
    ----------
    array : ndarray
        Voxel values indexed ``[k, j, i]``.
    spacing : sequence of 3 float
        Voxel size along i, j, k in mm.
    origin : sequence of 3 float
        LPS position (mm) of the centre of voxel ``(i, j, k) = (0, 0, 0)``.
    direction : (3, 3) array
        Column ``n`` is the LPS unit vector of array axis ``n`` (i, j, k).
    modality : str
        ``"CT"``, ``"MR"`` or ``""`` when unknown.
    meta : dict
        Non-identifying descriptive metadata (series UID, description, ...).
    warnings : list of str
        Problems found while loading (missing slices, tilt, ...).
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    modality: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume needs a 3D array, got shape {self.array.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        if not all(np.isfinite(s) and s > 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive, got {self.spacing}")
        if not (np.all(np.isfinite(self.origin)) and np.all(np.isfinite(self.direction))):
            raise ValueError("origin and direction must be finite numbers")

    # ------------------------------------------------------------------ shape
    @property
    def size_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along i, j, k."""
        k, j, i = self.array.shape
        return (i, j, k)

    # --------------------------------------------------------------- geometry
    def lps_from_ijk(self) -> np.ndarray:
        """4x4 affine mapping voxel indices (i, j, k, 1) to LPS mm."""
        m = np.eye(4)
        m[:3, :3] = self.direction @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def ijk_from_lps(self) -> np.ndarray:
        """4x4 affine mapping LPS mm to continuous voxel indices (i, j, k)."""
        return np.linalg.inv(self.lps_from_ijk())

    def ras_from_ijk(self) -> np.ndarray:
        """4x4 affine to RAS (NIfTI / Slicer world), i.e. diag(-1,-1,1) of LPS."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.lps_from_ijk()

    def lps_points_from_ijk(self, ijk: np.ndarray) -> np.ndarray:
        """Map an ``(N, 3)`` (or ``(3,)``) array of i, j, k indices to LPS mm."""
        p = np.asarray(ijk, dtype=float)
        m = self.lps_from_ijk()
        # einsum, not matmul: an (N, 3) @ (3, 3) product goes to multithreaded BLAS, which on a
        # busy 2-core machine spends most of its time waiting (100 ms for 300k points)
        return np.einsum("...j,ij->...i", p, m[:3, :3]) + m[:3, 3]

    def ijk_points_from_lps(self, lps: np.ndarray) -> np.ndarray:
        """Map an ``(N, 3)`` (or ``(3,)``) array of LPS points to continuous i, j, k."""
        p = np.asarray(lps, dtype=float)
        m = self.ijk_from_lps()
        return np.einsum("...j,ij->...i", p, m[:3, :3]) + m[:3, 3]

    def value_at_lps(self, lps: np.ndarray, default: float = np.nan) -> float:
        """Nearest-voxel value at an LPS point, ``default`` outside the grid."""
        i, j, k = np.rint(self.ijk_points_from_lps(lps)).astype(int)
        ni, nj, nk = self.size_ijk
        if 0 <= i < ni and 0 <= j < nj and 0 <= k < nk:
            return float(self.array[k, j, i])
        return default

    def bounds_lps(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned LPS bounding box (min, max) of the voxel centres."""
        ni, nj, nk = self.size_ijk
        corners = np.array(
            [[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)], float
        )
        pts = self.lps_points_from_ijk(corners)
        return pts.min(axis=0), pts.max(axis=0)

    def center_lps(self) -> np.ndarray:
        """LPS position of the centre of the grid."""
        return self.lps_points_from_ijk((np.array(self.size_ijk) - 1) / 2.0)

    def same_grid(self, other: "Volume", tol: float = GEOMETRY_TOL_MM) -> bool:
        """True when ``other`` has the same size and places every voxel within ``tol`` mm."""
        return self.array.shape == other.array.shape and not geometry_differences(
            source_from_volume(other), self, tol)

    def with_array(self, array: np.ndarray, **changes: Any) -> "Volume":
        """A new Volume on the same grid holding ``array`` (e.g. a label map)."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} != grid {self.array.shape}")
        kw = dict(
            spacing=self.spacing,
            origin=self.origin,
            direction=self.direction.copy(),
            modality=self.modality,
            meta=dict(self.meta),
            warnings=[],
        )
        kw.update(changes)
        return Volume(array, **kw)

    # -------------------------------------------------------------- SimpleITK
    def to_sitk(self):
        """Convert to a ``SimpleITK.Image`` (copies the array)."""
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(tuple(self.direction.ravel()))
        return img

    @classmethod
    def from_sitk(cls, img, **kw: Any) -> "Volume":
        """Build a Volume from a 3D ``SimpleITK.Image`` (LPS geometry as ITK stores it)."""
        import SimpleITK as sitk

        if img.GetDimension() != 3:
            raise ValueError(f"expected a 3D image, got {img.GetDimension()}D")
        if img.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError("expected a scalar image, got a multi-component image")
        return cls(
            sitk.GetArrayFromImage(img),
            spacing=img.GetSpacing(),
            origin=img.GetOrigin(),
            direction=np.array(img.GetDirection()).reshape(3, 3),
            **kw,
        )

    def orientation(self) -> str:
        """Three-letter code (e.g. ``"LPS"``) of the direction each axis i, j, k increases."""
        return orientation_code(self.direction)


def orientation_code(direction: np.ndarray) -> str:
    """Orientation code of a 3x3 LPS direction matrix (columns = axes i, j, k).

    Each letter is the anatomical direction towards which the axis increases,
    using the dominant component (as ITK's ``DICOMOrientImageFilter`` does).
    """
    d = np.asarray(direction, float).reshape(3, 3)
    pos = "LPS"
    neg = "RAI"
    out = []
    for n in range(3):
        col = d[:, n]
        a = int(np.argmax(np.abs(col)))
        out.append(pos[a] if col[a] > 0 else neg[a])
    return "".join(out)


def grid_corners_lps(size, spacing, origin, direction) -> np.ndarray:
    """LPS (mm) of the 8 corner voxel centres of a grid, ``(8, 3)``."""
    m = np.asarray(direction, float).reshape(3, 3) @ np.diag(np.asarray(spacing, float))
    ni, nj, nk = size
    ijk = np.array([[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)], float)
    return ijk @ m.T + np.asarray(origin, float)


def source_from_volume(volume: Volume) -> dict:
    """The record of the series an image came from: series UID, modality, grid geometry
    (size, spacing, origin, direction as 9 numbers) and the loader's warnings (a gap, a tilt)
    as ``load_warnings: [{kind, message}]`` when there are any. A plan's ``source``.

    No SeriesDescription: it can name the patient or the visit; it is in the identity block
    (``identity.series_description``) when identity is asked for.
    """
    out = {
        "series_uid": str(volume.meta.get("series_uid", "")),
        "modality": volume.modality,
        "size": [int(x) for x in volume.size_ijk],
        "spacing": [float(x) for x in volume.spacing],
        "origin": [float(x) for x in volume.origin],
        "direction": [float(x) for x in np.asarray(volume.direction).ravel()],
    }
    ws = list(getattr(volume, "warnings", []) or [])
    if ws:  # (a LoadWarning carries its kind; a plain string is "other")
        out["load_warnings"] = [{"kind": getattr(getattr(w, "kind", None), "value", "other"),
                                 "message": str(w)} for w in ws]
    return out


def geometry_differences(source: dict, volume: Volume, tol_mm: float = GEOMETRY_TOL_MM) -> list[str]:
    """How the grid recorded in ``source`` (see :func:`source_from_volume`) differs from
    ``volume``'s beyond ``tol_mm``: ``[]`` when they are the same grid.

    Size must be equal; spacing and origin within ``tol_mm``; the direction within ``tol_mm``
    at the grid's corners. Keys missing from ``source`` are not compared.
    """
    here = source_from_volume(volume)
    problems = []
    if "size" in source and [int(x) for x in source["size"]] != here["size"]:
        problems.append(f"size {list(source['size'])} vs {here['size']}")
    if "spacing" in source:
        d = float(np.max(np.abs(np.subtract(source["spacing"], here["spacing"]))))
        if d > tol_mm:
            problems.append(f"spacing differs by {d:.3g} mm")
    if "origin" in source:
        d = float(np.linalg.norm(np.subtract(source["origin"], here["origin"])))
        if d > tol_mm:
            problems.append(f"origin differs by {d:.3g} mm")
    if "direction" in source and "size" in source and not problems:
        spacing = source.get("spacing", here["spacing"])
        origin = source.get("origin", here["origin"])
        a = grid_corners_lps(source["size"], spacing, origin, source["direction"])
        b = grid_corners_lps(source["size"], spacing, origin, here["direction"])
        d = float(np.max(np.linalg.norm(a - b, axis=1)))
        if d > tol_mm:
            problems.append(f"direction differs (grid corners move {d:.3g} mm)")
    return problems
