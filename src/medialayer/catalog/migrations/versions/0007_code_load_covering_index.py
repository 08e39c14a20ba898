"""The start-up code load reads media rows from an index alone, never from the rows.

The global tier is loaded from each row's seq, tenant and fingerprint version joined with its
code. Those columns come after the fingerprint blob in a media row, so on SQLite reading them
walked every row's overflow pages: a start-up read nearly the whole catalog file. The kind's
(media_type, seq) index now also carries tenant and fingerprint_version, so the load is an
index-only read on SQLite (and can be one on PostgreSQL); every query that used the old index
uses its prefix.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_media_type_seq_tenant_version", "media",
                    ["media_type", "seq", "tenant", "fingerprint_version"])
    op.drop_index("ix_media_type_seq", "media")


def downgrade() -> None:
    op.create_index("ix_media_type_seq", "media", ["media_type", "seq"])
    op.drop_index("ix_media_type_seq_tenant_version", "media")
