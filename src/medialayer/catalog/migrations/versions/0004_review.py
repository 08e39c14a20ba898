"""Review workflow: edges, kept clusters, marks, audited decisions, UI sessions, policies,
webhooks.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "match_edges",
        sa.Column("a_seq", sa.BigInteger, primary_key=True),
        sa.Column("b_seq", sa.BigInteger, primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("media_type", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("confidence", sa.String(8), nullable=False),
        sa.Column("explanation", sa.JSON),
        sa.Column("dismissed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("found_at", TS),
    )
    op.create_index("ix_match_edges_b", "match_edges", ["b_seq"])
    op.create_index("ix_match_edges_tenant_found", "match_edges",
                    ["tenant", "media_type", "found_at"])
    op.create_table(
        "clusters",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("media_type", sa.String(16), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("top_score", sa.Float, nullable=False),
        sa.Column("merged_into", sa.BigInteger),
        sa.Column("created_at", TS),
        sa.Column("updated_at", TS),
    )
    op.create_index("ix_clusters_page", "clusters", ["tenant", "media_type", "level", "id"])
    op.create_table(
        "cluster_members",
        sa.Column("level", sa.String(8), primary_key=True),
        sa.Column("media_seq", sa.BigInteger, primary_key=True),
        sa.Column("cluster_id", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_cluster_members_cluster", "cluster_members", ["cluster_id"])
    op.create_table(
        "media_marks",
        sa.Column("media_id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16)),
        sa.Column("canonical_id", sa.String(36)),
        sa.Column("updated_at", TS),
    )
    op.create_index("ix_media_marks_canonical", "media_marks", ["canonical_id"])
    op.create_table(
        "ui_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", TS),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "policy_rules",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("media_type", sa.String(16)),
        sa.Column("min_score", sa.Float, nullable=False),
        sa.Column("max_score", sa.Float, nullable=False),
        sa.Column("cross_seller", sa.Boolean),
        sa.Column("metadata", sa.JSON),
    )
    op.create_index("ix_policy_rules_tenant", "policy_rules", ["tenant", "position"])
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("created_at", TS),
        sa.Column("deleted_at", TS),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("webhook_id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("dedupe", sa.String(200)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TS),
        sa.Column("lease_until", TS),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.String(500)),
        sa.Column("created_at", TS),
        sa.Column("delivered_at", TS),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries",
                    ["state", "next_attempt_at"])
    op.create_index("ix_webhook_deliveries_hook", "webhook_deliveries",
                    ["webhook_id", "created_at"])
    op.create_index("ux_webhook_deliveries_dedupe", "webhook_deliveries",
                    ["webhook_id", "dedupe"], unique=True)
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("cluster_id", sa.BigInteger))
        batch.add_column(sa.Column("member_ids", sa.JSON))
        batch.add_column(sa.Column("actor_key_id", sa.String(36)))
        batch.add_column(sa.Column("actor_name", sa.Text))
        batch.add_column(sa.Column("from_state", sa.JSON))
        batch.add_column(sa.Column("to_state", sa.JSON))
    op.create_index("ix_decisions_tenant_created", "decisions", ["tenant", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_decisions_tenant_created", "decisions")
    with op.batch_alter_table("decisions") as batch:
        for column in ("to_state", "from_state", "actor_name", "actor_key_id", "member_ids",
                       "cluster_id"):
            batch.drop_column(column)
    for table in ("webhook_deliveries", "webhooks", "policy_rules", "ui_sessions", "media_marks",
                  "cluster_members", "clusters", "match_edges"):
        op.drop_table(table)
