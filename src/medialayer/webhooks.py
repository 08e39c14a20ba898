"""Webhooks: a tenant's events (match, decision, job.completed, ping) POSTed to its receivers.

An event is written to the delivery log in the same transaction as what caused it (a decision,
kept edges, a job's last row), so nothing is lost between the two; a dispatcher (in `serve`, or
any process running one) sends due deliveries and keeps retrying with exponential backoff while
a receiver is down. A delivery is leased while being sent, so two dispatchers never send it at
once; a receiver should still de-duplicate on `X-MediaLayer-Delivery` (if its answer is lost,
the delivery is sent again).

Signature: `X-MediaLayer-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>` with
`X-MediaLayer-Timestamp` (Unix seconds): a receiver recomputes it and refuses old timestamps.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from medialayer import fetch
from medialayer.catalog.models import Job, JobRow, utcnow
from medialayer.catalog.review_models import Webhook, WebhookDelivery
from medialayer.catalog.store import SqlCatalogStore, as_utc
from medialayer.config import Settings
from medialayer.errors import FetchFailed, InvalidInput, NotFound

log = logging.getLogger("medialayer.webhooks")
EVENTS = ("match", "decision", "job.completed", "ping")
LEASE_SECONDS = 60.0
TIMEOUT_SECONDS = 10.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def wanted(session: Session, tenant: str, event: str) -> list[Webhook]:
    """The tenant's live webhooks that subscribe to `event`."""
    return [h for h in session.scalars(select(Webhook).where(
        Webhook.tenant == tenant, Webhook.deleted_at.is_(None))) if event in h.events]


def enqueue(session: Session, hooks: list[Webhook], event: str, data: dict[str, Any],
            dedupe: str | None = None) -> int:
    """Log `event` for each of `hooks`, in the caller's transaction; with `dedupe`, at most
    once per webhook ever. Returns how many were queued."""
    queued = 0
    for hook in hooks:
        if dedupe is not None and session.scalar(select(WebhookDelivery.id).where(
                WebhookDelivery.webhook_id == hook.id, WebhookDelivery.dedupe == dedupe)):
            continue
        session.add(WebhookDelivery(id=str(uuid.uuid4()), webhook_id=hook.id, tenant=hook.tenant,
                                    event=event, payload=_json_safe(data), dedupe=dedupe,
                                    state="pending", attempts=0, next_attempt_at=utcnow()))
        queued += 1
    return queued


@dataclass(frozen=True)
class Due:
    """A delivery leased to this dispatcher, with what sending it needs."""

    id: str
    url: str
    secret: str
    event: str
    body: bytes
    attempts: int


