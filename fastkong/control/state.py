"""The state file: how the supervisor hands a validated config to every Granian worker.

Granian workers are processes, so the config a node serves must cross a process boundary. The
supervisor validates a config once and writes the normalized tree (msgpack, so a worker decodes
it in milliseconds without re-validating) to one file, atomically: write a temporary file, then
``rename`` over the old one. Each worker polls the file's identity (inode, size, mtime) a few
times a second and rebuilds its runtime when it changes; a worker never sees half a file.

Each worker then writes a small report file (``worker-<pid>``) with the hash it serves, so the
status listener can tell when every worker has the new config.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fastkong.config import Config, dump_state, load_state

_MAGIC = b"fastkong-state-1\n"


def write_state(path: Path, config_hash: str, config: Config) -> None:
    """Atomically replace the state file at ``path``."""
    payload = _MAGIC + config_hash.encode() + b"\n" + dump_state(config)
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_state(path: Path) -> tuple[str, Config]:
    """``(hash, config)`` from the state file at ``path``."""
    data = path.read_bytes()
    if not data.startswith(_MAGIC):
        raise ValueError(f"{path}: not a fastkong state file")
    rest = data[len(_MAGIC) :]
    config_hash, _, payload = rest.partition(b"\n")
    return config_hash.decode(), load_state(payload)


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
