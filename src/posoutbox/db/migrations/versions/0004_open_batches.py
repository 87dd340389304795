"""Record the net transfer batches still writing, for listings to stop below

Revision ID: 0004
Revises: 0003

PostgreSQL writes two batches of a net transfer at once. A listing returns
only records below the first TRNR that a batch still in progress may write, so
a POS never receives a record before a lower TRNR of the same subscriber.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "open_batches",
        sa.Column(
            "batch_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("sbs1", sa.String(10), nullable=False),
        sa.Column("trnr_floor", sa.BigInteger, nullable=False),
        sa.Column("xid", sa.BigInteger, nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=False), nullable=False),
    )
    op.create_index("ix_open_batches_sbs1", "open_batches", ["sbs1"])


def downgrade() -> None:
    op.drop_index("ix_open_batches_sbs1", table_name="open_batches")
    op.drop_table("open_batches")
