"""Per-entity rules: shorthands, Kong's subschemas and entity checks, plugin configs.

Each ``process_<entity>`` function receives one entity's fields (a copy, without its nested
children), checks them against the entity's Struct with the generic walker, applies what Kong
expresses as shorthand fields, subschemas and ``entity_checks``, and returns the normalized
fields (:class:`~fastkong.config.validate.Walked`), or None when Kong stops validating the
entity (an unknown plugin, a route with no known protocol).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from fastkong import expressions
from fastkong.config import checks as C
from fastkong.config import errors as E
from fastkong.config import flavor, vault
from fastkong.config import keys as K
from fastkong.config import schema as S
from fastkong.config.meta import Loc
from fastkong.config.validate import Issues, Walked, convert, walk_struct
from fastkong.plugins import registry


@dataclass(frozen=True, slots=True)
class Ctx:
    """Where an entity sits: the fields the loader fills in, and its parent's foreign key."""

    optional: frozenset[str]
    parent_fk: str | None = None
    #: ``_format_version`` 1.1/2.1: route paths get Kong's on-the-fly 3.0 migration.
    migrate_paths: bool = False


Processor = Callable[[dict[str, Any], Loc, Issues, Ctx], "Walked | None"]


def _nonempty(value: Any) -> bool:
    """Kong's ``is_nonempty``: not null, not an empty string, list or map."""
    return value is not None and value != "" and value != [] and value != {}


def _walk(
    cls: type[msgspec.Struct],
    fields: dict[str, Any],
    loc: Loc,
    issues: Issues,
    ctx: Ctx,
    *,
    skip: Iterable[str] = (),
    optional: Iterable[str] = (),
) -> Walked:
    return walk_struct(
        cls, fields, loc, issues, skip=set(skip), optional=ctx.optional | set(optional)
    )


def _conditional(
    issues: Issues,
    loc: Loc,
    walked: Walked,
    fields: dict[str, Any],
    if_field: str,
    when: Callable[[Any], bool],
    then_field: str,
    then: Callable[[Any], str | None],
) -> None:
    """Kong's ``conditional`` entity check: a field error plus the entity-level message.

    Kong runs it even when ``then_field`` already failed its own rules
    (``run_with_invalid_fields``): ``then_match`` inherits those rules, so the check fails
    too, its message taking the field's place when ``then`` itself refuses the value.
    """
    if if_field not in walked.data or not when(walked.data[if_field]):
        return
    message = then(fields.get(then_field))
    if then_field in walked.bad:
        if message is not None:
            issues.replace_field((*loc, then_field), message)
        issues.entity(loc, E.CONDITIONAL.format(if_field))
    elif message is not None:
        issues.field((*loc, then_field), message)
        issues.entity(loc, E.CONDITIONAL.format(if_field))


def _required(value: Any) -> str | None:
    return E.REQUIRED if value is None else None


def _null(value: Any) -> str | None:
    return E.EQ_NULL if value is not None else None


def _one_of(*allowed: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value is None or value in allowed else E.ONE_OF.format(", ".join(allowed))

    return check


# -- services --------------------------------------------------------------------------------
_SCHEME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9+\-.]*):")
_URL_PORT = re.compile(r":([^:\]]*)$")


def parse_url(url: str) -> dict[str, Any] | str:
    """The service ``url`` shorthand: protocol, host, port and path, or an error message.

    The URL is split as LuaSocket's ``socket.url.parse`` splits it (what Kong's shorthand
    uses): the authority runs to the next ``/``; the path stops at the first ``#``, ``?`` or
    ``;``; the user info ends at the first ``@``; the port follows the last ``:``.
    """
    rest, scheme = url, None
    m = _SCHEME.match(rest)
    if m:
        scheme, rest = m.group(1), rest[m.end() :]
    authority = None
    if rest.startswith("//"):
        slash = rest.find("/", 2)
        authority, rest = (rest[2:], "") if slash == -1 else (rest[2:slash], rest[slash:])
    path = re.split(r"[#?;]", rest, maxsplit=1)[0] or None
    if authority is not None:
        authority = authority.partition("@")[2] if "@" in authority else authority
    port: Any = None
    pm = _URL_PORT.search(authority) if authority else None
    if authority and pm:
        port = int(pm.group(1)) if pm.group(1).isascii() and pm.group(1).isdigit() else pm.group(1)
        authority = authority[: pm.start()]
    if not authority:
        return "missing host in url"
    bracketed = len(authority) > 2 and authority[0] == "[" and authority[-1] == "]"
    host = authority[1:-1] if bracketed else authority
    protocol = scheme or {80: "http", 443: "https"}.get(port) or "http"
    if port is None:
        port = {"http": 80, "https": 443}.get(protocol, 80)
    return {"protocol": protocol, "host": host, "port": port, "path": path}


