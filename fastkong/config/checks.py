"""Value checks with Kong's messages: hosts, paths, names, tags, targets, regexes.

Each ``check_*`` function takes an already type-checked value and returns ``None`` when it is
valid, or Kong's error message. They mirror ``kong:kong/db/schema/typedefs.lua``,
``kong:kong/tools/ip.lua`` and ``kong:kong/tools/uri.lua`` (re-implemented, same rules and
wording). Schema fields attach them through ``msgspec.Meta(extra={"kong_check": fn})``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import hashlib
import ipaddress
import re
from collections.abc import Callable
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fastkong.config import errors as E

Check = Callable[[Any], "str | None"]

PROTOCOLS: Final = ("grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp")
HTTP_PROTOCOLS: Final = ("grpc", "grpcs", "http", "https")
DEFAULT_TARGET_PORT: Final = 8000


# -- addresses (kong:kong/tools/ip.lua) ------------------------------------------------------
class Address(NamedTuple):
    type: str  # "ipv4", "ipv6" or "name"
    host: str
    port: int | None


_IPV4 = re.compile(r"^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})(?::([0-9]+))?\Z")
_HEX = r"([0-9A-Fa-f]{1,4})"
_IPV6 = re.compile("^" + ":".join([_HEX] * 8) + r"\Z")
_HOSTNAME = re.compile(r"^[0-9A-Za-z\-._]+\Z")


_DIGITS_DOTS = re.compile(r"[0-9.]+")


def hostname_type(name: str) -> str:
    if name.count(":") > 1:
        return "ipv6"
    if _DIGITS_DOTS.fullmatch(name.replace(":", "")):
        return "ipv4"
    return "name"


def _normalize_ipv4(address: str) -> tuple[str, int | None] | str:
    m = _IPV4.match(address)
    if m is None or ((":" in address) != (m.group(5) is not None)):
        return f"invalid ipv4 address: {address}"
    octets = [int(g) for g in m.groups()[:4]]
    if any(o > 255 for o in octets):
        return f"invalid ipv4 address: {address}"
    port = int(m.group(5)) if m.group(5) is not None else None
    if port is not None and port > 65535:
        return "invalid port number"
    return ".".join(str(o) for o in octets), port


def _normalize_ipv6(address: str) -> tuple[str, int | None] | str:
    port: int | None = None
    m = re.match(r"^\[([^\[\]]*)\](.*)\Z", address, re.S)
    if m:
        check, rest = m.group(1), m.group(2)
        if rest:
            pm = re.fullmatch(r":([0-9]+)", rest)
            if pm is None:
                return "invalid ipv6 address"
            port = int(pm.group(1))
            if port > 65535:
                return "invalid port number"
    else:
        check = address
    if check.startswith(":"):
        check = "0" + check
    if check.endswith(":"):
        check = check + "0"
    if "::" in check:
        count = check.count(":")
        check = check.replace("::", ":" + "0:" * (8 - count), 1)
    g = _IPV6.match(check)
    if g is None:
        return f"invalid ipv6 address: {address}"
    return ":".join(part.rjust(4, "0") for part in g.groups()).lower(), port


def _check_hostname(address: str) -> tuple[str, int | None] | str:
    name, port = address, None
    m = re.search(r":([0-9]+)\Z", address)
    if m:
        name = address[: m.start()]
        port = int(m.group(1))
        if port > 65535:
            return "invalid port number"
    if not _HOSTNAME.match(name):
        return f"invalid hostname: {address}"
    segments = name.split(".")
    for i, seg in enumerate(segments):
        if seg.endswith("-") or (seg == "" and i != len(segments) - 1):
            return f"invalid hostname: {address}"
    return name, port


def normalize_ip(address: str) -> Address | str:
    """Kong's ``normalize_ip``: the parsed address, or an error message."""
    kind = hostname_type(address)
    if kind == "ipv4":
        res = _normalize_ipv4(address)
    elif kind == "ipv6":
        res = _normalize_ipv6(address)
    else:
        res = _check_hostname(address)
    if isinstance(res, str):
        return res
    return Address(kind, res[0], res[1])


def format_target(target: str) -> str:
    """``host:port`` with Kong's default target port; IPv6 expanded and in brackets."""
    addr = normalize_ip(target)
    assert not isinstance(addr, str)
    port = addr.port if addr.port is not None else DEFAULT_TARGET_PORT
    if addr.type == "ipv6":
        return f"[{addr.host}]:{port}"
    return f"{addr.host}:{port}"


