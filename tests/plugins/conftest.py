"""Shared fixtures for plugin tests: gateways started from a config text, stopped per module."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.helpers import Gateway


@pytest.fixture(scope="module")
def gateway_with(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Gateway]]:
    """A factory: ``gateway_with(config_text)`` starts a gateway; all stop with the module."""
    started: list[Gateway] = []

    def start(config: str) -> Gateway:
        gateway = Gateway(tmp_path_factory.mktemp("gateway"), config).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()
