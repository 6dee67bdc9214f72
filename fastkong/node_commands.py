"""Kong's node commands: ``fastkong stop|quit|reload|health|drain [-p PREFIX]``.

They follow ``kong/cmd/{stop,quit,reload,health,drain}.lua``: the same options, output lines
(with fastkong's name where Kong says its own) and exit codes, so that operators' scripts,
Kubernetes preStop hooks and logrotate configs written for Kong work. The node is found through
its prefix (``-p``/``--prefix``, else ``FASTKONG_PREFIX`` or ``KONG_PREFIX``): the supervisor's
pid in ``pids/fastkong.pid`` and its status listener in ``node.json``
(fastkong.control.node_files). An error is one ``Error: ...`` line on stderr and exit code 1,
as Kong's CLI prints it.

Where fastkong differs from nginx, and why: SIGTERM drains here (in-flight requests finish),
as SIGQUIT does, because TERM is what Kubernetes and systemd send; so ``stop`` waits for the
node to end, and ``quit``'s forced stop after its timeout can only be SIGKILL of the
supervisor, whose Granian and stream processes then stop because their parent died
(fastkong.control.lifeline).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fastkong.control.node_files import NodeFiles, is_running
from fastkong.kong_conf import parse_listeners

#: How often a command looks whether the node is still there (seconds).
POLL = 0.1
#: How long ``stop`` waits for a node to drain and end: the supervisor's own bound (its drain
#: timeout, 30 s, and 5 s to reap each Granian) and some slack.
STOP_WAIT = 60.0
#: Kong's ``status_listen`` default is off; fastkong's is this (``fastkong start``).
DEFAULT_STATUS_LISTEN = "127.0.0.1:8100"


class CommandError(Exception):
    """What stops a command: printed as Kong prints its CLI errors."""


def _env(name: str) -> str | None:
    return os.environ.get(f"FASTKONG_{name}") or os.environ.get(f"KONG_{name}")


def prefix_of(args: argparse.Namespace, must_exist: bool = True) -> Path:
    """The prefix the command is about; CommandError when none is given or it does not
    exist (Kong: ``no such prefix: <path>``)."""
    given = args.prefix or _env("PREFIX")
    if not given:
        raise CommandError(
            "no prefix given: use -p/--prefix PREFIX, or set FASTKONG_PREFIX (or KONG_PREFIX), "
            "as the node was started with (a node started without one says its temporary "
            "prefix in its first line)"
        )
    prefix = Path(os.path.abspath(given))
    if must_exist and not prefix.is_dir():
        raise CommandError(f"no such prefix: {prefix}")
    return prefix


def running_pid(prefix: Path) -> int:
    """The supervisor's pid; CommandError (Kong's words) when no node runs in ``prefix``."""
    pid = NodeFiles(prefix).running_pid()
    if pid is None:
        raise CommandError(f"fastkong not running in prefix: {prefix}")
    return pid


def wait_until(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
    return True


def signal_node(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError as exc:
        raise CommandError(f"could not send signal: {exc.strerror or exc}") from exc


def cmd_stop(args: argparse.Namespace) -> int:
    prefix = prefix_of(args)
    pid = running_pid(prefix)
    signal_node(pid, signal.SIGTERM)
    if not wait_until(lambda: not is_running(pid), STOP_WAIT):
        raise CommandError(f"fastkong (pid {pid}) still running {STOP_WAIT:.0f} s after SIGTERM")
    print("fastkong stopped")
    return 0


def cmd_quit(args: argparse.Namespace) -> int:
    prefix = prefix_of(args)
    pid = running_pid(prefix)
    if args.wait > 0:
        # Kong: the node must stay up for the wait; one that ends meanwhile is an error line.
        if wait_until(lambda: not is_running(pid), args.wait):
            print("Error: fastkong stopped while waiting (unexpected)", file=sys.stderr)
            return 0
    signal_node(pid, signal.SIGQUIT)
    if wait_until(lambda: not is_running(pid), max(args.timeout, 1.0)):  # Kong: 1 s at least
        print("fastkong stopped (gracefully)")
        return 0
    # SIGTERM drains here as SIGQUIT does: the only force left is SIGKILL of the supervisor.
    signal_node(pid, signal.SIGKILL)
    wait_until(lambda: not is_running(pid), 5.0)
    files = NodeFiles(prefix)
    if files.read_pid() == pid:
        files.pid_path.unlink(missing_ok=True)  # the killed supervisor could not
    print("Timeout, fastkong stopped forcefully")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    prefix = prefix_of(args)
    signal_node(running_pid(prefix), signal.SIGHUP)
    print("fastkong reloaded")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    prefix = prefix_of(args)
    files = NodeFiles(prefix)
    if not files.node_path.exists():
        raise CommandError(f"fastkong is not running at {prefix}")
    running = files.running_pid() is not None
    print("fastkong".ljust(12, ".") + ("running" if running else "not running"))
    print()
    if not running:
        raise CommandError(f"fastkong is not running at {prefix}")
    print(f"fastkong is healthy at {prefix}")
    return 0


def status_listener(args: argparse.Namespace) -> tuple[str, int, bool] | None:
    """(host, port, ssl) of the node's status listener: as the node in the prefix wrote it,
    else as ``status_listen`` is set here (Kong: the running node's ``.kong_env``, else the
    configuration); None when it is off."""
    given = args.prefix or _env("PREFIX")
    if given:
        node = NodeFiles(Path(os.path.abspath(given))).read_node()
        if node is not None:
            return (*node.status, node.status_ssl) if node.status is not None else None
    listeners = parse_listeners(_env("STATUS_LISTEN") or DEFAULT_STATUS_LISTEN, "status_listen")
    if not listeners:
        return None
    return listeners[0].host, listeners[0].port, listeners[0].ssl


def cmd_drain(args: argparse.Namespace) -> int:
    try:
        listener = status_listener(args)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    if listener is None:
        print("No status listeners found in configuration.")
        return 0
    host, port, tls = listener
    shown = f"[{host}]" if ":" in host else host
    url = f"{'https' if tls else 'http'}://{shown}:{port}/status/ready"
    connection: http.client.HTTPConnection
    if tls:  # Kong does not verify the status listener's certificate either
        connection = http.client.HTTPSConnection(
            host, port, timeout=1.0, context=ssl._create_unverified_context()
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=1.0)
    try:
        connection.request(
            "POST",
            "/status/ready",
            body=json.dumps({"status": "draining"}),
            headers={"Content-Type": "application/json"},
        )
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        # Kong's drain prints its failures and exits 0.
        print(f"Failed to send request to {url}: {exc}")
        return 0
    finally:
        connection.close()
    if status != 204:
        print(f"Unexpected response status from {url}: {status}")
        return 0
    print("fastkong's status successfully changed to 'draining'")
    return 0


def _run(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except CommandError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1

    return run


def _seconds(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The node commands, as subcommands of ``fastkong``."""
    prefix_help = "prefix the node runs at (or FASTKONG_PREFIX, KONG_PREFIX)"
    described = argparse.RawDescriptionHelpFormatter
    stop = sub.add_parser(
        "stop",
        help="stop the node in a prefix (SIGTERM: it drains, then ends)",
        formatter_class=described,
        description="Stop a running fastkong node in the given prefix directory.\n\n"
        "This command sends a SIGTERM signal to the supervisor, which drains (readiness\n"
        "turns 503, in-flight requests finish), and waits for the node to end.",
    )
    quit_ = sub.add_parser(
        "quit",
        help="gracefully quit the node in a prefix (SIGQUIT), forced after --timeout",
        formatter_class=described,
        description="Gracefully quit a running fastkong node in the given prefix directory.\n\n"
        "This command sends a SIGQUIT signal to the supervisor, meaning all requests will\n"
        "finish processing before shutting down. If the timeout delay is reached, the node\n"
        "is stopped forcefully: the supervisor is killed (SIGKILL; SIGTERM drains here as\n"
        "SIGQUIT does), and its Granian and stream processes stop as their parent died.",
    )
    quit_.add_argument(
        "-t", "--timeout", type=_seconds, default=10.0, help="timeout before forced shutdown"
    )
    quit_.add_argument(
        "-w",
        "--wait",
        type=_seconds,
        default=0.0,
        help="wait time before initiating the shutdown",
    )
    reload = sub.add_parser(
        "reload",
        help="have the node in a prefix read its declarative config again (SIGHUP)",
        formatter_class=described,
        description="Reload a fastkong node in the given prefix directory.\n\n"
        "This command sends a HUP signal to the supervisor, which reads the declarative\n"
        "config file again: a valid one is served by every worker (in-flight requests\n"
        "finish on the old one), an invalid one changes nothing and is reported in the\n"
        "log and in GET /status.",
    )
    health = sub.add_parser(
        "health",
        help="check that the node in a prefix is running (exit 1 when not)",
        description="Check if the necessary services are running for this node.",
    )
    drain = sub.add_parser(
        "drain",
        help="make the status listener's /status/ready answer 503 (traffic is still served)",
        description="Make the status listener's /status/ready return 503 Service Unavailable "
        "(POST /status/ready with status=draining); the node goes on serving.",
    )
    commands = ((stop, cmd_stop), (quit_, cmd_quit), (reload, cmd_reload),
                (health, cmd_health), (drain, cmd_drain))  # fmt: skip
    for parser, command in commands:
        parser.add_argument("-p", "--prefix", help=prefix_help)
        parser.set_defaults(func=_run(command))