# -- typedefs ----------------------------------------------------------------------------------
def check_host(host: str) -> str | None:
    addr = normalize_ip(host)
    if isinstance(addr, str):
        return "must not have a port" if addr == "invalid port number" else f"invalid value: {host}"
    if addr.port is not None:
        return "must not have a port"
    return None


def check_host_with_optional_port(host: str) -> str | None:
    addr = normalize_ip(host)
    return addr if isinstance(addr, str) else None


def check_sni(host: str) -> str | None:
    addr = normalize_ip(host)
    if isinstance(addr, str):
        return "must not have a port" if addr == "invalid port number" else f"invalid value: {host}"
    if addr.type != "name":
        return "must not be an IP"
    if addr.port is not None:
        return "must not have a port"
    return None


def check_wildcard_host(host: str) -> str | None:
    idx = host.find("*")
    if idx != -1:
        if idx != 0 and idx != len(host) - 1:
            return "wildcard must be leftmost or rightmost character"
        if host.count("*") > 1:
            return "only one wildcard must be specified"
        host = host.replace("*", "wildcard")
    return check_sni(host)


def check_route_host(host: str) -> str | None:
    if not re.fullmatch(r"[^*]*\*?[^*]*", host):
        return "invalid wildcard: must have at most one wildcard"
    if not (host.startswith("*.") or host.endswith(".*") or "*" not in host):
        return "invalid wildcard: must be placed at leftmost or rightmost label"
    return check_host_with_optional_port(host.replace("*", "abc"))


def check_upstream_name(name: str) -> str | None:
    addr = normalize_ip(name)
    if isinstance(addr, str):
        return f"Invalid name ('{name}'); must be a valid hostname"
    if addr.type != "name":
        return f"Invalid name ('{name}'); no ip addresses allowed"
    if addr.port is not None:
        return f"Invalid name ('{name}'); no port allowed"
    return None


def check_target(target: str) -> str | None:
    if isinstance(normalize_ip(target), str):
        return f"Invalid target ('{target}'); not a valid hostname or ip address"
    return None


def check_ip_or_cidr(value: str) -> str | None:
    """Kong's ``is_valid_ip_or_cidr``: ``inet_pton`` forms (no zone), prefix ``0``..``32/128``."""
    ip, slash, prefix = value.partition("/")
    try:
        addr = ipaddress.ip_address(ip)
        if "%" in ip or (slash and prefix not in _PREFIXES[: addr.max_prefixlen + 1]):
            raise ValueError(value)
    except ValueError:
        return f"invalid ip or cidr range: '{value}'"
    return None


_PREFIXES: Final = tuple(str(n) for n in range(129))


_RFC3986_PATH = re.compile(r"^/[A-Za-z0-9.\-_~/%:@!$&'()*+,;=]*\Z")


def _path_chars(path: str) -> tuple[str, str] | None:
    """Kong's ``validate_path``: (message, kind) or None; kind is "rfc3986" or "percent"."""
    if not _RFC3986_PATH.match(path):
        msg = f"invalid path: '{path}' (characters outside of the reserved list of RFC 3986 found)"
        return msg, "rfc3986"
    raw = re.sub(r"%[0-9A-Fa-f]{2}", "___", path)
    pos = raw.find("%")
    if pos != -1:
        return f"invalid url-encoded value: '{raw[pos : pos + 3]}'", "percent"
    return None


def check_path(path: str) -> str | None:
    """``typedefs.path``: a service path, a health-check path, a cookie path."""
    if not path.startswith("/"):
        return "should start with: /"
    if "//" in path:
        return "must not have empty segments"
    bad = _path_chars(path)
    return bad[0] if bad else None


def check_router_path(path: str) -> str | None:
    """``typedefs.router_path``: ``/prefix`` or ``~/regex`` (which must compile)."""
    if not (path.startswith("/") or path.startswith("~/")):
        return "should start with: / (fixed path) or ~/ (regex path)"
    if "//" in path:
        return "must not have empty segments"
    bad = _path_chars(path)
    if bad is not None and bad[1] == "percent":
        return bad[0]
    if not path.startswith("~"):
        normalized = normalize_uri(path, merge_slashes=True)
        if normalized != path:
            return f"non-normalized path, consider use '{normalized}' instead"
        return None
    regex = path[1:]
    try:
        compile_path_regex(regex)
    except re.error as exc:
        return f"invalid regex: '{regex}' (PCRE returned: {_pcre_compile_failure(regex, exc)})"
    except OverflowError:  # a {n} count beyond Python's limit (PCRE2's is 65535)
        return f"invalid regex: '{regex}' (PCRE returned: number too big in {{}} quantifier)"
    except RecursionError:  # PCRE2 stops at 250 nested groups
        return f"invalid regex: '{regex}' (PCRE returned: parentheses are too deeply nested)"
    return None


_NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")


#: Python's ``re`` compile errors, by the start of their message, as PCRE2 words the same
#: mistake (``pcre2_error.c``): users search for the message Kong prints.
_PCRE2_MESSAGES: Final = (
    ("missing ), unterminated subpattern", "missing closing parenthesis"),
    ("unbalanced parenthesis", "unmatched closing parenthesis"),
    ("nothing to repeat", "quantifier does not follow a repeatable item"),
    ("multiple repeat", "quantifier does not follow a repeatable item"),
    ("unterminated character set", "missing terminating ] for character class"),
    ("bad character range", "range out of order in character class"),
    ("min repeat greater than max repeat", "numbers out of order in {} quantifier"),
    ("missing group name", "subpattern name expected"),
    ("unknown extension ?<>", "subpattern name expected"),
    ("bad escape", "unrecognized character follows \\"),
    ("unknown group name", "reference to non-existent subpattern"),
    ("invalid group reference", "reference to non-existent subpattern"),
    (
        "redefinition of group name",
        "two named subpatterns have the same name (PCRE2_DUPNAMES not set)",
    ),
)


def _pcre_compile_failure(regex: str, exc: re.error) -> str:
    """What OpenResty's ``ngx.re`` says of a pattern PCRE2 refuses (``pcre2_compile() failed:
    <reason> in "<pattern>"``); Python's own words where no PCRE2 wording is known."""
    for python, pcre in _PCRE2_MESSAGES:
        if exc.msg.startswith(python):
            return f'pcre2_compile() failed: {pcre} in "{regex}"'
    return str(exc)


def compile_path_regex(regex: str) -> re.Pattern[str]:
    """A Kong (PCRE) route regex as a Python pattern: ``(?<name>`` becomes ``(?P<name>``."""
    return re.compile(_NAMED_GROUP.sub("(?P<", regex))


_UTF8_NAME = re.compile(r"^[A-Za-z0-9.\-_~\u0080-\U0010ffff]+\Z")


def check_utf8_name(name: str) -> str | None:
    if not _UTF8_NAME.match(name):
        return (
            f"invalid value '{name}': the only accepted ascii characters are alphanumerics "
            "or ., -, _, and ~"
        )
    return None


_TAG = re.compile(r"^[ !-+\-.0-~\u0080-\U0010ffff]+\Z")


def check_tag(tag: str) -> str | None:
    if not _TAG.match(tag):
        return (
            f"invalid tag '{tag}': expected printable ascii (except `,` and `/`) "
            "or valid utf-8 sequences"
        )
    return None


def check_method(method: str) -> str | None:
    return None if re.fullmatch(r"[A-Z]+", method) else E.MATCH.format(method)


def check_header_name(name: str) -> str | None:
    if not re.fullmatch(r"[a-zA-Z0-9\-_]+", name):
        return f"bad header name '{name}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
    return None


def check_route_header_name(name: str) -> str | None:
    if name.lower() == "host":
        return "cannot contain 'host' header, which must be specified in the 'hosts' attribute"
    return check_header_name(name)


_TOKEN_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f\x80-\U0010ffff \t()<>@,;:\\"/?={}\[\]]')


def check_cookie_name(name: str) -> str | None:
    if _TOKEN_FORBIDDEN.search(name):
        return (
            "contains one or more invalid characters. ASCII control characters (0-31;127), "
            'space, tab and the characters ()<>@,;:\\"/?={}[] are not allowed.'
        )
    return None


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z", re.I)


def is_uuid(value: object) -> bool:
    return isinstance(value, str) and len(value) == 36 and _UUID.match(value) is not None


def check_uuid(value: str) -> str | None:
    return None if is_uuid(value) else E.UUID


_SUBSETS: Final = (
    ("http", "https"),
    ("tcp", "tls", "udp"),
    ("tls_passthrough",),
    ("grpc", "grpcs"),
)


