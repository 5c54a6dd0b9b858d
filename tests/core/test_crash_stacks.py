"""A spineplan command that dies of a native crash leaves the Python stack of every thread on
stderr (faulthandler, fatal signals only): the SIGSEGV of ``spineplan segment`` seen once in a
full test run (test_privacy) had left no output at all. A run without a crash prints nothing
more than before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CRASH = r"""
import faulthandler, sys, threading, time
import spineplan.cli_handlers.info as info

def native_crash(args):
    t = threading.Thread(target=time.sleep, args=(30,), name="bystander", daemon=True)
    t.start()
    faulthandler._sigsegv()  # what a fault in ITK, VTK or libc does

info.run = native_crash
from spineplan.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    env.pop("PYTHONFAULTHANDLER", None)
    return env


def test_a_native_crash_leaves_the_python_stacks(sample_dicom):
    r = subprocess.run([sys.executable, "-c", CRASH, "info", str(sample_dicom)], capture_output=True,
                       text=True, timeout=120, env=_env())
    assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stderr)
    assert "Fatal Python error: Segmentation fault" in r.stderr
    assert "in native_crash" in r.stderr and "spineplan/cli.py" in r.stderr  # where it died
    assert r.stderr.count("(most recent call first)") >= 2  # every thread, the bystander too


def test_no_crash_no_extra_output(sample_dicom):
    r = subprocess.run([sys.executable, "-m", "spineplan", "info", str(sample_dicom)], capture_output=True,
                       text=True, timeout=120, env=_env())
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_kept_when_enabled_and_safe_without_a_real_stderr(capsys):
    import faulthandler

    from spineplan.cli import enable_crash_stacks

    was = faulthandler.is_enabled()
    faulthandler.disable()
    try:
        assert enable_crash_stacks() is False  # capsys's stderr has no file descriptor
        assert not faulthandler.is_enabled()
        faulthandler.enable(file=sys.__stderr__)  # already on (pytest, -X faulthandler): kept
        assert enable_crash_stacks() is True and faulthandler.is_enabled()
    finally:
        faulthandler.disable()
        if was:
            faulthandler.enable(file=sys.__stderr__)
