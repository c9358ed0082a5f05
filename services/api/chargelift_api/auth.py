"""Bearer API tokens: configured as SHA-256 hashes, each with a scope (read, control, admin).

A token is a random string the operator hands out; the API only ever stores and
compares its hash (``chargelift-api hash-token`` prints a new token and its entry).
Every scope includes ``read``; ``control`` (sending commands to chargers) is given
only by name: ``admin`` does not include it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Literal

Scope = Literal["read", "control", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "control", "admin")
_ENTRY = re.compile(r"([A-Za-z0-9_.-]{1,64}):(read|control|admin):([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One configured token: a name (for logs and metrics), its scope and its hash."""

    name: str
    scope: Scope
    sha256: str = field(repr=False)

    def grants(self, scope: Scope) -> bool:
        """True if this token may do what ``scope`` allows (every scope includes read;
        control is never implied)."""
        return scope == "read" or self.scope == scope


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in ``API_TOKENS``.

    A plain hash (no salt, no slow KDF) is enough: tokens are 256-bit random strings,
    not passwords, so there is nothing to guess from a leaked hash.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A new random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def parse_tokens(text: str) -> list[TokenEntry]:
    """Parse ``name:scope:sha256hex,...``; raise ValueError naming the bad entry's position."""
    entries = []
    for i, raw in enumerate(t.strip() for t in text.split(",")):
        if not raw:
            continue
        m = _ENTRY.fullmatch(raw)
        if m is None:
            raise ValueError(
                f"API_TOKENS entry {i + 1} is not name:read|control|admin:<sha256 hex>"
            )
        scope = next(s for s in SCOPES if s == m.group(2))
        entries.append(TokenEntry(m.group(1), scope, m.group(3)))
    if not entries:
        raise ValueError("API_TOKENS has no token")
    return entries


class TokenStore:
    """The configured tokens, looked up by hash."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        self._entries = entries

    def check(self, token: str) -> TokenEntry | None:
        """The entry of ``token``, or None; every entry is compared in constant time."""
        digest = hash_token(token)
        found = None
        for entry in self._entries:
            if hmac.compare_digest(entry.sha256, digest):
                found = entry
        return found
