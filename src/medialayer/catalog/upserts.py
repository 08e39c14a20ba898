"""Upsert by external id: change an item's fields in place, or give it new media under its id.

A new fingerprint is a new row (a new `seq`, the in-memory indexes' key) under the same media
id, with the old row's deletion logged in the same transaction: other processes drop the old
entry and add the new one through the change feed they already follow, and clients keep the id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update

from medialayer.catalog.models import Deletion, Media
from medialayer.catalog.store import (
    MediaRecord,
    NewMedia,
    SqlCatalogStore,
    add_codes_and_chunks,
)
from medialayer.errors import NotFound


def update_fields(store: SqlCatalogStore, tenant: str, media_id: str, *, name: str | None,
                  metadata: dict[str, Any] | None, source: str | None) -> MediaRecord:
    """Set the given fields (None leaves one as it is)."""
    with store.session.begin() as s:
        row = _row(s, tenant, media_id)
        if name is not None:
            row.name = name
        if metadata is not None:
            row.metadata_ = metadata
        if source is not None:
            row.source = source
        s.flush()
        return MediaRecord.from_row(row)


def replace(store: SqlCatalogStore, old: MediaRecord, item: NewMedia) -> MediaRecord:
    """The item's new media as a new row under the old id, the old row deleted (and logged)."""
    with store.session.begin() as s:
        row = _row(s, old.tenant, old.id)
        # The new row is inserted while the old one still exists, so it gets a seq above it:
        # SQLite hands a deleted highest rowid out again, and the logged deletion of that seq
        # would then take the new row out of every index.
        s.execute(update(Media).where(Media.seq == row.seq).values(id=f"old:{row.seq}",
                                                                    external_id=None))
        new = Media(id=old.id, tenant=item.tenant, media_type=item.media_type,
                    name=item.name if item.name is not None else old.name,
                    external_id=item.external_id, source=item.source,
                    metadata_=item.metadata or old.metadata, fingerprint=item.fingerprint.blob,
                    fingerprint_version=item.fingerprint_version,
                    duration=item.fingerprint.duration, created_at=old.created_at)
        s.add(new)
        s.flush()
        add_codes_and_chunks(s, [(new.seq, item.fingerprint)])
        s.add(Deletion(media_seq=row.seq, media_type=row.media_type, tenant=row.tenant))
        s.execute(delete(Media).where(Media.seq == row.seq))
        return MediaRecord.from_row(new)


def _row(s: Any, tenant: str, media_id: str) -> Media:
    row: Media | None = s.scalar(select(Media).where(Media.tenant == tenant,
                                                     Media.id == media_id))
    if row is None:
        raise NotFound(f"no media {media_id}")
    return row
