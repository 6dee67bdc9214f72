"""The servers under test, how each is started, and the tools they need.

Every server listens on a free 127.0.0.1 port and gets the same worker count as the others in its
scenario: nginx ``worker_processes``, HAProxy ``nbthread``, Caddy ``GOMAXPROCS``, the aiohttp
baseline's forked processes, fastkong's ``--workers``. Configs, pid files, logs and any state go
to the harness's temporary directory. A missing tool is never installed: :func:`find_tools`
reports it with the command that installs it, and the harness leaves its legs out.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.procs import BenchError, Server, free_port, spawn, wait_port, wait_ready

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent

BODY = b"Hello, World!"
SIZES = {"/1k": 1024, "/100k": 100 * 1024}
API_KEY = "bench-key"

INSTALL_HINT = {
    "wrk": "apt-get install -y wrk",
    "nginx": "apt-get install -y nginx",
    "haproxy": "apt-get install -y haproxy",
    "caddy": "apt-get install -y caddy",
    "redis-server": "apt-get install -y redis-server",
    "aiohttp": "pip install aiohttp",
    "matplotlib": "pip install matplotlib",
}


def sized_body(size: int) -> bytes:
    """The upstream's answer at /1k and /100k: printable, and different at every offset."""
    line = b"".join(b"%07d " % i for i in range(size // 8 + 1))
    return line[:size]


def find_tools() -> dict[str, str | None]:
    """Where each tool is (None: not installed). nginx and friends live in /usr/sbin, which is
    not on every user's PATH."""
    found: dict[str, str | None] = {}
    for name in ("wrk", "nginx", "haproxy", "caddy", "redis-server"):
        found[name] = shutil.which(name) or shutil.which(
            name, path="/usr/local/sbin:/usr/sbin:/sbin"
        )
    for module in ("aiohttp", "matplotlib"):
        found[module] = module if importlib.util.find_spec(module) else None
    return found


def render(template: Path, **values: object) -> str:
    text = template.read_text()

    def fill(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise BenchError(f"{template}: no value for {m.group(0)}")
        return str(values[m.group(1)])

    return re.sub(r"\{\{(\w+)\}\}", fill, text)


@dataclass
class Running:
    """A started server: where it answers, and every process tree its CPU is charged to."""

    key: str
    server: Server
    port: int
    ready_url: str
    scheme: str = "http"

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"


def route_paths(n: int) -> list[str]:
    """The request paths of the route-table scenarios: one per route, ``/rI/item``."""
    return [f"/r{i}/item" for i in range(n)]


class Fleet:
    """Starts servers once each (by key) and stops them all when ``stack`` closes."""

    def __init__(
        self, tools: dict[str, str | None], workdir: Path, stack: contextlib.ExitStack
    ) -> None:
        self.tools = tools
        self.workdir = workdir
        self.stack = stack
        self.running: dict[str, Running] = {}
        self._pending: list[Running] = []
        self.upstream_port = free_port()
        self.redis_port: int | None = None
        self.redis_server: Server | None = None

    def servers(self) -> list[Server]:
        out = [run.server for run in self.running.values()]
        return out + ([self.redis_server] if self.redis_server else [])

    def _add(self, run: Running) -> Running:
        self.stack.callback(run.server.stop)
        self.running[run.key] = run
        self._pending.append(run)
        return run

    def wait(self) -> None:
        """Block until everything started so far answers."""
        for run in self._pending:
            wait_ready(run.server, run.ready_url, timeout=60.0)
        self._pending.clear()

    # --- upstream and Redis ------------------------------------------------------------------

    def upstream(self) -> Running:
        if "upstream" in self.running:
            return self.running["upstream"]
        port = self.upstream_port
        nginx = self.tools.get("nginx")
        if nginx:
            # Run as root, nginx serves files as `nobody`: the (0700) work directory must let
            # it in. Nothing secret lives there.
            self.workdir.chmod(0o755)
            for path, size in SIZES.items():
                body = self.workdir / f"body-{path[1:]}"
                body.write_bytes(sized_body(size))
                body.chmod(0o644)
            server = self._nginx(nginx, "upstream", "upstream.conf", port=port)
        else:  # only in --smoke: the bundled asyncio echo upstream stands in
            cmd = [sys.executable, "-m", "fastkong.echo", "--port", str(port), "--name", "bench"]
            server = spawn("upstream-echo", cmd, self.workdir, cwd=ROOT)
        return self._add(Running("upstream", server, port, f"http://127.0.0.1:{port}/static"))

    def redis(self) -> Server:
        """A throwaway redis-server for the redis policy (no persistence, loopback only)."""
        port = self.redis_port = free_port()
        cmd = [
            str(self.tools["redis-server"]),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]
        server = spawn("redis", cmd, self.workdir)
        self.stack.callback(server.stop)
        wait_port(server, port)
        return server

    # --- peers -----------------------------------------------------------------------------------

    def _nginx(self, nginx: str, name: str, template: str, **values: object) -> Server:
        conf = self.workdir / f"{name}.conf"
        conf.write_text(
            render(BENCH / "nginx" / template, prefix=self.workdir, name=name, **values)
        )
        # -e: nginx opens its error log before reading the config; keep even that out of /var/log.
        log = self.workdir / f"{name}-error.log"
        cmd = [nginx, "-p", str(self.workdir), "-e", str(log), "-c", str(conf)]
        return spawn(name, cmd, self.workdir)

    def certificate(self) -> tuple[Path, Path]:
        """The TLS scenario's certificate and key (fastkong's generated default: ECDSA P-256,
        self-signed), one pair for every TLS server of the run."""
        if str(ROOT) not in sys.path:  # the harness runs from bench/, fastkong from the checkout
            sys.path.insert(0, str(ROOT))
        from fastkong.control.default_cert import default_certificate

        return default_certificate(self.workdir)

    def nginx(self, workers: int, routes: int = 0, tls: bool = False) -> Running:
        key = f"nginx-{workers}w" + (f"-{routes}routes" if routes else "")
        key += "-tls" if tls else ""
        if key in self.running:
            return self.running[key]
        if routes:
            locations = "\n".join(
                f"        location /r{i} {{ proxy_pass http://bench_upstream; }}"
                for i in range(routes)
            )
        else:
            locations = "        location / { proxy_pass http://bench_upstream; }"
        port = free_port()
        listen_flags, tls_lines = "", ""
        if tls:
            cert, cert_key = self.certificate()
            listen_flags = " ssl"
            tls_lines = (
                f"        ssl_certificate {cert};\n        ssl_certificate_key {cert_key};\n"
                "        ssl_protocols TLSv1.2 TLSv1.3;"
            )
        server = self._nginx(
            str(self.tools["nginx"]),
            key,
            "proxy.conf",
            port=port,
            workers=workers,
            upstream_port=self.upstream_port,
            locations=locations,
            listen_flags=listen_flags,
            tls=tls_lines,
        )
        scheme = "https" if tls else "http"
        ready = f"{scheme}://127.0.0.1:{port}" + ("/r0/item" if routes else "/static")
        return self._add(Running(key, server, port, ready, scheme))

    def _peer(self, key: str, start: Callable[[int], Server]) -> Running:
        """Start a peer once (by key): ``start(port)`` launches it on a free port."""
        if key in self.running:
            return self.running[key]
        port = free_port()
        server = start(port)
        return self._add(Running(key, server, port, f"http://127.0.0.1:{port}/static"))

    def _python_peer(
        self,
        key: str,
        argv: Callable[[int], list[str]],
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> Running:
        """A Python proxy: ``argv(port)`` is its command after the interpreter."""
        return self._peer(
            key,
            lambda port: spawn(key, [sys.executable, *argv(port)], self.workdir, cwd=cwd, env=env),
        )

    def haproxy(self, workers: int) -> Running:
        key = f"haproxy-{workers}w"

        def start(port: int) -> Server:
            conf = self.workdir / f"{key}.cfg"
            template = BENCH / "haproxy" / "proxy.cfg"
            conf.write_text(
                render(template, port=port, workers=workers, upstream_port=self.upstream_port)
            )
            cmd = [str(self.tools["haproxy"]), "-db", "-f", str(conf)]
            return spawn(key, cmd, self.workdir)

        return self._peer(key, start)

    def caddy(self, workers: int) -> Running:
        key = f"caddy-{workers}w"

        def start(port: int) -> Server:
            conf = self.workdir / f"{key}.Caddyfile"
            template = BENCH / "caddy" / "Caddyfile"
            conf.write_text(
                render(template, port=port, upstream_port=self.upstream_port, prefix=self.workdir)
            )
            home = self.workdir / key
            home.mkdir(exist_ok=True)
            env = {
                "GOMAXPROCS": str(workers),
                "HOME": str(home),
                "XDG_CONFIG_HOME": str(home / "config"),
                "XDG_DATA_HOME": str(home / "data"),
            }
            cmd = [str(self.tools["caddy"]), "run", "--config", str(conf), "--adapter", "caddyfile"]
            return spawn(key, cmd, self.workdir, env=env)

        return self._peer(key, start)

    def floor(self, workers: int, interface: str = "rsgi") -> Running:
        """The least a Python proxy on Granian does per request (bench/floor_proxy.py), over
        RSGI or (``interface="asgi"``) ASGI."""
        granian = ["-c", "from granian.cli import cli; cli()", "--interface", interface]
        granian += ["--runtime-mode", "st", "--loop", "uvloop", "--http", "1"]
        app = "floor_proxy:app" if interface == "rsgi" else "floor_proxy:asgi_app"
        return self._python_peer(
            f"floor-{workers}w" if interface == "rsgi" else f"floor-{interface}-{workers}w",
            lambda port: [
                *granian,
                *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
                *("--log-level", "warning", app),
            ],
            BENCH,
            {"FLOOR_UPSTREAM": f"127.0.0.1:{self.upstream_port}"},
        )

    def aiohttp(self, workers: int) -> Running:
        upstream = f"127.0.0.1:{self.upstream_port}"
        return self._python_peer(
            f"aiohttp-{workers}w",
            lambda port: [
                str(BENCH / "aiohttp_proxy.py"),
                *("--port", str(port), "--upstream", upstream, "--workers", str(workers)),
            ],
            ROOT,
        )

    def fastkong(
        self,
        workers: int,
        routes: int = 0,
        auth: bool = False,
        redis: bool = False,
        tls: bool = False,
        root: Path = ROOT,
        ssl_termination: str = "fastkong",
    ) -> Running:
        """fastkong with ``routes`` prefix routes, or (0) the main config: /static, /1k, /100k,
        with ``auth`` /auth (key-auth + rate-limiting local), with ``redis`` /rl-redis
        (rate-limiting, redis policy, against a redis-server started here); from the checkout
        ``root`` (this one unless told)."""
        key = (
            f"fastkong-{workers}w"
            + (f"-{routes}routes" if routes else "")
            + ("-tls" if tls else "")
            + ("-granian" if ssl_termination != "fastkong" else "")
            + (f"-{root.name}-{abs(hash(root)) % 10_000}" if root != ROOT else "")
        )
        if key in self.running:
            return self.running[key]
        if routes:
            paths = [f"/r{i}" for i in range(routes)]
        else:
            paths = ["/static", *SIZES]
        service: dict[str, object] = {
            "name": "bench-upstream",
            "url": f"http://127.0.0.1:{self.upstream_port}",
            "routes": [
                {"name": f"route{i}", "paths": [p], "strip_path": False}
                for i, p in enumerate(paths)
            ],
        }
        config: dict[str, object] = {"_format_version": "3.0", "services": [service]}
        routes_list = service["routes"]
        assert isinstance(routes_list, list)
        if auth and not routes:
            routes_list.append(
                {
                    "name": "auth-rl",
                    "paths": ["/auth"],
                    "strip_path": False,
                    "plugins": [
                        {"name": "key-auth"},
                        {
                            "name": "rate-limiting",
                            "config": {"minute": 1_000_000_000, "policy": "local"},
                        },
                    ],
                }
            )
            config["consumers"] = [{"username": "bench", "keyauth_credentials": [{"key": API_KEY}]}]
        if redis and not routes:
            self.redis_server = self.redis()
            routes_list.append(
                {
                    "name": "rl-redis",
                    "paths": ["/rl-redis"],
                    "strip_path": False,
                    "plugins": [
                        {
                            "name": "rate-limiting",
                            "config": {
                                "minute": 1_000_000_000,
                                "policy": "redis",
                                "redis": {"host": "127.0.0.1", "port": self.redis_port},
                            },
                        }
                    ],
                }
            )
        conf = self.workdir / f"{key}.yml"
        conf.write_text(json.dumps(config, indent=1))  # JSON is YAML
        port, status_port = free_port(), free_port()
        cmd = [
            sys.executable,
            "-m",
            "fastkong",
            "start",
            "-c",
            str(conf),
            "--proxy-listen",
            f"127.0.0.1:{port}" + (" ssl" if tls else ""),
            "--status-listen",
            f"127.0.0.1:{status_port}",
            "--admin-listen",
            "off",
            "--workers",
            str(workers),
            "--prefix",
            str(self.workdir / key),
        ]
        if tls:
            cert, cert_key = self.certificate()
            cmd += ["--ssl-cert", str(cert), "--ssl-key", str(cert_key)]
            cmd += ["--ssl-termination", ssl_termination]
        env = {"PYTHONPATH": str(root)} if root != ROOT else None
        server = spawn(key, cmd, self.workdir, cwd=root, env=env)
        ready = f"http://127.0.0.1:{status_port}/status/ready"
        return self._add(Running(key, server, port, ready, "https" if tls else "http"))
