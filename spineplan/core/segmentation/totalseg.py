"""Optional TotalSegmentator backend: runs the ``TotalSegmentator`` executable in a subprocess.

Available only when the executable is on PATH (with its weights installed by the user);
otherwise it reports itself unavailable with the reason. spineplan never downloads weights.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ..dicom.load import write_volume
from ..errors import SegmentationError
from ..tasks import Cancelled, Reporter
from ..volume import Volume
from .base import SegmentationResult, register
from .importers import import_labels
from . import labels as L

__all__ = ["TotalSegmentatorBackend"]


class TotalSegmentatorBackend:
    name = "totalsegmentator"
    modalities = ("CT",)
    executable = "TotalSegmentator"

    def is_available(self) -> bool:
        return not self.missing_dependencies

    @property
    def missing_dependencies(self) -> list[str]:
        if shutil.which(self.executable) is None:
            return ["the TotalSegmentator executable is not on PATH (pip install TotalSegmentator "
                    "and download its weights yourself)"]
        return []

    def segment(self, volume: Volume, *, progress=None, cancel=None, log=None) -> SegmentationResult:
        exe = shutil.which(self.executable)
        if exe is None:
            raise SegmentationError(self.missing_dependencies[0])
        rep = Reporter(progress, cancel)
        with tempfile.TemporaryDirectory(prefix="spineplan-ts-") as tmp:
            src = write_volume(volume, Path(tmp) / "ct.nii.gz")
            out = Path(tmp) / "seg.nii.gz"
            proc = subprocess.Popen([exe, "-i", str(src), "-o", str(out), "--ml", "--fast"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                for line in proc.stdout:
                    if log is not None:
                        log(line.rstrip())
                    rep.check()
            except Cancelled:
                proc.kill()
                proc.wait()
                raise
            if proc.wait() != 0 or not out.exists():
                raise SegmentationError(f"TotalSegmentator failed (exit code {proc.returncode})")
            labels = import_labels(out, volume, numbering="totalseg")
        import numpy as np

        levels = [L.vertebra_name(v) for v in L.craniocaudal_order(
            int(x) for x in np.unique(labels.array) if L.is_vertebra(int(x)))]
        return SegmentationResult(labels, levels=levels, confidence={lv: 0.9 for lv in levels},
                                  flags=["discs not labelled by TotalSegmentator's total task"])


register(TotalSegmentatorBackend())
