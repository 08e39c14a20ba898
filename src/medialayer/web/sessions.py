"""Review UI sessions: a random token in an HttpOnly cookie, its digest and a CSRF token in the
catalog, so every worker process (and machine) knows the session and signing out ends it.

The API key itself is used once, at sign-in, and never stored in the browser. A session lives
only as long as its key: a key revoked or stripped of its scope ends its sessions at once.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select

from medialayer.catalog.models import ApiKey, utcnow
from medialayer.catalog.review_models import UiSession
from medialayer.catalog.store import SqlCatalogStore, as_utc
from medialayer.keys import KeyInfo, digest

SCOPE = "review"


@dataclass(frozen=True)
class Signed:
    """A live session: whose key, which tenant, the CSRF token its forms must carry."""

    key: KeyInfo
    csrf: str

    @property
    def tenant(self) -> str:
        return self.key.tenant


def start(store: SqlCatalogStore, key: KeyInfo, hours: float) -> tuple[str, str]:
    """A new session for `key`: (cookie token, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    with store.session.begin() as s:
        s.execute(delete(UiSession).where(UiSession.expires_at < now))  # tidy expired ones
        s.add(UiSession(token_hash=digest(token), key_id=key.id, csrf=csrf,
                        expires_at=now + timedelta(hours=hours)))
    return token, csrf


def load(store: SqlCatalogStore, token: str | None) -> Signed | None:
    """The live session of a cookie token: unexpired, its key live and still allowed to review."""
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
    key = KeyInfo.from_row(key_row)
    return Signed(key, row.csrf) if key.allows(SCOPE) else None


def end(store: SqlCatalogStore, token: str | None) -> None:
    if token:
        with store.session.begin() as s:
            s.execute(delete(UiSession).where(UiSession.token_hash == digest(token)))


def same_token(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
