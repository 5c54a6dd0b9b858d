"""Issue 20, finding 6: gantry-tilt correction exact to interpolation (<= 0.5 mm).

A CT acquired with the gantry tilted by 18 degrees: every image plane is tilted about the
patient's left-right axis (ImageOrientationPatient's column direction leaves the axial plane)
while the table steps straight along z (ImagePositionPatient moves in z only). Spherical
markers lie 40 mm from the centre of the field of view. The series is written with pydicom,
loaded, and the markers are found again in the loaded volume and compared in LPS millimetres.
"""

from __future__ import annotations

import numpy as np
import pytest

from spineplan.core.dicom.load import load_volume
from spineplan.core.dicom.load_warnings import LoadWarningKind, warning_kind
from spineplan.core.volume import Volume

CENTRE = np.array([0.0, 0.0, 0.0])
MARKERS = {  # value: LPS centre (mm), 40 mm from the centre in each direction
    1000: CENTRE + [40.0, 0.0, 0.0],    # patient's left
    900: CENTRE + [-40.0, 0.0, 0.0],    # right
    800: CENTRE + [0.0, 40.0, 0.0],     # posterior
    700: CENTRE + [0.0, -40.0, 0.0],    # anterior
    600: CENTRE + [0.0, 0.0, 40.0],     # superior
    500: CENTRE + [28.3, -28.3, -20.0],  # oblique
}
RADIUS = 6.0


def world_value(p: np.ndarray) -> np.ndarray:
    """The phantom as a function of LPS position (N, 3): soft tissue with bright spheres."""
    v = np.full(len(p), -1000.0)
    v[np.linalg.norm(p - CENTRE, axis=1) < 80] = 0.0
    for val, c in MARKERS.items():
        # a smooth-edged sphere, so that linear interpolation of the samples is near exact
        r = np.linalg.norm(p - c, axis=1)
        v = np.where(r < RADIUS + 1.0, np.maximum(v, val * np.clip(RADIUS + 0.5 - r, 0, 1)), v)
    return v


def _write_slice(path, pixels, position, row, col, pixel, uids, k):
    """One CT slice written with pydicom alone (not spineplan's writer)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uids
    ds.InstanceNumber = k + 1
    ds.GantryDetectorTilt = f"{np.degrees(np.arctan2(-col[2], col[1])):.6g}"
    ds.ImageOrientationPatient = [f"{x:.10g}" for x in (*row, *col)]
    ds.ImagePositionPatient = [f"{x:.10g}" for x in position]
    ds.PixelSpacing = [f"{pixel:.10g}", f"{pixel:.10g}"]
    ds.SliceThickness = "1"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
    ds.PixelData = pixels.astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def tilted_series(folder, tilt_deg=18.0, pixel=1.0, n=(200, 200), dz=1.0, nk=120):
    """Write the tilted acquisition with pydicom: tilted planes, the table stepping along z."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True)
    t = np.deg2rad(tilt_deg)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, np.cos(t), -np.sin(t)])  # the image's down direction, tilted
    ni, nj = n
    # the table steps along z; each plane's centre is at (0, 0, z)
    zs = (np.arange(nk) - (nk - 1) / 2) * dz
    half = ((ni - 1) / 2 * pixel) * row + ((nj - 1) / 2 * pixel) * col
    positions = np.array([[0.0, 0.0, z] for z in zs]) - half
    jj, ii = np.meshgrid(np.arange(nj), np.arange(ni), indexing="ij")
    uids = (generate_uid(), generate_uid(), generate_uid())
    rng = np.random.default_rng(1)
    for k in rng.permutation(nk):  # files in no particular order
        pts = positions[k] + ii.ravel()[:, None] * pixel * row + jj.ravel()[:, None] * pixel * col
        pixels = np.rint(world_value(pts)).reshape(nj, ni)
        _write_slice(folder / f"{rng.integers(1e9):09d}.dcm", pixels, positions[k], row, col,
                     pixel, uids, k)


def marker_centres_lps(vol: Volume) -> dict[int, np.ndarray]:
    """Each marker's intensity-weighted centre (LPS), identified by its peak value."""
    from scipy import ndimage

    a = vol.array.astype(float)
    lab, n = ndimage.label(a > 200)
    out = {}
    for idx in range(1, n + 1):
        kji = np.argwhere(lab == idx)
        w = a[lab == idx]
        value = min(MARKERS, key=lambda v: abs(v - w.max()))
        assert value not in out, "two blobs for one marker"
        out[value] = (vol.lps_points_from_ijk(kji[:, ::-1].astype(float)) * w[:, None]).sum(0) / w.sum()
    assert sorted(out) == sorted(MARKERS)
    return out


@pytest.mark.parametrize("tilt,grid", [
    (18.0, {}), (-18.0, {}),
    (18.0, dict(pixel=0.8, n=(256, 256), dz=3.0, nk=40)),   # thick slices, fine pixels
])
def test_tilted_series_markers_at_their_lps_positions(tilt, grid, tmp_path):
    tilted_series(tmp_path / "s", tilt_deg=tilt, **grid)
    got = load_volume(tmp_path / "s")
    assert LoadWarningKind.GANTRY_TILT in [warning_kind(w) for w in got.warnings]
    d = got.direction
    assert np.allclose(d.T @ d, np.eye(3), atol=1e-6)
    found = marker_centres_lps(got)
    errors = {v: float(np.linalg.norm(found[v] - c)) for v, c in MARKERS.items()}
    assert max(errors.values()) <= 0.5, errors


def test_untilted_series_is_not_resampled(tmp_path):
    tilted_series(tmp_path / "s", tilt_deg=0.0, nk=60)
    got = load_volume(tmp_path / "s")
    assert not [w for w in got.warnings if warning_kind(w) == LoadWarningKind.GANTRY_TILT]
    assert got.array.dtype == np.int16
