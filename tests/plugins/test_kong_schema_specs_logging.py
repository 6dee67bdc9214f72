"""Kong's schema specs of the logging plugins, ported to declarative plugin configs.

Ported (each Kong ``v(config, schema_def)`` becomes :func:`tests.helpers.plugin_config` when
Kong accepts and :func:`tests.helpers.plugin_config_errors` when it refuses; Kong's
``err.config.<field>`` is ``plugins[0].config.<field>``, array indexes 0-based):

- ``spec/03-plugins/03-http-log/02-schema_spec.lua`` lines 55-182;
- ``spec/03-plugins/04-file-log/02-schema_spec.lua`` lines 5-171;
- ``spec/03-plugins/06-statsd/02-schema_spec.lua`` lines 4-285;
- ``spec/03-plugins/08-datadog/02-schema_spec.lua`` lines 5-108.

Messages are Kong's (``kong:kong/plugins/<name>/schema.lua``, ``kong/db/schema/typedefs.lua``
and ``kong/db/schema/init.lua``; its ``conditional`` entity checker, init.lua 725-765, has
``run_with_invalid_fields = true`` and ``required_fields = { if_field = true }``, so a missing
``if_field`` whose ``then_field`` is present becomes "field required for entity check",
init.lua 1293-1341).

Left out (one line each):
- http-log "accepts minimal config with defaults": covered by
  test_http_log::test_defaults_are_kongs.
- http-log "accepts custom fields by lua", file-log "accepts custom fields set by lua code":
  fastkong runs no Lua and refuses ``custom_fields_by_lua`` on purpose; covered by
  test_http_log::test_other_config_errors_have_paths and test_file_log::test_lua_fields_are_refused.
- http-log's empty header value, Host, Content-Length and Content-Type headers, userinfo with an
  Authorization header: covered by test_http_log::test_header_rules and
  ::test_userinfo_and_authorization_header_exclude_each_other.
- file-log "path is required", the invalid filenames, leading/trailing spaces and "accept valid
  filename that includes space": covered by test_file_log (test_rejects_invalid_filenames,
  test_rejects_blanks_at_either_end, test_path_is_required_and_spaces_inside_are_fine).
- statsd and datadog "accepts empty config": covered by test_statsd::test_schema and
  test_datadog::test_schema (their defaults).
- statsd "rejects counters without sample rate": covered by test_statsd::test_schema.
- datadog "rejects if tags malformed": covered by test_datadog::test_schema (``a:``, same rule).
- http-log's log-message mocks (``kong.log``) and ``Queue.get_plugin_params`` itself are Lua
  internals; the legacy conversion is checked on fastkong's plugin instead.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest

from fastkong.plugins.bundled.http_log import HttpLog, HttpLogConfig
from tests.helpers import plugin_config, plugin_config_errors

REQUIRED_FOR_CHECK = "field required for entity check"
CONDITIONAL = "failed conditional validation given value of field 'stat_type'"
ENDPOINT = "http://myservice.test/path"


def metric(**fields: Any) -> dict[str, Any]:
    return {"metrics": [fields]}


def as_given(loaded: list[dict[str, Any]], given: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The loaded metrics cut down to the fields each was given with."""
    return [{k: m[k] for k in g} for m, g in zip(loaded, given, strict=True)]


# -- http-log ------------------------------------------------------------------------------------
def test_http_log_accepts_userinfo_in_the_endpoint_without_headers() -> None:
    """03-http-log/02-schema_spec.lua:63"""
    config = plugin_config("http-log", {"http_endpoint": "http://bob:password@myservice.test/path"})
    assert config["http_endpoint"] == "http://bob:password@myservice.test/path"
    assert config["headers"] is None


def test_http_log_accepts_allowed_headers() -> None:
    """03-http-log/02-schema_spec.lua:82"""
    headers = {"X-My-Header": "123", "X-Your-Header": "abc"}
    config = plugin_config("http-log", {"http_endpoint": ENDPOINT, "headers": headers})
    assert config["headers"] == headers


