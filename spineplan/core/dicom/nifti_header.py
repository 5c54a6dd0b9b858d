"""The NIfTI-1 header ITK writes for a volume, made without ITK (no SimpleITK import on the
``convert`` path): the same 352 bytes up to the sign of a zero (tests/core/test_nifti_header.py compares every
field with ITK's own for every axis order and sign, types, spacings and origins), so a file written from the array is the file ITK writes.

ITK (itkNiftiImageIO) writes qform and sform (both code 1, scanner anatomical) from the
direction and spacing converted to RAS, the quaternion by nifti_dmat44_to_quatern (ported
below, polar decomposition included), pixdim = (qfac, spacing), vox_offset 352, scl_slope 1,
xyzt_units mm and s, ``regular = 'r'``, magic ``n+1`` and an empty extension flag.
"""

from __future__ import annotations

import math
import struct

import numpy as np

__all__ = ["nifti1_header", "NIFTI_DATATYPES"]

# numpy dtype -> (NIfTI datatype code, bits per voxel)
NIFTI_DATATYPES = {np.dtype(np.uint8): (2, 8), np.dtype(np.int16): (4, 16),
                   np.dtype(np.int32): (8, 32), np.dtype(np.float32): (16, 32),
                   np.dtype(np.float64): (64, 64), np.dtype(np.int8): (256, 8),
                   np.dtype(np.uint16): (512, 16), np.dtype(np.uint32): (768, 32)}


def _det(m) -> float:
    return (m[0][0] * m[1][1] * m[2][2] - m[0][0] * m[2][1] * m[1][2] - m[1][0] * m[0][1] * m[2][2]
            + m[1][0] * m[2][1] * m[0][2] + m[2][0] * m[0][1] * m[1][2] - m[2][0] * m[1][1] * m[0][2])


def _inverse(r):
    r11, r12, r13 = r[0]
    r21, r22, r23 = r[1]
    r31, r32, r33 = r[2]
    deti = (r11 * r22 * r33 - r11 * r32 * r23 - r21 * r12 * r33
            + r21 * r32 * r13 + r31 * r12 * r23 - r31 * r22 * r13)
    if deti != 0.0:
        deti = 1.0 / deti
    return [[deti * (r22 * r33 - r32 * r23), deti * (-r12 * r33 + r32 * r13), deti * (r12 * r23 - r22 * r13)],
            [deti * (-r21 * r33 + r31 * r23), deti * (r11 * r33 - r31 * r13), deti * (-r11 * r23 + r21 * r13)],
            [deti * (r21 * r32 - r31 * r22), deti * (-r11 * r32 + r31 * r12), deti * (r11 * r22 - r21 * r12)]]


def _rownorm(a) -> float:
    return max(abs(a[i][0]) + abs(a[i][1]) + abs(a[i][2]) for i in range(3))


def _colnorm(a) -> float:
    return max(abs(a[0][j]) + abs(a[1][j]) + abs(a[2][j]) for j in range(3))


def _polar(a):
    """nifti_dmat33_polar: the orthogonal matrix closest to ``a``."""
    x = [row[:] for row in a]
    gam = _det(x)
    while gam == 0.0:  # perturb a singular matrix
        gam = 0.00001 * (0.001 + _rownorm(x))
        x[0][0] += gam
        x[1][1] += gam
        x[2][2] += gam
        gam = _det(x)
    dif, k = 1.0, 0
    while True:
        y = _inverse(x)
        if dif > 0.3:
            alp = math.sqrt(_rownorm(x) * _colnorm(x))
            bet = math.sqrt(_rownorm(y) * _colnorm(y))
            gam = math.sqrt(bet / alp)
            gmi = 1.0 / gam
        else:
            gam = gmi = 1.0
        z = [[0.5 * (gam * x[i][j] + gmi * y[j][i]) for j in range(3)] for i in range(3)]
        dif = sum(abs(z[i][j] - x[i][j]) for i in range(3) for j in range(3))
        k += 1
        if k > 100 or dif < 3.0e-6:
            return z
        x = z


def _orthog(q):
    """nifti_make_orthog_mat44 (3x3 part): rows normalised, then the closest orthogonal matrix."""
    q = [row[:] for row in q]
    for i in range(3):
        val = q[i][0] * q[i][0] + q[i][1] * q[i][1] + q[i][2] * q[i][2]
        if val > 0.0:
            val = 1.0 / math.sqrt(val)
            q[i] = [q[i][0] * val, q[i][1] * val, q[i][2] * val]
        else:
            q[i] = [1.0 if k == i else 0.0 for k in range(3)]
    return _polar(q)