class Webhooks:
    """Registering receivers and reading the delivery log, per tenant."""

    def __init__(self, store: SqlCatalogStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def register(self, tenant: str, url: str, events: list[str]) -> tuple[dict[str, Any], str]:
        """A new webhook and its signing secret (shown once)."""
        bad = [e for e in events if e not in EVENTS]
        if bad or not events:
            raise InvalidInput(f"events must be some of {', '.join(EVENTS)}")
        vet(url, self.settings)
        secret = "whsec_" + secrets.token_urlsafe(32)
        row = Webhook(id=str(uuid.uuid4()), tenant=tenant, url=url, secret=secret,
                      events=sorted(set(events)), created_at=utcnow())
        with self.store.session.begin() as s:
            s.add(row)
        return _hook(row), secret

    def listing(self, tenant: str) -> list[dict[str, Any]]:
        with self.store.session() as s:
            return [_hook(h) for h in s.scalars(select(Webhook).where(
                Webhook.tenant == tenant, Webhook.deleted_at.is_(None))
                .order_by(Webhook.created_at))]

    def remove(self, tenant: str, webhook_id: str) -> None:
        with self.store.session.begin() as s:
            self._live(s, tenant, webhook_id).deleted_at = utcnow()

    def test_fire(self, tenant: str, webhook_id: str) -> str:
        """Queue a `ping` for one webhook; its delivery id."""
        with self.store.session.begin() as s:
            hook = self._live(s, tenant, webhook_id)
            delivery = WebhookDelivery(id=str(uuid.uuid4()), webhook_id=hook.id, tenant=tenant,
                                       event="ping", payload={"message": "test from MediaLayer"},
                                       state="pending", attempts=0, next_attempt_at=utcnow())
            s.add(delivery)
        return delivery.id

    def deliveries(self, tenant: str, webhook_id: str, limit: int = 100
                   ) -> list[dict[str, Any]]:
        """The delivery log of one webhook, newest first."""
        with self.store.session() as s:
            self._live(s, tenant, webhook_id)
            rows = s.scalars(select(WebhookDelivery).where(
                WebhookDelivery.webhook_id == webhook_id)
                .order_by(WebhookDelivery.created_at.desc()).limit(limit))
            return [{"id": d.id, "event": d.event, "state": d.state, "attempts": d.attempts,
                     "last_status": d.last_status, "last_error": d.last_error,
                     "created_at": as_utc(d.created_at), "delivered_at": as_utc(d.delivered_at),
                     "next_attempt_at": as_utc(d.next_attempt_at)} for d in rows]

    def _live(self, s: Session, tenant: str, webhook_id: str) -> Webhook:
        hook = s.get(Webhook, webhook_id)
        if hook is None or hook.tenant != tenant or hook.deleted_at is not None:
            raise NotFound(f"no webhook {webhook_id}")
        return hook


class Dispatcher:
    """Sends due deliveries: claims them from the catalog (leased), POSTs, records the outcome."""

    def __init__(self, store: SqlCatalogStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def run_forever(self, stop: asyncio.Event, idle_sleep: float = 0.5) -> None:
        # trust_env=False: a proxy from the environment would resolve the name again itself.
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False,
                                     trust_env=False) as client:
            while not stop.is_set():
                try:
                    sent = await self.send_due(client)
                except Exception:  # a database hiccup must not end the loop
                    log.exception("sending webhooks failed")
                    sent = 0
                if not sent:
                    try:
                        await asyncio.wait_for(stop.wait(), idle_sleep)
                    except TimeoutError:
                        pass

    async def send_due(self, client: httpx.AsyncClient, limit: int = 20) -> int:
        """Send up to `limit` due deliveries at once; how many were tried."""
        await asyncio.to_thread(self._jobs_completed)
        due = await asyncio.to_thread(self._claim, limit)
        await asyncio.gather(*(self._send(client, d) for d in due))
        return len(due)

    def _jobs_completed(self) -> None:
        """Queue `job.completed` for jobs with no row left to do, once per webhook (dedupe):
        found here, by the dispatcher, so the job workers need no hook of their own."""
        with self.store.session.begin() as s:
            hooks = [h for h in s.scalars(select(Webhook).where(Webhook.deleted_at.is_(None)))
                     if "job.completed" in h.events]
            for hook in hooks:
                notified = select(WebhookDelivery.dedupe).where(
                    WebhookDelivery.webhook_id == hook.id, WebhookDelivery.event == "job.completed")
                open_rows = select(JobRow.id).where(JobRow.job_id == Job.id,
                                                    JobRow.state.in_(("pending", "claimed")))
                jobs = s.scalars(select(Job).where(
                    Job.tenant == hook.tenant, Job.created_at >= hook.created_at,
                    ~exists(open_rows), ("job:" + Job.id).not_in(notified)))
                for job in jobs:
                    counts = dict(s.execute(select(JobRow.state, func.count())
                                            .where(JobRow.job_id == job.id)
                                            .group_by(JobRow.state)).all())
                    enqueue(s, [hook], "job.completed", {
                        "job_id": job.id, "total": job.total, "done": counts.get("done", 0),
                        "failed": counts.get("failed", 0)}, dedupe=f"job:{job.id}")

    def _claim(self, limit: int) -> list[Due]:
        now = utcnow()
        claimable = or_(and_(WebhookDelivery.state == "pending",
                             WebhookDelivery.next_attempt_at <= now),
                        and_(WebhookDelivery.state == "sending",
                             WebhookDelivery.lease_until < now))
        with self.store.session.begin() as s:
            rows = list(s.scalars(select(WebhookDelivery).where(claimable)
                                  .order_by(WebhookDelivery.next_attempt_at).limit(limit)
                                  .with_for_update(skip_locked=True)))
            hooks = {h.id: h for h in s.scalars(select(Webhook).where(
                Webhook.id.in_([r.webhook_id for r in rows])))}
            due = []
            for row in rows:
                hook = hooks.get(row.webhook_id)
                if hook is None or hook.deleted_at is not None:
                    row.state, row.last_error = "failed", "the webhook was deleted"
                    continue
                row.state, row.lease_until = "sending", now + timedelta(seconds=LEASE_SECONDS)
                row.attempts += 1
                envelope = {"id": row.id, "event": row.event,
                            "created_at": _iso(as_utc(row.created_at)), "data": row.payload}
                due.append(Due(row.id, hook.url, hook.secret, row.event,
                               json.dumps(envelope, separators=(",", ":")).encode(),
                               row.attempts))
            return due

    async def _send(self, client: httpx.AsyncClient, due: Due) -> None:
        status, error = None, None
        try:
            # Resolved once, checked, and connected to that very address: a receiver whose
            # name passed at registration cannot rebind it to a private address since.
            target = httpx.URL(due.url)
            ip = await fetch.vetted_address(target, fetch.allowed_networks(self.settings))
            url, host, extensions = fetch.pinned(target, ip)
            timestamp = int(time.time())
            response = await client.post(url, content=due.body, extensions=extensions, headers={
                **host, "Content-Type": "application/json", "User-Agent": "MediaLayer-Webhooks",
                "X-MediaLayer-Event": due.event, "X-MediaLayer-Delivery": due.id,
                "X-MediaLayer-Timestamp": str(timestamp),
                "X-MediaLayer-Signature": sign(due.secret, timestamp, due.body)})
            status = response.status_code
            if not 200 <= status < 300:
                error = f"the receiver answered {status}"
        except (httpx.HTTPError, FetchFailed, OSError) as e:
            error = str(e) or e.__class__.__name__
        await asyncio.to_thread(self._record, due, status, error)

    def _record(self, due: Due, status: int | None, error: str | None) -> None:
        with self.store.session.begin() as s:
            row = s.get(WebhookDelivery, due.id)
            if row is None:
                return
            row.last_status, row.last_error, row.lease_until = status, error, None
            if error is None:
                row.state, row.delivered_at = "delivered", utcnow()
            elif due.attempts >= self.settings.webhook_max_attempts:
                row.state = "failed"
            else:
                delay = min(self.settings.webhook_backoff_max,
                            self.settings.webhook_backoff_seconds * 2 ** (due.attempts - 1))
                row.state, row.next_attempt_at = "pending", utcnow() + timedelta(seconds=delay)


def vet(url: str, settings: Settings) -> None:
    """Refuse receivers that are not http(s) or resolve to private addresses (SSRF), unless
    their network is allow-listed (`fetch_allow_networks`)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("a webhook URL must be http(s)://host/...")
    allowed = fetch.allowed_networks(settings)
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError as e:
        raise InvalidInput(f"cannot resolve {parts.hostname}: {e}") from e
    for info in infos:
        why = fetch.refusal(ipaddress.ip_address(info[4][0]), allowed)
        if why:
            raise InvalidInput(f"webhook receiver refused: {why}")


def _hook(row: Webhook) -> dict[str, Any]:
    return {"id": row.id, "url": row.url, "events": row.events,
            "created_at": as_utc(row.created_at)}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _json_safe(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return result
