"""Policies give ingest searches their `action`; webhooks are signed, retried, and delivered
exactly once to a loopback receiver that was down for a while."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import httpx
import pytest

from medialayer.webhooks import Dispatcher, sign

if TYPE_CHECKING:
    from api_fixtures import Api, Media

pytest_plugins = ["api_fixtures"]

H = dict[str, str]


def upload(api: Api, headers: H, data: bytes, seller: str, index: bool = False) -> dict:
    path = "/v1/search/image/upload" if index else "/v1/media/image/upload"
    fields = {"metadata": json.dumps({"seller": seller})}
    if index:
        fields["index"] = "true"
    response = api.client.post(path, headers=headers, files={"file": ("x.jpg", data)},
                               data=fields)
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_policies_return_the_right_action(api: Api, media: Media) -> None:
    admin = api.key(scopes=("admin",))
    rules = {"rules": [{"action": "auto_reject", "min_score": 0.85, "cross_seller": True},
                       {"action": "queue_review", "min_score": 0.65}]}
    assert api.client.put("/v1/policies", headers=api.key(), json=rules).status_code == 403
    saved = api.client.put("/v1/policies", headers=admin, json=rules)
    assert saved.status_code == 200, saved.text
    assert api.client.get("/v1/policies", headers=admin).json()["rules"][0]["action"] == \
        "auto_reject"
    upload(api, admin, media.original, seller="brand")
    same_seller = upload(api, admin, media.copy, seller="brand", index=True)
    assert same_seller["action"] == "queue_review"
    api.client.delete(f"/v1/media/{same_seller['query_media_id']}", headers=admin)
    copycat = upload(api, admin, media.copy, seller="copycat", index=True)
    assert copycat["action"] == "auto_reject"
    assert copycat["results"][0]["action"] == "auto_reject"
    marks = api.ml.review.marks("acme", [copycat["query_media_id"]])
    assert marks[copycat["query_media_id"]].status == "rejected"  # enforced, and audited
    trail = api.client.get("/v1/decisions", headers=admin).json()["items"]
    assert trail[0]["actor"]["name"] == "policy" and trail[0]["action"] == "reject"
    unrelated = upload(api, admin, media.other, seller="copycat", index=True)
    assert unrelated["action"] == "allow"
    bad = api.client.put("/v1/policies", headers=admin,
                         json={"rules": [{"action": "allow", "min_score": 0.9,
                                          "max_score": 0.5}]})
    assert bad.status_code == 400


def test_policy_metadata_and_media_type_conditions(api: Api, media: Media) -> None:
    admin = api.key(scopes=("admin",))
    api.client.put("/v1/policies", headers=admin, json={"rules": [
        {"action": "queue_review", "media_type": "image",
         "metadata": {"category": "watches"}}]})
    upload(api, admin, media.original, seller="a")

    def action(category: str) -> str:
        response = api.client.post("/v1/search/image/upload", headers=admin,
                                   files={"file": ("x.jpg", media.copy)},
                                   data={"metadata": json.dumps({"category": category})})
        return response.json()["action"]

    assert action("watches") == "queue_review"
    assert action("lamps") == "allow"


class Receiver:
    """A loopback HTTP receiver on a fixed port, started and stopped by the test."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: list[tuple[dict[str, str], bytes]] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the http.server protocol
                body = self.rfile.read(int(self.headers["Content-Length"]))
                seen.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Receiver:
    with socket.socket() as s:  # a free port, nothing listening on it yet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    found = Receiver(port)
    yield found
    found.stop()


def dispatch(api: Api, rounds: int, pause: float) -> None:
    """Run the dispatcher `rounds` times, `pause` apart (its backoff is short in tests)."""
    async def run() -> None:
        dispatcher = Dispatcher(api.ml.store, api.settings)
        async with httpx.AsyncClient(timeout=2.0) as client:
            for _ in range(rounds):
                await dispatcher.send_due(client)
                await asyncio.sleep(pause)

    asyncio.run(run())


