"""A write killed with SIGKILL (a real process, mid-save) never leaves a half-written file,
and the temporary files such kills leave behind are removed before the next write to that
file (reliability finding 16: 154 MB of hidden temporary files after 200 kills)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from spineplan.core.atomic import ORPHAN_AGE_S, atomic_write_bytes, clean_orphans
from spineplan.core.persistence import load_plan, save_plan

from .plan_dicts import make_plan

WRITER = r"""
import sys
from spineplan.core.persistence import save_plan
import json
plan = json.loads(open(sys.argv[2]).read())
plan["metrics"]["padding"] = "x" * 8_000_000  # a long write, so the kill lands mid-way
print("ready", flush=True)
while True:
    save_plan(plan, sys.argv[1])
"""


def test_sigkill_during_saves_never_corrupts_and_orphans_are_cleaned(tmp_path):
    import json

    dest = tmp_path / "plan.json"
    plan = make_plan("needle", "left")
    save_plan(plan, dest)  # a good previous version
    src = tmp_path / "src.json"
    src.write_text(json.dumps(plan))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    for delay in (0.05, 0.2, 0.35, 0.5, 0.8):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(dest), str(src)], env=env,
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        p.stdout.close()
        doc = load_plan(dest)  # always a whole, valid plan: the old one or a new one
        assert doc["level"] == plan["level"]
    orphans = list(tmp_path.glob(".plan.json.*.tmp*"))
    print("orphans after the kills:", len(orphans))
    old = time.time() - ORPHAN_AGE_S - 5
    for o in orphans:  # as if the kills were a while ago
        os.utime(o, (old, old))
    fresh = tmp_path / ".plan.json.fresh.tmp.json"  # a write in progress elsewhere: kept
    fresh.write_text("{}")
    atomic_write_bytes(dest, dest.read_bytes())
    assert not (set(tmp_path.glob(".plan.json.*.tmp*")) - {fresh})
    assert fresh.exists()
    assert clean_orphans(dest, older_than_s=-1) == 1 and not fresh.exists()
