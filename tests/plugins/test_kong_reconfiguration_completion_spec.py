"""What Kong's ``spec/03-plugins/39-reconfiguration-completion/01-access_spec.lua`` (lines 5-186)
checks, as far as fastkong's DB-less node shows it: a posted configuration is served once every
worker has it, and the node says which configuration it serves.

Kong's spec drives ``reconfiguration-completion``, a test plugin of its own
(``spec/fixtures/custom_plugins/kong/plugins/reconfiguration-completion``): a client sends
``If-Kong-Configuration-Version`` and gets 503 ``X-Kong-Reconfiguration-Status: pending`` with
``Retry-After`` until the worker runs the plugin config carrying that version. fastkong has no
such plugin and no ``X-Kong-Configuration-Version`` mechanism (nothing in ``fastkong/`` reads
those headers): that part is left out, not invented. What the spec observes through it — the
new route and the global ``request-termination`` answering once the reconfiguration completed —
is ported through DB-less ``POST /config`` (Kong's ``kong/api/routes/config.lua``) and the
configuration hash Kong reports in ``/status`` (``configuration_hash``: the md5 of the posted
text, ``kong/db/declarative/init.lua:149``), with ``/status/ready`` (200 once every worker runs
the current config) in place of the plugin's ``pending`` answer. The gateway runs two workers
(Kong's spec: ``worker_consistency = eventual``).

Left out:
- the plugin's headers (``If-Kong-Configuration-Version``, ``X-Kong-Reconfiguration-Status``,
  ``Retry-After``): a custom Lua test plugin fastkong does not have (see above);
- the ``#hybrid mode`` block: control plane / data plane needs a database and Kong's clustering;
- the Admin API writes (``POST /plugins``, ``PATCH /plugins/{id}``, ``POST /services``): a
  database's; DB-less, each step is a whole config posted to ``/config``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import Gateway, eventually

pytestmark = pytest.mark.integration

TERMINATED = "kong terminated the request"


def config_text(paths: list[str], plugins: list[dict[str, Any]] | None = None) -> str:
    """The spec's setup as one config: a global ``request-termination`` (200, Kong's body),
    ``test-service`` and a route per path."""
    return json.dumps(
        {
            "_format_version": "3.0",
            "plugins": [
                {
                    "name": "request-termination",
                    "config": {"status_code": 200, "body": TERMINATED},
                },
                *(plugins or []),
            ],
            "services": [
                {
                    "name": "test-service",
                    "url": "http://127.0.0.1",
                    "routes": [{"name": f"r{p.strip('/')}", "paths": [p]} for p in paths],
                }
            ],
        },
        indent=1,
    )


class Node:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.admin = httpx.Client(base_url=f"http://127.0.0.1:{gateway.admin_port}", timeout=30)
        self.proxy = httpx.Client(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10)
        self.status = httpx.Client(base_url=f"http://127.0.0.1:{gateway.status_port}", timeout=10)

    def post(self, text: str, query: str = "") -> httpx.Response:
        return self.admin.post("/config" + query, json={"config": text})

    def serving(self, text: str) -> bool:
        """The node reports ``text``'s hash and every worker runs it."""
        digest = hashlib.md5(text.encode()).hexdigest()
        reported = self.status.get("/status").json()["configuration_hash"]
        return reported == digest and self.status.get("/status/ready").status_code == 200

    def close(self) -> None:
        for client in (self.admin, self.proxy, self.status):
            client.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    gw = Gateway(tmp_path_factory.mktemp("reconfiguration"), config_text([]), 2)
    try:
        gw.start()
        n = Node(gw)
        yield n
        n.close()
    finally:
        gw.stop()


def test_each_posted_config_is_served_once_the_reconfiguration_completes(node: Node) -> None:
    """Spec lines 12-111 (``plugin_tests``, run by the traditional block at line 135): each
    round adds a route, then the route answers through the global ``request-termination`` once
    every worker has the new config."""
    paths: list[str] = []
    for round_ in range(1, 4):
        paths.append(f"/{round_}")
        text = config_text(paths)
        res = node.post(text)
        assert res.status_code == 201, res.text
        eventually(lambda text=text: node.serving(text), timeout=20)
        for _ in range(4):  # two workers: each answers with the new config
            res = node.proxy.get(paths[-1])
            assert (res.status_code, res.text) == (200, TERMINATED)


def test_the_same_config_with_check_hash_is_not_loaded_again(node: Node) -> None:
    """Kong's ``check_hash=1`` (config.lua:132): the text of the config in service is a 304."""
    text = config_text(["/same"])
    assert node.post(text).status_code == 201
    eventually(lambda: node.serving(text), timeout=20)
    res = node.post(text, "?check_hash=1")
    assert (res.status_code, res.content) == (304, b"")
    assert node.serving(text)


def test_a_config_naming_the_test_plugin_is_refused_and_the_last_one_stays(node: Node) -> None:
    """fastkong has no ``reconfiguration-completion``: a config naming it is Kong's error for a
    plugin not enabled, and the node keeps serving the config it had."""
    text = config_text(["/kept"])
    assert node.post(text).status_code == 201
    eventually(lambda: node.serving(text), timeout=20)
    refused = config_text(
        ["/kept", "/new"],
        [{"name": "reconfiguration-completion", "config": {"version": "1"}}],
    )
    res = node.post(refused)
    assert res.status_code == 400
    body = res.json()
    assert body["name"] == "invalid declarative configuration"
    assert body["fields"]["plugins"][1] == {
        "name": "plugin 'reconfiguration-completion' not enabled; add it to the 'plugins'"
        " configuration property"
    }
    assert node.serving(text)
    assert node.proxy.get("/kept").text == TERMINATED
    assert node.proxy.get("/new").status_code == 404
