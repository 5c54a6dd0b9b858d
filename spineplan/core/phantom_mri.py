"""A T2-like MRI of the CT phantom's anatomy, moved by a known rigid transform.

Each tissue of :mod:`spineplan.core.phantom` (known by its exact CT value) gets a T2-like
intensity: bright CSF in the dural sac, bright nucleus, darker annulus, intermediate
vertebral marrow, dark cortical bone, bright fat, dark muscle, signal void for air and the
metal marker. The image is resampled onto a sagittal MRI grid (orientation IPL, as the dev
MRIs) through the inverse of ``ct_to_mri``, so that :func:`register_mri_to_ct` should find
``ct_to_mri`` again. ``unit_motion`` moves one motor unit more (per-level motion between a
supine CT and an MRI): its true transform is then ``ct_to_mri o unit_motion^-1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .phantom import HU, Phantom
from .registration.rigid import unit_label_values
from .registration.transform import RigidTransform
from .segmentation import labels as L
from .volume import Volume

__all__ = ["MriPhantom", "make_mri_phantom", "T2_INTENSITY", "DEFAULT_CT_TO_MRI", "default_unit_motion"]

#: T2-like intensity (0-255) of each phantom tissue (keys of ``phantom.HU``).
T2_INTENSITY = dict(air=0.0, fat=190.0, soft=70.0, csf=245.0, epidural=170.0, disc=75.0, nucleus=225.0,
                    cancellous=125.0, cortical=12.0, posterior=45.0, marker=0.0, ilium=40.0)
#: Intensity of any CT value not in the table (e.g. a contrast-filled aorta: flow void).
OTHER_T2 = 20.0

#: The default known transform (CT -> MRI): 8 degrees about an oblique axis, 15 mm.
DEFAULT_CT_TO_MRI = dict(axis=(0.6, 0.3, 0.74), angle_deg=8.0, translation_mm=(9.0, -6.0, 10.4))


def default_unit_motion(phantom: Phantom, level: str = "L4-L5", angle_deg: float = 4.0,
                        translation_mm=(0.0, 3.0, -1.5)) -> RigidTransform:
    """A flexion of ``angle_deg`` about the left-right axis through the unit's disc centre,
    plus a shift (mm): the extra motion of one unit between the CT and the MRI."""
    c = np.array(phantom.truth["discs"][level]["center_lps"])
    return RigidTransform.from_axis_angle((1.0, 0.0, 0.0), angle_deg, translation_mm, c)


@dataclass
class MriPhantom:
    """The MRI phantom and its ground truth.

    Attributes
    ----------
    mri : Volume
        T2-like image (float32, 0-255), sagittal grid.
    labels : Volume
        The phantom's labels carried the same way (uint16).
    ct_to_mri : RigidTransform
        The true global transform (CT LPS -> MRI LPS).
    unit_ct_to_mri : RigidTransform or None
        The true transform of ``level`` when it moved on its own.
    level : str or None
    """

    mri: Volume
    labels: Volume
    ct_to_mri: RigidTransform
    unit_ct_to_mri: RigidTransform | None = None
    level: str | None = None

    def true_transform_at(self, level: str | None) -> RigidTransform:
        """The transform a registration should find at ``level``."""
        if level is not None and level == self.level and self.unit_ct_to_mri is not None:
            return self.unit_ct_to_mri
        return self.ct_to_mri


def t2_from_phantom_ct(ct: np.ndarray) -> np.ndarray:
    """T2-like intensities (float32) of a phantom CT array, tissue by tissue."""
    out = np.full(ct.shape, OTHER_T2, np.float32)
    for tissue, hu in HU.items():
        out[ct == hu] = T2_INTENSITY[tissue]
    return out


def make_mri_phantom(phantom: Phantom, ct_to_mri: RigidTransform | None = None, *,
                     spacing_mm: float = 1.5, half_width_mm: float = 60.0,
                     unit_motion: RigidTransform | None = None, level: str = "L4-L5",
                     noise: float = 4.0, seed: int = 0) -> MriPhantom:
    """A T2-like MRI of ``phantom``'s anatomy, moved by ``ct_to_mri``.

    Parameters
    ----------
    phantom : Phantom
        The CT phantom (``make_phantom``).
    ct_to_mri : RigidTransform
        Known CT -> MRI transform (default ``DEFAULT_CT_TO_MRI``: 8 degrees, 15 mm).
    spacing_mm : float
        Isotropic voxel size of the MRI grid.
    half_width_mm : float
        Left-right half-extent of the sagittal field of view around the midline.
    unit_motion : RigidTransform, optional
        Extra rigid motion (CT frame) of ``level``'s two vertebrae and disc.
    noise : float
        Standard deviation of the added Gaussian noise (intensity units).
    """
    import SimpleITK as sitk

    if ct_to_mri is None:
        d = DEFAULT_CT_TO_MRI
        ct_to_mri = RigidTransform.from_axis_angle(d["axis"], d["angle_deg"], d["translation_mm"],
                                                   phantom.ct.center_lps())
    ct = phantom.ct
    t2 = ct.with_array(t2_from_phantom_ct(ct.array))
    lab = phantom.labels
    t2_img = sitk.SmoothingRecursiveGaussian(t2.to_sitk(), 0.5 * float(min(ct.spacing)))
    lab_img = lab.to_sitk()
    unit_truth = None
    if unit_motion is not None:
        up, low, disc = unit_label_values(level)
        m = np.isin(lab.array, (up, low, disc)).astype(np.uint8)
        m_img = sitk.BinaryDilate(sitk.Cast(ct.with_array(m).to_sitk(), sitk.sitkUInt8),
                                  [max(1, int(round(3.0 / s))) for s in ct.spacing])
        D = unit_motion.to_sitk()
        moved_t2 = sitk.Resample(t2_img, t2_img, D, sitk.sitkLinear, 0.0)
        moved_lab = sitk.Resample(lab_img, lab_img, D, sitk.sitkNearestNeighbor, 0)
        moved_m = sitk.GetArrayFromImage(sitk.Resample(m_img, m_img, D, sitk.sitkNearestNeighbor, 0)) > 0
        a = sitk.GetArrayFromImage(t2_img)
        a[moved_m] = sitk.GetArrayFromImage(moved_t2)[moved_m]
        b = sitk.GetArrayFromImage(lab_img)
        # the moved unit's labels replace the unit's old place and its moved footprint
        b[np.isin(b, (up, low, disc)) & ~moved_m] = 0
        b[moved_m] = sitk.GetArrayFromImage(moved_lab)[moved_m]
        t2_img = sitk.GetImageFromArray(a)
        t2_img.CopyInformation(lab_img)
        lab_img = sitk.GetImageFromArray(b)
        lab_img.CopyInformation(t2.to_sitk())
        unit_truth = ct_to_mri.after(unit_motion.inverse())
    # sagittal MRI grid (IPL) centred on the spine's middle carried into the MRI frame
    lo, hi = ct.bounds_lps()
    c_ct = np.array([0.0, 0.0, (lo[2] + hi[2]) / 2])
    c_mri = ct_to_mri.mri_points_from_ct(c_ct)[0]
    ext = np.array([hi[2] - lo[2], hi[1] - lo[1], 2 * half_width_mm])  # along i (I), j (P), k (L)
    size = [int(np.ceil(e / spacing_mm)) for e in ext]
    direction = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # columns: I, P, L
    origin = c_mri - direction @ ((np.array(size) - 1) * spacing_mm / 2)
    args = (size, ct_to_mri.inverse().to_sitk(), None, tuple(origin), (spacing_mm,) * 3,
            tuple(direction.ravel()))
    mri_img = sitk.Resample(t2_img, args[0], args[1], sitk.sitkLinear, args[3], args[4], args[5], 0.0,
                            sitk.sitkFloat32)
    lab_out = sitk.Resample(lab_img, args[0], args[1], sitk.sitkNearestNeighbor, args[3], args[4], args[5],
                            0, sitk.sitkUInt16)
    arr = sitk.GetArrayFromImage(mri_img)
    if noise:
        rng = np.random.default_rng(seed)
        arr = np.clip(arr + rng.normal(0.0, noise, arr.shape).astype(np.float32), 0, 255)
    mri = Volume(arr.astype(np.float32), spacing=(spacing_mm,) * 3, origin=tuple(origin), direction=direction,
                 modality="MR", meta={"description": "spineplan synthetic T2-like MRI phantom",
                                      "series_uid": "phantom-mri"})
    labels = mri.with_array(sitk.GetArrayFromImage(lab_out), modality="SEG")
    return MriPhantom(mri=mri, labels=labels, ct_to_mri=ct_to_mri, unit_ct_to_mri=unit_truth,
                      level=level if unit_motion is not None else None)
