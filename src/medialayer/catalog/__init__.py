"""The catalog: media rows and their fingerprints, API keys, decisions and jobs."""

from medialayer.catalog.store import CatalogStore, MediaRecord, SqlCatalogStore, open_store

__all__ = ["CatalogStore", "MediaRecord", "SqlCatalogStore", "open_store"]