def _not_tls(protocol: Any) -> bool:
    return protocol not in ("https", "tls")


def process_service(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked:
    mark = len(issues)
    url_loc = (*loc, "url")
    derived: dict[str, Any] = {}
    optional: set[str] = set()
    present = "url" in fields
    url = fields.pop("url", None)
    if url is None and present:
        url = "userdata: NULL"  # what Kong's shorthand parses for a null `url`: no host
    if url is not None:
        if not isinstance(url, str):
            issues.field(url_loc, E.STRING)
            optional.add("host")
        elif not url:
            issues.field(url_loc, E.LEN_MIN.format(1))
            optional.add("host")
        else:
            parsed = parse_url(url)
            if isinstance(parsed, str):
                issues.field(url_loc, parsed)
                optional.add("host")
            else:
                # Kong's shorthand overrides the fields it sets, even explicit ones.
                derived = {key: value for key, value in parsed.items() if value is not None}
                fields.update(parsed)
    walked = _walk(S.Service, fields, loc, issues, ctx, optional=optional)
    streamish = ("tcp", "tls", "udp", "grpc", "grpcs")
    _conditional(issues, loc, walked, fields, "protocol", streamish.__contains__, "path", _null)
    for name in ("client_certificate", "tls_verify", "tls_verify_depth", "ca_certificates"):
        _conditional(issues, loc, walked, fields, "protocol", _not_tls, name, _null)
    if derived:
        issues.relocate(mark, {(*loc, key): url_loc for key in derived})
    return walked


# -- routes (Kong's route subschemas: http, stream, grpc) --------------------------------------
_SUBSCHEMA: Final = {"http": "http", "https": "http", "grpc": "grpc", "grpcs": "grpc"}
_STREAM_NULLS: Final = (
    "cannot set '{}' when 'protocols' is 'tcp', 'tls', 'tls_passthrough' or 'udp'"
)
_NULLED: Final = {
    "http": {
        f: f"cannot set '{f}' when 'protocols' is 'http' or 'https'"
        for f in ("sources", "destinations")
    },
    "stream": {f: _STREAM_NULLS.format(f) for f in ("methods", "hosts", "paths", "headers")},
    "grpc": {
        f: f"cannot set '{f}' when 'protocols' is 'grpc' or 'grpcs'"
        for f in ("methods", "sources", "destinations")
    },
}
_MUST_SET: Final = "must set one of {} when 'protocols' is {}"
_GRPC_STRIP_PATH: Final = "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"
_SNI_PROTOCOLS: Final = ("grpcs", "https", "tls", "tls_passthrough")
_SNIS_ONLY: Final = (
    "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'"
)


def process_route(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked | None:
    protocols = fields.get("protocols")
    first = "http"
    if protocols is None and "protocols" in fields:
        # Kong picks the subschema from `protocols` and stops when it cannot.
        issues.field((*loc, "protocols"), E.REQUIRED)
        return None
    if isinstance(protocols, str):  # not a set, but Kong picks the subschema from it first
        if protocols not in C.PROTOCOLS:
            issues.field((*loc, "protocols"), E.SUBSCHEMA_UNKNOWN.format(protocols))
            return None
        first = protocols
    elif isinstance(protocols, list) and protocols:
        known = [p for p in protocols if isinstance(p, str) and p in C.PROTOCOLS]
        if not known:
            issues.field((*loc, "protocols"), E.SUBSCHEMA_UNKNOWN.format(protocols[0]))
            return None
        first = known[0]
    sub = _SUBSCHEMA.get(first, "stream")
    skip: set[str] = set()
    expression_flavor = flavor.router_flavor() == flavor.EXPRESSIONS
    if not expression_flavor:
        for name in ("expression", "priority"):
            if name in fields:
                issues.field((*loc, name), E.UNKNOWN)
                skip.add(name)
    else:  # Kong's defaults under the expressions flavor (an explicit null priority is an
        # error: the field is required, with a default)
        fields.setdefault("priority", 0)
        fields.setdefault("expression", None)
    for name, message in _NULLED[sub].items():
        if fields.get(name) is not None:
            issues.field((*loc, name), message)
            skip.add(name)
    if sub == "grpc" and "strip_path" not in fields:
        fields["strip_path"] = False
    paths = fields.get("paths")
    if ctx.migrate_paths and isinstance(paths, list):
        fields["paths"] = [C.migrate_path(p) if isinstance(p, str) else p for p in paths]
    walked = _walk(S.Route, fields, loc, issues, ctx, skip=skip)
    data = walked.data
    if flavor.router_flavor() == flavor.TRADITIONAL and "snis" not in walked.bad:
        _plain_snis(data.get("snis"), loc, issues, walked)
    if sub == "grpc" and data.get("strip_path") is True:
        issues.field((*loc, "strip_path"), _GRPC_STRIP_PATH)
    prots: list[str] | None = data.get("protocols")
    if prots is not None:
        _route_entity_checks(fields, loc, issues, sub, prots, walked, expression_flavor)
        _header_regexes(walked, loc, issues)
        if expression_flavor:
            _expression_checks(walked, loc, issues, sub, prots)
    for name in ("sources", "destinations"):
        items = fields.get(name)
        if name not in skip and isinstance(items, list):
            for i, item in enumerate(items):
                if isinstance(item, dict) and not (
                    _nonempty(item.get("ip")) or _nonempty(item.get("port"))
                ):
                    issues.entity((*loc, name, i), E.AT_LEAST_ONE_OF.format("'ip', 'port'"))
    return walked


_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _header_regexes(walked: Walked, loc: Loc, issues: Issues) -> None:
    """A ``~*`` header value is a regex the router compiles (lower-cased, as Kong does).

    Kong (``traditional_compatible``) compiles every route's match expression when it
    validates the route and rejects the route with "Router Expression failed validation".
    """
    headers: dict[str, list[str]] | None = walked.data.get("headers")
    for name, values in (headers or {}).items():
        for value in values:
            if not value.startswith("~*"):
                continue
            pattern = value[2:].translate(_ASCII_LOWER)
            try:
                re.compile(pattern)
            except (re.error, OverflowError, RecursionError) as exc:
                issues.entity(
                    loc,
                    f"Router Expression failed validation: invalid regex '{pattern}' "
                    f"for header '{name}': {exc}",
                )


_EXPRESSION_FAILED: Final = "Router Expression failed validation: "
_MATCH_FIELDS: Final = ("snis", "sources", "destinations", "methods", "hosts", "paths", "headers")


def _expression_checks(
    walked: Walked, loc: Loc, issues: Issues, sub: str, prots: list[str]
) -> None:
    """Kong's ``validate_route`` under the expressions flavor (kong/db/schema/entities/
    routes.lua): an expression excludes the traditional matching fields and
    ``regex_priority``, ``priority`` excludes the traditional fields, and the expression must
    parse and type-check as Kong amends it (its protocols appended)."""
    data = walked.data
    expression = data.get("expression")
    others = any(data.get(name) for name in _MATCH_FIELDS)
    if expression is not None and others:
        issues.entity(
            loc,
            _EXPRESSION_FAILED + "cannot set 'expression' with 'methods', 'hosts', 'paths', "
            "'headers', 'snis', 'sources' or 'destinations' simultaneously",
        )
        return
    if expression is not None and data.get("regex_priority"):
        issues.entity(
            loc, _EXPRESSION_FAILED + "cannot set 'regex_priority' with 'expression' simultaneously"
        )
        return
    if others and data.get("priority"):
        issues.entity(
            loc,
            _EXPRESSION_FAILED + "cannot set 'priority' with 'methods', 'hosts', 'paths', "
            "'headers', 'snis', 'sources' or 'destinations' simultaneously",
        )
        return
    if expression is None:
        return
    try:
        amended = expressions.route_expression(expression, prots)
        expressions.parse(amended, stream=sub == "stream")
    except expressions.ExpressionError as exc:
        issues.entity(loc, _EXPRESSION_FAILED + str(exc))


def _plain_snis(snis: Any, loc: Loc, issues: Issues, walked: Walked) -> None:
    """The traditional router matches route SNIs exactly: Kong's schema types them as
    ``typedefs.sni`` under that flavor (no wildcards), ``wildcard_host`` under the others."""
    for i, sni in enumerate(snis or ()):
        message = C.check_sni(sni)
        if message is not None:
            issues.field((*loc, "snis", i), message)
            walked.bad.add("snis")


def _route_entity_checks(
    fields: dict[str, Any],
    loc: Loc,
    issues: Issues,
    sub: str,
    prots: list[str],
    walked: Walked,
    expression_flavor: bool = False,
) -> None:
    snis = fields.get("snis")
    if all(p not in _SNI_PROTOCOLS for p in prots) and isinstance(snis, list) and snis:
        if "snis" not in walked.bad:
            issues.field((*loc, "snis"), E.LEN_EQ.format(0))
        issues.entity(loc, _SNIS_ONLY)

    def need(names: tuple[str, ...], when: str) -> None:
        if expression_flavor:  # (Kong adds `expression` to each list under that flavor)
            names = (*names, "expression")
        if not any(_nonempty(fields.get(n)) for n in names):
            issues.entity(loc, _MUST_SET.format(E.quoted_list(names), when))

    if sub == "http":
        if "https" in prots:
            need(("methods", "hosts", "headers", "paths", "snis"), "'https'")
        elif "http" in prots:
            need(("methods", "hosts", "headers", "paths"), "'http'")
    elif sub == "grpc":
        if "grpcs" in prots:
            need(("hosts", "headers", "paths", "snis"), "'grpcs'")
        elif "grpc" in prots:
            need(("hosts", "headers", "paths"), "'grpc'")
    elif all(p in ("tcp", "tls", "udp") for p in prots):
        need(("sources", "destinations", "snis"), "'tcp', 'tls' or 'udp'")
    elif all(p == "tls_passthrough" for p in prots) and not _nonempty(fields.get("snis")):
        issues.entity(loc, "must set snis when 'protocols' is 'tls_passthrough'")


# -- upstreams and targets -------------------------------------------------------------------
_HASH_FALLBACKS: Final = {
    "none": ("none",),
    "cookie": ("none",),
    "consumer": ("none", "ip", "header", "cookie", "path", "query_arg", "uri_capture"),
    "ip": ("none", "consumer", "header", "cookie", "path", "query_arg", "uri_capture"),
    "path": ("none", "consumer", "header", "cookie", "query_arg", "ip", "uri_capture"),
}


def process_upstream(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked:
    # Kong's shorthands: least-connections/latency clear hash_on; a hash_on sets the algorithm.
    algorithm = fields.get("algorithm")
    if algorithm in ("least-connections", "latency"):
        fields["hash_on"] = "none"
    elif "hash_on" in fields and (algorithm is None or isinstance(algorithm, str)):
        hash_on = fields["hash_on"]
        if hash_on is None:
            fields["hash_on"] = "none"
        elif hash_on == "none":
            fields["algorithm"] = "round-robin"
        elif isinstance(hash_on, str):
            fields["algorithm"] = "consistent-hashing"
    walked = _walk(S.Upstream, fields, loc, issues, ctx)

    def cond(if_field: str, value: str, then_field: str, then: Callable[[Any], str | None]) -> None:
        _conditional(issues, loc, walked, fields, if_field, value.__eq__, then_field, then)

    def distinct(a: str, b: str) -> None:
        va, vb = walked.data.get(a), walked.data.get(b)
        if _nonempty(va) and va == vb:
            issues.entity(loc, E.DISTINCT.format(E.quoted_list((a, b))))

    cond("hash_on", "header", "hash_on_header", _required)
    cond("hash_fallback", "header", "hash_fallback_header", _required)
    cond("hash_on", "cookie", "hash_on_cookie", _required)
    cond("hash_fallback", "cookie", "hash_on_cookie", _required)
    for hash_on, allowed in _HASH_FALLBACKS.items():
        cond("hash_on", hash_on, "hash_fallback", _one_of(*allowed))
    distinct("hash_on_header", "hash_fallback_header")
    cond("hash_on", "query_arg", "hash_on_query_arg", _required)
    cond("hash_fallback", "query_arg", "hash_fallback_query_arg", _required)
    distinct("hash_on_query_arg", "hash_fallback_query_arg")
    cond("hash_on", "uri_capture", "hash_on_uri_capture", _required)
    cond("hash_fallback", "uri_capture", "hash_fallback_uri_capture", _required)
    distinct("hash_on_uri_capture", "hash_fallback_uri_capture")
    return walked


def process_target(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked:
    walked = _walk(S.Target, fields, loc, issues, ctx)
    if "target" in walked.data:
        walked.data["target"] = C.format_target(walked.data["target"])
    return walked


# -- consumers and credentials ---------------------------------------------------------------
def process_consumer(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked:
    walked = _walk(S.Consumer, fields, loc, issues, ctx)
    names = ("custom_id", "username")
    # Kong runs an entity check only when none of its fields failed
    if not any(_nonempty(fields.get(n)) or n in walked.bad for n in names):
        issues.entity(loc, E.AT_LEAST_ONE_OF.format("'custom_id', 'username'"))
    return walked


def _random_secret() -> str:
    """Kong's ``random_string``: 32 hex characters, for a credential given without one."""
    return secrets.token_hex(16)


def process_keyauth(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked:
    walked = _walk(S.KeyauthCredential, fields, loc, issues, ctx, optional=("key",))
    if fields.get("key") is None:
        walked.data["key"] = _random_secret()
    return walked


def process_basicauth(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked:
    return _walk(S.BasicauthCredential, fields, loc, issues, ctx)


def process_hmacauth(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked:
    walked = _walk(S.HmacauthCredential, fields, loc, issues, ctx, optional=("secret",))
    if fields.get("secret") is None:
        walked.data["secret"] = _random_secret()
    return walked


_RSA_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA")


def process_jwt(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked:
    walked = _walk(S.JwtSecret, fields, loc, issues, ctx, optional=("key", "secret"))
    for name in ("key", "secret"):
        if fields.get(name) is None:
            walked.data[name] = _random_secret()

    def public_key(value: Any) -> str | None:
        return E.REQUIRED if value is None else C.check_public_key(value)

    in_rsa = _RSA_ALGORITHMS.__contains__
    _conditional(issues, loc, walked, fields, "algorithm", in_rsa, "rsa_public_key", public_key)
    return walked


def process_acl(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked:
    return _walk(S.Acl, fields, loc, issues, ctx)


# -- TLS ---------------------------------------------------------------------------------------
_CERT_KEY_MISMATCH: Final = "certificate does not match key"
_ALT_KEY_MISMATCH: Final = "alternative certificate does not match key"
_SAME_KEY_TYPES: Final = (
    "certificate and alternative certificate need to have different type (e.g. RSA and "
    "ECDSA), the provided certificates were both of the same type"
)


def process_certificate(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked:
    walked = _walk(S.Certificate, fields, loc, issues, ctx)
    alt_bad = "cert_alt" in walked.bad or "key_alt" in walked.bad
    if not alt_bad and _nonempty(fields.get("cert_alt")) != _nonempty(fields.get("key_alt")):
        issues.entity(loc, E.MUTUALLY_REQUIRED.format("'cert_alt', 'key_alt'"))

    def good(*names: str) -> bool:
        return all(walked.data.get(n) is not None and n not in walked.bad for n in names)

    # A reference resolved when its field was walked: the pair is checked on the secrets
    # (Kong skips these checks for references; a mismatched pair would fail every handshake).
    # Where references are not resolved (the controller), they are skipped, as in Kong.
    data = walked.data
    if any(vault.is_reference(v) for v in data.values()):
        if not vault.resolving():
            return walked
        data = {n: vault.resolve(v) if vault.is_reference(v) else v for n, v in data.items()}
        # (a reference that failed to resolve is not in ``data``: its field was refused)
    if good("cert", "key") and not C.certificate_matches_key(data["cert"], data["key"]):
        issues.entity(loc, _CERT_KEY_MISMATCH)
    if good("cert_alt", "key_alt") and not C.certificate_matches_key(
        data["cert_alt"], data["key_alt"]
    ):
        issues.entity(loc, _ALT_KEY_MISMATCH)
    if good("cert", "cert_alt") and C.same_key_type(data["cert"], data["cert_alt"]):
        issues.entity(loc, _SAME_KEY_TYPES)
    return walked


def process_sni(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked:
    return _walk(S.Sni, fields, loc, issues, ctx)


def process_ca_certificate(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked:
    walked = _walk(S.CACertificate, fields, loc, issues, ctx)
    if walked.data.get("cert") is not None and "cert" not in walked.bad:
        problem = C.ca_certificate_problem(walked.data["cert"])
        if problem is not None:
            issues.entity(loc, problem)
        if walked.data.get("cert_digest") is None:
            walked.data["cert_digest"] = C.certificate_digest(walked.data["cert"])
    return walked


def process_key_set(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked:
    return _walk(S.KeySet, fields, loc, issues, ctx)


def process_key(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked:
    """Kong's ``keys``: a ``jwk`` (JSON text whose ``kid`` is the key's) or a ``pem`` pair,
    not both; the key material must load (references are checked on their secrets where
    they are resolved, and skipped where not, as Kong skips them)."""
    walked = _walk(S.Key, fields, loc, issues, ctx)
    data = walked.data
    given = [n for n in ("jwk", "pem") if data.get(n) is not None or n in walked.bad]
    if len(given) == 2:
        issues.entity(loc, E.MUTUALLY_EXCLUSIVE.format("'jwk', 'pem'"))
        return walked
    if not given:
        issues.entity(loc, E.AT_LEAST_ONE_OF.format("'jwk', 'pem'"))
        return walked
    if data.get("jwk") is not None and "jwk" not in walked.bad and "kid" not in walked.bad:
        jwk = data["jwk"]
        if vault.is_reference(jwk) and not vault.resolving():
            return walked
        problem = K.jwk_problem(vault.resolve(jwk) if vault.is_reference(jwk) else jwk, data["kid"])
        if problem is not None:
            issues.entity(loc, problem)
    pem = data.get("pem")
    if isinstance(pem, dict) and "pem" not in walked.bad:
        private, public = pem.get("private_key"), pem.get("public_key")
        if private is None and public is None:
            names = "'private_key', 'public_key'"
            issues.entity((*loc, "pem"), E.AT_LEAST_ONE_OF.format(names))
            return walked
        if any(vault.is_reference(v) for v in (private, public)):
            if not vault.resolving():
                return walked
            private, public = (vault.resolve(v) if isinstance(v, str) and vault.is_reference(v)
                               else v for v in (private, public))  # fmt: skip
        problem = K.pem_problem(private, public)
        if problem is not None:
            issues.field((*loc, "pem"), problem)
    return walked


# -- plugins -----------------------------------------------------------------------------------
_SUBPATH: Final = re.compile(r"[^.\[\]]+|\[([0-9]+)\]")


def _subpath(sub: str) -> Loc:
    """A plugin check's ``"a.b[0]"`` (or ``"a.b.0"``) as a loc."""
    out: list[str | int] = []
    for m in _SUBPATH.finditer(sub):
        out.append(int(m.group(1)) if m.group(1) is not None else m.group(0))
    return tuple(out)


def process_plugin(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked | None:
    name = fields.get("name")
    if name is None:
        issues.field((*loc, "name"), E.REQUIRED)
        return None
    if not isinstance(name, str):
        issues.field((*loc, "name"), E.STRING)
        return None
    spec = registry.lookup(name)
    if spec is None:
        message = registry.missing_message(name) or E.PLUGIN_NOT_ENABLED.format(name)
        issues.field((*loc, "name"), message)
        return None
    walked = _walk(S.Plugin, fields, loc, issues, ctx, skip=("config",))
    protocols = fields.get("protocols")
    if "protocols" not in fields:
        walked.data["protocols"] = list(spec.protocols_default())
    elif protocols is not None and "protocols" in walked.data:
        allowed = E.ONE_OF.format(", ".join(spec.protocols))
        for i, p in enumerate(protocols):
            if p not in spec.protocols:
                issues.field((*loc, "protocols", i), allowed)
    _plugin_config(spec, fields.get("config"), loc, issues, walked)
    for scope, forbidden in (
        ("consumer", spec.no_consumer),
        ("route", spec.no_route),
        ("service", spec.no_service),
    ):
        if not forbidden:
            continue
        if ctx.parent_fk == scope:
            issues.entity(loc, E.PLUGIN_NO_SCOPE.format(name, scope))
        elif fields.get(scope) is not None:
            issues.field((*loc, scope), E.EQ_NULL)
            walked.bad.add(scope)  # refused already: not also an unknown reference
    return walked


def _plugin_config(
    spec: registry.PluginSpec, raw: Any, loc: Loc, issues: Issues, walked: Walked
) -> None:
    cloc = (*loc, "config")
    if raw is None or raw == []:  # Lua's one empty table: `[]` is an empty record
        raw = {}
    if not isinstance(raw, dict):
        issues.field(cloc, E.RECORD)
        walked.bad.add("config")
        return
    mark = len(issues)
    config = walk_struct(spec.config_type, raw, cloc, issues)
    if len(issues) != mark:
        if spec.check_invalid is not None:
            _config_issues(spec.check_invalid(raw), loc, issues, replace=True)
        walked.bad.add("config")
        return
    struct = convert(config.data, spec.config_type, cloc, issues)
    if struct is None:
        walked.bad.add("config")
        return
    if spec.check is not None:
        _config_issues(spec.check(struct), loc, issues)
    walked.data["config"] = msgspec.to_builtins(struct)


def _config_issues(
    found: list[tuple[str, str]], loc: Loc, issues: Issues, *, replace: bool = False
) -> None:
    """A plugin check's ``(sub_path, message)`` pairs, reported where Kong reports them."""
    cloc = (*loc, "config")
    for sub, message in found:
        if sub == "@entity":  # an entity check of the config record itself
            issues.entity(cloc, message)
        elif sub.endswith(".@entity"):  # ... or of a record inside it
            issues.entity((*cloc, *_subpath(sub[: -len(".@entity")])), message)
        elif sub and replace:
            issues.replace_field((*cloc, *_subpath(sub)), message)
        elif sub:
            issues.field((*cloc, *_subpath(sub)), message)
        else:
            issues.entity(loc, message)


def process_vault(fields: dict[str, Any], loc: Loc, issues: Issues, ctx: Ctx) -> Walked:
    """Kong's vaults entity: its ``config`` is checked against the named vault's schema
    (``subschema_key = "name"``; a vault not installed is ``vault '<name>' is not installed``).
    As in Kong's ``Schema:validate``, a vault whose name is missing or not installed gets that
    one error: without its subschema nothing else is checked."""
    name = fields.get("name")
    if name is None or (isinstance(name, str) and name not in C.INSTALLED_VAULTS):
        walked = _walk(S.Vault, fields, loc, Issues(), ctx, skip=("config",))
        message = E.REQUIRED if name is None else f"vault '{name}' is not installed"
        issues.field((*loc, "name"), message)
        walked.bad.add("name")
        return walked
    walked = _walk(S.Vault, fields, loc, issues, ctx, skip=("config",))
    if "name" in walked.bad:
        return walked
    config = fields.get("config")
    if config is None or config == []:
        config = {}
    if not isinstance(config, dict):
        issues.field((*loc, "config"), E.RECORD)
        walked.bad.add("config")
        return walked
    mark = len(issues)
    checked = walk_struct(S.EnvVaultConfig, config, (*loc, "config"), issues)
    if len(issues) > mark:
        walked.bad.add("config")
    else:
        walked.data["config"] = checked.data
    return walked


PROCESSORS: Final[dict[str, Processor]] = {
    "vaults": process_vault,
    "certificates": process_certificate,
    "ca_certificates": process_ca_certificate,
    "key_sets": process_key_set,
    "keys": process_key,
    "snis": process_sni,
    "services": process_service,
    "routes": process_route,
    "consumers": process_consumer,
    "plugins": process_plugin,
    "upstreams": process_upstream,
    "targets": process_target,
    "keyauth_credentials": process_keyauth,
    "basicauth_credentials": process_basicauth,
    "hmacauth_credentials": process_hmacauth,
    "jwt_secrets": process_jwt,
    "acls": process_acl,
}