def test_webhooks_are_signed_retried_and_delivered_once(make_api, media: Media,
                                                        receiver: Receiver) -> None:
    api = make_api(run_webhooks=False, webhook_backoff_seconds=0.05, webhook_backoff_max=0.2)
    admin = api.key(scopes=("admin",))
    made = api.client.post("/v1/webhooks", headers=admin, json={
        "url": f"http://127.0.0.1:{receiver.port}/hook", "events": ["decision", "match"]})
    assert made.status_code == 201, made.text
    hook_id, secret = made.json()["id"], made.json()["secret"]
    original = upload(api, admin, media.original, seller="a")["id"]
    copy = upload(api, admin, media.copy, seller="b")["id"]  # a match event
    api.client.post("/v1/decisions", headers=admin,
                    json={"media_id": original, "other_media_id": copy, "action": "dismiss"})

    dispatch(api, rounds=3, pause=0.1)  # the receiver is down: every try fails
    log = api.client.get(f"/v1/webhooks/{hook_id}/deliveries", headers=admin).json()["items"]
    assert {d["event"] for d in log} == {"match", "decision"}
    assert all(d["state"] == "pending" and d["attempts"] >= 2 and d["last_error"] for d in log)
    assert receiver.seen == []

    receiver.start()
    dispatch(api, rounds=6, pause=0.15)
    log = api.client.get(f"/v1/webhooks/{hook_id}/deliveries", headers=admin).json()["items"]
    assert all(d["state"] == "delivered" and d["last_status"] == 204 for d in log), log
    ids = [headers["X-MediaLayer-Delivery"] for headers, _ in receiver.seen]
    assert sorted(ids) == sorted(d["id"] for d in log)  # each exactly once
    for headers, body in receiver.seen:
        timestamp = int(headers["X-MediaLayer-Timestamp"])
        expected = "v1=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                                    hashlib.sha256).hexdigest()
        assert headers["X-MediaLayer-Signature"] == expected
        assert abs(time.time() - timestamp) < 300
        assert sign(secret, timestamp, body + b" ") != expected  # a changed body fails
    events = {json.loads(b)["event"]: json.loads(b)["data"] for _, b in receiver.seen}
    assert events["decision"]["action"] == "dismiss"
    assert events["match"]["media_id"] == copy
    assert events["match"]["matches"][0]["media_id"] == original

    fired = api.client.post(f"/v1/webhooks/{hook_id}/test", headers=admin)
    assert fired.status_code == 202
    dispatch(api, rounds=2, pause=0.05)
    assert [json.loads(b)["event"] for _, b in receiver.seen].count("ping") == 1
    assert len(receiver.seen) == 3


def test_job_completion_is_sent_once(make_api, origin, receiver: Receiver) -> None:
    from test_jobs import wait_done

    api = make_api(run_webhooks=False)
    admin = api.key(scopes=("admin",))
    receiver.start()
    api.client.post("/v1/webhooks", headers=admin, json={
        "url": f"http://127.0.0.1:{receiver.port}/", "events": ["job.completed"]})
    text = f"url\n{origin.url('/photo.jpg')}\n{origin.url('/missing.jpg')}\n"
    job_id = api.client.post("/v1/media/bulk", headers=admin,
                             files={"file": ("rows.csv", text.encode())}).json()["job_id"]
    wait_done(api.client, admin, job_id)
    dispatch(api, rounds=3, pause=0.05)
    sent = [json.loads(b) for _, b in receiver.seen]
    assert [(e["event"], e["data"]["job_id"], e["data"]["done"], e["data"]["failed"])
            for e in sent] == [("job.completed", job_id, 1, 1)]


def test_webhooks_refuse_private_receivers_and_other_tenants(api: Api) -> None:
    admin = api.key(scopes=("admin",))
    private = api.client.post("/v1/webhooks", headers=admin, json={
        "url": "http://10.1.2.3/hook", "events": ["match"]})
    assert private.status_code == 400
    mine = api.client.post("/v1/webhooks", headers=admin, json={
        "url": "http://127.0.0.1:9/hook", "events": ["match"]}).json()["id"]
    rival = api.key(tenant="rival", scopes=("admin",))
    assert api.client.get(f"/v1/webhooks/{mine}/deliveries", headers=rival).status_code == 404
    assert api.client.post(f"/v1/webhooks/{mine}/test", headers=rival).status_code == 404
    assert api.client.get("/v1/webhooks", headers=rival).json()["items"] == []
    assert api.client.post("/v1/webhooks", headers=api.key(), json={
        "url": "http://127.0.0.1:9/", "events": ["match"]}).status_code == 403


def test_a_receiver_name_rebound_to_loopback_is_refused_at_delivery(make_api, monkeypatch
                                                                   ) -> None:
    """DNS rebinding: the name passed the check at registration, then answers loopback. A
    delivery resolves the name once, refuses that answer, and never connects; while the name
    still answers a public address, the request goes to that address itself (Host header
    and TLS SNI keep the name), so no second lookup can swap it."""
    api = make_api(run_webhooks=False, fetch_allow_networks=[])
    admin = api.key(scopes=("admin",))
    answers = ["93.184.216.34"]
    lookups: list[str] = []

    def resolve(host: str, port: object, *args: object, **kwargs: object) -> list:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[0], 80))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    made = api.client.post("/v1/webhooks", headers=admin, json={
        "url": "http://receiver.example:8080/hook", "events": ["ping"]})
    assert made.status_code == 201, made.text
    hook_id = made.json()["id"]
    sent: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    def fire() -> dict:
        api.client.post(f"/v1/webhooks/{hook_id}/test", headers=admin)
        lookups.clear()

        async def run() -> None:
            async with httpx.AsyncClient(transport=httpx.MockTransport(receive)) as client:
                await Dispatcher(api.ml.store, api.settings).send_due(client)

        asyncio.run(run())
        return api.client.get(f"/v1/webhooks/{hook_id}/deliveries",
                              headers=admin).json()["items"][0]

    delivered = fire()
    assert delivered["state"] == "delivered"
    assert lookups == ["receiver.example"]
    assert sent[0].url.host == "93.184.216.34"
    assert sent[0].headers["Host"] == "receiver.example:8080"

    for rebound in ("127.0.0.1", "10.0.0.7"):
        answers[0] = rebound
        refused = fire()
        assert refused["state"] == "pending" and refused["last_status"] is None
        assert rebound in refused["last_error"], refused
        assert len(sent) == 1  # nothing was sent to the rebound address
