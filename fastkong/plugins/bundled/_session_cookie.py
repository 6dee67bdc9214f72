"""The session plugin's cookie: lua-resty-session 4's design, which Kong's plugin is built on.

A cookie holds one sealed session. Its value is the base64url (no padding) of an 82-byte header
followed by the base64url of the encrypted payload::

    type 1B | flags 2B | session id 32B | creation time 5B | rolling offset 4B | data size 3B
    | GCM tag 16B | idling offset 3B | MAC 16B

(integers little-endian, times in whole seconds). The session id is 32 random bytes, new each
time the session is saved. Keys come from ``ikm = SHA-256(secret)`` and the session id, with
HKDF-SHA256 (empty salt): ``"encryption:" + sid`` gives the AES-256-GCM key and IV (44 bytes),
``"authentication:" + sid`` the HMAC-SHA256 key. The payload (the session's JSON, raw-deflated
above 1 KiB when that is smaller) is encrypted with the header's first 47 bytes as associated
data; the MAC (truncated to 16 bytes) covers the header up to itself, so the header's times and
the tag cannot change unnoticed and the ciphertext is covered through the tag. A payload too
large for one 4 KiB cookie continues in ``<name>2`` ... ``<name>9``.

A cookie is refused (the session does not exist) when anything is off: not canonical base64url
(so no two strings decode alike), a wrong size, an unknown type or flag, a time past one of
its timeouts, a MAC or tag that does not verify, a payload that is not the expected JSON.

"Touching" a session (idle timeout) rewrites only the header's idling offset and MAC; "saving"
seals it again under a new session id, keeping its creation time (rolling timeout). The
*remember* cookie is a second, persistent cookie with the same data that restores the session
when the (browser-session) cookie is gone; its key is derived with its own HKDF label, so one
cookie cannot stand for the other.

The data is a list of entries, one per *audience* (``[data, audience, subject]``): two routes
with different audiences sharing a cookie name keep one cookie with an entry each.
:class:`CookieSession` follows lua-resty-session 4.0.5 (the version Kong 3.9 ships) in what it
accepts, when it renews and what ``Set-Cookie`` it writes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import os
import zlib
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import Any, Final

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fastkong.plugins.bundled._consumer import wire

COOKIE_TYPE: Final = 1
FLAG_STORAGE: Final = 0x0001  # the payload lives in a server-side store (never here)
FLAG_FORGET: Final = 0x0002
FLAG_DEFLATE: Final = 0x0010
_KNOWN_FLAGS: Final = FLAG_STORAGE | FLAG_FORGET | FLAG_DEFLATE

SID_SIZE: Final = 32
TAG_SIZE: Final = 16
MAC_SIZE: Final = 16
#: Offsets in the header: the AEAD's associated data ends at 47, the touchable part at 63, the
#: MAC's message at 66.
AAD_END: Final = 1 + 2 + SID_SIZE + 5 + 4 + 3
IDLING_AT: Final = AAD_END + TAG_SIZE
MAC_AT: Final = IDLING_AT + 3
HEADER_SIZE: Final = MAC_AT + MAC_SIZE
HEADER_ENCODED_SIZE: Final = math.ceil(4 * HEADER_SIZE / 3)

MAX_COOKIE_SIZE: Final = 4096
MAX_COOKIES: Final = 9
MAX_COOKIES_SIZE: Final = MAX_COOKIES * MAX_COOKIE_SIZE
MAX_CREATION_TIME: Final = 2**40 - 1
MAX_ROLLING_OFFSET: Final = 2**32 - 1
MAX_IDLING_OFFSET: Final = 2**24 - 1
MAX_DATA_SIZE: Final = 2**24 - 1
#: The longest Max-Age browsers keep (RFC 6265bis: 400 days).
MAX_TTL: Final = 34_560_000
#: Larger JSON is deflated (when that makes it smaller).
COMPRESSION_THRESHOLD: Final = 1024
#: An idle-timeout session is touched (a new Set-Cookie) when idle longer than this.
TOUCH_THRESHOLD: Final = 60
#: Inflated payloads are bounded (a sealed payload is ours, but never trust a size blindly).
MAX_INFLATED: Final = 1 << 20

EXPIRE_FLAGS: Final = "; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0"

#: Response and request header names of the session's properties (Kong's ``*_headers``).
PROPERTY_HEADERS: Final = {
    "id": "Session-Id",
    "audience": "Session-Audience",
    "subject": "Session-Subject",
    "timeout": "Session-Timeout",
    "idling-timeout": "Session-Idling-Timeout",
    "rolling-timeout": "Session-Rolling-Timeout",
    "absolute-timeout": "Session-Absolute-Timeout",
}

NEW: Final = "new"
OPEN: Final = "open"
CLOSED: Final = "closed"

Number = int | float


class SessionError(Exception):
    """A session that cannot be sealed (too large, a clock past the format's range)."""


# -- encodings ---------------------------------------------------------------------------------
def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes | None:
    """Strict base64url without padding: None unless ``text`` is exactly what
    :func:`b64encode` gives for some bytes (unused trailing bits must be zero), so a changed
    character never decodes to the same bytes."""
    if len(text) % 4 == 1 or not text.isascii():
        return None
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if b64encode(data) == text else None


def b64_size(size: int) -> int:
    return math.ceil(4 * size / 3)


def _pack(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


def _unpack(data: bytes) -> int:
    return int.from_bytes(data, "little")


def chunk_count(name_size: int, data_size: int) -> int | None:
    """How many cookies a payload of ``data_size`` characters takes (None: too large)."""
    needed = name_size + 1 + HEADER_ENCODED_SIZE + data_size
    if needed <= MAX_COOKIE_SIZE:
        return 1
    for count in range(2, MAX_COOKIES + 1):
        needed += name_size + 2  # "<name><digit>=" for each further cookie
        if needed > MAX_COOKIES_SIZE:
            return None
        if needed <= MAX_COOKIE_SIZE * count:
            return count
    return None


def http_time(ts: float) -> str:
    """nginx's ``ngx.http_time``: ``Thu, 01 Jan 1970 00:00:01 GMT``."""
    return formatdate(ts, usegmt=True)


# -- keys --------------------------------------------------------------------------------------
class Keys:
    """The keys of one secret (``ikm = SHA-256(secret)``), derived per session id."""

    __slots__ = ("ikm",)

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode("utf-8") if isinstance(secret, str) else secret
        self.ikm = hashlib.sha256(raw).digest()

    def _derive(self, label: bytes, sid: bytes, size: int) -> bytes:
        return HKDF(hashes.SHA256(), size, salt=None, info=label + b":" + sid).derive(self.ikm)

    def cipher(self, sid: bytes, remember: bool) -> tuple[AESGCM, bytes]:
        """The AES-256-GCM cipher and the 12-byte IV of session id ``sid``."""
        # lua-resty-session derives the remember cookie's key with PBKDF2 (10,000 rounds,
        # several ms of CPU on the event loop per login); an HKDF label of its own keeps the two
        # cookies apart just as well, and PBKDF2 added nothing here: the MAC key is HKDF's.
        material = self._derive(b"remember" if remember else b"encryption", sid, 44)
        return AESGCM(material[:32]), material[32:]

    def mac(self, sid: bytes, message: bytes) -> bytes:
        signer = crypto_hmac.HMAC(self._derive(b"authentication", sid, 32), hashes.SHA256())
        signer.update(message)
        return signer.finalize()[:MAC_SIZE]


# -- header ------------------------------------------------------------------------------------
class Header(msgspec.Struct, frozen=True, gc=False):
    """A cookie's decoded header (``raw`` is the 82 bytes it came from)."""

    flags: int
    sid: bytes
    creation_time: int
    rolling_offset: int
    data_size: int
    tag: bytes
    idling_offset: int
    mac: bytes
    raw: bytes

    @classmethod
    def parse(cls, raw: bytes) -> Header | None:
        if len(raw) != HEADER_SIZE or raw[0] != COOKIE_TYPE:
            return None
        return cls(
            flags=_unpack(raw[1:3]),
            sid=raw[3:35],
            creation_time=_unpack(raw[35:40]),
            rolling_offset=_unpack(raw[40:44]),
            data_size=_unpack(raw[44:AAD_END]),
            tag=raw[AAD_END:IDLING_AT],
            idling_offset=_unpack(raw[IDLING_AT:MAC_AT]),
            mac=raw[MAC_AT:],
            raw=raw,
        )


def seal(
    keys: Keys,
    flags: int,
    sid: bytes,
    creation_time: int,
    rolling_offset: int,
    plaintext: bytes,
    remember: bool = False,
) -> tuple[bytes, bytes]:
    """``(header, ciphertext)`` of a payload (the idling offset starts at 0)."""
    data_size = b64_size(len(plaintext))  # GCM's ciphertext is as long as its plaintext
    aad = b"".join(
        (
            bytes((COOKIE_TYPE,)),
            _pack(flags, 2),
            sid,
            _pack(creation_time, 5),
            _pack(rolling_offset, 4),
            _pack(data_size, 3),
        )
    )
    cipher, iv = keys.cipher(sid, remember)
    sealed = cipher.encrypt(iv, plaintext, aad)
    ciphertext, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
    message = aad + tag + _pack(0, 3)
    return message + keys.mac(sid, message), ciphertext


def retouch(keys: Keys, header: Header, idling_offset: int) -> bytes:
    """``header`` with a new idling offset and MAC."""
    message = header.raw[:IDLING_AT] + _pack(idling_offset, 3)
    return message + keys.mac(header.sid, message)


def verify(keys: Keys, header: Header) -> bool:
    return hmac.compare_digest(keys.mac(header.sid, header.raw[:MAC_AT]), header.mac)


def unseal(keys: Keys, header: Header, ciphertext: bytes, remember: bool = False) -> bytes | None:
    """The payload, or None when the ciphertext does not decrypt under the header."""
    cipher, iv = keys.cipher(header.sid, remember)
    try:
        return cipher.decrypt(iv, ciphertext + header.tag, header.raw[:AAD_END])
    except InvalidTag:
        return None


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def inflate(data: bytes) -> bytes | None:
    decompressor = zlib.decompressobj(-15)
    try:
        out = decompressor.decompress(data, MAX_INFLATED)
    except zlib.error:
        return None
    if decompressor.unconsumed_tail or not decompressor.eof:
        return None
    return out


# -- request cookies ---------------------------------------------------------------------------
def cookie_lookup(values: Iterable[str] | None) -> Callable[[str], str | None]:
    """nginx's ``$cookie_<name>`` over the request's ``Cookie`` headers: the first cookie of
    that name (letter case aside), its value as sent up to the next ``;``. Headers are wire
    strings (latin-1), so a name is looked up by its UTF-8 bytes."""
    found: dict[str, str] = {}
    for value in values or ():
        for part in value.split(";"):
            name, eq, cookie = part.lstrip(" ").partition("=")
            if eq:
                found.setdefault(name.rstrip(" ").lower(), cookie.lstrip(" "))
    return lambda name: found.get(wire(name).lower())


# -- the session -------------------------------------------------------------------------------
class Settings:
    """What a :class:`CookieSession` needs of the plugin's config (built once per config)."""

    __slots__ = (
        "keys",
        "audience",
        "cookie_name",
        "remember_cookie_name",
        "cookie_flags",
        "idling_timeout",
        "rolling_timeout",
        "absolute_timeout",
        "remember",
        "remember_rolling_timeout",
        "remember_absolute_timeout",
    )

    def __init__(
        self,
        secret: str | bytes,
        *,
        audience: str = "default",
        cookie_name: str = "session",
        remember_cookie_name: str = "remember",
        cookie_path: str = "/",
        cookie_domain: str | None = None,
        cookie_same_site: str = "Strict",
        cookie_http_only: bool = True,
        cookie_secure: bool = True,
        idling_timeout: Number = 900,
        rolling_timeout: Number = 3600,
        absolute_timeout: Number = 86400,
        remember: bool = False,
        remember_rolling_timeout: Number = 604800,
        remember_absolute_timeout: Number = 2592000,
    ) -> None:
        self.keys = Keys(secret)
        self.audience = audience
        self.cookie_name = cookie_name
        self.remember_cookie_name = remember_cookie_name
        if cookie_same_site == "None":
            cookie_secure = True  # browsers drop a SameSite=None cookie that is not Secure
        flags = ""
        if cookie_domain and cookie_domain != "localhost":
            flags += f"; Domain={cookie_domain}"
        flags += f"; Path={cookie_path}; SameSite={cookie_same_site}"
        if cookie_secure:
            flags += "; Secure"
        if cookie_http_only:
            flags += "; HttpOnly"
        self.cookie_flags = flags
        self.idling_timeout = idling_timeout
        self.rolling_timeout = rolling_timeout
        self.absolute_timeout = absolute_timeout
        self.remember = remember
        self.remember_rolling_timeout = remember_rolling_timeout
        self.remember_absolute_timeout = remember_absolute_timeout


class Meta:
    """An opened or saved cookie: its header and what a touch or a renewal needs."""

    __slots__ = ("timestamp", "header", "initial_chunk")

    def __init__(self, timestamp: int, header: Header, initial_chunk: str) -> None:
        #: The time it was opened or saved (the properties' timeouts count from it).
        self.timestamp = timestamp
        self.header = header
        #: The payload characters of the first cookie (a touch sends them again).
        self.initial_chunk = initial_chunk


class Failed(Exception):
    """A cookie that does not open (the message is lua-resty-session's reason)."""


class AudienceMissing(Failed):
    """A valid cookie whose session has no entry for this audience."""


_decode_entries = msgspec.json.Decoder(list[list[Any]])


def _entries(plaintext: bytes) -> list[list[Any]] | None:
    try:
        entries = _decode_entries.decode(plaintext)
    except msgspec.DecodeError:
        return None
    for entry in entries:
        if (
            len(entry) not in (2, 3)
            or not isinstance(entry[0], (list, dict))
            or not isinstance(entry[1], str)
            or (len(entry) == 3 and entry[2] is not None and not isinstance(entry[2], str))
        ):
            return None
    return entries


class CookieSession:
    """One request's session (lua-resty-session 4's session object, cookie storage).

    ``cookies`` collects the ``Set-Cookie`` values to send, by cookie name (a later one for the
    same name replaces the earlier, as lua-resty-session merges them); ``lookup`` reads the
    request's cookies; ``now`` is the request's clock (whole seconds).
    """

    __slots__ = (
        "settings",
        "lookup",
        "now",
        "cookies",
        "state",
        "meta",
        "remember_meta",
        "entries",
        "index",
    )

    def __init__(
        self,
        settings: Settings,
        lookup: Callable[[str], str | None],
        now: int,
        cookies: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.lookup = lookup
        self.now = now
        self.cookies: dict[str, str] = {} if cookies is None else cookies
        self.state = NEW
        self.meta: Meta | None = None
        self.remember_meta: Meta | None = None
        self.entries: list[list[Any]] = [[{}, settings.audience]]
        self.index = 0

    def __repr__(self) -> str:
        sid = b64encode(self.meta.header.sid)[:8] if self.meta is not None else None
        return f"<CookieSession {self.state} sid={sid} audiences={len(self.entries)}>"

    # -- data ----------------------------------------------------------------------------------
    @property
    def data(self) -> Any:
        return self.entries[self.index][0]

    @data.setter
    def data(self, value: Any) -> None:
        self.entries[self.index][0] = value

    @property
    def audience(self) -> str:
        return str(self.entries[self.index][1])

    @property
    def subject(self) -> str | None:
        entry = self.entries[self.index]
        return entry[2] if len(entry) > 2 else None

    @subject.setter
    def subject(self, value: str | None) -> None:
        entry = self.entries[self.index]
        del entry[2:]
        if value is not None:  # none is left out, as Lua leaves out a trailing nil
            entry.append(value)

    # -- opening -------------------------------------------------------------------------------
    def open(self) -> tuple[bool, str | None]:
        """Open the request's session: its cookie, else (``remember``) its remember cookie,
        which then issues a new session cookie. ``(exists, why not)``."""
        try:
            self._open(False)
            return True, None
        except AudienceMissing as exc:
            return False, str(exc)  # no remember cookie stands in for another audience's
        except Failed as exc:
            reason = str(exc)
            if not self.settings.remember:
                return False, reason
        try:
            self._open(True)
        except Failed:
            return False, reason
        self._save(True)
        self.state = NEW
        self.meta = None
        self._save(False)
        return True, None

    def _open(self, remember: bool, meta_only: bool = False) -> None:
        settings = self.settings
        now = self.now
        name = settings.remember_cookie_name if remember else settings.cookie_name
        cookie = self.lookup(name)
        if cookie is None:
            raise Failed("missing session cookie")
        raw = (
            b64decode(cookie[:HEADER_ENCODED_SIZE]) if len(cookie) >= HEADER_ENCODED_SIZE else None
        )
        header = Header.parse(raw) if raw is not None else None
        if header is None:
            raise Failed("invalid session header")
        if header.flags & ~_KNOWN_FLAGS or header.flags & FLAG_STORAGE:
            raise Failed("invalid session flags")
        absolute_elapsed = now - header.creation_time
        if absolute_elapsed > MAX_ROLLING_OFFSET:
            raise Failed("session lifetime exceeded")
        absolute = settings.remember_absolute_timeout if remember else settings.absolute_timeout
        if absolute != 0 and absolute_elapsed > absolute:
            raise Failed("session absolute timeout exceeded")
        rolling_elapsed = absolute_elapsed - header.rolling_offset
        rolling = settings.remember_rolling_timeout if remember else settings.rolling_timeout
        if rolling != 0 and rolling_elapsed > rolling:
            raise Failed("session rolling timeout exceeded")
        if remember:
            if header.idling_offset != 0:  # a remember cookie is never touched
                raise Failed("invalid session idling offset")
        elif settings.idling_timeout != 0:
            if rolling_elapsed - header.idling_offset > settings.idling_timeout:
                raise Failed("session idling timeout exceeded")
        if not verify(settings.keys, header):
            raise Failed("invalid session message authentication code")

        count = chunk_count(len(name), header.data_size)
        if count is None:
            raise Failed("cookie size limit exceeded")
        initial = cookie[HEADER_ENCODED_SIZE:]
        parts = [initial]
        for i in range(2, count + 1):
            part = self.lookup(f"{name}{i}")
            if part is None:
                raise Failed("missing session cookie chunk")
            parts.append(part)
        payload = "".join(parts)
        if len(payload) != header.data_size:
            raise Failed("invalid session payload")
        ciphertext = b64decode(payload)
        if ciphertext is None:
            raise Failed("unable to base64url decode session data")
        meta = Meta(now, header, initial)
        if meta_only:
            self.remember_meta = meta
            return
        plaintext = unseal(settings.keys, header, ciphertext, remember)
        if plaintext is None:
            raise Failed("unable to decrypt session data")
        if header.flags & FLAG_DEFLATE:
            plaintext = inflate(plaintext)
            if plaintext is None:
                raise Failed("unable to inflate session data")
        entries = _entries(plaintext)
        if entries is None:
            raise Failed("unable to json decode session data")
        if remember:
            self.remember_meta = meta
        else:
            self.meta = meta
        audience = self.audience
        for i, entry in enumerate(entries):
            if entry[1] == audience:
                self.state = OPEN
                self.entries = entries
                self.index = i
                return
        # A session of other audiences: this one starts empty in it (and is saved with them).
        entries.append(self.entries[self.index])
        self.state = NEW
        self.entries = entries
        self.index = len(entries) - 1
        raise AudienceMissing("missing session audience")

    # -- saving --------------------------------------------------------------------------------
    def _save(self, remember: bool, state: str = OPEN) -> None:
        settings = self.settings
        now = self.now
        if remember:
            name = settings.remember_cookie_name
            meta = self.remember_meta
        else:
            name = settings.cookie_name
            meta = self.meta
        flags = 0
        if meta is not None:
            creation_time = meta.header.creation_time
            # (0 when another node's clock, ahead of this one's, created the session)
            rolling_offset = max(now - creation_time, 0)
            if rolling_offset > MAX_ROLLING_OFFSET:
                raise SessionError("session maximum rolling offset exceeded")
            flags |= meta.header.flags & FLAG_FORGET
        else:
            creation_time = now
            rolling_offset = 0
        if not 0 <= creation_time <= MAX_CREATION_TIME:
            raise SessionError("session maximum creation time exceeded (clock problem?)")
        plaintext = msgspec.json.encode(self.entries)
        if len(plaintext) > COMPRESSION_THRESHOLD:
            deflated = deflate(plaintext)
            if len(deflated) < len(plaintext):
                plaintext = deflated
                flags |= FLAG_DEFLATE
        count = chunk_count(len(name), b64_size(len(plaintext)))
        if count is None:
            raise SessionError("cookie size limit exceeded")
        sid = os.urandom(SID_SIZE)
        raw, ciphertext = seal(
            settings.keys, flags, sid, creation_time, rolling_offset, plaintext, remember
        )
        header = Header.parse(raw)
        assert header is not None
        payload = b64encode(ciphertext)
        attributes = settings.cookie_flags
        if remember:
            max_age = settings.remember_rolling_timeout
            if max_age == 0 or max_age > MAX_TTL:
                max_age = MAX_TTL
            # (lua-resty-session dates Expires from the creation time, so a renewed remember
            # cookie can carry an Expires already past: from now, as Max-Age counts)
            attributes += f"; Expires={http_time(now + max_age)}; Max-Age={int(max_age)}"
        initial = payload
        if count > 1:
            initial = payload[: MAX_COOKIE_SIZE - HEADER_ENCODED_SIZE - len(name) - 1]
        self.cookies[name] = f"{name}={b64encode(raw)}{initial}{attributes}"
        at = len(initial)
        for i in range(2, count + 1):
            part = payload[at : at + MAX_COOKIE_SIZE - len(name) - 2]
            at += len(part)
            self.cookies[f"{name}{i}"] = f"{name}{i}={part}{attributes}"
        if meta is not None:
            # a smaller session needs fewer cookies: the rest expire
            before = chunk_count(len(name), meta.header.data_size) or 1
            for i in range(count + 1, before + 1):
                self.cookies[f"{name}{i}"] = f"{name}{i}={settings.cookie_flags}{EXPIRE_FLAGS}"
        saved = Meta(now, header, initial)
        if remember:
            self.remember_meta = saved
        else:
            self.meta = saved
            self.state = state

    def _remembers(self) -> bool:
        meta = self.meta
        if meta is not None and meta.header.flags & FLAG_FORGET:
            return False
        return self.settings.remember

    def _open_remember_meta(self) -> bool:
        if self.remember_meta is not None:
            return True
        try:
            self._open(True, meta_only=True)
        except Failed:
            return False
        return True

    def save(self) -> None:
        """Seal the session into a new cookie (and the remember cookie, with ``remember``)."""
        if self.state == CLOSED:
            raise SessionError("unable to save closed session")
        self._save(False)
        if self._remembers():
            self._open_remember_meta()  # keeps the remember cookie's creation time
            self._save(True)

    def touch(self) -> None:
        """Reset the idle time: the same cookie with a new idling offset and MAC."""
        meta = self.meta
        assert self.state == OPEN and meta is not None
        old = meta.header
        idling_offset = min(self.now - old.creation_time - old.rolling_offset, MAX_IDLING_OFFSET)
        raw = retouch(self.settings.keys, old, max(idling_offset, 0))
        header = Header.parse(raw)
        assert header is not None
        meta.header = header
        name = self.settings.cookie_name
        self.cookies[name] = (
            f"{name}={b64encode(raw)}{meta.initial_chunk}{self.settings.cookie_flags}"
        )

    def refresh(self) -> None:
        """Renew the session past three quarters of its rolling timeout, else touch it once
        idle for over a minute (with an idle timeout); otherwise nothing is sent."""
        meta = self.meta
        assert self.state == OPEN and meta is not None
        settings = self.settings
        rolling = settings.rolling_timeout
        idling = settings.idling_timeout
        header = meta.header
        rolling_elapsed = meta.timestamp - header.creation_time - header.rolling_offset
        if rolling > 0 and rolling_elapsed > math.ceil(rolling * 0.75):
            self._save(False)
        elif idling > 0 and rolling_elapsed - header.idling_offset > TOUCH_THRESHOLD:
            self.touch()

    # -- ending --------------------------------------------------------------------------------
    def logout(self) -> None:
        """Leave this audience: the cookie is destroyed, or saved without the audience's entry
        when other audiences share it."""
        assert self.state == OPEN
        if len(self.entries) == 1:
            self.destroy()
            return
        del self.entries[self.index]
        self.index = 0
        self._save(False, CLOSED)
        if self._remembers():
            self._open_remember_meta()
            self._save(True)

    def destroy(self) -> None:
        """Expire the cookie (every chunk of it) and, when valid, the remember cookie."""
        self._expire(self.settings.cookie_name, self.meta)
        self.state = CLOSED
        if self._remembers() and self._open_remember_meta():
            self._expire(self.settings.remember_cookie_name, self.remember_meta)

    def _expire(self, name: str, meta: Meta | None) -> None:
        count = chunk_count(len(name), meta.header.data_size) if meta is not None else 1
        flags = self.settings.cookie_flags
        self.cookies[name] = f"{name}={flags}{EXPIRE_FLAGS}"
        for i in range(2, (count or 1) + 1):
            self.cookies[f"{name}{i}"] = f"{name}{i}={flags}{EXPIRE_FLAGS}"

    # -- properties ----------------------------------------------------------------------------
    def property(self, name: str) -> str | Number | None:
        """``id``, ``audience``, ``subject`` or a timeout's seconds left (None: not set)."""
        if name == "id":
            return b64encode(self.meta.header.sid) if self.meta is not None else None
        if name == "audience":
            return self.audience
        if name == "subject":
            return self.subject
        meta = self.meta
        if meta is None:
            return None
        settings = self.settings
        header = meta.header
        absolute_elapsed = meta.timestamp - header.creation_time
        rolling_elapsed = absolute_elapsed - header.rolling_offset
        left = {
            "idling-timeout": (settings.idling_timeout, rolling_elapsed - header.idling_offset),
            "rolling-timeout": (settings.rolling_timeout, rolling_elapsed),
            "absolute-timeout": (settings.absolute_timeout, absolute_elapsed),
        }
        if name == "timeout":
            found = [timeout - elapsed for timeout, elapsed in left.values() if timeout > 0]
            return min(found) if found else None
        if name in left:
            timeout, elapsed = left[name]
            return timeout - elapsed if timeout != 0 else None
        return None
