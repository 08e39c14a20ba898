"""A Python client for the MediaLayer HTTP API (docs/client.md).

It speaks the v1 API over httpx and returns the API's JSON answers as dicts (their fields are in
docs/api.md and at /docs), so it needs nothing of the server's code and works against any
version that keeps the contract. What it adds over raw HTTP is what every caller would otherwise
write again: the key on every request, errors raised with the API's code and message, retries
that honour the server's Retry-After, paging, and a bulk helper that submits a CSV and waits.

Retries are safe by construction: 429 and 503 mean the server refused the request before doing
anything (rate limit; database unavailable, nothing half-written), so any request is retried on
them; on a dropped connection only requests that are idempotent (GET, PUT, DELETE) are retried,
since a POST may have been carried out before the connection broke.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypedDict, Unpack

import httpx

JSON = dict[str, Any]
RETRY_STATUSES = frozenset({429, 502, 503, 504})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
Upload = str | Path | bytes | IO[bytes]
"""A file to send: a path, its bytes, or an open binary file."""


class ItemFields(TypedDict, total=False):
    """What a catalog item may carry besides its media."""

    name: str
    external_id: str
    metadata: Mapping[str, Any]


class SearchFields(ItemFields, total=False):
    """A search's options; the item fields apply when it indexes the query (`index=True`)."""

    top_k: int
    min_score: float
    index: bool


