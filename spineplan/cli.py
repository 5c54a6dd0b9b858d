"""The ``spineplan`` command line (contract in docs/ARCHITECTURE.md).

Exit codes: 0 success; 2 bad input or impossible request (one line
``spineplan: error: ...`` on stderr, no traceback); 3 ``plan`` wrote a plan with an error check;
4 ``cohort`` (alias ``batch``) finished with some cases failed; 1 only for a bug.
Each subcommand lives in ``spineplan/cli_handlers/<name>.py`` as ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .core.errors import SpineplanError
from .core.planning.kinds import PROCEDURES, SIDES

__all__ = ["main", "build_parser"]

LEVEL_HELP = "motor unit, e.g. L4-L5, L5-S1, T12-L1"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 already; keep one line
        self.exit(2, f"spineplan: error: {message}\n")


def _add_cohort_parser(sub, name: str, help_: str) -> None:
    """``cohort`` and its alias ``batch``: one set of options, one handler."""
    co = sub.add_parser(name, help=help_,
                        description="Segment and measure every case of INPUTS; per case a label "
                                    "map and a JSON, and one table (cohort.csv, cohort.json). "
                                    "Exit 0 when every case succeeded, 4 when some failed (they "
                                    "are rows with their error), 2 on bad input or interruption.")
    co.add_argument("inputs", nargs="+", metavar="INPUT",
                    help="image file, DICOM folder/file/zip, or a folder of cases")
    co.add_argument("-o", "--output", required=True, metavar="OUT_DIR")
    co.add_argument("--workers", type=int, help="worker processes (default: the number of cores)")
    co.add_argument("--modality", choices=["CT", "MR"],
                    help="modality of image files that do not say (NIfTI, NRRD, MHA)")
    co.add_argument("--resume", action="store_true",
                    help="continue a cohort in OUT_DIR: cases done before are skipped")
    co.add_argument("--identify", action="store_true",
                    help="also write OUT_DIR/identity.csv (case id -> input path)")
    co.add_argument("--engine", choices=["auto", "dask", "processes"], default="auto",
                    help="where cases run (default: Dask when installed, else a process pool)")
    co.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                    help="an existing Dask scheduler instead of a local cluster")
    co.add_argument("--table", metavar="PATH",
                    help="also write the table (one row per case and per motor unit) to PATH "
                         "as CSV")


def _add_lesion_args(p: argparse.ArgumentParser) -> None:
    le = p.add_mutually_exclusive_group()
    le.add_argument("--lesion", metavar="X,Y,Z[,R]",
                    help="marked lesion: centre in LPS mm, radius in mm (default 5); write "
                         "--lesion=-5,20,30 when X is negative")
    le.add_argument("--lesion-mask", metavar="MASK.nii.gz",
                    help="marked lesion as a painted mask on the image grid (non-zero voxels)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="spineplan", description="Single-segment spine surgery planning.")
    p.add_argument("--version", action="version", version="spineplan 0.1.0")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    g = sub.add_parser("gui", help="open the workstation")
    g.add_argument("path", nargs="?", help="DICOM folder/file, NIfTI, NRRD or MHA")
    g.add_argument("--screenshot", metavar="OUT.png", help="render once, save the window, exit")
    g.add_argument("--plan", metavar="PLAN.json", help="open a saved plan with the case")
    g.add_argument("--labels", metavar="LABELS.nii.gz", help="label map to show")
    g.add_argument("--presentation", action="store_true", help="start in presentation mode")

    i = sub.add_parser("info", help="list the series found under PATH")
    i.add_argument("path")
    i.add_argument("--json", action="store_true", help="print one JSON document")

    c = sub.add_parser("convert", help="write the loaded volume as NIfTI/NRRD/MHA")
    c.add_argument("path")
    c.add_argument("-o", "--output", required=True)
    c.add_argument("--series", metavar="UID")

    s = sub.add_parser("segment", help="label vertebrae, discs and canal")
    s.add_argument("path")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--series", metavar="UID")
    s.add_argument("--backend", default="auto", help="segmenter name (default: by modality)")
    s.add_argument("--modality", choices=["CT", "MR"],
                   help="modality of an image file that does not say (NIfTI, NRRD, MHA)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--identify", action="store_true",
                   help="copy patient identity into a DICOM SEG output (default: anonymised)")

    pl = sub.add_parser("plan", help="plan one procedure on one motor unit")
    pl.add_argument("path")
    pl.add_argument("--level", required=True, help=LEVEL_HELP)
    pl.add_argument("--procedure", required=True, choices=PROCEDURES)
    pl.add_argument("--side", required=True, choices=SIDES)
    pl.add_argument("--labels", metavar="LABELS.nii.gz", action="append",
                    help="label map(s) in our numbering; repeat to merge (e.g. vertebrae + discs)")
    pl.add_argument("--zone", choices=["central", "paracentral", "subarticular", "foraminal",
                                       "extraforaminal"], default="paracentral")
    pl.add_argument("--pathology", default="herniation",
                    choices=["herniation", "stenosis", "instability", "sequestration"])
    pl.add_argument("--symptom-side", choices=["left", "right", "bilateral"])
    pl.add_argument("--root", choices=["L2", "L3", "L4", "L5", "S1"], help="suspected nerve root")
    _add_lesion_args(pl)
    pl.add_argument("--identify", action="store_true", help="store patient identity in the plan")
    pl.add_argument("--confirm-levels", action="store_true",
                    help="I have checked the level names on the images: plan even where the "
                         "built-in segmenter could not establish them (recorded in the plan)")
    pl.add_argument("--series", metavar="UID")
    pl.add_argument("--mri", metavar="MRI", help="an MRI of the patient: fused to the image at --level, "
                    "its dural sac is used for the checks (each says so)")
    pl.add_argument("--mri-labels", metavar="MRI_LABELS.nii.gz", action="append",
                    help="with --mri: the MRI's label map (default: the built-in MRI segmenter)")
    pl.add_argument("-o", "--output", required=True)
    pl.add_argument("--report", metavar="REPORT.pdf")
    pl.add_argument("--markups", metavar="M.mrk.json")
    pl.add_argument("--json", action="store_true")

    cp = sub.add_parser("compare", help="plan needle, tube and cage on one unit; recommend the "
                                        "least destructive that treats the lesion")
    cp.add_argument("path")
    cp.add_argument("--level", required=True, help=LEVEL_HELP)
    cp.add_argument("--side", required=True, choices=SIDES)
    cp.add_argument("--labels", metavar="LABELS.nii.gz", action="append",
                    help="label map(s) in our numbering; repeat to merge")
    _add_lesion_args(cp)
    cp.add_argument("--pathology", default="herniation",
                    choices=["herniation", "stenosis", "instability", "sequestration"])
    cp.add_argument("--confirm-levels", action="store_true",
                    help="I have checked the level names on the images (as for plan)")
    cp.add_argument("--series", metavar="UID")
    cp.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                    help="folder for the three plans (needle.json, tube.json, cage.json)")
    cp.add_argument("--json", action="store_true", help="print the comparison as one JSON document")

    r = sub.add_parser("report", help="PDF report of a saved plan")
    r.add_argument("plan")
    r.add_argument("-o", "--output", required=True)
    r.add_argument("--identify", action="store_true", help="include patient identity")
    r.add_argument("--image", metavar="PATH",
                   help="the series the plan was made on: every check is recomputed on it "
                        "(default: the plan's source path, if any)")
    r.add_argument("--labels", metavar="LABELS.nii.gz",
                   help="label map for the recomputation (default: the built-in segmenter)")

    rh = sub.add_parser("rehearse", help="teaching animation of a plan")
    rh.add_argument("plan")
    rh.add_argument("-o", "--output", required=True, help="OUT.gif or OUT.mp4")
    rh.add_argument("--handout", metavar="OUT.pdf")
    rh.add_argument("--image", metavar="PATH", help="CT the plan was made on (default: plan source)")
    rh.add_argument("--labels", metavar="LABELS.nii.gz", help="label map (anatomy, structures at risk)")
    rh.add_argument("--size", metavar="WxH", default="640x480", help="frame size (default 640x480)")
    rh.add_argument("--frames-per-step", type=int, default=12, help="frames per step (default 12)")
    rh.add_argument("--fps", type=float, default=8.0, help="frames per second (default 8)")
    rh.add_argument("--title", help="case title shown instead of any identity")
    rh.add_argument("--no-inset", action="store_true", help="no 'view down the instrument' inset")

    for name, help_ in (("cohort", "segment and measure many studies (Dask workers)"),
                        ("batch", "the same as cohort (the name of issue 19)")):
        _add_cohort_parser(sub, name, help_)

    fu = sub.add_parser("fuse", help="register an MRI to a CT (rigid, refined at a motor unit)")
    fu.add_argument("ct", metavar="CT", help="the CT (DICOM folder/file, NIfTI, NRRD or MHA)")
    fu.add_argument("mri", metavar="MRI", help="the MRI of the same patient")
    fu.add_argument("-o", "--output", required=True, metavar="MRI_ON_CT.nii.gz",
                    help="the MRI resampled onto the CT grid")
    fu.add_argument("--level", help=f"refine at this {LEVEL_HELP}")
    fu.add_argument("--labels", metavar="CT_LABELS.nii.gz", action="append",
                    help="the CT's label map(s) (default with --level: the built-in CT segmenter)")
    fu.add_argument("--mri-labels", metavar="MRI_LABELS.nii.gz", action="append",
                    help="the MRI's label map(s): their Dice with the CT's after the transform")
    fu.add_argument("--transform", metavar="OUT.tfm", help="write the transform (ITK, Slicer-readable)")
    fu.add_argument("--json", action="store_true", help="print one JSON document")

    pa = sub.add_parser("pacs", help="query/retrieve from a PACS (DIMSE or DICOMweb)")
    pa.add_argument("action", choices=["echo", "find", "get"])
    pa.add_argument("--host", help="DIMSE node address")
    pa.add_argument("--port", type=int, help="DIMSE node port")
    pa.add_argument("--called-aet", "--aec", dest="called_aet", default="ANY-SCP",
                    help="the node's AE title")
    pa.add_argument("--aet", "--calling-aet", dest="aet", default="SPINEPLAN", help="our AE title")
    pa.add_argument("--dicomweb", metavar="URL", help="DICOMweb base URL (instead of a DIMSE node)")
    pa.add_argument("--node", metavar="NAME", help="a node or endpoint named in the PACS settings")
    pa.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    pa.add_argument("--patient-id")
    pa.add_argument("--patient-name", help="may use * wildcards")
    pa.add_argument("--accession")
    pa.add_argument("--modality", help="e.g. CT or MR")
    pa.add_argument("--study-date", metavar="RANGE", help="YYYYMMDD, YYYYMMDD-YYYYMMDD, -YYYYMMDD, YYYYMMDD-")
    pa.add_argument("--json", action="store_true", help="find: print JSON")
    pa.add_argument("--study-uid")
    pa.add_argument("--series", "--series-uid", dest="series_uid", metavar="UID", help="get: the series")
    pa.add_argument("-o", "--output", help="get: folder for the retrieved series (created)")
    pa.add_argument("--move", action="store_true", help="get by C-MOVE to our storage SCP")
    pa.add_argument("--store-port", type=int, default=11113,
                    help="C-MOVE: port of our storage SCP (default 11113)")
    return p


def enable_crash_stacks() -> bool:
    """Print the Python stack of every thread to stderr on a fatal signal (SIGSEGV, SIGBUS,
    SIGFPE, SIGILL, SIGABRT) only: a native crash leaves a trace instead of a bare exit -11.

    Nothing is printed otherwise. Kept when already enabled (pytest, ``-X faulthandler``), and
    skipped when stderr is not a real file (a GUI started without a console).

    Returns
    -------
    bool
        Whether fatal-signal stacks are enabled now.
    """
    import faulthandler

    if faulthandler.is_enabled():
        return True
    try:
        faulthandler.enable(file=sys.stderr, all_threads=True)
    except (AttributeError, ValueError, OSError, RuntimeError):  # no stderr, or no fileno
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spineplan`` console script."""
    enable_crash_stacks()
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "gui"
    from .core.zipcache import clean_zip_cache

    clean_zip_cache()  # extractions left by killed runs hold identified DICOM: gone at start
    if args.command is None:
        args = parser.parse_args(["gui"])
    try:
        handler = importlib.import_module(f"spineplan.cli_handlers.{command}")
    except ModuleNotFoundError as exc:
        if exc.name == f"spineplan.cli_handlers.{command}":
            print(f"spineplan: error: '{command}' is not available in this build", file=sys.stderr)
            return 2
        raise
    try:
        with warnings.catch_warnings(record=True) as caught:
            # library warnings (pydicom, nibabel, ...) must not print in front of our one-line
            # error; after a success they are repeated as spineplan warnings
            warnings.simplefilter("default")
            code = int(handler.run(args) or 0)
        for msg in dict.fromkeys(str(w.message).splitlines()[0] for w in caught if str(w.message)):
            print(f"spineplan: warning: {msg}", file=sys.stderr)
        return code
    except SpineplanError as exc:
        print(f"spineplan: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment (missing file, full disk), not a bug: one line
        where = f": {exc.filename}" if exc.filename else ""
        print(f"spineplan: error: {exc.strerror or type(exc).__name__}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spineplan: error: interrupted", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
