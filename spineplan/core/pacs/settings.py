"""PACS settings: named DIMSE nodes and DICOMweb endpoints, the cache, and where secrets live.

``pacs.json`` in the user's config folder (platformdirs) holds no secret. Passwords and bearer
tokens go to the OS keyring (the ``keyring`` package) when a usable backend exists; otherwise to
``pacs-secrets.json`` readable only by the user (mode 0600), with a warning.
"""

from __future__ import annotations

import enum
import json
import os
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import InvalidInputError
from .cache import DEFAULT_CACHE_BYTES, CaseCache
from .dimse import DimseClient, PacsNode, RetrieveMethod
from .web import AuthKind, DicomWebClient, DicomWebEndpoint

__all__ = ["PacsSettings", "NodeSettings", "SecretStore", "SecretBackend", "PlaintextSecretsWarning",
           "config_dir", "load_settings", "save_settings"]

SETTINGS_VERSION = 1
KEYRING_SERVICE = "spineplan-pacs"


def config_dir() -> Path:
    """The user's spineplan config folder (``SPINEPLAN_CONFIG_DIR`` overrides it)."""
    env = os.environ.get("SPINEPLAN_CONFIG_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_config_dir("spineplan", appauthor=False))


def _default_cache_dir() -> str:
    import platformdirs

    return str(Path(platformdirs.user_cache_dir("spineplan", appauthor=False)) / "pacs")


@dataclass
class NodeSettings:
    """A named DIMSE node and how to retrieve from it."""

    node: PacsNode
    method: RetrieveMethod = RetrieveMethod.GET

    def client(self) -> DimseClient:
        return DimseClient(self.node, self.method)


@dataclass
class PacsSettings:
    """Everything the PACS browser and ``spineplan pacs`` need to know (no secret in here)."""

    nodes: dict[str, NodeSettings] = field(default_factory=dict)
    endpoints: dict[str, DicomWebEndpoint] = field(default_factory=dict)
    cache_dir: str = field(default_factory=_default_cache_dir)
    cache_max_bytes: int = DEFAULT_CACHE_BYTES

    def cache(self) -> CaseCache:
        return CaseCache(self.cache_dir, self.cache_max_bytes)

    def web_client(self, name: str, secrets: "SecretStore") -> DicomWebClient:
        """A client for endpoint ``name`` with its secret from ``secrets``."""
        ep = self.endpoints[name]
        secret = secrets.get(name) if ep.auth is not AuthKind.NONE else None
        return DicomWebClient(ep, secret)


def _node_dict(ns: NodeSettings) -> dict:
    d = asdict(ns.node)
    d["method"] = ns.method.value
    return d


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text, mode=0o600)


def save_settings(settings: PacsSettings, path: str | os.PathLike | None = None) -> Path:
    """Write ``pacs.json`` (mode 0600, atomically); returns its path."""
    p = Path(path) if path else config_dir() / "pacs.json"
    data = {"version": SETTINGS_VERSION,
            "nodes": {n: _node_dict(s) for n, s in settings.nodes.items()},
            "endpoints": {n: {"url": e.url, "auth": e.auth.value, "username": e.username,
                              "timeout_s": e.timeout_s} for n, e in settings.endpoints.items()},
            "cache_dir": settings.cache_dir, "cache_max_bytes": int(settings.cache_max_bytes)}
    _atomic_write(p, json.dumps(data, indent=1))
    return p


def load_settings(path: str | os.PathLike | None = None) -> PacsSettings:
    """Read ``pacs.json``; defaults when it does not exist, InvalidInputError when it is broken."""
    p = Path(path) if path else config_dir() / "pacs.json"
    if not p.exists():
        return PacsSettings()
    try:
        data = json.loads(p.read_text())
        if data.get("version") != SETTINGS_VERSION:
            raise ValueError(f"version {data.get('version')!r}")
        node_fields = {f.name for f in fields(PacsNode)}
        nodes = {}
        for name, d in data.get("nodes", {}).items():
            d = dict(d)
            method = RetrieveMethod(d.pop("method", "get"))
            nodes[name] = NodeSettings(PacsNode(**{k: v for k, v in d.items() if k in node_fields}),
                                       method)
        eps = {name: DicomWebEndpoint(**d) for name, d in data.get("endpoints", {}).items()}
        return PacsSettings(nodes, eps, str(data.get("cache_dir") or _default_cache_dir()),
                            int(data.get("cache_max_bytes", DEFAULT_CACHE_BYTES)))
    except InvalidInputError as exc:
        raise InvalidInputError(f"PACS settings {p}: {exc}") from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidInputError(f"PACS settings {p} are not readable ({exc}); fix or remove the file") from None


class SecretBackend(enum.Enum):
    """Where :class:`SecretStore` keeps passwords and tokens."""

    KEYRING = "keyring"
    FILE = "file"


class PlaintextSecretsWarning(UserWarning):
    """No usable OS keyring: secrets are kept in a file only the user can read."""


def _usable_keyring():
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    kr = keyring.get_keyring()
    if isinstance(kr, fail.Keyring) or getattr(kr, "priority", 0) <= 0:
        return None
    return keyring


class SecretStore:
    """Passwords and tokens by endpoint or node name, in the keyring or a 0600 file."""

    def __init__(self, folder: str | os.PathLike | None = None, *, use_keyring: bool = True) -> None:
        self.folder = Path(folder) if folder else config_dir()
        self._keyring = _usable_keyring() if use_keyring else None
        self.backend = SecretBackend.KEYRING if self._keyring else SecretBackend.FILE

    @property
    def file_path(self) -> Path:
        return self.folder / "pacs-secrets.json"

    def _read_file(self) -> dict:
        try:
            return json.loads(self.file_path.read_text())
        except (OSError, ValueError):
            return {}

    def set(self, name: str, secret: str) -> None:
        """Store ``secret`` for ``name``."""
        if self._keyring:
            self._keyring.set_password(KEYRING_SERVICE, name, secret)
            return
        warnings.warn(f"no OS keyring available: the PACS secret is kept in {self.file_path} "
                      "(readable only by you)", PlaintextSecretsWarning, stacklevel=2)
        data = self._read_file()
        data[name] = secret
        _atomic_write(self.file_path, json.dumps(data))

    def get(self, name: str) -> str | None:
        """The secret of ``name``, or None."""
        if self._keyring:
            return self._keyring.get_password(KEYRING_SERVICE, name)
        return self._read_file().get(name)

    def delete(self, name: str) -> None:
        """Forget the secret of ``name``."""
        if self._keyring:
            try:
                self._keyring.delete_password(KEYRING_SERVICE, name)
            except Exception:
                pass
            return
        data = self._read_file()
        if data.pop(name, None) is not None:
            _atomic_write(self.file_path, json.dumps(data))