def check_protocol_subsets(protocols: list[str]) -> str | None:
    """Route protocols: Kong's ``mutually_exclusive_subsets``."""
    member_of: list[tuple[str, ...]] = []
    for p in protocols:
        for subset in _SUBSETS:
            if p in subset and subset not in member_of:
                member_of.append(subset)
    if len(member_of) <= 1:
        return None
    listed = ", ".join(f"({E.quoted_list(s)})" for s in member_of)
    return E.MUTUALLY_EXCLUSIVE_SETS.format(listed)


# -- PEM and X.509 (kong:kong/db/schema/typedefs.lua `certificate`, `key`; the entities'
# checks in certificates.lua and ca_certificates.lua), loaded with `cryptography` --------------
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END \1-----")
_CERT_TAG: Final = "-----BEGIN CERTIFICATE-----"


def pem_blocks(text: str) -> list[tuple[str, bytes]]:
    """The ``(label, DER bytes)`` of each well-formed PEM block in ``text``."""
    out: list[tuple[str, bytes]] = []
    for m in _PEM.finditer(text):
        try:
            der = base64.b64decode("".join(m.group(2).split()), validate=True)
        except (binascii.Error, ValueError):
            continue
        out.append((m.group(1), der))
    return out


@functools.lru_cache(maxsize=256)
def load_certificate(pem: str) -> x509.Certificate | None:
    """The first certificate of a PEM text (as OpenSSL reads it), or None."""
    try:
        return x509.load_pem_x509_certificate(pem.encode("utf-8", "surrogateescape"))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


@functools.lru_cache(maxsize=256)
def load_private_key(pem: str) -> PrivateKeyTypes | None:
    """The private key of a PEM text (unencrypted), or None."""
    try:
        data = pem.encode("utf-8", "surrogateescape")
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def check_certificate(cert: str) -> str | None:
    if load_certificate(cert) is None:
        return "invalid certificate: expected a PEM-encoded X.509 certificate"
    return None


def check_key(key: str) -> str | None:
    if load_private_key(key) is None:
        return "invalid key: expected a PEM-encoded private key"
    return None


def check_public_key(key: str) -> str | None:
    """A jwt secret's ``rsa_public_key`` (Kong: any key OpenSSL loads; here, a public key)."""
    try:
        serialization.load_pem_public_key(key.encode("utf-8", "surrogateescape"))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return "invalid key"
    return None


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def certificate_matches_key(cert: str, key: str) -> bool:
    """Whether the certificate's public key is the private key's (both must load)."""
    c, k = load_certificate(cert), load_private_key(key)
    assert c is not None and k is not None
    return _spki(c.public_key()) == _spki(k.public_key())


def same_key_type(cert: str, other: str) -> bool:
    """Whether two certificates hold keys of one type (RSA, EC, Ed25519...)."""
    a, b = load_certificate(cert), load_certificate(other)
    assert a is not None and b is not None
    return _key_type(a.public_key()) == _key_type(b.public_key())


_KEY_TYPES: Final = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
    dsa.DSAPublicKey,
)


def _key_type(key: PublicKeyTypes) -> int:
    return next((i for i, kind in enumerate(_KEY_TYPES) if isinstance(key, kind)), -1)


def ca_certificate_problem(cert: str, now: datetime.datetime | None = None) -> str | None:
    """Kong's entity check of a CA certificate: one certificate, not expired, a CA."""
    found = cert.find(_CERT_TAG)
    if found != -1 and cert.find(_CERT_TAG, found + len(_CERT_TAG) + 1) != -1:
        return "please submit only one certificate at a time"
    loaded = load_certificate(cert)
    assert loaded is not None
    if loaded.not_valid_after_utc < (now or datetime.datetime.now(datetime.UTC)):
        return 'certificate expired, "Not After" time is in the past'
    try:
        is_ca = loaded.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        return (
            'certificate does not appear to be a CA because it is missing the "CA" basic constraint'
        )
    return None


def certificate_digest(cert: str) -> str:
    """Kong's ``cert_digest``: the SHA-256 of the certificate's DER bytes, in hex."""
    loaded = load_certificate(cert)
    return "" if loaded is None else hashlib.sha256(loaded.public_bytes(Encoding.DER)).hexdigest()


