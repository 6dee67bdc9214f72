"""bot-detection (Kong's spec/03-plugins/21-bot-detection): the built-in list against real
user agents, the decision order, the per-config cache, the schema, and a running gateway."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastkong.config import ConfigError, load_config
from fastkong.plugins.base import Exit
from fastkong.plugins.bundled.bot_detection import (
    ALLOW,
    BOT,
    DENY,
    MAX_CACHED_AGENT,
    PASS,
    UA_CACHE_SIZE,
    BotDetection,
    is_bot,
)
from fastkong.plugins.context import RequestContext
from fastkong.plugins.registry import lookup
from fastkong.runtime import Runtime, compile_runtime
from tests.helpers import Echo, Gateway, echoed_headers

HELLOWORLD = "HelloWorld"  # Kong's spec: an agent no rule names
FACEBOOK = "facebookexternalhit/1.1"  # Kong's spec: an agent the built-in list refuses
CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_5) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/50.0.2661.102 Safari/537.36"
)

# -- the built-in list -------------------------------------------------------------------------
#: Real agents Kong 3.9 refuses (each was run through Kong's rules.lua under PCRE2 too).
REFUSED = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/41.0.2272.96 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
    "+http://www.google.com/bot.html)",
    "Googlebot-Image/1.0",
    "AdsBot-Google (+http://www.google.com/adsbot.html)",
    "Mediapartners-Google",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "DuckDuckBot/1.0; (+http://duckduckgo.com/duckduckbot.html)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)",
    "Mozilla/5.0 (compatible; DotBot/1.2; +https://opensiteexplorer.org/dotbot; help@moz.com)",
    "Mozilla/5.0 (compatible; Applebot/0.1; +http://www.apple.com/go/applebot)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.0; "
    "+https://openai.com/gptbot)",
    "CCBot/2.0 (https://commoncrawl.org/faq/)",
    "Mozilla/5.0 (compatible; Bytespider; spider-feedback@bytedance.com)",
    FACEBOOK,
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "WhatsApp/2.23.20.0 A",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
    "Mozilla/5.0 (compatible; archive.org_bot +http://www.archive.org/details/archive.org_bot)",
    "ia_archiver (+http://www.alexa.com/site/help/webmasters; crawler@alexa.com)",
    "Scrapy/2.11.0 (+https://scrapy.org)",
    "WordPress/6.4.2; https://example.com",
    "Feedbin feed-id:1 - 5 subscribers",
    # WebPageTest appends " PTST/<version>" to a browser's agent
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36 PTST/240112.120000",
    # HTTP libraries Kong's list names
    "Go-http-client/1.1",
    "Go-http-client/2.0",
    "okhttp/4.12.0",
    "axios/1.6.8",
    "Apache-HttpClient/4.5.14 (Java/17.0.9)",
    "Python-urllib/3.11",
    "Boto3/1.34.84 md/Botocore#1.34.84 ua/2.0 os/linux#6.5.0 md/arch#x86_64 lang/python#3.11.7",
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0 exe/x86_64.ubuntu.22 prompt/off command/s3.ls",
    "aws-sdk-java/1.12.600 Linux/5.15 OpenJDK_64-Bit_Server_VM/17.0.9+9 java/17.0.9",
    # surrounding whitespace is stripped first (a value ending in it would miss the $ above)
    "Mozilla/5.0 (X11) Chrome/120.0 PTST/1.2 \t",
]

#: Real agents Kong 3.9 lets through: browsers, and tools its list does not name.
PASSING = [
    CHROME_MAC,
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
    # CUBOT phones: "BOT" in capitals is no bot
    "Mozilla/5.0 (Linux; Android 10; CUBOT_X19) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/110.0.0.0 Mobile Safari/537.36",
    # in-app browsers
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148 [FBAN/FBIOS;FBDV/iPhone13,2;FBMD/iPhone;FBSN/iOS;FBSV/16.6;FBSS/3]",
    "Mozilla/5.0 (Linux; Android 12; SM-G991B Build/SP1A.210812.016; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/114.0.5735.196 Mobile Safari/537.36 Instagram "
    "289.0.0.25.49 Android",
    # command-line tools and libraries Kong's list does not name (Kong's spec: curl passes)
    "curl/7.43.0",
    "curl/8.5.0",
    "Wget/1.21.4",
    "python-requests/2.31.0",
    "Python/3.11 aiohttp/3.9.5",
    "python-httpx/0.27.0",
    "PostmanRuntime/7.36.0",
    "Java/17.0.9",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    # "Bot" without a version, and "TwitterBot" (Kong names "Twitterbot")
    "TelegramBot (like TwitterBot)",
    HELLOWORLD,
    "",
]


@pytest.mark.parametrize("agent", REFUSED)
def test_builtin_list_refuses(agent: str) -> None:
    assert is_bot(agent.strip(" \t\n\x0b\x0c\r"))


@pytest.mark.parametrize("agent", PASSING)
def test_builtin_list_passes(agent: str) -> None:
    assert not is_bot(agent.strip(" \t\n\x0b\x0c\r"))


@pytest.mark.parametrize(
    ("agent", "refused"),
    [
        # the shapes' edges, as Kong's patterns draw them
        ("x" * 30 + "favicon" + "y" * 30, True),
        ("x" * 31 + "favicon", False),
        ("favicon" + "y" * 31, False),
        ("Accoona-" + "A" * 30 + "-Agent", True),
        ("Accoona-" + "A" * 31 + "-Agent", False),
        ("Accoona-^_`[-Agent", True),  # Kong's [A-z] takes the marks between Z and a
        ("Yeti/1.0", True),
        ("NaverYeti/1.0", False),
        ("Zao/1.0", True),
        ("x Zao/1.0", False),
        ("EDI/1", True),
        ("XEDI/1", False),
        ("EDI/x", False),
        ("x PTST/12", True),
        ("x PTST/1", False),
        ("x PTST/1.2 y", False),
        ("Google x/+/web/snippet", True),
        ("/+/web/snippet Google", False),
        ("abc/xbot-1", True),
        ("abc/bot-1", False),
        ("SPIDER", True),
        ("CrAwL", True),
        ("SCRAPE", False),
        ("aws-sdk-dotnet-45/3.7", True),
        ("aws-sdk-dotnet-451/3.7", False),
        ("Boto3/1", False),
        ("Yandexé", False),  # \w is ASCII-only, as in Kong's byte-mode PCRE
    ],
)
def test_builtin_list_edges(agent: str, refused: bool) -> None:
    assert is_bot(agent.encode().decode("latin-1")) is refused


# -- the decision, through the plugin's access hook ----------------------------------------------
def build(config: str = "{}") -> tuple[Runtime, BotDetection]:
    text = (
        '_format_version: "3.0"\nroutes: [{name: r, paths: [/]}]\n'
        f"plugins: [{{name: bot-detection, route: r, config: {config}}}]\n"
    )
    runtime = compile_runtime(load_config(text).config, "0" * 32)
    (plugin,) = runtime.routes[0].plugins
    assert isinstance(plugin, BotDetection)
    return runtime, plugin


def access(built: tuple[Runtime, BotDetection], *agents: bytes, accept: bytes = b"") -> Any:
    """The plugin's answer to a request sending ``agents`` as its User-Agent lines."""
    runtime, plugin = built
    headers = [(b"user-agent", agent) for agent in agents]
    if accept:
        headers.append((b"accept", accept))
    scope = {"method": "GET", "path": "/", "headers": headers, "query_string": b""}
    plan = runtime.routes[0]
    ctx = RequestContext(runtime, scope, None, plan, None, "/", "h", 80, "127.0.0.1", "id", 0.0)  # type: ignore[arg-type]
    result = asyncio.run(plugin.access(ctx))
    return (result.status, result.message) if isinstance(result, Exit) else None


