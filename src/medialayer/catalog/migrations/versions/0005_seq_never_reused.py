"""SQLite never hands out a deleted item's seq again; all-kinds cluster pages have an index.

Without AUTOINCREMENT, SQLite gives a new row the highest rowid + 1, so deleting the newest item
and adding another reused its seq: an index that has not yet read the deletion log would then
take the new item for the deleted one, and an edge or decision kept under the old seq would
attach to it. The table is rebuilt with AUTOINCREMENT and its counter starts past every seq
ever handed out, the deletion log's included. PostgreSQL sequences never go back: nothing to do.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_clusters_tenant_level", "clusters", ["tenant", "level", "id"])
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "media", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass
    op.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'media'"))
    op.execute(
        sa.text(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'media', max("
            "coalesce((SELECT max(seq) FROM media), 0), "
            "coalesce((SELECT max(media_seq) FROM deletions), 0))"
        )
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "media", recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ):
            pass
    op.drop_index("ix_clusters_tenant_level", "clusters")
