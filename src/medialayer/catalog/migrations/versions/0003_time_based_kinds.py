"""Time-based kinds: media duration, fingerprint chunks, searchable codes; the change feed's
(media_type, seq) indexes on media and deletions.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.add_column(sa.Column("duration", sa.Float))
    op.create_table(
        "media_codes",
        sa.Column("media_seq", SEQ, sa.ForeignKey("media.seq", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("code", sa.BigInteger, nullable=False))
    op.create_index("ix_media_codes_code", "media_codes", ["code"])
    op.create_table(
        "fingerprint_chunks",
        sa.Column("media_seq", SEQ, sa.ForeignKey("media.seq", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("chunk", sa.Integer, primary_key=True),
        sa.Column("t_start", sa.Float, nullable=False),
        sa.Column("t_end", sa.Float, nullable=False),
        sa.Column("blob", sa.LargeBinary, nullable=False))
    op.create_index("ix_deletions_type_seq", "deletions", ["media_type", "seq"])
    op.create_index("ix_media_type_seq", "media", ["media_type", "seq"])


def downgrade() -> None:
    op.drop_index("ix_media_type_seq", "media")
    op.drop_index("ix_deletions_type_seq", "deletions")
    op.drop_table("fingerprint_chunks")
    op.drop_index("ix_media_codes_code", "media_codes")
    op.drop_table("media_codes")
    with op.batch_alter_table("media") as batch:
        batch.drop_column("duration")
