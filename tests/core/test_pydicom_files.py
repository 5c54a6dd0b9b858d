"""Every DICOM file shipped with pydicom (its test files: odd transfer syntaxes, broken
headers, SR, RT, multi-frame, deflated, big-endian, ...) either loads with geometry or is
refused in one clear line, never a traceback (reliability issue, hostile-input suite)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from spineplan import cli

# the files on disk only: pydicom's get_testdata_files() would try to download more
_DIR = Path(pydicom.__file__).parent / "data" / "test_files"
FILES = sorted(p for p in _DIR.rglob("*") if p.is_file() and p.suffix.lower() in (".dcm", "")
               and p.stat().st_size < 20_000_000)


def test_there_are_files_to_try():
    assert len(FILES) >= 50


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_info_on_every_pydicom_file_loads_or_refuses_in_one_line(path, capsys):
    rc = cli.main(["info", str(path)])
    out, err = capsys.readouterr()
    assert rc in (0, 2), (rc, err[-500:])
    assert "Traceback" not in err and "Traceback" not in out
    if rc == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("spineplan: error:"), err[-500:]