FORBIDDEN = (403, "Forbidden")


def test_decision_order() -> None:
    plain = build()
    assert access(plain) is None  # no User-Agent: nothing to examine
    assert access(plain, b"") is None
    assert access(plain, CHROME_MAC.encode()) is None
    assert access(plain, b"curl/7.43.0") is None
    assert access(plain, FACEBOOK.encode()) == FORBIDDEN
    # allow wins over the built-in list and over deny
    both = build(f"{{allow: ['^{FACEBOOK}$', Hello], deny: [Hello, curl]}}")
    assert access(both, FACEBOOK.encode()) is None
    assert access(both, HELLOWORLD.encode()) is None
    assert access(both, b"curl/7.43.0") == FORBIDDEN
    assert access(both, FACEBOOK.encode() + b" x") == FORBIDDEN  # allow did not match: built-in
    # patterns are case-sensitive searches on the stripped value
    deny = build(f"{{deny: [{HELLOWORLD}, '^tool$']}}")
    assert access(deny, b"x HelloWorld y") == FORBIDDEN
    assert access(deny, b"helloworld") is None
    assert access(deny, b" \ttool \t") == FORBIDDEN


def test_several_user_agents_are_refused() -> None:
    # Kong reads a repeated header as a list: 400, whatever the values.
    answer = access(build(), b"curl/7.43.0", b"curl/7.43.0")
    assert answer == (400, "Only one User-Agent header allowed")


