"""The ``ssl_cert`` and ``ssl_cert_key`` settings, read as Kong's conf loader reads them.

Each setting is a comma-separated list (Kong serves an RSA and an ECDSA pair side by side), and
each entry is a file path, else the PEM text itself, else that text base64-encoded (how Kong's
Helm chart and operators pass a Secret through an environment variable). Kong checks the
entries at start and refuses to start with every error at once; so does this module, and it
also loads each pair the way the TLS server will, so a key that does not belong to its
certificate stops the start here instead of killing the listener's process later.

Granian serves one certificate per listener: the first pair is served, and the start says so
when more were given. Entries given as text are written under the state directory (mode 0600),
since the server takes paths.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from fastkong.kong_conf import pem_text


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
