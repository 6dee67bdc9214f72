"""bot-detection: refuse requests whose User-Agent names a bot, a crawler or an HTTP library.

Kong's ``kong/plugins/bot-detection/{schema,handler,rules}.lua``. The decision, per request:

- no ``User-Agent`` header: the request passes; sent more than once: 400 "Only one User-Agent
  header allowed" (Kong reads the header as a list then);
- the value, stripped of surrounding whitespace, is tried against ``allow`` first (a match
  passes, nothing else is tried), then ``deny``, then the built-in list below; a ``deny`` or
  built-in match is ``kong.response.error(403)``, i.e. 403 "Forbidden";
- ``allow`` and ``deny`` are PCRE patterns, found anywhere in the value, case-sensitive
  (``ngx.re.find(ua, re, "jo")``), run here as :mod:`fastkong.plugins.bundled._pcre` translates
  them (same matches; what Python cannot run is refused at config load, with the reason).

Decisions are cached per user agent, as Kong caches them (an LRU of 10,000 agents per plugin
config): a config reload builds a new plugin and so a new cache. An agent longer than
:data:`MAX_CACHED_AGENT` is examined every time instead, so a flood of distinct long agents
costs CPU, never more than ``UA_CACHE_SIZE * MAX_CACHED_AGENT`` characters of memory.

The built-in list refuses the agents Kong 3.9's ``rules.lua`` refuses (a list Kong took from
uap-core's bot patterns). Kong runs each of its 14 patterns as a search, and only whether one
matches counts, so every optional prefix or suffix in them (version numbers, captures) can be
dropped and patterns that others cover can go: what remains is written here as names refused
wherever they occur, plus a few shapes. ``tests/plugins/test_bot_detection.py`` runs real
agents through it, and the list was checked against Kong's own patterns under PCRE2.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
from msgspec import Meta

from fastkong.plugins.base import Exit, Plugin, kong_error
from fastkong.plugins.bundled._pcre import check_regex, compile_pcre
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

#: Kong's LRU size per plugin config.
UA_CACHE_SIZE: Final = 10_000
#: Agents longer than this are not cached (real browsers send 100 to 400 characters).
MAX_CACHED_AGENT: Final = 512
ONLY_ONE: Final = "Only one User-Agent header allowed"
FORBIDDEN: Final = "Forbidden"  # kong.response.error(403)'s default message

#: Decisions (Kong's MATCH_* values; refused from DENY on).
PASS: Final = 0
ALLOW: Final = 1
DENY: Final = 2
BOT: Final = 3

#: What Kong's ``strip`` removes around the value: space and \t \n \v \f \r.
_WHITESPACE: Final = " \t\n\x0b\x0c\r"

# -- the built-in list ---------------------------------------------------------------------------
#: Refused wherever they occur, letter case as written.
_NAMES: Final = (
    # HTTP client libraries and fetchers
    "Apache-HttpClient",
    "Go-http-client",
    "Google-HTTP-Java-Client",
    "HttpMonitor",
    "JNLP",
    "Python-urllib",
    "TLSProber",
    "WinHTTP",
    "aihttp",  # sic: aiohttp's own agent ("aiohttp/3.9") is not refused
    "axios",
    "http%20client",
    "okhttp",
    "reqwest",
    "scalaj-http",
    "unirest-java",
    "unirest-net",
    "unirest-nodejs",
    "unirest-php",
    "unirest-python",
    "unirest-ruby",
    # search engines and their crawlers
    "AdsBot-Google",
    "AppEngine-Google",
    "Ask Jeeves",
    "BingPreview",
    "Googlebot",
    "Google SketchUp",
    "Mediapartners-Google",
    "Qwantify",
    "Slurp",
    "YahooSeeker",
    "YodaoBot",
    "altavista",
    "bingbot",
    "lycos",
    "msnbot",
    "msrbot",
    "yacy",
    # link previews and social networks
    "LinkedInBot",
    "Slack-ImgProxy",
    "Slackbot-LinkExpanding",
    "Twitterbot",
    "WhatsApp",
    # feed readers and aggregators
    "BlogBridge",
    "Bloglovin",
    "Daumoa",
    "Feed Seeker Bot",
    "Feedbin",
    "Mtps Feed Aggregation System",
    "Netvibes",
    "NewsGator",
    "SimplePie",
    "SimpleRSS",
    "Stringer",
    "Tiny Tiny RSS",
    "WordPress",
    # archivers, indexers and research crawlers
    "BUbiNG",
    "InternetArchive",
    "Nutch",
    "archiver",
    "heritrix",
    "htdig",
    "larbin",
    "netresearch",
    "semanticdiscovery",
    "www.almaden.ibm.com",
    # site checkers, SEO tools, screenshots and monitors
    "Catchpoint",
    "Checklinks",
    "GomezAgent",
    "PagePeeker",
    "PagesInventory",
    "Peeplo Screenshot Bot",
    "Rival IQ",
    "SEOstats",
    "SemrushBot",
    "SiteCon",
    "ThumbShotsBot",
    "Thumbshots.ru",
    "URL2PNG",
    "Web-sniffer",
    "WebThumb",
    "WhatWeb",
    "YottaaMonitor",
    "ZooShot",
    "findlinks",
    "masscan",
    # other named bots
    "50.nu",
    "Aboundex",
    "BotName/$BotVersion",
    "BotSeer",
    "BoardReader Blog Indexer",
    "BoardReader Favicon Fetcher",
    "Charlotte",
    "Cityreview Robot",
    "Finderbots",
    "Flamingo_SearchEngine",
    "FollowSite Bot",
    "Genieo",
    "HiddenMarket",
    "HooWWWer",
    "Icarus6j",
    "IconSurf",
    "IlTrovatore",
    "InfuzApp",
    "Job Roboter",
    "KaloogaBot",
    "Kraken",
    "Kurzor",
    "LEIA",
    "LesnikBot",
    "Linguee Bot",
    "LinkAider",
    "Lite Bot",
    "Llaut",
    "MJ12bot",
    "Mail.RU_Bot",
    "Nymesis",
    "OOZBOT",
    "ObjectsSearch",
    "OgScrper",
    "Orbiter",
    "PaxleFramework",
    "PlantyNet_WebRobot",
    "Pompos",
    "Read%20Later",
    "Reaper",
    "RedCarpet",
    "Retreiver",
    "Riddler",
    "Scrapy",
    "Scrubby",
    "Simpy",
    "SiteCat Webbot",
    "Squrl Java",
    "TheUsefulbot",
    "Vagabondo",
    "VoilaBot",
    "Votay bot",
    "WIRE",
    "Wotbox",
    "Yowedo",
    "ZeBot_www.ze.bz",
    "ZyBorg",
    "blitzbot",
    "charlotte",
    "clumboot",
    "furlbot",
    "gigabot",
    "gonzo1",
    "grub-client",
    "holmes",
    "ichiro",
    "masidani_bot",
    "mogimogi",
    "mozDex",
    "scooter",
    "searchsight",
    "seekbot",
    "snappy",
    # and anything scraping
    "Scrape",
    "scrape",
)

#: Refused wherever they occur, in any letter case.
_ANY_CASE: Final = ("spider", "crawl")

#: ``[A-z]`` in Kong's list: the ASCII letters and the six marks between ``Z`` and ``a``.
_AZ: Final = r"[A-Za-z\[\\\]^_`]"

#: Product names refused when "/" and a digit follow them, at the start of a word.
_VERSIONED: Final = (
    "008",
    "Altresium",
    "Argus",
    "BaiduMobaider",
    "BoardReader",
    "DNSGroup",
    "DataparkSearch",
    "EDI",
    "Goodzer",
    "Grub",
    "INGRID",
    "Infohelfer",
    "LOOQ",
    "PathDefender",
    "Peew",
    "PostPost",
    "Steeler",
    "VSE",
    "WebCrunch",
    "WebZIP",
    "envolk",
    "sproose",
    "wminer",
)
#: S3 clients and AWS SDKs, refused with a "/major.minor" version.
_S3_CLIENTS: Final = (
    r"\b(?:Boto3?|JetS3t|s3fs|aws-cli|aws-sdk-(?:cpp|go|java|nodejs|ruby2?|dotnet-(?:\d\d?|core)))"
    r"/\d+\.\d"
)

#: Shapes: ``(hints, pattern)``; the pattern is only searched for when the agent contains one
#: of the hints (none: always). Each pattern starts with a literal where it can, which Python's
#: engine finds fast; a pattern that cannot gets hints instead.
_SHAPES: Final[tuple[tuple[tuple[str, ...], str], ...]] = (
    # a bot-like word and a version: "...bot/1", "...Bot 2", "Indexer/3", "Archiver 4"
    ((), r"ot(?<=[Bb]ot)[/ ]\d"),
    ((), r"ndexer(?<=[Ii]ndexer)[/ ]\d"),
    ((), r"Archiver[/ ]\d"),
    # "/name-1.0" products: any word ending in bot, and a few names, before "-" and a number
    ((), rf"/(?:{_AZ}+[Bb]ot-|(?:Axtaris|Isara|ShopSalad|Tailsweep|fetchurl)[ -])\d"),
    ((*_VERSIONED, "Y!J-BR"), r"\b(?:" + "|".join(_VERSIONED) + r"|Y!J-BR[A-Z])/\d"),
    (("Boto", "JetS3t", "s3fs", "aws-"), _S3_CLIENTS),
    ((), r"facebookexternalhit/\d+\.\d"),
    ((), r"Pingdom\.com_bot_version_\d+\.\d"),
    # WebPageTest's suffix: " PTST/" and a version (two digits at least) ending the agent
    ((), r" PTST/\d+(?:\.\d+|\d)$"),
    # the first "Google" of a line is enough (atomic: the others are not tried again), which
    # keeps a long agent repeating "Google" linear
    (("/+/web/snippet",), r"(?m)^(?>.*?Google).*/\+/web/snippet"),
    # names refused only at the start of the agent
    ((), r"^(?:NING|Zao|vortex|voyager)"),
    # names with a wildcard part
    ((), rf"Accoona-{_AZ}{{1,30}}-Agent"),
    ((), rf"Xerka {_AZ}{{1,30}}Bot"),
    ((), rf"WeSEE:{_AZ}"),
    ((), r"IP2[a-z]{1,30}Bot"),
    ((), r"archive.{0,30}\.org_bot"),
    ((), r"Microsoft .{0,30} Bot"),
    ((), r"Xenu(?:.s)? Link Sleuth"),
    ((), r"boitho.com-dc"),
    ((), r"WASALive.Bot"),
    ((), r"Yandex\w"),
    ((), r"Yeti(?<!\wYeti)"),
    ((), r"jbot\b"),
    # "favicon" inside a word, with at most 30 word characters before and after it
    ((), r"favicon(?<!\w{31}favicon)(?!\w{31})"),
)

#: The shapes compiled (``re.ASCII``: \w, \b and letter case are ASCII-only, as in Kong's
#: byte-mode PCRE).
_SEARCHES: Final = tuple((hints, re.compile(p, re.ASCII).search) for hints, p in _SHAPES)


def is_bot(agent: str) -> bool:
    """True when the built-in list refuses ``agent`` (already stripped)."""
    # str.lower() lower-cases no latin-1 character into an ASCII letter: the test is exact.
    lowered = agent.lower()
    if any(word in lowered for word in _ANY_CASE):
        return True
    if any(name in agent for name in _NAMES):
        return True
    for hints, search in _SEARCHES:
        if (not hints or any(hint in agent for hint in hints)) and search(agent) is not None:
            return True
    return False


# -- the plugin ----------------------------------------------------------------------------------
Regex = Annotated[str, Meta(extra={"kong_check": check_regex})]


class BotDetectionConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    allow: list[Regex] = msgspec.field(default_factory=list)
    deny: list[Regex] = msgspec.field(default_factory=list)


def examiner(allow: list[str], deny: list[str]) -> Callable[[str], int]:
    """The decision for one raw User-Agent value (Kong's ``examine_agent``).

    A closure over compiled patterns only, so the cache wrapping it holds no reference back
    to the plugin (snapshots must be freed by reference counting alone)."""
    allowed = tuple(compile_pcre(p).search for p in allow)
    denied = tuple(compile_pcre(p).search for p in deny)

    def examine(raw: str) -> int:
        agent = raw.strip(_WHITESPACE)
        for search in allowed:
            if search(agent) is not None:
                return ALLOW
        for search in denied:
            if search(agent) is not None:
                return DENY
        return BOT if is_bot(agent) else PASS

    return examine


@register_plugin
class BotDetection(Plugin):
    name = "bot-detection"
    priority = 2500
    Config = BotDetectionConfig
    no_consumer = True

    def __init__(self, config: BotDetectionConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.examine = examiner(config.allow, config.deny)
        self.cached = functools.lru_cache(maxsize=UA_CACHE_SIZE)(self.examine)

    def decide(self, agent: str) -> int:
        """The decision for a raw User-Agent value, from the cache when it can be."""
        if len(agent) > MAX_CACHED_AGENT:
            return self.examine(agent)
        return self.cached(agent)

    async def access(self, ctx: RequestContext) -> Exit | None:
        values = ctx.headers.get("user-agent")
        if not values:
            return None
        if len(values) > 1:
            return kong_error(400, ONLY_ONE)
        if self.decide(values[0]) >= DENY:
            return kong_error(403, FORBIDDEN)
        return None