def test_latin1_agent_and_utf8_pattern() -> None:
    # Kong matches bytes: a pattern's UTF-8 letters match the same bytes in the header.
    built = build("{deny: ['Ünïcode\\w']}")
    assert access(built, "Ünïcode_".encode()) == FORBIDDEN
    assert access(built, "Ünïcodeé".encode()) is None  # \w is ASCII-only


def test_decisions_are_cached_per_config_and_bounded() -> None:
    _, plugin = build("{deny: ['^evil']}")
    for n in range(UA_CACHE_SIZE + 500):
        plugin.decide(f"agent-{n}")
    info = plugin.cached.cache_info()
    assert info.currsize == UA_CACHE_SIZE and info.maxsize == UA_CACHE_SIZE
    assert plugin.decide("evil-1") == DENY
    assert plugin.decide("evil-1") == DENY and plugin.cached.cache_info().hits == 1
    # long agents are examined every time, never kept
    long_agent = "evil" + "x" * MAX_CACHED_AGENT
    assert plugin.decide(long_agent) == DENY
    assert plugin.cached.cache_info().currsize == UA_CACHE_SIZE
    # a new config is a new plugin with its own cache (Kong's invalidation spec): the same agent
    # decides anew
    _, other = build("{allow: ['^evil']}")
    assert other.decide("evil-1") == ALLOW


# -- against a naive reference -----------------------------------------------------------------
#: Patterns that read the same in PCRE and Python (literals, classes, anchors, alternatives).
PATTERN = st.sampled_from(
    ["curl", "^curl/", "Mozilla", "bot", "[Bb]ot", "Hello|World", r"\d+\.\d+$", "^$", "x{2,}",
     "Chrome/1[0-9]+", "(?i)python", "^Go-", "spider", "Safari", r"\bJava\b", "^[a-z]+$"]
)  # fmt: skip
AGENT_PART = st.sampled_from(
    ["curl/7.43.0", "Mozilla/5.0", " (X11)", "Chrome/124.0", "Safari/537.36", "Googlebot/2.1",
     "HelloWorld", "python-requests/2.31", "Go-http-client/1.1", "xx", "", " ", "\t", "Java",
     "bot", "Bot 1", "spider", "okhttp/4.9", "é", "PTST/12"]
)  # fmt: skip


def reference(allow: list[str], deny: list[str], raw: str) -> int:
    agent = raw.strip(" \t\n\x0b\x0c\r")
    if any(re.search(p, agent, re.ASCII) for p in allow):
        return ALLOW
    if any(re.search(p, agent, re.ASCII) for p in deny):
        return DENY
    return BOT if is_bot(agent) else PASS


@settings(max_examples=300, deadline=None)
@given(
    allow=st.lists(PATTERN, max_size=3),
    deny=st.lists(PATTERN, max_size=3),
    agents=st.lists(st.lists(AGENT_PART, max_size=4).map("".join), min_size=1, max_size=5),
)
def test_decision_matches_reference(allow: list[str], deny: list[str], agents: list[str]) -> None:
    config = json.dumps({"allow": allow, "deny": deny})
    built = build(config)
    _, plugin = built
    for agent in agents + agents:  # twice: the cached answer is the same
        expected = reference(allow, deny, agent)
        assert plugin.decide(agent) == expected, (agent, allow, deny)
        answer = access(built, agent.encode("latin-1"))
        assert answer == (FORBIDDEN if expected >= DENY else None)


