"""Job claims: claim tokens, start/finish times, local-path jobs.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("started_at", TS))
        batch.add_column(sa.Column("allow_paths", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("job_rows") as batch:
        batch.add_column(sa.Column("claim_token", sa.String(36)))
        batch.add_column(sa.Column("finished_at", TS))
    op.create_index("ix_job_rows_state_id", "job_rows", ["state", "id"])


def downgrade() -> None:
    op.drop_index("ix_job_rows_state_id", "job_rows")
    with op.batch_alter_table("job_rows") as batch:
        batch.drop_column("finished_at")
        batch.drop_column("claim_token")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("allow_paths")
        batch.drop_column("started_at")
