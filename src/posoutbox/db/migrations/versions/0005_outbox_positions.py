"""Keep each subscriber's listed and confirmed positions instead of record states

Revision ID: 0005
Revises: 0004

A POS receives its subscriber's records in TRNR order, listed ones first, so
the listed and the confirmed records are always the first of a subscriber's
records. Two positions per subscriber (outbox_positions) say which, and
outbox_moves keeps who moved them, when and how far. Listing and confirming a
page then write two rows instead of rewriting every record of the page.

The upgrade derives the positions and the moves from the records' states and
timestamps, then drops those columns and their partial indexes. On PostgreSQL
the new indexes are built while records is locked against writes, so run the
upgrade while no net transfer, export or POS poll runs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from posoutbox.errors import RuleViolation

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_STATE_INDEXES = {
    "ix_records_unconfirmed": (["sbs1", "trnr"], "state <> 'confirmed'"),
    "ix_records_new_by_customer": (["sbs1", "cuno"], "state = 'new'"),
    "ix_records_listed": (["sbs1", "trnr"], "state = 'listed'"),
    "ix_records_confirmed": (["confirmed_at", "sbs1"], "state = 'confirmed'"),
}

_STATE_COLUMNS = ("state", "listed_at", "confirmed_at", "listed_by", "confirmed_by")

# The furthest record of a subscriber in a state, for the positions.
_LAST = (
    "COALESCE((SELECT MAX(r.trnr) FROM records r "
    "WHERE r.sbs1 = s.sbs1 AND r.state IN ({states})), 0)"
)

# One move per listing or confirmation: the records it covered share its
# timestamp and user, and the move reaches the highest of them.
_MOVES = (
    "INSERT INTO outbox_moves (sbs1, kind, trnr, moved_at, moved_by) "
    "SELECT sbs1, '{kind}', MAX(trnr), {kind}_at, {kind}_by FROM records "
    "WHERE state IN ({states}) AND {kind}_at IS NOT NULL "
    "GROUP BY sbs1, {kind}_at, {kind}_by ORDER BY MAX(trnr)"
)


# Subscribers whose records are not new, listed and confirmed in TRNR order,
# which posoutbox always kept but a hand-edited state could break.
_OUT_OF_ORDER = (
    "SELECT sbs1 FROM records GROUP BY sbs1 HAVING "
    "MIN(CASE WHEN state = 'new' THEN trnr END) "
    "< MAX(CASE WHEN state <> 'new' THEN trnr END) "
    "OR MIN(CASE WHEN state <> 'confirmed' THEN trnr END) "
    "< MAX(CASE WHEN state = 'confirmed' THEN trnr END) ORDER BY sbs1"
)


def upgrade() -> None:
    # Positions cannot express such records: a new record below a listed one
    # would count as listed and never reach the POS. Nothing is changed then.
    out_of_order = op.get_bind().execute(sa.text(_OUT_OF_ORDER)).scalars().all()
    if out_of_order:
        raise RuleViolation(
            "cannot upgrade: the records of subscriber(s) "
            f"{', '.join(out_of_order)} are not listed and confirmed in TRNR "
            "order (a new record has a lower TRNR than a listed or confirmed "
            "one, or an unconfirmed one lower than a confirmed one); fix their "
            "state column or let their POS confirm them, then upgrade again"
        )
    op.create_table(
        "outbox_positions",
        sa.Column("sbs1", sa.String(10), primary_key=True),
        sa.Column("listed_trnr", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("confirmed_trnr", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "outbox_moves",
        sa.Column(
            "move_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("sbs1", sa.String(10), nullable=False),
        sa.Column("kind", sa.String(9), nullable=False),
        sa.Column("trnr", sa.BigInteger, nullable=False),
        sa.Column("moved_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("moved_by", sa.String(64), nullable=False, server_default=""),
    )
    op.create_index(
        "ix_outbox_moves_position", "outbox_moves", ["sbs1", "kind", "trnr"]
    )
    listed = _LAST.format(states="'listed', 'confirmed'")
    confirmed = _LAST.format(states="'confirmed'")
    op.execute(
        "INSERT INTO outbox_positions (sbs1, listed_trnr, confirmed_trnr) "
        f"SELECT s.sbs1, {listed}, {confirmed} FROM subscribers s"
    )
    op.execute(_MOVES.format(kind="listed", states="'listed', 'confirmed'"))
    op.execute(_MOVES.format(kind="confirmed", states="'confirmed'"))

    for name, (_, where) in _STATE_INDEXES.items():
        op.drop_index(
            name,
            table_name="records",
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )
    with op.batch_alter_table("records", schema=None) as batch_op:
        for column in _STATE_COLUMNS:
            batch_op.drop_column(column)
        batch_op.create_index("ix_records_subscriber", ["sbs1", "trnr"])
        batch_op.create_index("ix_records_customer", ["cuno", "sbs1"])


def downgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index("ix_records_customer")
        batch_op.drop_index("ix_records_subscriber")
        batch_op.add_column(
            sa.Column("state", sa.String(9), nullable=False, server_default="new")
        )
        batch_op.add_column(sa.Column("listed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("confirmed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("listed_by", sa.String(64), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("confirmed_by", sa.String(64), nullable=False, server_default="")
        )
    for kind in ("listed", "confirmed"):
        # The first move of the kind that reaches a record covered it.
        first = (
            "(SELECT m.{column} FROM outbox_moves m WHERE m.sbs1 = records.sbs1 "
            f"AND m.kind = '{kind}' AND m.trnr >= records.trnr "
            "ORDER BY m.trnr LIMIT 1)"
        )
        op.execute(
            f"UPDATE records SET state = '{kind}', "
            f"{kind}_at = {first.format(column='moved_at')}, "
            f"{kind}_by = COALESCE({first.format(column='moved_by')}, '') "
            "WHERE trnr <= (SELECT p.{kind}_trnr FROM outbox_positions p "
            "WHERE p.sbs1 = records.sbs1)".replace("{kind}", kind)
        )
    for name, (columns, where) in _STATE_INDEXES.items():
        op.create_index(
            name,
            "records",
            columns,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )
    op.drop_index("ix_outbox_moves_position", table_name="outbox_moves")
    op.drop_table("outbox_moves")
    op.drop_table("outbox_positions")
