"""SQLite never hands out a deletion log seq again, even after the log is pruned empty.

Processes follow the deletion log by seq (`seq > last applied`). Without AUTOINCREMENT, SQLite
gives a new row the highest rowid + 1, so once pruning has emptied the log the next deletion
got seq 1, below every running process's position: it was never applied, and the deleted item
stayed searchable in every process but the one that deleted it. The table is rebuilt with
AUTOINCREMENT and its counter starts past every seq it holds. PostgreSQL sequences never go
back: nothing to do.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "deletions", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass
    op.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'deletions'"))
    op.execute(
        sa.text(
            "INSERT INTO sqlite_sequence (name, seq) "
            "SELECT 'deletions', coalesce((SELECT max(seq) FROM deletions), 0)"
        )
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "deletions", recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ):
            pass