# -- URIs (kong:kong/tools/uri.lua `normalize`) ----------------------------------------------
_RESERVED: Final = frozenset(b"!*'();:@&=+$,/?%#[]")


def normalize_uri(uri: str, merge_slashes: bool = False) -> str:
    """Percent-decode unreserved octets and remove dot segments, as Kong's router does."""
    if uri in ("", "/"):
        return uri
    data = uri.encode("utf-8", "surrogateescape")
    if b"%" in data:
        data = re.sub(rb"%([0-9A-Fa-f]{2})", _decode_octet, data)
    if b"." not in data and (not merge_slashes or b"//" not in data):
        return data.decode("utf-8", "surrogateescape")
    out: list[bytes] = []
    while data:
        if data == b"/.":
            data = b"/"
        elif data == b"/..":
            data = b"/"
            if out:
                out.pop()
        elif data in (b".", b".."):
            data = b""
        elif data.startswith(b"../"):
            data = data[3:]
        elif data.startswith(b"./"):
            data = data[2:]
        elif data.startswith(b"/./"):
            data = data[2:]
        elif data.startswith(b"/../"):
            data = data[3:]
            if out:
                out.pop()
        elif merge_slashes and data.startswith(b"//"):
            data = data[1:]
        else:
            i = data.find(b"/", 1)
            if i != -1:
                out.append(data[:i])
                data = data[i:]
            else:
                out.append(data)
                data = b""
    return b"".join(out).decode("utf-8", "surrogateescape")


def _decode_octet(m: re.Match[bytes]) -> bytes:
    num = int(m.group(1), 16)
    if num in _RESERVED:
        return m.group(0).upper()
    return bytes([num])


#: PCRE's ``$`` (as Kong's migration uses it) also matches before a final newline, like Python's.
_PLAIN_PATH = re.compile(r"^[a-zA-Z0-9.\-_~/%]*$")


def migrate_path(path: str) -> str:
    """Kong's on-the-fly migration of a ``_format_version`` 1.1/2.1 route path to 3.0 form."""
    if _PLAIN_PATH.match(path):
        return normalize_uri(path, merge_slashes=True)
    return "~" + _percent_decode_regex(path)


_REGEX_META: Final = {0x2E: "\\.", 0x5E: "\\^", 0x2D: "\\-", 0x7B: "\\{", 0x7D: "\\}"}
_REGEX_META2: Final = {0x5C: "\\\\", 0x7C: "\\|"}
_RESERVED_REGEX: Final = frozenset(b"!#$%&'()*+,/:;=?@[]")


def _percent_decode_regex(regex: str) -> str:
    def repl(m: re.Match[str]) -> str:
        num = int(m.group(1), 16)
        if num in _RESERVED_REGEX:
            return m.group(0).upper()
        return _REGEX_META.get(num) or _REGEX_META2.get(num) or chr(num)

    return re.sub(r"%([0-9A-Fa-f]{2})", repl, regex) if "%" in regex else regex


def check_url(value: str) -> str | None:
    """Kong's ``typedefs.url``: a URL with a scheme and a host."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        return f"could not parse url. {exc}"
    if not parts.hostname:
        return "missing host in url"
    if not parts.scheme:
        return "missing scheme in url"
    return None


# -- vaults (kong/db/schema/entities/vaults.lua, kong/vaults/env/schema.lua) -----------------
#: Lua's ``^[a-z][a-z%d-]-[a-z%d]+$``: a letter, then letters, digits and dashes, ending in a
#: letter or digit (it is a host in ``{vault://<prefix>/...}``).
_VAULT_PREFIX: Final = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]\Z")
#: Lua's ``^[%a_-][%a%d_-]*$`` (the env vault's variable prefix).
_ENV_VAULT_PREFIX: Final = re.compile(r"[A-Za-z_-][A-Za-z0-9_-]*\Z")
#: Vaults installed (Kong's ``BUNDLED_VAULTS`` in OSS): a prefix may not take their names.
INSTALLED_VAULTS: Final = ("env",)


def check_vault_prefix(prefix: str) -> str | None:
    if not _VAULT_PREFIX.match(prefix):
        return E.MATCH.format(prefix)
    if prefix in INSTALLED_VAULTS:
        return "must not be one of: " + ", ".join(INSTALLED_VAULTS)
    return None


def check_env_vault_prefix(prefix: str) -> str | None:
    return None if _ENV_VAULT_PREFIX.match(prefix) else E.MATCH.format(prefix)
