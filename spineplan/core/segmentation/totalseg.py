"""Optional TotalSegmentator backend: runs the ``TotalSegmentator`` executable in a subprocess.

Available only when the executable is on PATH (with its weights installed by the user);
otherwise it reports itself unavailable with the reason. spineplan never downloads weights.
``segmentation.base`` lists it in the registry.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from ..dicom.load import write_volume
from ..errors import SegmentationError
from ..tasks import Cancelled, Reporter
from ..volume import Volume
from .result import Anchor, Flag, FlagKind, LevelEvidence, SegmentationResult
from .importers import import_labels
from . import labels as L

__all__ = ["TotalSegmentatorBackend", "totalseg_weights_dir"]

# ``--fast`` (3 mm) "total" task model; TotalSegmentator stores it under its weights folder.
FAST_TOTAL_DATASET = "Dataset297"


def totalseg_weights_dir() -> Path:
    """Where TotalSegmentator keeps its nnU-Net weights (its own lookup order)."""
    import os

    if os.environ.get("TOTALSEG_WEIGHTS_PATH"):
        return Path(os.environ["TOTALSEG_WEIGHTS_PATH"])
    home = Path(os.environ.get("TOTALSEG_HOME_DIR") or Path.home() / ".totalsegmentator")
    return home / "nnunet" / "results"


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
        wdir = totalseg_weights_dir()
        if not any(wdir.glob(f"{FAST_TOTAL_DATASET}*")):
            return [f"TotalSegmentator weights ({FAST_TOTAL_DATASET}, task total --fast) not found in "
                    f"{wdir}; run TotalSegmentator once online or set TOTALSEG_HOME_DIR"]
        return []

    def segment(self, volume: Volume, *, progress=None, cancel=None, log=None) -> SegmentationResult:
        missing = self.missing_dependencies
        if missing:
            raise SegmentationError(missing[0])
        exe = shutil.which(self.executable)
        rep = Reporter(progress, cancel)
        with tempfile.TemporaryDirectory(prefix="spineplan-ts-") as tmp:
            src = write_volume(volume, Path(tmp) / "ct.nii.gz")
            out = Path(tmp) / "seg.nii.gz"
            proc = subprocess.Popen([exe, "-i", str(src), "-o", str(out), "--ml", "--fast"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            lines: queue.Queue = queue.Queue()
            reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)
            reader.start()
            try:  # poll so that cancel works even while the process prints nothing
                while True:
                    try:
                        line = lines.get(timeout=0.1)
                        if log is not None:
                            log(line.rstrip())
                    except queue.Empty:
                        if proc.poll() is not None and not reader.is_alive():
                            break
                    rep.check()
            except Cancelled:
                proc.kill()
                proc.wait()
                raise
            finally:
                reader.join(timeout=5)
            if proc.wait() != 0 or not out.exists():
                raise SegmentationError(f"TotalSegmentator failed (exit code {proc.returncode})")
            labels = import_labels(out, volume, numbering="totalseg")
        import numpy as np

        levels = [L.vertebra_name(v) for v in L.craniocaudal_order(
            int(x) for x in np.unique(labels.array) if L.is_vertebra(int(x)))]
        return SegmentationResult(labels, levels=levels, confidence={lv: 0.9 for lv in levels},
                                  flags=[Flag(FlagKind.INCOMPLETE_LABELS,
                                              "discs not labelled by TotalSegmentator's total task")],
                                  evidence=LevelEvidence(Anchor.LABELS_FILE), backend=self.name)

