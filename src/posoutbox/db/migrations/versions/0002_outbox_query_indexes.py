"""Index the outbox for CnfCus and cleanup at millions of records

Revision ID: 0002
Revises: 0001

ix_records_listed holds only listed records, so CnfCus locks them in TRNR
order without walking a long backlog of new ones. Cleanup removes confirmed
records oldest first, so ix_records_confirmed now leads with confirmed_at.
Cleanup then removes the shop sets that no record and no holding uses, which
ix_records_set_id and ix_holdings_set_id answer without reading either table.

On PostgreSQL each index is built while its table is locked against writes, so
run the upgrade while no net transfer, export or POS poll runs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LISTED = sa.text("state = 'listed'")
CONFIRMED = sa.text("state = 'confirmed'")


def upgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_records_confirmed", sqlite_where=CONFIRMED, postgresql_where=CONFIRMED
        )
        batch_op.create_index(
            "ix_records_confirmed",
            ["confirmed_at", "sbs1"],
            unique=False,
            sqlite_where=CONFIRMED,
            postgresql_where=CONFIRMED,
        )
        batch_op.create_index(
            "ix_records_listed",
            ["sbs1", "trnr"],
            unique=False,
            sqlite_where=LISTED,
            postgresql_where=LISTED,
        )
        batch_op.create_index("ix_records_set_id", ["set_id"], unique=False)

    with op.batch_alter_table("holdings", schema=None) as batch_op:
        batch_op.create_index("ix_holdings_set_id", ["set_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("holdings", schema=None) as batch_op:
        batch_op.drop_index("ix_holdings_set_id")

    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index("ix_records_set_id")
        batch_op.drop_index(
            "ix_records_listed", sqlite_where=LISTED, postgresql_where=LISTED
        )
        batch_op.drop_index(
            "ix_records_confirmed", sqlite_where=CONFIRMED, postgresql_where=CONFIRMED
        )
        batch_op.create_index(
            "ix_records_confirmed",
            ["sbs1", "confirmed_at"],
            unique=False,
            sqlite_where=CONFIRMED,
            postgresql_where=CONFIRMED,
        )
