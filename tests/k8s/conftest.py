"""Shared helpers for the Kubernetes tests: golden cases and the validator they use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from fastkong.k8s.prune import Loc, Validator, config_layer_validator

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
REPO = HERE.parent.parent
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "in.yaml").exists())
NOT_ENABLED = "not enabled; add it to the 'plugins' configuration property"
MISSING = (NOT_ENABLED, "that fastkong does not implement", "which fastkong does not run")


def names_a_missing_plugin(message: str) -> bool:
    """A config error that only says a plugin is not (yet) in fastkong's registry."""
    return message.endswith(MISSING)


def load_objects(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def golden_validator() -> Validator:
    """The config layer's validator, except that a plugin fastkong has not registered (yet) is
    accepted: golden outputs must not change as plugin modules land, but every plugin that *is*
    registered validates its config here."""
    validate = config_layer_validator()
    assert validate is not None, "fastkong.config must be importable"

    def lenient(config: dict[str, Any]) -> list[tuple[Loc, str]]:
        return [(loc, msg) for loc, msg in validate(config) if not names_a_missing_plugin(msg)]

    return lenient


#: Values a mangled field may take: wrong types as well as odd values of the right one.
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False),
    st.sampled_from(["", "~", "/", "*", "~(", "a,,b", "80", "é", "\x00", "http", "Exact"]),
    st.just([]),
    st.just({}),
    st.just([["a"]]),
    st.just([{}]),
    st.just({"name": "x"}),
)
