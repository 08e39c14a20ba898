"""What every route needs besides auth: the app's MediaLayer and settings, a validated media type,
and the bytes of an upload, read under the size cap."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import Depends, Path, Request, UploadFile
from fastapi.exceptions import RequestValidationError

from medialayer.config import Settings
from medialayer.errors import InvalidInput, MediaTooLarge
from medialayer.fields import problem
from medialayer.kinds import KINDS, get_kind
from medialayer.service import MediaLayer

UPLOAD_CHUNK = 1024 * 1024
T = TypeVar("T")


# The dependencies are `async` although they never wait: FastAPI runs a plain `def` dependency
# in the threadpool, and three thread hand-offs per request showed in the search profile.


async def _ml(request: Request) -> MediaLayer:
    return request.app.state.ml


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _media_type(media_type: Annotated[str, Path(description="One of: " + ", ".join(KINDS))]
                ) -> str:
    """A media type from the path, refused (400) before any byte is fetched or decoded."""
    get_kind(media_type)
    return media_type


ML = Annotated[MediaLayer, Depends(_ml)]
AppSettings = Annotated[Settings, Depends(_settings)]
MediaType = Annotated[str, Depends(_media_type)]


async def cpu_bound(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run fingerprinting or matching in a worker thread, at most `cpu_threads` at a time."""
    limiter = request.app.state.cpu_limiter
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs),
                                          limiter=limiter)


def invalid_field(location: tuple[str, ...], message: str) -> RequestValidationError:
    """A 422 for a field checked by hand, in the shape of FastAPI's own validation errors."""
    return RequestValidationError([{"loc": location, "msg": message, "type": "value_error"}])


async def read_upload(file: UploadFile, settings: Settings) -> bytes:
    """The uploaded bytes, read in chunks so an oversized file is refused without being held.

    The file name becomes the media's name when the client gives none, so it is held to the
    same rules as a name (422 otherwise).
    """
    if file.filename and (reason := problem(file.filename)):
        raise invalid_field(("body", "file", "filename"), reason)
    limit = settings.upload_max_bytes
    what = f"upload {file.filename!r}" if file.filename else "upload"
    chunks: list[bytes] = []
    size = 0
    while chunk := await file.read(UPLOAD_CHUNK):
        size += len(chunk)
        if size > limit:
            raise MediaTooLarge(f"{what} is over the cap of {limit} bytes")
        chunks.append(chunk)
    if not size:
        raise InvalidInput(f"{what} is empty")
    return b"".join(chunks)
