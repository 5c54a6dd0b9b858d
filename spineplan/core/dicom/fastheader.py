"""A small reader of the few header tags the scan needs, without pydicom.

The metadata scan reads ~30 tags of every file. pydicom costs ~0.2 s to import and ~1 ms a
file to parse; this reader walks the elements of an ordinary Part-10 file (preamble, meta
group, explicit or implicit VR little endian dataset) up to the last tag asked for and
converts the values as pydicom does (numbers from DS/IS/US, text stripped, one value or a
list). Anything it is not sure of (big endian, deflated, a character set other than ASCII,
Latin-1 or UTF-8, odd lengths, sequences it cannot skip, a wanted sequence) makes it return
None: the caller then reads the file with pydicom, as before.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

__all__ = ["TAGS", "Header", "read_header"]

# keyword -> (tag, VR), the VRs as the DICOM dictionary gives them (used for implicit VR)
TAGS: dict[str, tuple[int, str]] = {
    "ImageType": (0x00080008, "CS"),
    "SpecificCharacterSet": (0x00080005, "CS"),
    "SOPClassUID": (0x00080016, "UI"),
    "SOPInstanceUID": (0x00080018, "UI"),
    "StudyDate": (0x00080020, "DA"),
    "Modality": (0x00080060, "CS"),
    "SeriesDescription": (0x0008103E, "LO"),
    "PatientName": (0x00100010, "PN"),
    "PatientID": (0x00100020, "LO"),
    "SliceThickness": (0x00180050, "DS"),
    "EchoNumbers": (0x00180086, "IS"),
    "StudyInstanceUID": (0x0020000D, "UI"),
    "SeriesInstanceUID": (0x0020000E, "UI"),
    "SeriesNumber": (0x00200011, "IS"),
    "AcquisitionNumber": (0x00200012, "IS"),
    "InstanceNumber": (0x00200013, "IS"),
    "ImagePositionPatient": (0x00200032, "DS"),
    "ImageOrientationPatient": (0x00200037, "DS"),
    "FrameOfReferenceUID": (0x00200052, "UI"),
    "SamplesPerPixel": (0x00280002, "US"),
    "NumberOfFrames": (0x00280008, "IS"),
    "Rows": (0x00280010, "US"),
    "Columns": (0x00280011, "US"),
    "PixelSpacing": (0x00280030, "DS"),
    "BitsAllocated": (0x00280100, "US"),
    "BitsStored": (0x00280101, "US"),
    "PixelRepresentation": (0x00280103, "US"),
    "RescaleIntercept": (0x00281052, "DS"),
    "RescaleSlope": (0x00281053, "DS"),
    "SharedFunctionalGroupsSequence": (0x52009229, "SQ"),
    "PerFrameFunctionalGroupsSequence": (0x52009230, "SQ"),
}
_BY_TAG = {tag: (kw, vr) for kw, (tag, vr) in TAGS.items()}
_PRESENCE = {0x0019100A}  # Siemens NumberOfImagesInMosaic: only whether it is there
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH", "TM", "UI"}
_CHARSETS = {"": "ascii", "ISO_IR 6": "ascii", "ISO 2022 IR 6": "ascii", "ISO_IR 100": "latin-1",
             "ISO_IR 192": "utf-8"}
_IMPLICIT = "1.2.840.10008.1.2"
_NOT_EXPLICIT_LE = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}  # big endian, deflated
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_CHUNK = 16384


class _Unsure(Exception):
    """The file is not one this reader handles: read it with pydicom."""


class Header:
    """The tags read from one file, answering the pydicom ``Dataset`` calls the scan makes:
    ``get``, ``in`` (keyword or (group, element)), attribute access and ``file_meta``."""

    __slots__ = ("_values", "_present", "file_meta")

    def __init__(self, values: dict[str, Any], present: set[int], transfer_syntax: str) -> None:
        self._values = values
        self._present = present
        self.file_meta = {"TransferSyntaxUID": transfer_syntax}

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def __contains__(self, name) -> bool:
        if isinstance(name, tuple):
            return ((name[0] << 16) | name[1]) in self._present
        return name in self._values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None


class _Reader:
    """Bytes of a file, read in chunks as the parse needs them."""

    def __init__(self, fh) -> None:
        self.fh, self.buf = fh, fh.read(_CHUNK)

    def need(self, end: int) -> None:
        while len(self.buf) < end:
            more = self.fh.read(max(_CHUNK, end - len(self.buf)))
            if not more:
                raise _Unsure("truncated")
            self.buf += more

    def need_soft(self, end: int) -> bool:
        """``need``, False at the end of the file."""
        try:
            self.need(end)
        except _Unsure:
            return False
        return True


def _decode_text(raw: bytes, vr: str, encoding: str) -> str:
    if vr in ("UI", "CS", "DS", "IS", "AE", "DA", "TM", "DT", "AS"):
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise _Unsure("non-ASCII in an ASCII value") from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        raise _Unsure("undecodable text") from None


def _convert(raw: bytes, vr: str, encoding: str) -> Any:
    """A value as pydicom gives it: one value, a list for several, '' / None when empty."""
    if vr == "US":
        if len(raw) % 2:
            raise _Unsure("odd US length")
        vals = list(struct.unpack(f"<{len(raw) // 2}H", raw))
        return None if not vals else vals[0] if len(vals) == 1 else vals
    if vr not in _TEXT_VRS and vr not in ("LO", "SH", "PN"):
        raise _Unsure(f"VR {vr}")
    text = _decode_text(raw, vr, encoding)
    if vr == "UI":
        text = text.rstrip("\0 ")
    elif vr in ("LO", "SH", "PN", "DA"):
        text = text.rstrip("\0 ")
    else:
        text = text.strip("\0 ")
    if vr in ("LO", "PN") and "\\" not in text:
        return text
    parts = text.split("\\") if text else []
    if vr in ("DS", "IS"):
        if not parts or all(not p.strip() for p in parts):
            return None
        try:
            nums = [float(p) if vr == "DS" else int(p) for p in parts]
        except ValueError:
            try:  # "12.0" as IS: pydicom accepts a whole number written as a float
                nums = [int(float(p)) if float(p) == int(float(p)) else float("nan") for p in parts]
            except ValueError:
                raise _Unsure("not a number") from None
            if any(n != n for n in nums):
                raise _Unsure("IS with a fraction")
        return nums[0] if len(nums) == 1 else nums
    if not parts:
        return ""
    return parts[0] if len(parts) == 1 else parts


def _skip_undefined(r: _Reader, pos: int, implicit: bool, depth: int = 0) -> int:
    """Position after a sequence (or item) of undefined length starting at ``pos``."""
    if depth > 8:
        raise _Unsure("deep sequence")
    while True:
        r.need(pos + 8)
        group, elem, length = struct.unpack_from("<HHI", r.buf, pos)
        tag = (group << 16) | elem
        pos += 8
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise _Unsure("not an item")
        if length != _UNDEFINED:
            pos += length
            continue
        pos = _skip_dataset(r, pos, implicit, depth + 1)


def _skip_dataset(r: _Reader, pos: int, implicit: bool, depth: int) -> int:
    """Position after an item's elements of undefined length (up to its item delimiter)."""
    while True:
        r.need(pos + 8)
        group, elem = struct.unpack_from("<HH", r.buf, pos)
        tag = (group << 16) | elem
        if tag == _ITEM_END:
            return pos + 8
        pos, length, _vr, nested_implicit = _element_header(r, pos, implicit)
        if length == _UNDEFINED:
            pos = _skip_undefined(r, pos, nested_implicit, depth + 1)
        else:
            pos += length