def test_http_log_converts_legacy_queue_parameters(caplog: pytest.LogCaptureFixture) -> None:
    """03-http-log/02-schema_spec.lua:167: retry_count, queue_size and flush_timeout are
    accepted; queue_size and flush_timeout become the queue's max_batch_size and
    max_coalescing_delay (``kong:kong/tools/queue.lua`` get_plugin_params), each with its
    warning."""
    config = plugin_config(
        "http-log",
        {
            "http_endpoint": "http://hi:there@myservice.test/path",
            "retry_count": 23,
            "queue_size": 46,
            "flush_timeout": 92,
        },
    )
    with caplog.at_level(logging.WARNING):
        plugin = HttpLog(msgspec.convert(config, HttpLogConfig), None, None)  # type: ignore[arg-type]
    text = caplog.text
    assert "the retry_count parameter no longer works" in text
    assert "the queue_size parameter is deprecated" in text
    assert "the flush_timeout parameter is deprecated" in text
    assert plugin.params.max_batch_size == 46
    assert plugin.params.max_coalescing_delay == 92


# -- file-log ------------------------------------------------------------------------------------
def test_file_log_accepts_a_valid_filename() -> None:
    """04-file-log/02-schema_spec.lua:127"""
    assert plugin_config("file-log", {"path": "/tmp/log.txt", "reopen": True}) == {
        "path": "/tmp/log.txt",
        "reopen": True,
        "custom_fields_by_lua": None,
    }


# -- statsd --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"metrics": []}, id="empty metrics (10)"),
        pytest.param(
            metric(name="request_count", stat_type="counter", sample_rate=1), id="one metric (16)"
        ),
        pytest.param(
            metric(name="status_count", stat_type="counter", sample_rate=1),
            id="empty service identifier (94)",
        ),
        pytest.param(
            metric(
                name="status_count",
                stat_type="counter",
                sample_rate=1,
                service_identifier="service_id",
            ),
            id="valid service identifier (106)",
        ),
        pytest.param(
            metric(
                name="status_count_per_workspace",
                stat_type="counter",
                sample_rate=1,
                workspace_identifier="workspace_id",
            ),
            id="valid workspace identifier (132)",
        ),
        pytest.param({"allow_status_codes": []}, id="empty allow_status_codes (145)"),
        pytest.param({"allow_status_codes": ["200-299", "300-399"]}, id="status ranges (152)"),
        pytest.param({"udp_packet_size": 0}, id="udp_packet_size 0 (220)"),
        pytest.param({"udp_packet_size": 1}, id="udp_packet_size 1 (220)"),
        pytest.param({"udp_packet_size": 10000}, id="udp_packet_size 10000 (220)"),
        pytest.param({"consumer_identifier_default": "consumer_id"}, id="consumer default (242)"),
        pytest.param({"service_identifier_default": "service_id"}, id="service default (242)"),
        pytest.param({"workspace_identifier_default": "workspace_id"}, id="ws default (242)"),
        pytest.param({"tag_style": "dogstatsd"}, id="tag_style dogstatsd (264)"),
        pytest.param({"tag_style": "influxdb"}, id="tag_style influxdb (264)"),
        pytest.param({"tag_style": "librato"}, id="tag_style librato (264)"),
        pytest.param({"tag_style": "signalfx"}, id="tag_style signalfx (264)"),
    ],
)
def test_statsd_accepts(config: dict[str, Any]) -> None:
    """06-statsd/02-schema_spec.lua: the accepted configs (spec line in the id); the given
    fields come back as given."""
    loaded = plugin_config("statsd", config)
    for field, value in config.items():
        assert (as_given(loaded[field], value) if field == "metrics" else loaded[field]) == value


