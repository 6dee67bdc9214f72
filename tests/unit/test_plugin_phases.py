"""Which hooks of a request's effective chain run in the buffered, response, body and log
phases."""

from __future__ import annotations

from fastkong.plugins.chain import PluginSet


class _Plugin:
    """Stands in for a handler: only the hook flags matter here (plugins hash by identity)."""

    def __init__(
        self, name: str, *, response: bool, body: bool, log: bool, buffered: bool = False
    ) -> None:
        self.name = name
        self.has_response, self.has_body, self.has_log = response, body, log
        self.has_buffered = buffered


_plugin = _Plugin


def test_phases_keep_chain_order_and_only_the_plugins_with_each_hook() -> None:
    a = _plugin("a", response=True, body=False, log=True)
    b = _plugin("b", response=False, body=True, log=False, buffered=True)
    c = _plugin("c", response=True, body=True, log=True)
    plugins = PluginSet(())
    chain = (a, b, c)
    phases = plugins.phases(chain)  # type: ignore[arg-type]
    assert [p.name for p in phases.response] == ["a", "c"]
    assert [p.name for p in phases.body] == ["b", "c"]
    assert [p.name for p in phases.log] == ["a", "c"]
    assert [p.name for p in phases.buffered] == ["b"]
    assert repr(phases) == "<Phases buffered=1 response=2 body=2 log=2>"
    # computed once per chain: an equal chain (a new tuple) gets the same answer object
    assert plugins.phases((a, b, c)) is phases  # type: ignore[arg-type]
    assert plugins.phases((c,)).body == (c,)  # type: ignore[arg-type]
