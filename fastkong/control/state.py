"""The state file: how the supervisor hands a validated config to every Granian worker.

Granian workers are processes, so the config a node serves must cross a process boundary. The
supervisor validates a config once and writes the normalized tree (msgpack, so a worker decodes
it in milliseconds without re-validating) to one file, atomically: write a temporary file, then
``rename`` over the old one. Each worker polls the file's identity (inode, size, mtime) a few
times a second and rebuilds its runtime when it changes; a worker never sees half a file.

Each worker then writes a small report file (``worker-<pid>``) with the hash it serves, so the
status listener can tell when every worker has the new config.

The payload is chunked: every entity list is stored as msgpack blobs of at most ``CHUNK``
entities. A worker decodes them one by one in a thread, so a 10,000-route config never holds
the interpreter lock for one long decode and the event loop keeps serving while it loads; and
a worker can tell from the raw bytes which sections did not change (``section_digest``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from fastkong.background import pace
from fastkong.config import Config
from fastkong.config.schema import ENTITY_STRUCTS

_MAGIC = b"fastkong-state-2\n"
CHUNK = 500
_encoder = msgspec.msgpack.Encoder()
_decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {
    name: msgspec.msgpack.Decoder(list[cls])  # type: ignore[valid-type]  # a runtime type
    for name, cls in ENTITY_STRUCTS.items()
}


class StatePayload(msgspec.Struct, frozen=True):
    """The state file's body: scalar fields, then each entity list as chunks of msgpack."""

    format_version: str
    transform: bool
    sections: dict[str, list[bytes]]


_payload_decoder = msgspec.msgpack.Decoder(StatePayload)


def encode_state(config: Config) -> bytes:
    sections = {}
    for name in ENTITY_STRUCTS:
        items = getattr(config, name)
        sections[name] = [
            _encoder.encode(items[i : i + CHUNK]) for i in range(0, len(items), CHUNK)
        ]
    return _encoder.encode(StatePayload(config.format_version, config.transform, sections))


def decode_state(data: bytes) -> tuple[Config, dict[str, str]]:
    """The config and a digest per entity section (equal digests: the section is unchanged)."""
    payload = _payload_decoder.decode(data)
    fields: dict[str, Any] = {}
    digests: dict[str, str] = {}
    for name, chunks in payload.sections.items():
        decoder = _decoders[name]
        items: list[Any] = []
        for chunk in chunks:
            pace()
            items.extend(decoder.decode(chunk))
        fields[name] = items
        digests[name] = hashlib.md5(b"".join(chunks)).hexdigest()
    config = Config(format_version=payload.format_version, transform=payload.transform, **fields)
    return config, digests


def write_state(path: Path, config_hash: str, config: Config) -> None:
    """Atomically replace the state file at ``path``."""
    payload = _MAGIC + config_hash.encode() + b"\n" + encode_state(config)
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_state(path: Path) -> tuple[str, Config, dict[str, str]]:
    """``(hash, config, section digests)`` from the state file at ``path``."""
    data = path.read_bytes()
    if not data.startswith(_MAGIC):
        raise ValueError(f"{path}: not a fastkong state file")
    rest = data[len(_MAGIC) :]
    config_hash, _, payload = rest.partition(b"\n")
    config, digests = decode_state(payload)
    return config_hash.decode(), config, digests


def file_identity(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is replaced; None when it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def write_report(state_dir: Path, pid: int, config_hash: str) -> None:
    """Record which config hash worker ``pid`` serves."""
    target = state_dir / f"worker-{pid}"
    tmp = state_dir / f".worker-{pid}.tmp"
    tmp.write_text(config_hash)
    os.replace(tmp, target)


def read_reports(state_dir: Path) -> dict[int, str]:
    """``{pid: hash}`` for every worker report whose process is still alive."""
    reports: dict[int, str] = {}
    for entry in state_dir.glob("worker-*"):
        try:
            pid = int(entry.name.removeprefix("worker-"))
            os.kill(pid, 0)
            reports[pid] = entry.read_text()
        except (ValueError, ProcessLookupError, FileNotFoundError):
            continue
        except PermissionError:
            reports[pid] = entry.read_text()
    return reports
