"""Media kinds by name. The service looks a kind up here and knows nothing else about it."""

from __future__ import annotations

from medialayer.errors import InvalidInput
from medialayer.kinds.base import FingerprintLoader, KindIndex, Match, MediaKind, Segment
from medialayer.kinds.image_search import ImageKind
from medialayer.kinds.video.kind import VideoKind

KINDS: dict[str, MediaKind] = {"image": ImageKind(), "video": VideoKind()}


def get_kind(media_type: str) -> MediaKind:
    try:
        return KINDS[media_type]
    except KeyError:
        raise InvalidInput(
            f"unsupported media_type {media_type!r}; supported: {', '.join(sorted(KINDS))}"
        ) from None


__all__ = ["KINDS", "FingerprintLoader", "KindIndex", "Match", "MediaKind", "Segment", "get_kind"]
