"""The node's ``GET /`` (status and admin listeners), in the shape of Kong's
(``kong/api/routes/kong.lua``), from the supervisor's options and state."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

from fastkong import __version__, plugins
from fastkong.control.admin import KONG_VERSION
from fastkong.control.state import read_reports
from fastkong.kong_conf import Listener
from fastkong.proxy.upstream import keepalive_settings, proxy_buffer_size_settings

if TYPE_CHECKING:
    from fastkong.control.supervisor import Supervisor


def _listener_info(listener: Listener) -> dict[str, Any]:
    """A ``proxy_listeners`` entry of Kong's ``GET /``: the address, the ``listener`` text and a
    boolean per flag (the named ones always present, a ``backlog=N`` one when given)."""
    info: dict[str, Any] = {
        "ip": listener.host,
        "port": listener.port,
        "listener": str(listener),
    }
    for flag in ("ssl", "http2", "proxy_protocol", "deferred", "bind", "reuseport"):
        info[flag] = flag in listener.flags
    info.update(dict.fromkeys((flag for flag in listener.flags if "=" in flag), True))
    return info


def node_info(supervisor: Supervisor) -> dict[str, Any]:
    """``GET /`` in the shape of Kong's (``kong/api/routes/kong.lua``): what decK and KIC
    read (``version``, ``configuration.database``, ``router_flavor``, the plugins) and the
    node's identity; ``fastkong`` says what really answers."""
    config = supervisor.current_config()
    enabled = list(dict.fromkeys(p.name for p in config.plugins)) if config else []
    available = {}
    for name in plugins.registry.names():
        spec = plugins.registry.lookup(name)
        assert spec is not None
        available[name] = {"version": __version__, "priority": spec.priority}
    workers = sorted(read_reports(supervisor.state_dir))
    return {
        "tagline": "Welcome to kong",
        "version": KONG_VERSION,
        "edition": "community",
        "hostname": socket.gethostname(),
        "node_id": supervisor.node_id,
        "plugins": {"available_on_server": available, "enabled_in_cluster": enabled},
        "configuration": {
            "database": "off",
            "role": "traditional",
            "router_flavor": supervisor.options.router_flavor,
            "trusted_ips": [
                x.strip() for x in supervisor.options.trusted_ips.split(",") if x.strip()
            ],
            "headers": [x.strip() for x in supervisor.options.headers.split(",") if x.strip()],
            "headers_upstream": [
                x.strip() for x in supervisor.options.headers_upstream.split(",") if x.strip()
            ],
            "error_default_type": supervisor.options.error_default_type,
            "allow_debug_header": supervisor.options.allow_debug_header,
            "proxy_access_log": supervisor.options.proxy_access_log,
            "proxy_stream_access_log": supervisor.options.proxy_stream_access_log,
            **keepalive_settings(os.environ),
            **proxy_buffer_size_settings(os.environ),  # as given, as Kong reports them
            "real_ip_header": supervisor.options.real_ip_header,
            "real_ip_recursive": supervisor.options.real_ip_recursive,
            "proxy_listen": [str(listener) for listener in supervisor.options.proxy],
            "proxy_listeners": [_listener_info(x) for x in supervisor.options.proxy],
            "stream_listen": [str(x) for x in supervisor.options.stream] or ["off"],
            "stream_listeners": [_listener_info(x) for x in supervisor.options.stream],
            "loaded_plugins": dict.fromkeys(available, True),
            "nginx_worker_processes": str(supervisor.options.workers),
        },
        "pids": {"master": os.getpid(), "workers": workers},
        "fastkong": {"version": __version__},
    }
