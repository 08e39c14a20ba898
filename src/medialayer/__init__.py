"""MediaLayer: find copied and near-duplicate media in marketplace catalogs."""

from medialayer.errors import (
    Conflict,
    FetchFailed,
    InvalidInput,
    MediaLayerError,
    MediaTooLarge,
    NotFound,
    UnsupportedMedia,
)
from medialayer.results import Cluster, Comparison, MediaRef, SearchHit, SearchResult
from medialayer.service import MediaLayer

__version__ = "0.1.0"
__all__ = [
    "Cluster", "Comparison", "Conflict", "FetchFailed", "InvalidInput", "MediaLayer",
    "MediaLayerError", "MediaRef", "MediaTooLarge", "NotFound", "SearchHit", "SearchResult",
    "UnsupportedMedia",
]
