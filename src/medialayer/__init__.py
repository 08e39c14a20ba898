"""MediaLayer: find copied and near-duplicate media in marketplace catalogs.

The names below are loaded on first use, so importing a light submodule (`medialayer.index`,
`medialayer.kinds.base`) loads no database, web or decoder code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
_WHERE = {
    **dict.fromkeys(["Conflict", "FetchFailed", "InvalidInput", "MediaLayerError",
                     "MediaTooLarge", "NotFound", "UnsupportedMedia"], "medialayer.errors"),
    **dict.fromkeys(["Cluster", "Comparison", "MediaRef", "SearchHit", "SearchResult"],
                    "medialayer.results"),
    "MediaLayer": "medialayer.service",
}
__all__ = [
    "Cluster", "Comparison", "Conflict", "FetchFailed", "InvalidInput", "MediaLayer",
    "MediaLayerError", "MediaRef", "MediaTooLarge", "NotFound", "SearchHit", "SearchResult",
    "UnsupportedMedia",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'medialayer' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
