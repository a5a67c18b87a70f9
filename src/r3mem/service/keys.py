"""API keys: random bearer tokens, stored only as SHA-256 digests, each scoped to a namespace.

A key is 256 bits of randomness, so a plain (unsalted) SHA-256 is enough: there is no
dictionary to attack, and the digest doubles as the lookup index. The plaintext is shown
once, by `create_api_key`, and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from r3mem.errors import AccessDenied, InvalidInput
from r3mem.store.backend import ApiKey, StoreBackend
from r3mem.store.namespace import Namespace

PREFIX = "r3m_"  # recognisable in logs and by secret scanners
_MAX_KEY_CHARS = 256  # far above a real key; bounds the work an unauthenticated caller can cause


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_api_key(backend: StoreBackend, scope: Namespace, label: str = "") -> str:
    """Store a new key that may touch only namespaces inside `scope`; return its plaintext."""
    if not isinstance(scope, Namespace):
        raise InvalidInput("an API key needs a namespace scope (user, agent and/or session)")
    plaintext = PREFIX + secrets.token_urlsafe(32)
    backend.add_api_key(ApiKey(key_hash=hash_key(plaintext), scope=scope, label=label))
    return plaintext


def authenticate(backend: StoreBackend, presented: str | None) -> ApiKey:
    """The stored key matching `presented`; AccessDenied when it is missing or unknown."""
    if not presented:
        raise AccessDenied("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    if len(presented) > _MAX_KEY_CHARS or not presented.isascii():
        raise AccessDenied("unknown API key")
    digest = hash_key(presented)
    key = backend.api_key(digest)
    # The lookup matched on the digest already; the constant-time re-check keeps that
    # guarantee even for a backend whose index comparison is not exact.
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        raise AccessDenied("unknown API key")
    return key
