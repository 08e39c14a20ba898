"""API keys: created from the CLI, stored as SHA-256 digests, shown in clear exactly once.

A key is 32 random bytes, so one unsalted SHA-256 suffices (nothing to brute-force) and lets a
lookup be one indexed query; the digest comparison is constant-time all the same.

A key also signs in to the review UI: a session is a random token in an HttpOnly cookie, its
digest and a CSRF token in the catalog, so every worker process (and machine) knows the session
and signing out ends it. A session lives only as long as its key: a key revoked ends its
sessions at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from medialayer.catalog.models import ApiKey, utcnow
from medialayer.catalog.review_models import UiSession
from medialayer.catalog.store import SqlCatalogStore, as_utc
from medialayer.errors import InvalidInput, NotFound

SCOPES = ("index", "search", "review", "admin")
PREFIX = "ml_"


@dataclass(frozen=True)
class KeyInfo:
    id: str
    tenant: str
    name: str | None
    prefix: str
    scopes: tuple[str, ...]
    rate_limit: int | None
    created_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: ApiKey) -> KeyInfo:
        return cls(row.id, row.tenant, row.name, row.prefix, tuple(row.scopes.split(",")),
                   row.rate_limit, row.created_at, row.revoked_at)

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_key(store: SqlCatalogStore, tenant: str, scopes: list[str], name: str | None = None,
               rate_limit: int | None = None) -> tuple[KeyInfo, str]:
    """A new key for `tenant`; returns its record and the plaintext, which is never stored."""
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise InvalidInput(f"scopes must be some of {', '.join(SCOPES)}; got {scopes}")
    if not tenant:
        raise InvalidInput("tenant must not be empty")
    plaintext = PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(id=str(uuid.uuid4()), tenant=tenant, name=name, prefix=plaintext[:10],
                 key_hash=digest(plaintext), scopes=",".join(scopes), rate_limit=rate_limit)
    with store.session.begin() as s:
        s.add(row)
    return KeyInfo.from_row(row), plaintext


def list_keys(store: SqlCatalogStore, tenant: str | None = None) -> list[KeyInfo]:
    q = select(ApiKey).order_by(ApiKey.created_at)
    if tenant:
        q = q.where(ApiKey.tenant == tenant)
    with store.session() as s:
        return [KeyInfo.from_row(r) for r in s.scalars(q)]


def revoke_key(store: SqlCatalogStore, key_id: str) -> KeyInfo:
    """Revoke by id or by the key's printed prefix."""
    with store.session.begin() as s:
        row = s.scalar(select(ApiKey).where((ApiKey.id == key_id) | (ApiKey.prefix == key_id)))
        if row is None:
            raise NotFound(f"no API key {key_id}")
        row.revoked_at = row.revoked_at or datetime.now(UTC)
        return KeyInfo.from_row(row)


def authenticate(store: SqlCatalogStore, plaintext: str | None) -> KeyInfo | None:
    """The live key matching `plaintext`, or None (unknown, revoked, or missing)."""
    if not plaintext:
        return None
    wanted = digest(plaintext)
    with store.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.key_hash == wanted))
    if row is None or not hmac.compare_digest(row.key_hash, wanted) or row.revoked_at is not None:
        return None
    return KeyInfo.from_row(row)


def start_session(store: SqlCatalogStore, key: KeyInfo, hours: float) -> tuple[str, str]:
    """A new UI session for `key`: (cookie token, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    with store.session.begin() as s:
        s.execute(delete(UiSession).where(UiSession.expires_at < now))  # tidy expired ones
        s.add(UiSession(token_hash=digest(token), key_id=key.id, csrf=csrf,
                        expires_at=now + timedelta(hours=hours)))
    return token, csrf


def session_of(store: SqlCatalogStore, token: str | None) -> tuple[KeyInfo, str] | None:
    """The live key and CSRF token of a cookie token's session: unexpired, its key live."""
    if not token:
        return None
    with store.session() as s:
        row = s.get(UiSession, digest(token))
        expires = None if row is None else as_utc(row.expires_at)
        if row is None or expires is None or expires < utcnow():
            return None
        key_row = s.scalar(select(ApiKey).where(ApiKey.id == row.key_id))
    if key_row is None or key_row.revoked_at is not None:
        return None
    return KeyInfo.from_row(key_row), row.csrf


def end_session(store: SqlCatalogStore, token: str | None) -> None:
    if token:
        with store.session.begin() as s:
            s.execute(delete(UiSession).where(UiSession.token_hash == digest(token)))
