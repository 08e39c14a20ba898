"""Initial catalog: media, deletions, api keys, decisions, jobs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "media",
        sa.Column("seq", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("media_type", sa.String(16), nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("external_id", sa.String(512)),
        sa.Column("source", sa.Text),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("created_at", TS),
        sa.Column("fingerprint", sa.LargeBinary, nullable=False),
        sa.Column("fingerprint_version", sa.Integer, nullable=False),
    )
    op.create_index("ix_media_tenant_type_seq", "media", ["tenant", "media_type", "seq"])
    op.create_index("ux_media_tenant_external_id", "media", ["tenant", "external_id"], unique=True)
    op.create_table(
        "deletions",
        sa.Column("seq", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("media_seq", sa.BigInteger, nullable=False),
        sa.Column("media_type", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("deleted_at", TS),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scopes", sa.String(128), nullable=False),
        sa.Column("rate_limit", sa.Integer),
        sa.Column("created_at", TS),
        sa.Column("revoked_at", TS),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("media_id", sa.String(36), nullable=False),
        sa.Column("other_media_id", sa.String(36)),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("created_at", TS),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("created_at", TS),
        sa.Column("finished_at", TS),
    )
    op.create_table(
        "job_rows",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("media_id", sa.String(36)),
        sa.Column("error", sa.Text),
        sa.Column("claimed_at", TS),
    )
    op.create_index("ix_job_rows_job_state", "job_rows", ["job_id", "state"])


def downgrade() -> None:
    for table in ("job_rows", "jobs", "decisions", "api_keys", "deletions", "media"):
        op.drop_table(table)
