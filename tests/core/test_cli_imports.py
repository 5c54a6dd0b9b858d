"""`spineplan info` / `spineplan convert` import only what they need (issue 19).

scipy alone cost ~0.5 s of a 1.4 s convert although a plain series needs no resampling;
VTK, Qt, reportlab and highdicom have no business on this path either. A plain uncompressed
series (the sample) is scanned by the fast header reader, its pixels read directly and its
NIfTI header made without ITK: not even pydicom or SimpleITK are imported.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from spineplan.core.dicom.load import load_volume, read_image_file

HEAVY = ("scipy", "vtk", "vtkmodules", "PySide6", "reportlab", "highdicom", "pydicom", "SimpleITK",
         "psutil", "nibabel")

_RUN = (
    "import json, sys\n"
    "from spineplan.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    f"heavy = sorted({{m.split('.')[0] for m in sys.modules if m.split('.')[0] in {HEAVY!r}}})\n"
    "sys.stdout.flush()\n"
    "print(json.dumps({'rc': rc, 'heavy': heavy}), file=sys.stderr)\n"
)


def _run(*argv):
    r = subprocess.run([sys.executable, "-c", _RUN, *argv], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("command", ["info", "convert"])
def test_info_and_convert_import_no_scipy_vtk_qt(command, sample_dicom, tmp_path):
    out = tmp_path / "ct.nii.gz"
    argv = ["info", str(sample_dicom)] if command == "info" else ["convert", str(sample_dicom), "-o", str(out)]
    res = _run(*argv)
    assert res["rc"] == 0
    assert res["heavy"] == [], f"`spineplan {command}` imported {res['heavy']}"
    if command == "convert":  # and the file is still the volume, voxel for voxel, in LPS
        src, back = load_volume(sample_dicom), read_image_file(out)
        assert np.array_equal(back.array, src.array)
        assert np.allclose(back.lps_from_ijk(), src.lps_from_ijk(), atol=1e-5)
