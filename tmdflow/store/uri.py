"""Database URIs: what is safe to print, and what a MongoDB server would refuse.

``redact`` never raises and never returns a password, for every shape a user may type:
``mongodb://u:p@h``, an unencoded ``@`` in the password (``u:p@ss@h``), an empty user name
(``:secret@h``), percent-encoding, ``mongodb+srv://`` and secret query options
(``tlsCertificateKeyFilePassword=...``).  The user info is everything before the *last* ``@``
of the authority, so a password holding ``@``, ``/`` or ``:`` is hidden whole.

``scrub`` removes the same secrets from any text (e.g. a pymongo error quoting the URI).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus, unquote, unquote_plus

MASK = "***"
#: query options whose value is a secret (matched case-insensitively as substrings)
SECRET_OPTION_WORDS = ("password", "secret", "token", "authmechanismproperties", "key")
_OPTION_SAFE = {"authsource", "authmechanism", "replicaset", "tls", "ssl", "tlsinsecure", "appname"}


@dataclass
class ParsedURI:
    """The parts of a URI as typed (no decoding, no validation)."""

    scheme: str  # "mongodb", "mongodb+srv", ... ("" when there is no "://")
    username: str | None
    password: str | None
    hosts: str  # "h1:27017,h2" as typed
    path: str  # "/db" or ""
    query: list[tuple[str, str]] = field(default_factory=list)

    def secrets(self) -> list[str]:
        out = [self.password] if self.password else []
        out += [v for k, v in self.query if _is_secret_option(k) and v]
        return out


def _is_secret_option(name: str) -> bool:
    low = name.lower()
    return low not in _OPTION_SAFE and any(word in low for word in SECRET_OPTION_WORDS)


def parse(uri: str) -> ParsedURI:
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return ParsedURI("", None, None, uri, "")
    # the authority ends at the first "/" or "?" after the user info; the user info ends at
    # the last "@" before that -- an unencoded "@", "/" or "?" in a password stays in it
    q = rest.find("?")
    head, query = (rest, "") if q < 0 else (rest[:q], rest[q + 1:])
    at = head.rfind("@")
    if at < 0 and "@" in query:  # e.g. "u:pa?ss@h": the "?" was part of the password
        at = rest.rfind("@")
        head, query = rest, ""
    userinfo, hostpart = (None, head) if at < 0 else (head[:at], head[at + 1:])
    slash = hostpart.find("/")
    hosts, path = (hostpart, "") if slash < 0 else (hostpart[:slash], hostpart[slash:])
    username = password = None
    if userinfo is not None:
        username, colon, pw = userinfo.partition(":")
        password = pw if colon else None
    options = []
    for item in filter(None, re.split(r"[&;]", query)):
        k, _, v = item.partition("=")
        options.append((k, v))
    return ParsedURI(scheme, username, password, hosts, path, options)


def redact(uri: str) -> str:
    """``mongodb://user:secret@host/?x=1`` -> ``mongodb://user:***@host/?x=1`` (never raises)."""
    try:
        p = parse(uri)
    except Exception:  # noqa: BLE001 -- a redactor must not fail; hide everything after the scheme
        return uri.split("://", 1)[0] + "://" + MASK
    if not p.scheme:
        return uri if "@" not in uri else MASK + "@" + uri.rsplit("@", 1)[1]
    auth = ""
    if p.username is not None:
        auth = p.username + (f":{MASK}" if p.password is not None else "") + "@"
    query = "&".join(f"{k}={MASK if _is_secret_option(k) else v}" for k, v in p.query)
    return f"{p.scheme}://{auth}{p.hosts}{p.path}" + (f"?{query}" if query else "")


def scrub(text: str, uri: str) -> str:
    """``text`` with every secret of ``uri`` (as typed, decoded or encoded) replaced by ***,
    and the URI itself by its redacted form."""
    if not uri:
        return text
    text = text.replace(uri, redact(uri))
    try:
        secrets = parse(uri).secrets()
    except Exception:  # noqa: BLE001
        return MASK
    variants = set()
    for s in secrets:
        variants |= {s, unquote(s), unquote_plus(s), quote(s, safe=""), quote_plus(s)}
    for s in sorted((v for v in variants if v), key=len, reverse=True):
        text = text.replace(s, MASK)
    return text


def hosts(uri: str) -> str:
    """The host list of a URI, for messages ("h1:27017,h2")."""
    try:
        return parse(uri).hosts or "?"
    except Exception:  # noqa: BLE001
        return "?"