def _element_header(r: _Reader, pos: int, implicit: bool):
    """(value position, length, VR bytes or None, whether nested items are implicit)."""
    r.need(pos + 8)
    if implicit:
        length = struct.unpack_from("<I", r.buf, pos + 4)[0]
        return pos + 8, length, None, True
    vr = bytes(r.buf[pos + 4:pos + 6])
    if vr in _LONG_VRS:
        r.need(pos + 12)
        length = struct.unpack_from("<I", r.buf, pos + 8)[0]
        return pos + 12, length, vr, vr == b"UN"
    if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
        raise _Unsure("not an explicit VR")
    return pos + 8, struct.unpack_from("<H", r.buf, pos + 6)[0], vr, False


def _parse(fh, wanted: set[int]) -> Header:
    r = _Reader(fh)
    r.need(132)
    if r.buf[128:132] != b"DICM":
        raise _Unsure("no preamble")
    pos, ts, meta_end = 132, None, None
    while True:  # the meta group: explicit VR little endian
        r.need(pos + 8)
        group = struct.unpack_from("<H", r.buf, pos)[0]
        if group != 0x0002:
            break
        elem = struct.unpack_from("<H", r.buf, pos + 2)[0]
        vpos, length, _vr, _ = _element_header(r, pos, False)
        if length == _UNDEFINED:
            raise _Unsure("undefined length in the meta group")
        r.need(vpos + length)
        if elem == 0x0010:
            ts = bytes(r.buf[vpos:vpos + length]).decode("ascii", "replace").rstrip("\0 ")
        elif elem == 0x0000 and length == 4:
            meta_end = vpos + 4 + struct.unpack_from("<I", r.buf, vpos)[0]
        pos = vpos + length
    if ts is None or ts in _NOT_EXPLICIT_LE or (meta_end is not None and meta_end != pos):
        raise _Unsure("transfer syntax")
    implicit = ts == _IMPLICIT
    last = max(wanted)
    values: dict[str, Any] = {}
    present: set[int] = set()
    raw_values: list[tuple[str, str, bytes]] = []
    prev = -1
    while True:
        if not r.need_soft(pos + 8):
            break  # end of file: a header without pixel data
        group, elem = struct.unpack_from("<HH", r.buf, pos)
        tag = (group << 16) | elem
        if tag <= prev:
            raise _Unsure("elements out of order")
        prev = tag
        if tag > last:
            break
        vpos, length, vr_bytes, nested_implicit = _element_header(r, pos, implicit)
        if tag in wanted or tag in _PRESENCE:
            kw_vr = _BY_TAG.get(tag)
            if length == _UNDEFINED or (kw_vr and kw_vr[1] == "SQ"):
                raise _Unsure("a wanted sequence")  # multi-frame: pydicom reads those
            present.add(tag)
            if kw_vr is not None:
                kw, vr = kw_vr
                if vr_bytes is not None and vr_bytes.decode() != vr and vr_bytes != b"UN":
                    raise _Unsure("unexpected VR")
                r.need(vpos + length)
                raw_values.append((kw, vr, bytes(r.buf[vpos:vpos + length])))
        if length == _UNDEFINED:
            pos = _skip_undefined(r, vpos, nested_implicit)
        else:
            if length % 2 and length != _UNDEFINED:
                raise _Unsure("odd length")
            pos = vpos + length
    charset = ""
    for kw, vr, raw in raw_values:
        if kw == "SpecificCharacterSet":
            cs = _convert(raw, vr, "ascii")
            if isinstance(cs, list):
                raise _Unsure("several character sets")
            charset = cs or ""
    if charset not in _CHARSETS:
        raise _Unsure("character set")
    encoding = _CHARSETS[charset]
    for kw, vr, raw in raw_values:
        values[kw] = _convert(raw, vr, encoding)
    return Header(values, present, ts)


def read_header(path: str | Path, keywords) -> Header | None:
    """The tags ``keywords`` (of :data:`TAGS`) of the DICOM file ``path``, or None when this
    reader is not sure of the file (then read it with pydicom).

    Raises
    ------
    OSError
        When the file cannot be opened or read.
    """
    wanted = {TAGS[k][0] for k in keywords}
    with open(path, "rb") as fh:
        try:
            return _parse(fh, wanted)
        except (_Unsure, struct.error, UnicodeDecodeError, ValueError, IndexError):
            return None
