"""Per-tenant policies: what a search's matches mean for the listing being ingested.

A policy is an ordered list of rules; each hit of a search takes the action of the first rule it
meets (score band, media type, cross-seller or not, the new listing's metadata), `allow` if
none, and the answer's `action` is the most severe of its hits': `auto_reject` over
`queue_review` over `allow`. Rules are read per tenant and cached for a few seconds per
process: a search must not pay a query for them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, select

from medialayer.catalog.review_models import PolicyRule
from medialayer.catalog.store import SqlCatalogStore
from medialayer.errors import InvalidInput

ACTIONS = ("allow", "queue_review", "auto_reject")
"""In rising severity."""
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Rule:
    action: str
    media_type: str | None = None
    min_score: float = 0.0
    max_score: float = 1.0
    cross_seller: bool | None = None
    """True: only matches whose two items have different `seller` metadata; False: same seller."""
    metadata: dict[str, str] | None = None
    """Every key must have this value in the new listing's metadata."""

    def meets(self, media_type: str, score: float, cross: bool | None,
              metadata: dict[str, Any]) -> bool:
        return ((self.media_type is None or self.media_type == media_type)
                and self.min_score <= score <= self.max_score
                and (self.cross_seller is None or self.cross_seller == cross)
                and all(str(metadata.get(k)) == str(v) for k, v in (self.metadata or {}).items()))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(rules: list[Rule], media_type: str, score: float, query_metadata: dict[str, Any],
            hit_metadata: dict[str, Any]) -> str:
    """The action of the first rule a hit meets, `allow` if none."""
    mine, theirs = query_metadata.get("seller"), hit_metadata.get("seller")
    cross = None if mine is None or theirs is None else str(mine) != str(theirs)
    for rule in rules:
        if rule.meets(media_type, score, cross, query_metadata):
            return rule.action
    return "allow"


def most_severe(actions: list[str]) -> str:
    return max(actions, key=ACTIONS.index, default="allow")


def validate(rules: list[Rule]) -> None:
    for i, rule in enumerate(rules, 1):
        if rule.action not in ACTIONS:
            raise InvalidInput(f"rule {i}: action must be one of {', '.join(ACTIONS)}")
        if not 0.0 <= rule.min_score <= rule.max_score <= 1.0:
            raise InvalidInput(f"rule {i}: need 0 <= min_score <= max_score <= 1")


class Policies:
    """The tenants' rules in the catalog, cached per process."""

    def __init__(self, store: SqlCatalogStore) -> None:
        self.store = store
        self._cache: dict[str, tuple[float, list[Rule]]] = {}
        self._lock = threading.Lock()

    def rules(self, tenant: str) -> list[Rule]:
        with self._lock:
            cached = self._cache.get(tenant)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        with self.store.session() as s:
            rows = s.scalars(select(PolicyRule).where(PolicyRule.tenant == tenant)
                             .order_by(PolicyRule.position))
            found = [Rule(r.action, r.media_type, r.min_score, r.max_score, r.cross_seller,
                          r.metadata_) for r in rows]
        with self._lock:
            self._cache[tenant] = (time.monotonic(), found)
        return found

    def replace(self, tenant: str, rules: list[Rule]) -> list[Rule]:
        """Set the tenant's whole policy (an ordered list) in one transaction."""
        validate(rules)
        with self.store.session.begin() as s:
            s.execute(delete(PolicyRule).where(PolicyRule.tenant == tenant))
            s.add_all(PolicyRule(tenant=tenant, position=i, action=r.action,
                                 media_type=r.media_type, min_score=r.min_score,
                                 max_score=r.max_score, cross_seller=r.cross_seller,
                                 metadata_=r.metadata) for i, r in enumerate(rules))
        with self._lock:
            self._cache.pop(tenant, None)
        return rules
