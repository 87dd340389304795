"""Create the initial schema

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "addresses",
        sa.Column("cuno", sa.String(length=10), nullable=False),
        sa.Column("adid", sa.String(length=6), nullable=False),
        sa.Column("adrt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("cunm", sa.String(length=36), server_default="", nullable=False),
        sa.Column("cua1", sa.String(length=36), server_default="", nullable=False),
        sa.Column("cua2", sa.String(length=36), server_default="", nullable=False),
        sa.Column("cua3", sa.String(length=36), server_default="", nullable=False),
        sa.Column("cua4", sa.String(length=36), server_default="", nullable=False),
        sa.Column("pono", sa.String(length=10), server_default="", nullable=False),
        sa.Column("town", sa.String(length=20), server_default="", nullable=False),
        sa.Column("ecar", sa.String(length=2), server_default="", nullable=False),
        sa.Column("cscd", sa.String(length=3), server_default="", nullable=False),
        sa.Column("phno", sa.String(length=16), server_default="", nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column(
            "changed_by", sa.String(length=64), server_default="", nullable=False
        ),
        sa.PrimaryKeyConstraint("cuno", "adid", name=op.f("pk_addresses")),
    )
    op.create_table(
        "backlog_samples",
        sa.Column("sampled_at", sa.DateTime(), nullable=False),
        sa.Column("sbs1", sa.String(length=10), nullable=False),
        sa.Column("whlo", sa.String(length=3), nullable=False),
        sa.Column("unconfirmed", sa.Integer(), nullable=False),
        sa.Column("oldest_age_seconds", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "sampled_at", "sbs1", "whlo", name=op.f("pk_backlog_samples")
        ),
    )
    op.create_table(
        "cards",
        sa.Column("ccnr", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("cuno", sa.String(length=10), nullable=False),
        sa.Column("ctp1", sa.Integer(), server_default="0", nullable=False),
        sa.Column("blcd", sa.Integer(), server_default="0", nullable=False),
        sa.Column("mcrd", sa.String(length=1), server_default="", nullable=False),
        sa.Column("vtmm", sa.Integer(), server_default="0", nullable=False),
        sa.Column("vtyy", sa.Integer(), server_default="0", nullable=False),
        sa.Column("refe", sa.String(length=40), server_default="", nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column(
            "changed_by", sa.String(length=64), server_default="", nullable=False
        ),
        sa.PrimaryKeyConstraint("ccnr", name=op.f("pk_cards")),
    )
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cards_cuno"), ["cuno"], unique=False)

    op.create_table(
        "changes",
        sa.Column(
            "change_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sbs1", sa.String(length=10), nullable=False),
        sa.Column("shop_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("cuno", sa.String(length=10), server_default="", nullable=False),
        sa.Column(
            "record_key", sa.String(length=16), server_default="", nullable=False
        ),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column(
            "changed_by", sa.String(length=64), server_default="", nullable=False
        ),
        sa.PrimaryKeyConstraint("change_id", name=op.f("pk_changes")),
    )
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.create_index("ix_changes_sbs1_cuno", ["sbs1", "cuno"], unique=False)
        batch_op.create_index("ix_changes_sbs1_kind", ["sbs1", "kind"], unique=False)

    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_counters")),
    )
    op.create_table(
        "customers",
        sa.Column("cuno", sa.String(length=10), nullable=False),
        sa.Column("cunm", sa.String(length=36), server_default="", nullable=False),
        sa.Column("cua1", sa.String(length=36), server_default="", nullable=False),
        sa.Column("cua2", sa.String(length=36), server_default="", nullable=False),
        sa.Column("cua3", sa.String(length=36), server_default="", nullable=False),
        sa.Column("cua4", sa.String(length=36), server_default="", nullable=False),
        sa.Column("pono", sa.String(length=10), server_default="", nullable=False),
        sa.Column("town", sa.String(length=20), server_default="", nullable=False),
        sa.Column("ecar", sa.String(length=2), server_default="", nullable=False),
        sa.Column("cscd", sa.String(length=3), server_default="", nullable=False),
        sa.Column("phno", sa.String(length=16), server_default="", nullable=False),
        sa.Column("phn2", sa.String(length=16), server_default="", nullable=False),
        sa.Column("tfno", sa.String(length=16), server_default="", nullable=False),
        sa.Column("mail", sa.String(length=50), server_default="", nullable=False),
        sa.Column("yref", sa.String(length=30), server_default="", nullable=False),
        sa.Column("lncd", sa.String(length=2), server_default="", nullable=False),
        sa.Column("cucd", sa.String(length=3), server_default="", nullable=False),
        sa.Column("cutp", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cucl", sa.String(length=3), server_default="", nullable=False),
        sa.Column("sdst", sa.String(length=3), server_default="", nullable=False),
        sa.Column("stat", sa.String(length=2), server_default="", nullable=False),
        sa.Column("lmdt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column(
            "changed_by", sa.String(length=64), server_default="", nullable=False
        ),
        sa.PrimaryKeyConstraint("cuno", name=op.f("pk_customers")),
    )
    op.create_table(
        "holdings",
        sa.Column("sbs1", sa.String(length=10), nullable=False),
        sa.Column("cuno", sa.String(length=10), nullable=False),
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("sbs1", "cuno", name=op.f("pk_holdings")),
    )
    op.create_table(
        "messages",
        sa.Column("cuno", sa.String(length=10), nullable=False),
        sa.Column("msid", sa.String(length=10), nullable=False),
        sa.Column("prio", sa.Integer(), server_default="5", nullable=False),
        sa.Column("mstx", sa.String(length=60), server_default="", nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column(
            "changed_by", sa.String(length=64), server_default="", nullable=False
        ),
        sa.PrimaryKeyConstraint("cuno", "msid", name=op.f("pk_messages")),
    )
    op.create_table(
        "records",
        sa.Column(
            "trnr",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sbs1", sa.String(length=10), nullable=False),
        sa.Column("trtp", sa.String(length=8), nullable=False),
        sa.Column("acct", sa.String(length=6), nullable=False),
        sa.Column("cuno", sa.String(length=10), nullable=False),
        sa.Column(
            "record_key", sa.String(length=16), server_default="", nullable=False
        ),
        sa.Column("data", sa.String(length=962), nullable=False),
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=9), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("listed_at", sa.DateTime(), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("trnr", name=op.f("pk_records")),
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_records_confirmed",
            ["sbs1", "confirmed_at"],
            unique=False,
            sqlite_where=sa.text("state = 'confirmed'"),
            postgresql_where=sa.text("state = 'confirmed'"),
        )
        batch_op.create_index(
            "ix_records_new_by_customer",
            ["sbs1", "cuno"],
            unique=False,
            sqlite_where=sa.text("state = 'new'"),
            postgresql_where=sa.text("state = 'new'"),
        )
        batch_op.create_index(
            "ix_records_unconfirmed",
            ["sbs1", "trnr"],
            unique=False,
            sqlite_where=sa.text("state <> 'confirmed'"),
            postgresql_where=sa.text("state <> 'confirmed'"),
        )

    op.create_table(
        "runs",
        sa.Column("run_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sbs1", sa.String(length=10), server_default="", nullable=False),
        sa.Column("function", sa.String(length=8), nullable=False),
        sa.Column("force", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("from_cuno", sa.String(length=10), server_default="", nullable=False),
        sa.Column("to_cuno", sa.String(length=10), server_default="", nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("customers_total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("customers_done", sa.Integer(), server_default="0", nullable=False),
        sa.Column("summary", sa.Text(), server_default="", nullable=False),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column("pid", sa.Integer(), server_default="0", nullable=False),
        sa.Column("host", sa.String(length=255), server_default="", nullable=False),
        sa.Column(
            "started_by", sa.String(length=64), server_default="", nullable=False
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_state", ["state"], unique=False)

    op.create_table(
        "segments",
        sa.Column("seid", sa.String(length=10), nullable=False),
        sa.Column(
            "description", sa.String(length=60), server_default="", nullable=False
        ),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column(
            "changed_by", sa.String(length=64), server_default="", nullable=False
        ),
        sa.PrimaryKeyConstraint("seid", name=op.f("pk_segments")),
    )
    op.create_table(
        "shop_set_members",
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("shop_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("set_id", "shop_id", name=op.f("pk_shop_set_members")),
    )
    with op.batch_alter_table("shop_set_members", schema=None) as batch_op:
        batch_op.create_index("ix_shop_set_members_shop_id", ["shop_id"], unique=False)

    op.create_table(
        "shop_sets",
        sa.Column("set_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sbs1", sa.String(length=10), nullable=False),
        sa.Column("members_hash", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("set_id", name=op.f("pk_shop_sets")),
        sa.UniqueConstraint(
            "sbs1", "members_hash", name=op.f("uq_shop_sets_sbs1_members_hash")
        ),
    )
    op.create_table(
        "subscribers",
        sa.Column("sbs1", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=40), server_default="", nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column(
            "changed_by", sa.String(length=64), server_default="", nullable=False
        ),
        sa.PrimaryKeyConstraint("sbs1", name=op.f("pk_subscribers")),
    )
    op.create_table(
        "users",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("sbs1", sa.String(length=10), server_default="", nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column(
            "changed_by", sa.String(length=64), server_default="", nullable=False
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_users")),
    )
    op.create_table(
        "segment_conditions",
        sa.Column("seid", sa.String(length=10), nullable=False),
        sa.Column("field", sa.String(length=4), nullable=False),
        sa.Column("values", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["seid"],
            ["segments.seid"],
            name=op.f("fk_segment_conditions_seid_segments"),
        ),
        sa.PrimaryKeyConstraint("seid", "field", name=op.f("pk_segment_conditions")),
    )
    op.create_table(
        "shops",
        sa.Column("shop_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("whlo", sa.String(length=3), nullable=False),
        sa.Column("sbs1", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=40), server_default="", nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("pos_interface", sa.Boolean(), nullable=False),
        sa.Column("customer_interface", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column(
            "changed_by", sa.String(length=64), server_default="", nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["sbs1"], ["subscribers.sbs1"], name=op.f("fk_shops_sbs1_subscribers")
        ),
        sa.PrimaryKeyConstraint("shop_id", name=op.f("pk_shops")),
    )
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.create_index("ix_shops_sbs1", ["sbs1"], unique=False)
        batch_op.create_index(
            "uq_shops_whlo_current",
            ["whlo"],
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )

    op.create_table(
        "shop_segments",
        sa.Column("shop_id", sa.Integer(), nullable=False),
        sa.Column("seid", sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(
            ["seid"], ["segments.seid"], name=op.f("fk_shop_segments_seid_segments")
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.shop_id"], name=op.f("fk_shop_segments_shop_id_shops")
        ),
        sa.PrimaryKeyConstraint("shop_id", "seid", name=op.f("pk_shop_segments")),
    )
    with op.batch_alter_table("shop_segments", schema=None) as batch_op:
        batch_op.create_index("ix_shop_segments_seid", ["seid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("shop_segments", schema=None) as batch_op:
        batch_op.drop_index("ix_shop_segments_seid")

    op.drop_table("shop_segments")
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_shops_whlo_current",
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )
        batch_op.drop_index("ix_shops_sbs1")

    op.drop_table("shops")
    op.drop_table("segment_conditions")
    op.drop_table("users")
    op.drop_table("subscribers")
    op.drop_table("shop_sets")
    with op.batch_alter_table("shop_set_members", schema=None) as batch_op:
        batch_op.drop_index("ix_shop_set_members_shop_id")

    op.drop_table("shop_set_members")
    op.drop_table("segments")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_state")

    op.drop_table("runs")
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_records_unconfirmed",
            sqlite_where=sa.text("state <> 'confirmed'"),
            postgresql_where=sa.text("state <> 'confirmed'"),
        )
        batch_op.drop_index(
            "ix_records_new_by_customer",
            sqlite_where=sa.text("state = 'new'"),
            postgresql_where=sa.text("state = 'new'"),
        )
        batch_op.drop_index(
            "ix_records_confirmed",
            sqlite_where=sa.text("state = 'confirmed'"),
            postgresql_where=sa.text("state = 'confirmed'"),
        )

    op.drop_table("records")
    op.drop_table("messages")
    op.drop_table("holdings")
    op.drop_table("customers")
    op.drop_table("counters")
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_index("ix_changes_sbs1_kind")
        batch_op.drop_index("ix_changes_sbs1_cuno")

    op.drop_table("changes")
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cards_cuno"))

    op.drop_table("cards")
    op.drop_table("backlog_samples")
    op.drop_table("addresses")