def test_statsd_rejects_a_metric_without_stat_type() -> None:
    """06-statsd/02-schema_spec.lua:28 (first half): ``stat_type`` is the conditional's
    ``if_field``; with ``sample_rate`` given, Kong's check reports it missing for itself."""
    errors = plugin_config_errors("statsd", metric(name="request_count", sample_rate=1))
    assert f"plugins[0].config.metrics[0].stat_type: {REQUIRED_FOR_CHECK}" in errors


def test_statsd_rejects_a_metric_without_name() -> None:
    """06-statsd/02-schema_spec.lua:28 (second half)"""
    errors = plugin_config_errors("statsd", metric(stat_type="counter", sample_rate=1))
    assert "plugins[0].config.metrics[0].name: required field missing" in errors


@pytest.mark.parametrize(
    ("config", "field"),
    [
        pytest.param(metric(name="invalid_name", stat_type="counter"), "name", id="name (59)"),
        pytest.param(
            metric(
                name="status_count",
                stat_type="counter",
                sample_rate=1,
                service_identifier="fooo",
            ),
            "service_identifier",
            id="service identifier (81)",
        ),
        pytest.param(
            metric(
                name="status_count_per_workspace",
                stat_type="counter",
                sample_rate=1,
                workspace_identifier="fooo",
            ),
            "workspace_identifier",
            id="workspace identifier (119)",
        ),
    ],
)
def test_statsd_rejects_values_not_in_the_list(config: dict[str, Any], field: str) -> None:
    """06-statsd/02-schema_spec.lua: ``assert.match("expected one of:.+", ...)``."""
    prefix = f"plugins[0].config.metrics[0].{field}: expected one of: "
    errors = plugin_config_errors("statsd", config)
    assert any(e.startswith(prefix) and len(e) > len(prefix) for e in errors), errors


def test_statsd_rejects_an_invalid_stat_type() -> None:
    """06-statsd/02-schema_spec.lua:70"""
    errors = plugin_config_errors("statsd", metric(name="request_count", stat_type="invalid_stat"))
    assert errors == [
        "plugins[0].config.metrics[0].stat_type: expected one of: counter, gauge, histogram, "
        "meter, set, timer"
    ]


@pytest.mark.parametrize(
    ("codes", "invalid"),
    [
        pytest.param(["test"], {0: "test"}, id="alphabet (162)"),
        pytest.param(["$%%"], {0: "$%%"}, id="special characters (171)"),
        pytest.param(["test-test"], {0: "test-test"}, id="alphabet with dash (180)"),
        pytest.param(["test-299", "300-test"], {0: "test-299", 1: "300-test"}, id="mixed (189)"),
        pytest.param(["200-300", "test-test"], {1: "test-test"}, id="one of two (200)"),
        pytest.param(["200", "299"], {0: "200", 1: "299"}, id="numbers without dash (210)"),
    ],
)
def test_statsd_rejects_allow_status_codes(codes: list[str], invalid: dict[int, str]) -> None:
    """06-statsd/02-schema_spec.lua 162-219: Kong's ``assert.contains`` on the element
    errors; each bad element is reported at its index."""
    errors = plugin_config_errors("statsd", {"allow_status_codes": codes})
    for i, value in invalid.items():
        assert f"plugins[0].config.allow_status_codes[{i}]: invalid value: {value}" in errors


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (-1, "value should be between 0 and 65507"),
        ("a", "expected a number"),
        (65508, "value should be between 0 and 65507"),
    ],
)
def test_statsd_rejects_invalid_udp_packet_size(size: Any, message: str) -> None:
    """06-statsd/02-schema_spec.lua:231"""
    assert plugin_config_errors("statsd", {"udp_packet_size": size}) == [
        f"plugins[0].config.udp_packet_size: {message}"
    ]


