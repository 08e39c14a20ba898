"""Error types shared by every layer; the API maps each one to one HTTP status."""

import re

_OBJECT_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")


def describe(error: BaseException) -> str:
    """An exception's message for a client, without Python object reprs: decoders name their
    input as `<_io.BytesIO object at 0x7f...>`, a heap address that helps only an attacker."""
    return _OBJECT_REPR.sub("the data", str(error)) or type(error).__name__


class MediaLayerError(Exception):
    """Base class: every error a caller can act on."""

    code = "error"


class UnsupportedMedia(MediaLayerError):
    """The bytes are not media we can decode (wrong type, truncated, hostile): HTTP 415."""

    code = "unsupported_media"


class MediaTooLarge(MediaLayerError):
    """Over a byte, pixel or duration cap (decompression bombs, endless streams): HTTP 413."""

    code = "too_large"


class NotFound(MediaLayerError):
    """No such media, job or key in this tenant: HTTP 404."""

    code = "not_found"


class Conflict(MediaLayerError):
    """An external id already used in this tenant: HTTP 409."""

    code = "conflict"


class InvalidInput(MediaLayerError):
    """A request that cannot be served as asked (bad CSV, bad parameter): HTTP 400."""

    code = "bad_request"


class FetchFailed(MediaLayerError):
    """A source URL could not be fetched, or was refused (SSRF guard): HTTP 502."""

    code = "fetch_failed"
