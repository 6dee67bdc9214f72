"""Kong's ``kong.conf`` file (fastkong/kong_conf_file.py): the format as Kong's conf loader reads
it (cases of Kong 3.9.1's ``spec/01-unit/03-conf_loader_spec.lua``, named by their line), the
precedence (flag, then environment, then file, then default), ``-c kong.conf``, and
``fastkong check`` (``spec/02-integration/02-cmd/05-check_spec.lua``), with the cases of
``11-config_spec.lua`` that apply to ``fastkong config parse`` (``config validate``'s alias).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastkong import kong_conf_file
from fastkong.cli import build_parser, read_settings
from fastkong.kong_conf import on_off, unread_settings
from fastkong.kong_conf_file import (
    ConfEntry,
    KongConf,
    apply_kong_conf,
    is_kong_conf,
    load_start_conf,
    parse_kong_conf,
    read_kong_conf,
    unread_in_file,
)
from fastkong.proxy.kong_headers import HeaderSettings
from tests.helpers import fastkong_cli, free_port

#: Kong's ``spec/fixtures/to-strip.conf``, as it is.
TO_STRIP = """\
database = postgres # strip me
log_level =        debug       # strip this
                               # comment too
pg_ssl = off                     # Toggles client-server TLS connections
                                 # between Kong and PostgreSQL.

pg_password = test\\#123  # do not strip an escaped octothorpe

