"""Record who listed and who confirmed each outbox record

Revision ID: 0003
Revises: 0002

LstCus and CnfCus change a record's state, so like every other change they
record the user who made it: the API user, or the login name for the CLI.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("listed_by", sa.String(64), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("confirmed_by", sa.String(64), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_column("confirmed_by")
        batch_op.drop_column("listed_by")
