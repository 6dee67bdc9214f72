from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import Echo


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
