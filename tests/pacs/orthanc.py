"""A private Orthanc server for the PACS tests (Debian packages ``orthanc``, ``orthanc-dicomweb``).

:class:`OrthancServer` writes a JSON configuration into a temporary folder (own storage, free
loopback ports, the DICOMweb plugin, our AE as a known modality for C-FIND/C-GET/C-MOVE), starts
``Orthanc``, waits for its REST API and uploads files over it. It is stopped (and killed when it
does not stop) by :meth:`stop`, which the fixtures call even when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ORTHANC_BIN = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if os.access("/usr/sbin/Orthanc", os.X_OK)
                                          else None)
DICOMWEB_PLUGIN_CANDIDATES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
                              "/usr/lib/orthanc/libOrthancDicomWeb.so")
ORTHANC_AET = "ORTHANC"
OUR_AET = "SPINEPLAN"


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dicomweb_plugin() -> str | None:
    """Path of the DICOMweb plugin installed by the ``orthanc-dicomweb`` package, or None."""
    for p in DICOMWEB_PLUGIN_CANDIDATES:
        if os.path.exists(p):
            return p
    try:
        out = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True).stdout
    except OSError:
        return None
    sos = [line for line in out.splitlines() if "DicomWeb" in line and ".so" in line]
    return sos[0] if sos else None


class OrthancServer:
    """One Orthanc process on free loopback ports with its own storage folder."""

    def __init__(self, workdir: Path, *, our_aet: str = OUR_AET, store_port: int | None = None):
        self.workdir = Path(workdir)
        self.http_port, self.dicom_port = free_port(), free_port()
        self.store_port = store_port or free_port()   # where our C-MOVE storage SCP listens
        self.our_aet = our_aet
        self.aet = ORTHANC_AET
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def has_dicomweb(self) -> bool:
        return dicomweb_plugin() is not None

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def config(self) -> dict:
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        plugin = dicomweb_plugin()
        return {
            "Name": "spineplan-test", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
            "HttpServerEnabled": True, "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomServerEnabled": True, "DicomAet": self.aet,
            "DicomPort": self.dicom_port, "DicomCheckCalledAet": True, "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": False, "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False, "DicomScuTimeout": 10, "SaveJobs": False,
            "DicomModalities": {"spineplan": {"AET": self.our_aet, "Host": "127.0.0.1",
                                              "Port": self.store_port, "AllowEcho": True,
                                              "AllowFind": True, "AllowGet": True, "AllowMove": True,
                                              "AllowStore": True}},
            "Plugins": [plugin] if plugin else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True,
                         "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
            "StableAge": 1, "HttpThreadsCount": 8, "DicomThreadsCount": 4,
        }

    def start(self, timeout_s: float = 30.0) -> "OrthancServer":
        cfg = self.workdir / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=1))
        self.log_file = open(self.log_path, "ab")
        # DCMTK in Debian's Orthanc leaves Nagle's algorithm on: 50 ms per C-GET/C-MOVE image
        # on loopback (6 s for the sample) instead of 9 ms with TCP_NODELAY=1
        env = dict(os.environ, TCP_NODELAY="1")
        self.proc = subprocess.Popen([ORTHANC_BIN, str(cfg)], stdout=self.log_file, env=env,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                self.rest("GET", "/system")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer on {self.url} within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self.log_file.close()

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crashed or unplugged server would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def rest(self, method: str, path: str, data: bytes | None = None):
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/dicom")
        with urllib.request.urlopen(req, timeout=20) as r:
            body = r.read()
        return json.loads(body) if body else None

    def upload(self, files) -> list[str]:
        """POST each DICOM file to /instances; returns the Orthanc instance ids."""
        ids = []
        for f in files:
            res = self.rest("POST", "/instances", Path(f).read_bytes())
            if res.get("Status") not in ("Success", "AlreadyStored"):
                raise RuntimeError(f"Orthanc refused {f}: {res}")
            ids.append(res["ID"])
        return ids
