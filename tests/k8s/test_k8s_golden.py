"""Golden cases: ``golden/<case>/in.yaml`` -> ``expected.yaml`` (problems as leading comments);
``settings.yaml``, when there, holds keyword arguments for ``translate``.

Regenerate after an intended change with ``FASTKONG_UPDATE_GOLDEN=1 python -m pytest tests/k8s``
and review the diff.
"""

from __future__ import annotations

import os
import random

import pytest
import yaml

from fastkong.config import ConfigError, load_config
from fastkong.k8s import TranslationResult, translate
from tests.k8s.conftest import (
    CASES,
    GOLDEN,
    golden_validator,
    load_objects,
    names_a_missing_plugin,
)

UPDATE = os.environ.get("FASTKONG_UPDATE_GOLDEN") == "1"


def render(result: TranslationResult) -> str:
    head = "".join(f"# {p}\n" for p in result.problems)
    return head + result.to_yaml()


def run(case: str, objects: list[dict] | None = None) -> str:
    objs = objects if objects is not None else load_objects(GOLDEN / case / "in.yaml")
    settings_file = GOLDEN / case / "settings.yaml"
    settings = yaml.safe_load(settings_file.read_text()) if settings_file.exists() else {}
    return render(translate(objs, validate=golden_validator(), **settings))


def test_every_case_is_here() -> None:
    assert len(CASES) >= 9


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    got = run(case)
    expected = GOLDEN / case / "expected.yaml"
    if UPDATE:
        expected.write_text(got)
    assert got == expected.read_text()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_object_order_does_not_matter(case: str, seed: int) -> None:
    objects = load_objects(GOLDEN / case / "in.yaml")
    random.Random(seed).shuffle(objects)
    assert run(case, objects) == run(case)


@pytest.mark.parametrize("case", CASES)
def test_expected_config_loads(case: str) -> None:
    """The translator's output is a config the data plane loads (plugins it has not registered
    yet aside)."""
    text = (GOLDEN / case / "expected.yaml").read_text()
    try:
        load_config(text)
    except ConfigError as exc:
        errors = [e for e in exc.errors if not names_a_missing_plugin(e.message)]
        assert errors == []
    assert yaml.safe_load(text)["_format_version"] == "3.0"