# -- schema ------------------------------------------------------------------------------------
def test_schema() -> None:
    spec = lookup("bot-detection")
    assert spec is not None and spec.priority == 2500 and spec.no_consumer
    base = '_format_version: "3.0"\nplugins:\n'
    loaded = load_config(base + "- {name: bot-detection}\n")
    assert loaded.config.plugins[0].config == {"allow": [], "deny": []}
    loaded = load_config(base + "- {name: bot-detection, config: {allow: null, deny: [a]}}\n")
    assert loaded.config.plugins[0].config == {"allow": [], "deny": ["a"]}
    with pytest.raises(ConfigError) as info:
        load_config(
            base + "- name: bot-detection\n"
            "  route: r\n"
            "  config: {allow: ['(https?:\\/\\/.*', ok], deny: ['\\p{L}', '(?<=a+)b', 3], x: 1}\n"
            "- {name: bot-detection, service: s, config: {deny: x}}\n"
            "- {name: bot-detection, consumer: c}\n"
            "routes: [{name: r, paths: [/]}]\nservices: [{name: s, host: example.test}]\n"
            "consumers: [{username: c}]\n"
        )
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "plugins[0].config.allow[0]: not a valid regex: (https?:\\/\\/.*",
        "plugins[0].config.deny[0]: not a valid regex: \\p{L} "
        "(fastkong: \\p is not supported by Python's re)",
        "plugins[0].config.deny[1]: not a valid regex: (?<=a+)b "
        "(fastkong: look-behind requires fixed-width pattern)",
        "plugins[0].config.deny[2]: expected a string",
        "plugins[0].config.x: unknown field",
        "plugins[1].config.deny: expected an array",
        "plugins[2].consumer: value must be null",
    ]


# -- a running gateway ---------------------------------------------------------------------------
def detect(**config: Any) -> list[dict[str, Any]]:
    return [{"name": "bot-detection", "config": config}]


ROUTES: dict[str, list[dict[str, Any]]] = {
    "bot": detect(),
    "bot2": detect(deny=[HELLOWORLD]),
    "bot3": detect(allow=[FACEBOOK]),
    "plain": [],
}


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    routes = [
        {"name": name, "hosts": [f"{name}.test"], "plugins": plugins}
        for name, plugins in ROUTES.items()
    ]
    config = {
        "_format_version": "3.0",
        "services": [{"name": "echo", "url": f"http://127.0.0.1:{echo.port}", "routes": routes}],
    }
    return gateway_with(json.dumps(config))


def get(gateway: Gateway, host: str, agent: str | None, **headers: str) -> httpx.Response:
    sent = {"host": host, **headers}
    if agent is not None:
        sent["user-agent"] = agent
    with httpx.Client(headers={}) as client:
        client.headers.pop("user-agent", None)  # send no agent unless asked
        return client.get(gateway.url("/request"), headers=sent)


def assert_forbidden(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert r.json() == {"message": "Forbidden", "request_id": r.headers["x-kong-request-id"]}
    assert "x-echo-server" not in r.headers


@pytest.mark.integration
@pytest.mark.parametrize("agent", [None, CHROME_MAC, HELLOWORLD, "curl/7.43.0"])
def test_gateway_allows_regular_requests(gateway: Gateway, agent: str | None) -> None:
    r = get(gateway, "bot.test", agent)
    assert r.status_code == 200, r.text
    assert r.headers["x-echo-server"] == "echo-1"
    assert echoed_headers(r.json()).get("user-agent") == ([agent] if agent is not None else None)


@pytest.mark.integration
@pytest.mark.parametrize("agent", ["Googlebot/2.1 (+http://www.google.com/bot.html)", FACEBOOK])
def test_gateway_blocks_bots(gateway: Gateway, agent: str) -> None:
    assert_forbidden(get(gateway, "bot.test", agent))
    assert get(gateway, "plain.test", agent).status_code == 200  # only where configured


@pytest.mark.integration
def test_gateway_deny_and_allow(gateway: Gateway) -> None:
    assert_forbidden(get(gateway, "bot2.test", HELLOWORLD))
    assert get(gateway, "bot3.test", FACEBOOK).status_code == 200  # allow beats the list
    assert_forbidden(get(gateway, "bot3.test", "Twitterbot/1.0"))


@pytest.mark.integration
def test_gateway_error_negotiation_and_repeated_header(gateway: Gateway) -> None:
    r = get(gateway, "bot.test", FACEBOOK, accept="text/plain")
    assert r.status_code == 403
    assert r.text == f"Forbidden\nrequest_id: {r.headers['x-kong-request-id']}\n"
    answer = gateway.raw(
        b"GET /request HTTP/1.1\r\nHost: bot.test\r\nUser-Agent: curl/7.43.0\r\n"
        b"User-Agent: curl/7.43.0\r\nConnection: close\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert json.loads(body)["message"] == "Only one User-Agent header allowed"