plugins = foobar,  hello-world, bundled
"""
#: Kong's ``spec/fixtures/nginx-directives.conf``.
NGINX_DIRECTIVES = """\
nginx_http_variables_hash_bucket_size = 128
nginx_stream_variables_hash_bucket_size = 128
nginx_http_lua_shared_dict = custom_cache 5m
nginx_stream_lua_shared_dict = custom_cache 5m
nginx_proxy_proxy_bind = 127.0.0.1
nginx_sproxy_proxy_bind = 127.0.0.1
nginx_admin_server_tokens = off
nginx_status_client_body_buffer_size = 8k
"""


def settings(text: str) -> dict[str, str]:
    return parse_kong_conf(text, "kong.conf").settings()


@pytest.fixture
def environ() -> Iterator[os._Environ[str]]:
    """This process's environment without Kong's and fastkong's settings, restored after (a
    kong.conf read at start fills ``os.environ``, where every reader looks)."""
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith(("KONG_", "FASTKONG_")) and key != "FASTKONG_NO_EXTENSIONS":
            del os.environ[key]
    yield os.environ
    os.environ.clear()
    os.environ.update(saved)


def start_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["start", *argv])


# -- the format: 03-conf_loader_spec.lua ------------------------------------------------------


def test_strips_comments_ending_settings() -> None:
    """03-conf_loader_spec.lua:353 "strips comments ending settings" (to-strip.conf)."""
    conf = settings(TO_STRIP)
    assert conf["database"] == "postgres"
    assert conf["log_level"] == "debug"


def test_overcomes_penlights_list_delim_option() -> None:
    """:365 "overcomes penlight's list_delim option": a comma list stays one value, and
    ``off`` is the boolean Kong infers (fastkong's readers take on/off/true/false)."""
    conf = settings(TO_STRIP)
    assert conf["plugins"] == "foobar,  hello-world, bundled"
    assert on_off(conf["pg_ssl"], "pg_ssl") is False


def test_correctly_parses_values_containing_an_octothorpe() -> None:
    """:371 "correctly parses values containing an octothorpe": ``\\#`` is a ``#``."""
    assert settings(TO_STRIP)["pg_password"] == "test#123"
    assert settings("pg_password = a\\#b#c # comment")["pg_password"] == "a#b"


def test_entries_keep_their_lines() -> None:
    conf = parse_kong_conf(TO_STRIP, "to-strip.conf")
    assert conf.entries[:2] == (
        ConfEntry("database", "postgres", 1),
        ConfEntry("log_level", "debug", 2),
    )
    assert [e.line for e in conf.entries] == [1, 2, 4, 7, 9]
    assert repr(conf) == "<KongConf to-strip.conf entries=5 applied=0>"


def test_trims_array_values() -> None:
    """:659 "trims array values": a list's blanks are its readers' to trim, as Kong's typed
    parse does (``headers``, ``trusted_ips``...)."""
    conf = settings("headers = server_tokens,    latency_tokens ,X-Kong-Request-Id  ")
    assert conf["headers"] == "server_tokens,    latency_tokens ,X-Kong-Request-Id"
    parsed = HeaderSettings.parse(conf["headers"])
    assert parsed == HeaderSettings.parse("server_tokens,latency_tokens,X-Kong-Request-Id")


@pytest.mark.parametrize("value", ["on", "true", "off", "false"])
def test_infer_booleans(value: str) -> None:
    """:627 "infer booleans (on/off/true/false strings)": the file's text as written, read by
    the settings' boolean reader as Kong infers it."""
    assert on_off(settings(f"allow_debug_header = {value}")["allow_debug_header"], "x") is (
        value in ("on", "true")
    )


def test_loads_flexible_prefix_based_configs_from_a_file() -> None:
    """:432 "loads flexible prefix based configs from a file" (nginx-directives.conf), and :455
    "quotes numeric flexible prefix based configs" (a number is its text)."""
    conf = settings(NGINX_DIRECTIVES)
    assert conf["nginx_http_variables_hash_bucket_size"] == "128"
    assert conf["nginx_http_lua_shared_dict"] == "custom_cache 5m"
    assert conf["nginx_proxy_proxy_bind"] == "127.0.0.1"
    assert conf["nginx_status_client_body_buffer_size"] == "8k"
    assert settings("nginx_http_max_pending_timers = 4096") == {
        "nginx_http_max_pending_timers": "4096"
    }


def test_penlight_line_rules() -> None:
    """pl.config (Penlight 1.14, Kong's reader): ``;`` and ``#`` comment lines, blank lines,
    blanks around names and values, a trailing ``\\`` continuing the line, CRLF line ends,
    quotes kept, the last of two entries winning."""
    text = (
        "; a comment\n"
        "   # another\n"
        "\t\n"
        "   log_level\t=\tinfo   \r\n"
        "trusted_ips = 10.0.0.0/8, \\\n"
        "  # (a comment line inside a continuation is skipped)\n"
        "  127.0.0.1\n"
        'error_default_type = "text/html"\n'
        "headers = off\n"
        "headers = server_tokens\n"
    )
    assert settings(text) == {
        "log_level": "info",
        "trusted_ips": "10.0.0.0/8,   127.0.0.1",
        "error_default_type": '"text/html"',
        "headers": "server_tokens",
    }
    assert settings("a = b=c\n")["a"] == "b=c"  # the first '=' separates
    assert settings("a =\n") == {"a": ""}


def test_names_are_made_identifiers_and_match_kongs_case() -> None:
    """Penlight turns every other character of a name into ``_``; Kong looks entries up by
    their lowercase names, so an upper-case name sets nothing (it is named as ignored)."""
    conf = parse_kong_conf("proxy-listen = 1.2.3.4:80\nLog_Level = debug\nx.y = 1\n", "k")
    assert conf.settings() == {"proxy_listen": "1.2.3.4:80", "x_y": "1"}
    assert conf.ignored_lines == (2,)


def test_numbers_are_luas() -> None:
    """Penlight turns a value that reads as a number into one, which Kong's loader then makes
    text again, as LuaJIT writes numbers; anything else stays as written."""
    cases = {
        "2": "2",
        "02": "2",
        "+3": "3",
        "1.50": "1.5",
        "1.0": "1",
        "0x10": "16",
        "1e3": "1000",
        "-0": "-0",
        "64 kB": "64",
        "0.01": "0.01",
        "5 # five": "5",
        "4 8k": "4 8k",
        "80:8000, 443:8443": "80:8000, 443:8443",
        "10m": "10m",
        "0.0.0.0:8000": "0.0.0.0:8000",
    }
    assert {k: settings(f"x = {k}")["x"] for k in cases} == cases


def test_lines_without_a_setting_are_ignored_as_kong_ignores_them() -> None:
    conf = parse_kong_conf("just words\nlog_level = info\n= value\n", "k.conf")
    assert conf.settings() == {"log_level": "info"}
    assert conf.ignored_lines == (1, 3)


@pytest.mark.parametrize("line", ["[kong]", "[section", "[x] = 1"])
def test_a_section_line_is_refused_naming_the_file_and_line(line: str) -> None:
    """Penlight reads ``[name]`` as a section (a table), which Kong's comment stripping fails
    on: Kong stops with a Lua error; fastkong with one line."""
    with pytest.raises(ValueError, match=r"^k\.conf:3: '\[.*': kong.conf has no sections"):
        parse_kong_conf(f"log_level = info\n\n{line}\nheaders = off\n", "k.conf")
    # Indented, it is no section: a line without '=', ignored as Kong ignores it, or the
    # name '_x_', which Kong has not.
    assert parse_kong_conf(f"  {line}\n", "k").settings() in ({}, {"_x_": "1"})


def test_read_kong_conf_says_kongs_no_file_at(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^no file at: /nonexistent/kong.conf$"):
        read_kong_conf("/nonexistent/kong.conf")
    path = tmp_path / "kong.conf"
    path.write_bytes(b"pg_password = caf\xe9\n")  # not UTF-8: passed on byte for byte
    assert read_kong_conf(str(path)).settings()["pg_password"] == "caf\udce9"


# -- precedence: a flag, then the environment, then the file, then the default ---------------


def test_the_environment_wins_over_the_file_and_empty_counts_as_unset() -> None:
    """:79 "loads a given file, with higher precedence" (over the defaults) and Kong's
    ``overrides``: ``KONG_<NAME>`` over the file; fastkong's ``FASTKONG_<NAME>`` too."""
    conf = parse_kong_conf(
        "headers = off\nlog_level = debug\nproxy_listen = 1.2.3.4:80\nerror_default_type = x\n",
        "k",
    )
    env = {"KONG_LOG_LEVEL": "error", "FASTKONG_PROXY_LISTEN": "5.6.7.8:80", "KONG_HEADERS": ""}
    applied = apply_kong_conf(conf, env)
    assert env == {
        "KONG_LOG_LEVEL": "error",
        "FASTKONG_PROXY_LISTEN": "5.6.7.8:80",
        "KONG_HEADERS": "off",
        "KONG_ERROR_DEFAULT_TYPE": "x",
    }
    assert applied.applied == ("KONG_HEADERS", "KONG_ERROR_DEFAULT_TYPE")


def test_octothorpes_in_the_environment_are_left_alone(environ: os._Environ[str]) -> None:
    """:375/:407 "escapes unescaped octothorpes in environment variables" / "does not modify
    existing octothorpes": only the file's values lose their comments."""
    environ["KONG_PG_PASSWORD"] = "test##12##3#"
    apply_kong_conf(parse_kong_conf("pg_password = other # comment", "k"), environ)
    assert environ["KONG_PG_PASSWORD"] == "test##12##3#"


def test_flag_then_environment_then_file_then_default(
    tmp_path: Path, environ: os._Environ[str]
) -> None:
    """:101 "accepts custom params, with highest precedence": a flag over the environment
    over the file over the default, read by start's own settings code."""
    path = tmp_path / "kong.conf"
    path.write_text(
        "status_listen = 127.0.0.1:9101\n"
        "admin_listen = 127.0.0.1:9102\n"
        "headers = off\n"
        "error_default_type = application/json # the file's\n"
        "nginx_worker_processes = 3\n"
        "declarative_config = /srv/kong.yml\n"
    )
    environ["KONG_ADMIN_LISTEN"] = "127.0.0.1:9202"
    environ["KONG_ERROR_DEFAULT_TYPE"] = "text/html"
    args = start_args("--conf", str(path), "--error-default-type", "application/xml")
    conf = load_start_conf(args)
    assert conf is not None and conf.path == str(path)
    opts = read_settings(args)
    assert opts.status == ("127.0.0.1", 9101)  # the file
    assert opts.admin == ("127.0.0.1", 9202)  # the environment over the file
    assert opts.error_default_type == "application/xml"  # the flag over both
    assert (opts.headers, opts.workers) == ("off", 3)
    assert opts.config_path == Path("/srv/kong.yml")
    assert opts.real_ip_header == "X-Real-IP"  # the default: in none of them


def test_honors_path_if_provided_even_if_a_default_file_exists(
    tmp_path: Path, environ: os._Environ[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """:1700 "honors path if provided even if a default file exists"; without one, Kong's
    default paths in order, the first present; none present: no file."""
    default, other, given = (tmp_path / n for n in ("default.conf", "other.conf", "given.conf"))
    default.write_text("log_level = debug\n")
    given.write_text("log_level = error\n")
    missing = str(tmp_path / "missing.conf")
    monkeypatch.setattr(kong_conf_file, "DEFAULT_PATHS", (missing, str(default), str(other)))
    conf = load_start_conf(start_args("--conf", str(given)))
    assert conf is not None and (conf.path, environ["KONG_LOG_LEVEL"]) == (str(given), "error")
    del environ["KONG_LOG_LEVEL"]
    conf = load_start_conf(start_args())
    assert conf is not None and (conf.path, environ["KONG_LOG_LEVEL"]) == (str(default), "debug")
    monkeypatch.setattr(kong_conf_file, "DEFAULT_PATHS", (missing,))
    assert load_start_conf(start_args()) is None
    with pytest.raises(ValueError, match=f"^no file at: {missing}$"):
        load_start_conf(start_args("--conf", missing))


def test_the_files_unknown_settings_are_named_and_read_ones_are_not(
    environ: os._Environ[str],
) -> None:
    """:120 "strips extraneous properties (not in defaults)": Kong drops them in silence;
    fastkong names them in its "not implemented, ignored" line, by the file's names and lines,
    never one it reads (nor one the environment set instead), and ``pg_port`` is a setting in
    a file, not a Kubernetes service link."""
    text = NGINX_DIRECTIVES + "headers = off\npg_port = 5432\ndns_resolver = 8.8.8.8\nwords\n"
    environ["KONG_DNS_RESOLVER"] = "1.1.1.1"
    environ["KONG_PORT"] = "tcp://10.0.0.1:8000"  # a service link: never named
    conf = apply_kong_conf(parse_kong_conf(text, "/etc/kong/kong.conf"), environ)
    unread = unread_settings(environ, conf.applied)
    assert "KONG_HEADERS" not in unread and "KONG_NGINX_HTTP_LUA_SHARED_DICT" in unread
    assert unread_in_file(conf, unread) == (
        "KONG_DNS_RESOLVER, "
        "nginx_admin_server_tokens (/etc/kong/kong.conf:7), "
        "nginx_http_lua_shared_dict (/etc/kong/kong.conf:3), "
        "nginx_http_variables_hash_bucket_size (/etc/kong/kong.conf:1), "
        "nginx_proxy_proxy_bind (/etc/kong/kong.conf:5), "
        "nginx_sproxy_proxy_bind (/etc/kong/kong.conf:6), "
        "nginx_status_client_body_buffer_size (/etc/kong/kong.conf:8), "
        "nginx_stream_lua_shared_dict (/etc/kong/kong.conf:4), "
        "nginx_stream_variables_hash_bucket_size (/etc/kong/kong.conf:2), "
        "pg_port (/etc/kong/kong.conf:10), "
        "/etc/kong/kong.conf:12 (not a setting)"
    )
    assert unread_in_file(None, ["KONG_X"]) == "KONG_X"
    assert isinstance(conf, KongConf)


# -- -c kong.conf ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "proxy_listen = 0.0.0.0:8000\n",
        "# Kong's settings\nlog_level = debug # more\n\ndeclarative_config = /k.yml\n",
        "trusted_ips = 10.0.0.0/8, \\\n  127.0.0.1\n",
    ],
)
def test_a_kong_conf_given_to_c_is_recognized(tmp_path: Path, text: str) -> None:
    path = tmp_path / "kong.conf"
    path.write_text(text)
    assert is_kong_conf(str(path))


@pytest.mark.parametrize(
    "text",
    [
        "",  # empty
        "# only a comment\n\n",
        '_format_version: "3.0"\nservices: []\n',
        '{"_format_version": "3.0", "services": []}',
        "_format_version: '3.0'\nservices:\n  - name: a\n bad: indentation\n",  # broken YAML
        '{"_format_version": "3.0",',  # broken JSON
        "[1, 2]\n",
        "- log_level = debug\n",  # a YAML list
        "log_level = debug\nservices:\n- name: x\n",  # a mapping, whatever else is there
        "proxy_listen = 0.0.0.0:8000\nsome words\n",  # a line that is no setting
        "[kong]\nlog_level = debug\n",
        "log_level = a: b\n",  # a YAML mapping ("log_level = a": "b"): declarative
    ],
)
def test_a_declarative_config_is_never_taken_for_a_kong_conf(tmp_path: Path, text: str) -> None:
    path = tmp_path / "kong.yml"
    path.write_text(text)
    assert not is_kong_conf(str(path))
    assert not is_kong_conf(str(tmp_path / "missing.yml"))


def test_c_kong_conf_is_read_as_conf_and_serves_its_declarative_config(
    tmp_path: Path, environ: os._Environ[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kong.conf"
    path.write_text("declarative_config = /srv/kong.yml\nheaders = off\n")
    args = start_args("-c", str(path))
    conf = load_start_conf(args)
    assert conf is not None and conf.path == str(path) and args.config is None
    assert read_settings(args).config_path == Path("/srv/kong.yml")
    assert capsys.readouterr().err == (
        f"fastkong: -c {path}: Kong settings (name = value), not a declarative config: read "
        "as --conf, and its declarative_config served\n"
    )
    # A declarative config given to -c stays one (and --conf, when given, is the conf file).
    kong_yml = tmp_path / "kong.yml"
    kong_yml.write_text("")
    args = start_args("-c", str(kong_yml), "--conf", str(path))
    assert load_start_conf(args) is not None and args.config == str(kong_yml)


def test_an_empty_or_broken_declarative_config_keeps_its_config_error(
    tmp_path: Path, environ: os._Environ[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kong_conf_file, "DEFAULT_PATHS", ())
    path = tmp_path / "kong.yml"
    for text in ("", "{", "services:\n  - name: a\n bad"):
        path.write_text(text)
        args = start_args("-c", str(path))
        assert load_start_conf(args) is None and args.config == str(path)
    path.write_text("")
    done = fastkong_cli(
        "start", "-c", str(path), "--prefix", str(tmp_path / "p"), "--proxy-listen",
        f"127.0.0.1:{free_port()}", "--status-listen", "off", "--admin-listen", "off",
    )  # fmt: skip
    assert done.returncode == 1
    assert f"fastkong: invalid config {path}:\n  : failed parsing declarative configuration" in (
        done.stderr
    )
    assert "kong.conf" not in done.stderr and "Kong settings" not in done.stderr


def test_a_bad_setting_in_the_file_stops_the_start_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "kong.conf"
    path.write_text("nginx_worker_processes = two\n")
    done = fastkong_cli("start", "-c", str(path), "--prefix", str(tmp_path / "p"))
    assert done.returncode == 1
    assert done.stderr.splitlines()[1:] == [
        "fastkong: nginx_worker_processes: expected a number >= 1 or auto, got 'two'"
    ]
    path.write_text("[kong]\n")
    done = fastkong_cli("start", "--conf", str(path), "--prefix", str(tmp_path / "p"))
    assert (done.returncode, done.stderr) == (
        1,
        f"fastkong: {path}:1: '[kong]': kong.conf has no sections; write name = value lines\n",
    )


# -- fastkong check: 05-check_spec.lua ---------------------------------------------------------


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(["check", *argv])
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_check_validates_a_conf(
    tmp_path: Path, environ: os._Environ[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """05-check_spec.lua "validates a conf"."""
    path = tmp_path / "kong.conf"
    path.write_text(TO_STRIP.replace("postgres", "off") + "proxy_listen = 127.0.0.1:9000\n")
    assert check(capsys, str(path)) == (0, f"configuration at {path} is valid\n", "")


def test_check_reports_invalid_conf(
    tmp_path: Path, environ: os._Environ[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """05-check_spec.lua "reports invalid conf": Kong's ``[error] <message>`` line, each
    setting read as start reads it (here the environment's and the file's)."""
    path = tmp_path / "invalid.conf"
    path.write_text("database = postgres\n")
    code, out, err = check(capsys, str(path))
    assert (code, out) == (1, "")
    assert err.endswith(" [error] database: fastkong runs DB-less only (off), got 'postgres'\n")
    path.write_text("proxy_listen = 127.0.0.1:9000\n")
    del environ["KONG_DATABASE"]  # (the first check's file put it there)
    environ["KONG_ADMIN_LISTEN"] = "0.0.0.0:9001"  # beyond loopback, without a token
    code, _, err = check(capsys, str(path))
    assert code == 1 and "[error] the admin API would listen on 0.0.0.0" in err


def test_check_doesnt_like_invalid_files(
    environ: os._Environ[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """05-check_spec.lua "doesn't like invalid files"; without a path, Kong's default."""
    code, _, err = check(capsys, "inexistent.conf")
    assert code == 1 and err.endswith(" [error] no file at: inexistent.conf\n")
    assert build_parser().parse_args(["check"]).conf == "/etc/kong/kong.conf"
    monkeypatch.setattr(kong_conf_file, "CHECK_DEFAULT_PATH", "/nonexistent/kong.conf")
    code, _, err = check(capsys)
    assert code == 1 and err.endswith(" [error] no file at: /nonexistent/kong.conf\n")


def test_check_is_a_command_line(tmp_path: Path) -> None:
    path = tmp_path / "kong.conf"
    path.write_text("headers = off\n")
    done = fastkong_cli("check", str(path))
    assert (done.returncode, done.stdout) == (0, f"configuration at {path} is valid\n")


# -- fastkong config parse: 11-config_spec.lua -------------------------------------------------


def config_command(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    args = build_parser().parse_args(["config", *argv])
    code = args.func(args)
    return code, capsys.readouterr().out


def test_config_help(capsys: pytest.CaptureFixture[str]) -> None:
    """11-config_spec.lua "config help"."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["config", "--help"])
    assert exited.value.code == 0 and "validate (parse)" in capsys.readouterr().out


def test_config_parse_works_when_foreign_keys_need_to_be_resolved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """11-config_spec.lua:695 (``kong config parse`` is ``fastkong config validate``)."""
    path = tmp_path / "kong.yml"
    path.write_text(
        '_format_version: "1.1"\nconsumers:\n- username: consumer\n  basicauth_credentials:\n'
        "  - username: username\n    password: password\n"
    )
    code, out = config_command(capsys, "parse", str(path))
    assert code == 0 and "1 consumers" in out


def test_config_parse_catches_errors_in_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """11-config_spec.lua:327 "config db_import catches errors in input", the parse part."""
    path = tmp_path / "kong.yml"
    path.write_text(
        '_format_version: "1.1"\nservices:\n- name: foobar\n  host: []\n  port: -23\n'
        "  protocol: https\n  _comment: my comment\n  _ignore:\n  - foo: bar\n  routes: 123\n"
    )
    code, out = config_command(capsys, "parse", str(path))
    assert code == 1
    assert "services[0].host: expected a string" in out
    assert "services[0].port: value should be between 0 and 65535" in out
    assert "services[0].routes: expected an array" in out
