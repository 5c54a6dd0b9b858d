"""Issue 20 "crash safety shown with real processes", for the workstation itself: a real
``spineplan gui`` process (cli.main under Xvfb) gets two measurements clicked into its axial
view, is killed with SIGKILL 2.5 s later (the second one was held back by the autosave
throttle: before the fix of finding 14 it was lost), and the next ``spineplan gui`` on the same
image offers the work and restores both measurements exactly. A third start, after the user
declined, offers nothing.

The processes run the real command line; a small driver around ``cli.main`` clicks (Qt test
events on the shown window) and answers the recovery question, since there is nobody at the
screen.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

ROOT = Path(__file__).resolve().parents[2]

EDITOR = r"""
import json, sys
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

def edit():
    win = next((w for w in QApplication.topLevelWidgets() if type(w).__name__ == "MainWindow"), None)
    if win is None or win.scene.volume is None:
        QTimer.singleShot(50, edit)
        return
    v = win.views["axial"]
    win.set_tool("distance")
    clicks = [((v.width() // 2 - 80, v.height() // 2), (v.width() // 2 + 40, v.height() // 2)),
              ((v.width() // 2, v.height() // 2 - 70), (v.width() // 2, v.height() // 2 + 50))]

    def measure(k):
        for x, y in clicks[k]:
            QTest.mouseClick(v, Qt.LeftButton, Qt.NoModifier, QPoint(x, y))
        if k == 0:
            QTimer.singleShot(300, lambda: measure(1))  # within the 2 s autosave throttle
        else:
            print(json.dumps([m.to_dict() for m in win.scene.annotations]), flush=True)

    measure(0)

QTimer.singleShot(0, edit)
from spineplan.cli import main
sys.exit(main(["gui", sys.argv[1]]))
"""

RESTARTER = r"""
import json, sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

answer = QMessageBox.Yes if sys.argv[2] == "yes" else QMessageBox.No
asked = []
QMessageBox.question = lambda *a, **k: (asked.append(a[2] if len(a) > 2 else ""), answer)[1]

def report(tries=[0]):
    win = next((w for w in QApplication.topLevelWidgets() if type(w).__name__ == "MainWindow"), None)
    tries[0] += 1
    if (win is None or win.scene.volume is None) and tries[0] < 1200:
        QTimer.singleShot(50, report)
        return
    print(json.dumps({"asked": len(asked),
                      "annotations": [m.to_dict() for m in win.scene.annotations]}), flush=True)
    win.close()  # as the user closes it: unsaved (recovered) work stays autosaved
    QApplication.quit()

QTimer.singleShot(0, report)
from spineplan.cli import main
sys.exit(main(["gui", sys.argv[1]]))
"""


def _env(home: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HOME=str(home), XDG_CONFIG_HOME=str(home / "config"),
               XDG_DATA_HOME=str(home / "data"), XDG_CACHE_HOME=str(home / "cache"))
    env.pop("QT_QPA_PLATFORM", None)  # the real (Xvfb) display, like a user's
    return env


def _gui(script: str, *args, env):
    cmd = [sys.executable, "-c", script, *map(str, args)]
    if not os.environ.get("DISPLAY"):
        if shutil.which("xvfb-run") is None:
            pytest.skip("no display and no xvfb-run")
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24"] + cmd
    # a session of its own: the SIGKILL reaches xvfb-run's child as well
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _points(annotations):
    return [(a["kind"], [[round(c, 3) for c in p] for p in a["points_lps"]]) for a in annotations]


def test_sigkilled_gui_offers_its_last_edits_at_the_next_start(tmp_path, sample_dicom):
    home = tmp_path / "home"
    home.mkdir()
    env = _env(home)
    p = _gui(EDITOR, sample_dicom, env=env)
    try:
        line = p.stdout.readline()
        assert line, f"the GUI printed nothing: {p.stderr.read() if p.poll() is not None else ''}"
        edited = json.loads(line)
        assert len(edited) == 2 and all(a["kind"] == "distance" for a in edited)
        time.sleep(2.5)  # the throttled autosave of the second edit is due after 2 s
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(30)
    assert p.returncode == -signal.SIGKILL or p.returncode == 128 + signal.SIGKILL, p.returncode
    autosaves = list((home / "data").rglob("*.autosave.json"))
    assert len(autosaves) == 1, list(home.rglob("*"))

    r = _gui(RESTARTER, sample_dicom, "yes", env=env)
    out, err = r.communicate(timeout=180)
    assert r.returncode == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["asked"] == 1, "the recovery was not offered"
    assert _points(doc["annotations"]) == _points(edited), "the restored work is not the last edit"
    assert "Traceback" not in err

    # declined: removed, and not offered again
    r = _gui(RESTARTER, sample_dicom, "no", env=env)
    out, err = r.communicate(timeout=180)
    assert r.returncode == 0 and json.loads(out.strip().splitlines()[-1])["asked"] == 1
    r = _gui(RESTARTER, sample_dicom, "no", env=env)
    out, err = r.communicate(timeout=180)
    assert r.returncode == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["asked"] == 0 and doc["annotations"] == []
    assert not list((home / "data").rglob("*.autosave.json"))
