from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import Echo
from tests.ws_peer import WsEcho


@pytest.fixture(scope="session")
def echo() -> Iterator[Echo]:
    server = Echo("echo-1").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def echo2() -> Iterator[Echo]:
    server = Echo("echo-2").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ws_echo() -> Iterator[WsEcho]:
    """A WebSocket echo upstream, fresh for each test module (tests count its handshakes)."""
    server = WsEcho().start()
    yield server
    server.stop()