def _quatern(r):
    """nifti_dmat44_to_quatern: (b, c, d, qfac) of the 3x3 part of ``r``."""
    r11, r12, r13 = r[0]
    r21, r22, r23 = r[1]
    r31, r32, r33 = r[2]
    xd = math.sqrt(r11 * r11 + r21 * r21 + r31 * r31)
    yd = math.sqrt(r12 * r12 + r22 * r22 + r32 * r32)
    zd = math.sqrt(r13 * r13 + r23 * r23 + r33 * r33)
    if xd == 0.0:
        r11, r21, r31, xd = 1.0, 0.0, 0.0, 1.0
    if yd == 0.0:
        r22, r12, r32, yd = 1.0, 0.0, 0.0, 1.0
    if zd == 0.0:
        r33, r13, r23, zd = 1.0, 0.0, 0.0, 1.0
    r11, r21, r31 = r11 / xd, r21 / xd, r31 / xd
    r12, r22, r32 = r12 / yd, r22 / yd, r32 / yd
    r13, r23, r33 = r13 / zd, r23 / zd, r33 / zd
    p = _polar([[r11, r12, r13], [r21, r22, r23], [r31, r32, r33]])
    (r11, r12, r13), (r21, r22, r23), (r31, r32, r33) = p
    zd = (r11 * r22 * r33 - r11 * r32 * r23 - r21 * r12 * r33
          + r21 * r32 * r13 + r31 * r12 * r23 - r31 * r22 * r13)
    if zd > 0:
        qfac = 1.0
    else:
        qfac = -1.0
        r13, r23, r33 = -r13, -r23, -r33
    a = r11 + r22 + r33 + 1.0
    if a > 0.5:
        a = 0.5 * math.sqrt(a)
        b = 0.25 * (r32 - r23) / a
        c = 0.25 * (r13 - r31) / a
        d = 0.25 * (r21 - r12) / a
    else:
        xd = 1.0 + r11 - (r22 + r33)
        yd = 1.0 + r22 - (r11 + r33)
        zd = 1.0 + r33 - (r11 + r22)
        if xd > 1.0:
            b = 0.5 * math.sqrt(xd)
            c = 0.25 * (r12 + r21) / b
            d = 0.25 * (r13 + r31) / b
            a = 0.25 * (r32 - r23) / b
        elif yd > 1.0:
            c = 0.5 * math.sqrt(yd)
            b = 0.25 * (r12 + r21) / c
            d = 0.25 * (r23 + r32) / c
            a = 0.25 * (r13 - r31) / c
        else:
            d = 0.5 * math.sqrt(zd)
            b = 0.25 * (r13 + r31) / d
            c = 0.25 * (r23 + r32) / d
            a = 0.25 * (r21 - r12) / d
        if a < 0.0:
            b, c, d = -b, -c, -d
    return b, c, d, qfac


def nifti1_header(shape_kji, dtype, spacing, origin, direction) -> bytes | None:
    """The 352 bytes (header and empty extension flag) ITK writes for an image of
    ``shape_kji`` voxels of ``dtype`` with this LPS geometry (a grid whose axes run along the
    patient's axes: every plain axial, coronal or sagittal series); None otherwise (a rotated
    grid, a type ITK stores differently, NIfTI-2 sizes): then ask ITK for its header."""
    dt = np.dtype(dtype)
    if dt not in NIFTI_DATATYPES or not dt.isnative or max(shape_kji) > 32767:
        return None
    code, bitpix = NIFTI_DATATYPES[dt]
    dirn = np.asarray(direction, float).reshape(3, 3)
    if not np.array_equal(np.abs(dirn), np.abs(np.round(dirn))) or round(abs(_det(dirn.tolist()))) != 1:
        return None  # a rotated grid: ITK's last-bit rounding of qform/sform is not reproduced
    # as itkNiftiImageIO: the direction's columns to RAS (x and y negated), the rows of
    # nifti_make_orthog_mat44 normalised and made orthogonal (polar decomposition), the
    # quaternion from that matrix, sform = that matrix times the spacing (double, then float)
    cols = [[float(dirn[0][j]), float(dirn[1][j]), float(dirn[2][j])] for j in range(3)]
    for c in cols:
        c[0], c[1] = -c[0], -c[1]
    rot = _orthog([[cols[0][i], cols[1][i], cols[2][i]] for i in range(3)])
    o = [float(x) + 0.0 for x in origin]  # (+ 0.0: a -0.0 is written as ITK writes a zero)
    o_ras = [-o[0], -o[1], o[2]]
    sp = [float(x) for x in spacing]
    m = [[sp[j] * rot[i][j] for j in range(3)] for i in range(3)]
    b, c, d, qfac = _quatern(rot)
    nk, nj, ni = (int(x) for x in shape_kji)
    h = bytearray(352)
    struct.pack_into("<i", h, 0, 348)
    h[38] = ord("r")
    struct.pack_into("<8h", h, 40, 3, ni, nj, nk, 1, 1, 1, 1)
    struct.pack_into("<hh", h, 70, code, bitpix)
    struct.pack_into("<8f", h, 76, qfac, sp[0], sp[1], sp[2], 0.0, 0.0, 0.0, 0.0)
    struct.pack_into("<3f", h, 108, 352.0, 1.0, 0.0)
    h[123] = 10  # xyzt_units: mm and s
    struct.pack_into("<2h", h, 252, 1, 1)  # qform_code, sform_code: scanner anatomical
    struct.pack_into("<6f", h, 256, b, c, d, *o_ras)
    rows = [m[i] + [o_ras[i]] for i in range(3)]
    struct.pack_into("<12f", h, 280, *(v for row in rows for v in row))
    h[344:348] = b"n+1\0"
    return bytes(h)
