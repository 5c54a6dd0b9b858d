"""``memory.release_freed_memory`` (glibc ``malloc_trim``): it gives freed heap pages back
(the reason it is kept: segment peaks at 3.6x the raw array with it, 4.4x without,
bench/results/memory_trim.txt), is called with its C signature, and is safe while other
threads allocate and free (a suspect of the SIGSEGV once seen in ``spineplan segment``).
Each check runs in a fresh interpreter (a clean heap; a crash cannot take pytest down)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim only")

FRAGMENTED = r"""
import os, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from spineplan.core import memory
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
arrays = [np.ones(8000) for _ in range(4000)]  # 4000 x 64 kB: on the heap, not mmapped
keep = arrays[::20]  # pins the heap: it cannot shrink from its top by itself
del arrays
before = rss()
memory.release_freed_memory()
import ctypes
fn = memory._MALLOC_TRIM
print(before, rss(), fn.argtypes == [ctypes.c_size_t], fn.restype is ctypes.c_int)
"""

CONCURRENT = r"""
import sys, threading
import numpy as np
sys.path.insert(0, sys.argv[1])
from spineplan.core import memory
stop = threading.Event()
def churn():
    while not stop.is_set():
        xs = [np.empty(int(n)) for n in np.random.default_rng().integers(100, 40000, 200)]
        del xs[::2]
threads = [threading.Thread(target=churn) for _ in range(3)]
for t in threads:
    t.start()
for _ in range(3000):
    memory.release_freed_memory()
stop.set()
for t in threads:
    t.join()
print("ok")
"""


def _run(code):
    return subprocess.run([sys.executable, "-X", "faulthandler", "-c", code, ROOT], capture_output=True,
                          text=True, timeout=300)


def test_freed_heap_pages_go_back_to_the_system():
    r = _run(FRAGMENTED)
    assert r.returncode == 0, r.stderr
    before, after, argtypes_ok, restype_ok = r.stdout.split()
    freed_mb = (int(before) - int(after)) / 2**20
    assert freed_mb > 150, f"only {freed_mb:.0f} MB of ~240 MB freed returned"  # measured 230
    assert argtypes_ok == "True" and restype_ok == "True"


def test_safe_while_other_threads_allocate():
    r = _run(CONCURRENT)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr[-2000:])