class ApiError(Exception):
    """An error answer: `status` (HTTP), `code` and `message` as the API gave them."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            error = response.json()["error"]
            return cls(response.status_code, str(error["code"]), str(error["message"]))
        except (ValueError, KeyError, TypeError):
            return cls(response.status_code, "http_error", response.text[:200])


class Client:
    """One API key on one MediaLayer service; use as a context manager or call `close()`.

    `retries` is how many times a refused (429/5xx) or, when idempotent, dropped request is sent
    again; the wait is the server's Retry-After when it gives one, else exponential backoff from
    `backoff` seconds with jitter, never more than `max_wait`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_wait: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            headers={"X-API-Key": api_key},
            transport=transport,
        )
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self._sleep = sleep

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- catalog ------------------------------------------------------------------------------

    def index_file(self, file: Upload, media_type: str = "image",
                   **fields: Unpack[ItemFields]) -> JSON:
        """Fingerprint a file and add it to the catalog; the new item's record."""
        return self._json("POST", f"/v1/media/{media_type}/upload",
                          files=_file(file, fields.get("name")), data=_form(**fields))

    def index_url(self, url: str, media_type: str = "image",
                  **fields: Unpack[ItemFields]) -> JSON:
        """Have the service fetch `url`, fingerprint it and add it to the catalog."""
        return self._json("POST", f"/v1/media/{media_type}/url", json=_body(url=url, **fields))

    def upsert_url(
        self,
        external_id: str,
        url: str,
        media_type: str = "image",
        *,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> JSON:
        """Add or update the item with this external id (SKU); the same media id either way."""
        return self._json(
            "PUT",
            f"/v1/media/{media_type}/external/{external_id}",
            json=_body(url=url, name=name, metadata=metadata),
        )

    def get_media(self, media_id: str) -> JSON:
        return self._json("GET", f"/v1/media/{media_id}")

    def find_external_id(self, external_id: str) -> JSON | None:
        """The item with this external id (SKU), or None."""
        items = self._json("GET", "/v1/media", params={"external_id": external_id})["items"]
        return dict(items[0]) if items else None

    def iter_media(self, media_type: str | None = None, page_size: int = 200) -> Iterator[JSON]:
        """Every item of the key's tenant, oldest first, fetched a page at a time."""
        params: dict[str, Any] = {"limit": page_size}
        if media_type:
            params["media_type"] = media_type
        yield from self._pages("/v1/media", params)

    def delete_media(self, media_id: str) -> None:
        self._request("DELETE", f"/v1/media/{media_id}")

    # -- search ---------------------------------------------------------------------------------

    def search_file(self, file: Upload, media_type: str = "image",
                    **fields: Unpack[SearchFields]) -> JSON:
        """Rank the catalog against a file; with `index=True`, add it afterwards (that needs
        the index scope)."""
        return self._json("POST", f"/v1/search/{media_type}/upload",
                          files=_file(file, fields.get("name")), data=_form(**fields))

    def search_url(self, url: str, media_type: str = "image",
                   **fields: Unpack[SearchFields]) -> JSON:
        return self._json("POST", f"/v1/search/{media_type}/url", json=_body(url=url, **fields))

    def compare(self, a: str, b: str, media_type: str | None = None) -> JSON:
        """Score two media against each other; each a media id of the tenant or a URL."""
        return self._json(
            "POST", "/v1/compare", json=_body(a=_operand(a), b=_operand(b), media_type=media_type)
        )

    # -- bulk jobs ------------------------------------------------------------------------------

    def submit_csv(self, csv: Upload) -> str:
        """Queue a bulk CSV (url, media_type, name, external_id, metadata columns); its job id."""
        accepted = self._json("POST", "/v1/media/bulk", files=_file(csv, "rows.csv"))
        return str(accepted["job_id"])

    def job(self, job_id: str) -> JSON:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def wait_for_job(
        self,
        job_id: str,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        progress: Callable[[JSON], None] | None = None,
    ) -> JSON:
        """Poll until the job has no pending rows; its final progress. `progress` is called with
        each answer (`progress_bar()` draws one)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.job(job_id)
            if progress is not None:
                progress(state)
            if state["pending"] == 0:
                return state
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still has {state['pending']} rows pending")
            self._sleep(poll)

    def bulk(
        self,
        csv: Upload,
        *,
        show_progress: bool = False,
        poll: float = 1.0,
        timeout: float | None = None,
    ) -> JSON:
        """Submit a CSV and wait for it; the job's final progress (failed rows: `job_errors`)."""
        job_id = self.submit_csv(csv)
        if not show_progress:
            return self.wait_for_job(job_id, poll=poll, timeout=timeout)
        with progress_bar(job_id) as draw:
            return self.wait_for_job(job_id, poll=poll, timeout=timeout, progress=draw)

    def job_errors(self, job_id: str) -> Iterator[JSON]:
        """The job's failed rows (row, url, external_id, error), in row order."""
        after = 0
        while True:
            page = self._json(
                "GET", f"/v1/jobs/{job_id}/errors", params={"after": after, "limit": 1000}
            )
            yield from page["errors"]
            if page["next_after"] is None:
                return
            after = int(page["next_after"])

    # -- review ---------------------------------------------------------------------------------

    def iter_clusters(self, media_type: str | None = None, **filters: Any) -> Iterator[JSON]:
        params = {k: v for k, v in {"media_type": media_type, **filters}.items() if v is not None}
        yield from self._pages("/v1/duplicates/clusters", params, items="clusters")

    def decide(
        self,
        action: str,
        media_id: str,
        *,
        other_media_id: str | None = None,
        cluster_id: int | None = None,
        note: str | None = None,
    ) -> JSON:
        """Record a decision that takes effect: `dismiss` a pair (not a duplicate), `consolidate`
        a pair or a cluster into `media_id`, `flag` or `reject` an item. Idempotent."""
        return self._json(
            "POST",
            "/v1/decisions",
            json=_body(
                action=action,
                media_id=media_id,
                other_media_id=other_media_id,
                cluster_id=cluster_id,
                note=note,
            ),
        )

    def iter_decisions(self, **filters: Any) -> Iterator[JSON]:
        yield from self._pages("/v1/decisions", {k: v for k, v in filters.items() if v is not None})

    # -- transport ------------------------------------------------------------------------------

    def _pages(self, path: str, params: Mapping[str, Any], items: str = "items") -> Iterator[JSON]:
        cursor: str | None = None
        while True:
            page = self._json(
                "GET", path, params={**params, **({"cursor": cursor} if cursor else {})}
            )
            yield from page[items]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def _json(self, method: str, path: str, **kwargs: Any) -> JSON:
        answer: JSON = self._request(method, path, **kwargs).json()
        return answer

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            _rewind(kwargs.get("files"))
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                if last or not _may_resend(method, error):
                    raise
                self._sleep(self._wait(attempt, None))
                continue
            if response.status_code < 400:
                return response
            if (
                last
                or response.status_code not in RETRY_STATUSES
                or (response.status_code in (502, 504) and method not in IDEMPOTENT)
            ):
                raise ApiError.from_response(response)
            self._sleep(self._wait(attempt, response.headers.get("Retry-After")))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None and retry_after.isdigit():
            return min(self.max_wait, float(retry_after))
        return min(self.max_wait, self.backoff * 2.0**attempt * (0.5 + random.random()))


def _may_resend(method: str, error: httpx.TransportError) -> bool:
    """Idempotent requests are resent after any transport failure; others only when the
    request never left (the connection could not be made)."""
    return method in IDEMPOTENT or isinstance(error, httpx.ConnectError)


def _file(file: Upload, name: str | None) -> dict[str, tuple[str, Any]]:
    if isinstance(file, (str, Path)):
        path = Path(file)
        return {"file": (name or path.name, path.read_bytes())}
    return {"file": (name or "upload", file)}


def _rewind(files: Mapping[str, tuple[str, Any]] | None) -> None:
    """Files given as open streams are read again from the start when a request is resent."""
    for _name, content in (files or {}).values():
        if hasattr(content, "seek"):
            content.seek(0)


def _operand(ref: str) -> JSON:
    return {"url": ref} if ref.startswith(("http://", "https://")) else {"media_id": ref}


def _body(**fields: Any) -> JSON:
    return {k: v for k, v in fields.items() if v is not None}


def _form(**fields: Any) -> dict[str, str]:
    """Multipart form fields: JSON for metadata, lower-case booleans, the rest as text."""
    form: dict[str, str] = {}
    for key, value in _body(**fields).items():
        if key == "metadata":
            form[key] = json.dumps(value)
        elif isinstance(value, bool):
            form[key] = str(value).lower()
        else:
            form[key] = str(value)
    return form


class progress_bar:  # noqa: N801 - used like a function, as a context manager
    """A rich progress bar for `wait_for_job`: `with progress_bar(job_id) as draw: ...`."""

    def __init__(self, job_id: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn(f"job {job_id[:8]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
        )
        self._task = self._progress.add_task("rows", total=None, failed=0)

    def __enter__(self) -> Callable[[JSON], None]:
        self._progress.start()
        return self._draw

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _draw(self, state: JSON) -> None:
        self._progress.update(
            self._task,
            total=state["total"],
            completed=state["done"] + state["failed"],
            failed=state["failed"],
        )