def test_statsd_rejects_invalid_identifier_defaults() -> None:
    """06-statsd/02-schema_spec.lua:253"""
    config = {
        "consumer_identifier_default": "invalid type",
        "service_identifier_default": "invalid type",
        "workspace_identifier_default": "invalid type",
    }
    assert plugin_config_errors("statsd", config) == [
        "plugins[0].config.consumer_identifier_default: expected one of: consumer_id, "
        "custom_id, username",
        "plugins[0].config.service_identifier_default: expected one of: service_id, "
        "service_name, service_host, service_name_or_host",
        "plugins[0].config.workspace_identifier_default: expected one of: workspace_id, "
        "workspace_name",
    ]


def test_statsd_rejects_an_invalid_tag_style() -> None:
    """06-statsd/02-schema_spec.lua:278"""
    assert plugin_config_errors("statsd", {"tag_style": "invalid type"}) == [
        "plugins[0].config.tag_style: expected one of: dogstatsd, influxdb, librato, signalfx"
    ]


# -- datadog -------------------------------------------------------------------------------------
def test_datadog_accepts_null_host_and_port() -> None:
    """08-datadog/02-schema_spec.lua:11"""
    config = plugin_config("datadog", {"host": None, "port": None})
    assert (config["host"], config["port"]) == (None, None)


@pytest.mark.parametrize(
    "metrics",
    [
        pytest.param([], id="empty metrics (16)"),
        pytest.param(
            [
                {
                    "name": "request_count",
                    "stat_type": "counter",
                    "sample_rate": 1,
                    "tags": ["K1:V1"],
                }
            ],
            id="one metric (22)",
        ),
        pytest.param(
            [{"name": "request_count", "stat_type": "counter", "sample_rate": 1, "tags": []}],
            id="empty tags (96)",
        ),
    ],
)
def test_datadog_accepts_metrics(metrics: list[dict[str, Any]]) -> None:
    """08-datadog/02-schema_spec.lua 16, 22, 96"""
    loaded = plugin_config("datadog", {"metrics": metrics})["metrics"]
    assert as_given(loaded, metrics) == metrics


@pytest.mark.parametrize(
    ("config", "errors"),
    [
        pytest.param(
            metric(name="request_count", sample_rate=1),
            [f"plugins[0].config.metrics[0].stat_type: {REQUIRED_FOR_CHECK}"],
            id="no stat_type",
        ),
        pytest.param(
            metric(stat_type="counter", sample_rate=1),
            ["plugins[0].config.metrics[0].name: required field missing"],
            id="no name",
        ),
    ],
)
def test_datadog_rejects_a_metric_without_name_or_stat_type(
    config: dict[str, Any], errors: list[str]
) -> None:
    """08-datadog/02-schema_spec.lua:35: ``assert.same`` on ``err.config.metrics``, so
    nothing else is reported."""
    assert plugin_config_errors("datadog", config) == errors


def test_datadog_rejects_a_counter_without_sample_rate() -> None:
    """08-datadog/02-schema_spec.lua:53"""
    assert plugin_config_errors("datadog", metric(name="request_count", stat_type="counter"))


def test_datadog_rejects_an_invalid_metric_name() -> None:
    """08-datadog/02-schema_spec.lua:63: the name's error, and the conditional (it does not
    look at ``name``) still reports the counter's missing ``sample_rate``."""
    errors = plugin_config_errors("datadog", metric(name="invalid_name", stat_type="counter"))
    prefix = "plugins[0].config.metrics[0].name: expected one of: kong_latency"
    assert any(e.startswith(prefix) for e in errors), errors
    assert "plugins[0].config.metrics[0].sample_rate: required field missing" in errors


def test_datadog_rejects_an_invalid_stat_type() -> None:
    """08-datadog/02-schema_spec.lua:74"""
    errors = plugin_config_errors("datadog", metric(name="request_count", stat_type="invalid_stat"))
    prefix = "plugins[0].config.metrics[0].stat_type: expected one of: counter"
    assert any(e.startswith(prefix) for e in errors), errors
