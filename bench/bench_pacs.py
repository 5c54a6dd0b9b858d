"""Benchmark: retrieve the bundled sample series from a private Orthanc by each route.

C-GET, C-MOVE (our storage SCP) and WADO-RS into a fresh case cache, a second fetch served by
the cache, and a plain copy of the same files from disk as the baseline. Orthanc runs on
loopback with and without TCP_NODELAY=1 (DCMTK leaves Nagle's algorithm on otherwise).
Run: .venv/bin/python bench/bench_pacs.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spineplan.core.pacs import (CaseCache, DicomWebClient, DicomWebEndpoint, DimseClient,  # noqa: E402
                                 PacsNode, RetrieveMethod, locate_series)
from spineplan.paths import sample_dicom_dir  # noqa: E402
from tests.pacs.orthanc import ORTHANC_BIN, OrthancServer  # noqa: E402

SERIES = "1.2.826.0.1.3680043.8.498.13291415514722158716675332977844217676"


def median_ms(fn, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2] * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if ORTHANC_BIN is None:
        print("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
        return 0
    files = sorted(sample_dicom_dir().glob("*.dcm"))
    mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"sample series: {len(files)} images, {mb:.1f} MB")

    def copy():
        d = Path(tempfile.mkdtemp())
        for f in files:
            shutil.copy(f, d)
        shutil.rmtree(d)
    print(f"  copy from disk (baseline)   {median_ms(copy, a.repeat):8.0f} ms")
    for nodelay in ("1", None):
        old = os.environ.pop("TCP_NODELAY", None)
        with tempfile.TemporaryDirectory() as work:
            server = OrthancServer(Path(work))
            if nodelay is None:
                import subprocess
                real = subprocess.Popen

                def popen(cmd, env=None, **kw):      # start Orthanc without TCP_NODELAY
                    env = dict(env or os.environ)
                    env.pop("TCP_NODELAY", None)
                    return real(cmd, env=env, **kw)
                subprocess.Popen = popen
            try:
                server.start()
            finally:
                if nodelay is None:
                    subprocess.Popen = real
            try:
                server.upload(files)
                node = PacsNode("127.0.0.1", server.dicom_port, called_aet=server.aet,
                                calling_aet=server.our_aet, store_port=server.store_port)
                routes = {"C-GET": DimseClient(node), "C-MOVE": DimseClient(node, RetrieveMethod.MOVE),
                          "WADO-RS": DicomWebClient(DicomWebEndpoint(server.dicomweb_url))}
                print(f"Orthanc {'with' if nodelay else 'without'} TCP_NODELAY=1:")
                for name, c in routes.items():
                    s = locate_series(c, SERIES)
                    caches = []

                    def fetch():
                        cache = CaseCache(tempfile.mkdtemp())
                        cache.fetch(c, s)
                        caches.append(cache)
                    t = median_ms(fetch, a.repeat)
                    hit = median_ms(lambda: caches[-1].fetch(c, s), a.repeat)
                    for cache in caches:
                        shutil.rmtree(cache.root)
                    print(f"  {name:8s} retrieve {t:8.0f} ms   from cache {hit:6.1f} ms")
            finally:
                server.stop()
        if old is not None:
            os.environ["TCP_NODELAY"] = old
    return 0


if __name__ == "__main__":
    sys.exit(main())
