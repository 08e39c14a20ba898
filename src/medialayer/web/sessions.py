"""Review UI sessions as the UI sees them: a session (kept by `medialayer.keys`) counts only
while its key may still review, so a key stripped of the scope ends its sessions at once.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from medialayer.keys import KeyInfo

SCOPE = "review"


@dataclass(frozen=True)
class Signed:
    """A live session: whose key, which tenant, the CSRF token its forms must carry."""

    key: KeyInfo
    csrf: str

    @property
    def tenant(self) -> str:
        return self.key.tenant


def signed(found: tuple[KeyInfo, str] | None) -> Signed | None:
    """A live session's key and CSRF token as a session of the UI, if the key may review."""
    if found is None or not found[0].allows(SCOPE):
        return None
    return Signed(*found)


def same_token(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
