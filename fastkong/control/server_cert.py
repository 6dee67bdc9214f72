"""The ``ssl_cert`` and ``ssl_cert_key`` settings, read as Kong's conf loader reads them.

Each setting is a comma-separated list (Kong serves an RSA and an ECDSA pair side by side), and
each entry is a file path, else the PEM text itself, else that text base64-encoded (how Kong's
Helm chart and operators pass a Secret through an environment variable). Kong checks the
entries at start and refuses to start with every error at once; so does this module, and it
also loads each pair the way the TLS server will, so a key that does not belong to its
certificate stops the start here instead of killing the listener's process later.

Every pair is served by the edge (fastkong's own TLS, the default for ``ssl`` proxy listeners)
and by ``ssl`` stream listeners: all pairs go into one server context, and OpenSSL picks the one
whose key type the client supports, as nginx does with several ``ssl_certificate`` lines.
Granian's own TLS (``--ssl-termination granian``) serves one certificate per listener: the first
pair, and the start says so when more were given. Entries given as text are written under the
state directory (mode 0600), since the servers take paths.

:class:`ServedCertificate` keeps the served pairs as fastkong's own files. Granian resolves the
paths it is given once, at start; in Kubernetes those are symlinks into a Secret volume whose
``..data`` swap (a renewed certificate) deletes the directory they resolved to, so a worker
respawned after it would find no files and the listener would die. From fastkong's copies a
respawn always starts; and when the given files change, the new pair is checked, copied over,
and the workers are replaced one by one (Kong needs a ``kong reload`` for that).
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from pathlib import Path

from fastkong.control.state import file_identity
from fastkong.kong_conf import pem_text

log = logging.getLogger("fastkong")


def _entries(value: str) -> list[str]:
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def server_certificates(cert: str, key: str, directory: Path) -> list[tuple[str, str]]:
    """Every (certificate, key) pair as file paths, each checked to load as a server pair.

    ValueError with one line per problem, Kong's wording where Kong has one.
    """
    certs, keys = _entries(cert), _entries(key)
    if len(certs) != len(keys):
        raise ValueError(
            f"ssl_cert was specified {len(certs)} times while "
            f"ssl_cert_key was specified {len(keys)} times"
        )
    errors: list[str] = []
    pairs: list[tuple[str, str]] = []
    for index, (cert_entry, key_entry) in enumerate(zip(certs, keys, strict=True)):
        cert_path = _as_file(cert_entry, directory / "ssl" / f"ssl-cert-{index}.crt")
        key_path = _as_file(key_entry, directory / "ssl" / f"ssl-cert-{index}.key")
        if cert_path is None:
            errors.append(f"ssl_cert: failed loading certificate from {cert_entry}")
        if key_path is None:
            errors.append(f"ssl_cert_key: failed loading key from {key_entry}")
        if cert_path is None or key_path is None:
            continue
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, OSError) as exc:
            errors.append(
                f"ssl_cert: cannot use {_label(cert_entry, index)} with the key "
                f"{_label(key_entry, index)}: {getattr(exc, 'reason', None) or exc}"
            )
            continue
        pairs.append((cert_path, key_path))
    if errors:
        raise ValueError("\n".join(errors))
    return pairs


def _as_file(entry: str, spill: Path) -> str | None:
    """``entry`` as a path to read: itself when it names a file, else its PEM text written to
    ``spill``; None when it is neither."""
    if os.path.isfile(entry):
        return entry
    pem = pem_text(entry)
    if pem is None:
        return None
    spill.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(spill, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return str(spill)


def _label(entry: str, index: int) -> str:
    """How a message names an entry: its path, or its place in the list when it is PEM text."""
    return entry if os.path.isfile(entry) else f"entry {index + 1} (PEM text)"


class ServedCertificate:
    """The pairs the ssl listeners serve, as stable files of fastkong's, following the given
    files (see the module docstring). The first pair is ``cert_path``/``key_path``."""

    def __init__(self, cert: str, key: str, directory: Path) -> None:
        self.settings = (cert, key)
        self.directory = directory
        self.ssl_dir = directory / "ssl"
        self.cert_path, self.key_path = self.served_pair(0)
        #: The given files (an entry that is PEM text never changes).
        self.sources = [Path(e) for e in (_entries(cert) + _entries(key)) if os.path.isfile(e)]
        self.identities: list[tuple[int, int, int] | None] = []
        self.count = 0
        self.loaded_at: float | None = None
        self.reloads = {"success": 0, "failure": 0}
        self.last_error: list[str] | None = None

    def __repr__(self) -> str:
        return (
            f"<ServedCertificate {self.cert_path} pairs={self.count} reloads={self.reloads} "
            f"error={bool(self.last_error)}>"
        )

    def served_pair(self, index: int) -> tuple[Path, Path]:
        """Where the ``index``-th given pair is served from."""
        stem = "served" if index == 0 else f"served-{index}"
        return self.ssl_dir / f"{stem}.crt", self.ssl_dir / f"{stem}.key"

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Every served pair's (certificate, key) paths, in the given order."""
        return [(str(c), str(k)) for c, k in map(self.served_pair, range(self.count))]

    def load(self) -> bool:
        """Check every given pair (ValueError as :func:`server_certificates`) and copy them
        over the served files; True if what is served changed."""
        self.identities = [file_identity(path) for path in self.sources]
        given = [
            tuple(Path(path).read_bytes() for path in pair)
            for pair in server_certificates(*self.settings, self.directory)
        ]
        served = [self.served_pair(i) for i in range(len(given))]
        same = all(
            _read(cert_path) == cert and _read(key_path) == key
            for (cert_path, key_path), (cert, key) in zip(served, given, strict=True)
        )
        if self.loaded_at is not None and same:
            return False
        for (cert_path, key_path), (cert, key) in zip(served, given, strict=True):
            # The key first: a pair read between the two replacements is the old certificate
            # with the new key, which fails to load, rather than an accepted mismatched pair.
            _replace(key_path, key)
            _replace(cert_path, cert)
        self.count = len(given)
        self.loaded_at = time.time()
        return True

    def refresh(self) -> bool:
        """Reload when a given file changed; True if the served pair changed (the workers must
        be replaced). A pair that does not load is reported and the served one kept."""
        if [file_identity(path) for path in self.sources] == self.identities:
            return False
        try:
            changed = self.load()
        except (ValueError, OSError) as exc:
            self.last_error = str(exc).splitlines()
            self.reloads["failure"] += 1
            log.error(
                "ssl certificate change rejected, still serving the previous pair: %s",
                "; ".join(self.last_error),
            )
            return False
        self.last_error = None
        if changed:
            self.reloads["success"] += 1
        return changed

    def status(self) -> dict[str, object]:
        return {
            "loaded_at": self.loaded_at,
            "reloads": self.reloads,
            "last_error": self.last_error,
        }


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _replace(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
