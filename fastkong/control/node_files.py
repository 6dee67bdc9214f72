"""The files in a node's prefix through which the ``fastkong`` commands reach a running node.

Kong keeps nginx's pid in ``<prefix>/pids/nginx.pid`` and the running node's settings in
``<prefix>/.kong_env``; ``kong stop``, ``quit``, ``reload``, ``health`` and ``drain`` read them.
fastkong has no nginx: the process to signal is the supervisor, so:

* ``<prefix>/pids/fastkong.pid``: the supervisor's pid, one line, as nginx writes its own
  (what ``kill -USR1 $(cat ...)`` in a logrotate ``postrotate`` reads). Written at start,
  removed at a clean exit;
* ``<prefix>/node.json``: what the commands need beyond the pid, as JSON: the status
  listener's address and whether it is TLS (``drain`` posts there), the pid again with the
  process's start time (a pid the kernel has since given to another process is not taken for
  the node), the version. Left in place at exit, as Kong leaves ``.kong_env``.

A pid names the node while that process exists, is not a zombie, and (on Linux) started when
the node file says it did. A start refuses a prefix whose pid file names a running node, and
replaces a stale one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastkong import __version__

PID_FILE = Path("pids") / "fastkong.pid"
NODE_FILE = "node.json"


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks after boot (``/proc/<pid>/stat``, field 22);
    None where there is no ``/proc`` or no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: the fields follow its last ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].startswith("Z")


def is_running(pid: int, started: int | None = None) -> bool:
    """Whether ``pid`` is a live process (a zombie, which a parent has yet to reap, is not);
    with ``started``, only if it is the process that started then."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    if _zombie(pid):
        return False
    if started is not None:
        now = process_start(pid)
        return now is None or now == started
    return True


@dataclass(frozen=True)
class NodeInfo:
    """What ``node.json`` says about the node last started in a prefix."""

    pid: int
    started: int | None
    #: The status listener ``(host, port)``, None when ``status_listen`` is off.
    status: tuple[str, int] | None
    status_ssl: bool
    version: str

    def status_url(self, path: str) -> str | None:
        if self.status is None:
            return None
        host, port = self.status
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self.status_ssl else 'http'}://{shown}:{port}{path}"


class NodeFiles:
    """The pid and node files of one prefix."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.pid_path = prefix / PID_FILE
        self.node_path = prefix / NODE_FILE
        #: The pid this object wrote, so that only its own pid file is removed.
        self.claimed: int | None = None

    def __repr__(self) -> str:
        return f"<NodeFiles {self.prefix} pid={self.read_pid()} claimed={self.claimed}>"

    def read_pid(self) -> int | None:
        try:
            text = self.pid_path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def read_node(self) -> NodeInfo | None:
        try:
            data: dict[str, Any] = json.loads(self.node_path.read_text())
            status = data.get("status_listen")
            return NodeInfo(
                pid=int(data["pid"]),
                started=data.get("started"),
                status=(str(status[0]), int(status[1])) if status else None,
                status_ssl=bool(data.get("status_ssl")),
                version=str(data.get("version", "")),
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None

    def running_pid(self) -> int | None:
        """The pid of the node running in this prefix, else None (no pid file, or a stale
        one: its process is gone, or its pid was given to another process since)."""
        pid = self.read_pid()
        if pid is None:
            return None
        node = self.read_node()
        started = node.started if node is not None and node.pid == pid else None
        return pid if is_running(pid, started) else None

    def claim(self, status: tuple[str, int] | None, status_ssl: bool = False) -> None:
        """Write this process's pid and the node file (each replaced atomically)."""
        pid = os.getpid()
        node = {
            "pid": pid,
            "started": process_start(pid),
            "status_listen": list(status) if status is not None else None,
            "status_ssl": status_ssl,
            "version": __version__,
        }
        _write(self.node_path, json.dumps(node, indent=2) + "\n")
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        _write(self.pid_path, f"{pid}\n")
        self.claimed = pid

    def release(self) -> None:
        """Remove the pid file if it is still this process's."""
        if self.claimed is not None and self.read_pid() == self.claimed:
            self.pid_path.unlink(missing_ok=True)
        self.claimed = None


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
