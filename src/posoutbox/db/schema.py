"""The tables of posoutbox, as SQLAlchemy Core metadata.

Column names are the M3 field names in lower case. The Alembic migrations in
``migrations/versions`` create exactly this schema, and a test compares the two.

Scale rule: nothing here grows with customers times shops. A transfer record
points at a shop set (its mailing list) shared by every record that goes to the
same shops, and a customer's holdings are one row per subscriber pointing at the
shop set of the shops that hold it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

# Timestamps are naive UTC throughout.
Timestamp = sa.DateTime(timezone=False)


def _text(name: str, length: int) -> sa.Column[str]:
    return sa.Column(name, sa.String(length), nullable=False, server_default="")


def _number(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer, nullable=False, server_default="0")


def _address_columns() -> list[sa.Column[str]]:
    return [
        _text("cunm", 36),
        _text("cua1", 36),
        _text("cua2", 36),
        _text("cua3", 36),
        _text("cua4", 36),
        _text("pono", 10),
        _text("town", 20),
        _text("ecar", 2),
        _text("cscd", 3),
        _text("phno", 16),
    ]


def _audit_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("changed_at", Timestamp, nullable=False),
        sa.Column("changed_by", sa.String(64), nullable=False, server_default=""),
    ]


customers = sa.Table(
    "customers",
    metadata,
    sa.Column("cuno", sa.String(10), primary_key=True),
    *_address_columns(),
    _text("phn2", 16),
    _text("tfno", 16),
    _text("mail", 50),
    _text("yref", 30),
    _text("lncd", 2),
    _text("cucd", 3),
    _number("cutp"),
    _text("cucl", 3),
    _text("sdst", 3),
    _text("stat", 2),
    _number("lmdt"),
    *_audit_columns(),
)

addresses = sa.Table(
    "addresses",
    metadata,
    sa.Column("cuno", sa.String(10), primary_key=True),
    sa.Column("adid", sa.String(6), primary_key=True),
    sa.Column("adrt", sa.Integer, nullable=False, server_default="1"),
    *_address_columns(),
    *_audit_columns(),
)

cards = sa.Table(
    "cards",
    metadata,
    sa.Column("ccnr", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("cuno", sa.String(10), nullable=False, index=True),
    _number("ctp1"),
    _number("blcd"),
    _text("mcrd", 1),
    _number("vtmm"),
    _number("vtyy"),
    _text("refe", 40),
    *_audit_columns(),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("cuno", sa.String(10), primary_key=True),
    sa.Column("msid", sa.String(10), primary_key=True),
    sa.Column("prio", sa.Integer, nullable=False, server_default="5"),
    _text("mstx", 60),
    *_audit_columns(),
)

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("sbs1", sa.String(10), primary_key=True),
    _text("name", 40),
    *_audit_columns(),
)

# A shop row is one incarnation of a WHLO: moving a shop to another subscriber
# or deleting it ends the row (deleted_at) and a shop created again gets a new
# shop_id, so holdings and mailing lists of the old incarnation never count for
# the new one.
shops = sa.Table(
    "shops",
    metadata,
    sa.Column("shop_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("whlo", sa.String(3), nullable=False),
    sa.Column("sbs1", sa.String(10), sa.ForeignKey("subscribers.sbs1"), nullable=False),
    _text("name", 40),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("pos_interface", sa.Boolean, nullable=False),
    sa.Column("customer_interface", sa.Boolean, nullable=False),
    sa.Column("deleted_at", Timestamp, nullable=True),
    *_audit_columns(),
    sa.Index(
        "uq_shops_whlo_current",
        "whlo",
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    ),
    sa.Index("ix_shops_sbs1", "sbs1"),
)

segments = sa.Table(
    "segments",
    metadata,
    sa.Column("seid", sa.String(10), primary_key=True),
    _text("description", 60),
    *_audit_columns(),
)

# One row per condition "field is one of these values"; the values are stored
# comma-separated because M3 codes contain no commas ("" is one blank value).
segment_conditions = sa.Table(
    "segment_conditions",
    metadata,
    sa.Column("seid", sa.String(10), sa.ForeignKey("segments.seid"), primary_key=True),
    sa.Column("field", sa.String(4), primary_key=True),
    sa.Column("values", sa.Text, nullable=False),
)

shop_segments = sa.Table(
    "shop_segments",
    metadata,
    sa.Column("shop_id", sa.Integer, sa.ForeignKey("shops.shop_id"), primary_key=True),
    sa.Column("seid", sa.String(10), sa.ForeignKey("segments.seid"), primary_key=True),
    sa.Index("ix_shop_segments_seid", "seid"),
)

# The change log. Every change to the master or to the settings writes its rows
# in the same transaction as the change, one per subscriber, and a net transfer
# or export deletes exactly the rows it processed. Consuming rows by id, rather
# than reading past a watermark, is what makes the commit order irrelevant.
#
# kind is a record type (OCUSMA, OCUSAD, OPCARD, OOEMSG) for a change of the
# master, with record_key the child key (ADID, CCNR or MSID; "" for OCUSMA), or
# SHOP for a change of a shop's flags, segments or segment conditions. A row with
# a shop_id concerns that shop only: a setting change, or a master change kept
# back for a shop that was switched off when the change was processed.
changes = sa.Table(
    "changes",
    metadata,
    sa.Column(
        "change_id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("sbs1", sa.String(10), nullable=False),
    sa.Column("shop_id", sa.Integer, nullable=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("cuno", sa.String(10), nullable=False, server_default=""),
    sa.Column("record_key", sa.String(16), nullable=False, server_default=""),
    *_audit_columns(),
    sa.Index("ix_changes_sbs1_cuno", "sbs1", "cuno"),
    sa.Index("ix_changes_sbs1_kind", "sbs1", "kind"),
)

# Interned sets of shops of one subscriber: the mailing lists of transfer
# records and the holdings of customers.
shop_sets = sa.Table(
    "shop_sets",
    metadata,
    sa.Column("set_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sbs1", sa.String(10), nullable=False),
    sa.Column("members_hash", sa.String(64), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.UniqueConstraint("sbs1", "members_hash"),
)

shop_set_members = sa.Table(
    "shop_set_members",
    metadata,
    sa.Column("set_id", sa.Integer, primary_key=True),
    sa.Column("shop_id", sa.Integer, primary_key=True),
    sa.Index("ix_shop_set_members_shop_id", "shop_id"),
)

holdings = sa.Table(
    "holdings",
    metadata,
    sa.Column("sbs1", sa.String(10), primary_key=True),
    sa.Column("cuno", sa.String(10), primary_key=True),
    sa.Column("set_id", sa.Integer, nullable=False),
    # Cleanup looks up whether any holding still uses a shop set.
    sa.Index("ix_holdings_set_id", "set_id"),
)

# The outbox (M3's OPTMFI, with the mailing list OPTMML as set_id).
records = sa.Table(
    "records",
    metadata,
    sa.Column(
        "trnr",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("sbs1", sa.String(10), nullable=False),
    sa.Column("trtp", sa.String(8), nullable=False),
    sa.Column("acct", sa.String(6), nullable=False),
    sa.Column("cuno", sa.String(10), nullable=False),
    sa.Column("record_key", sa.String(16), nullable=False, server_default=""),
    sa.Column("data", sa.String(962), nullable=False),
    sa.Column("set_id", sa.Integer, nullable=False),
    sa.Column("origin", sa.String(8), nullable=False),
    sa.Column("run_id", sa.Integer, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    # Listing, confirming and cleanup read a subscriber's records in TRNR
    # order, from its confirmed position on.
    sa.Index("ix_records_subscriber", "sbs1", "trnr"),
    # A batch looks up the new records of its customers to coalesce them.
    # cuno leads, so that the index is no candidate for reading a subscriber's
    # records in TRNR order. Led by sbs1 and ending with trnr, it was chosen
    # for cleanup chunks when the statistics predated a large fill, and each
    # chunk walked every index entry of the subscriber.
    sa.Index("ix_records_customer", "cuno", "sbs1"),
    # Cleanup looks up whether any record still uses a shop set.
    sa.Index("ix_records_set_id", "set_id"),
)

# How far each subscriber's POS has got through its records. Records come to
# a POS in TRNR order, listed ones first, so a subscriber's records up to
# confirmed_trnr are confirmed, the ones after it up to listed_trnr are listed,
# and the rest are new. Listing and confirming move these positions instead of
# changing every record.
outbox_positions = sa.Table(
    "outbox_positions",
    metadata,
    sa.Column("sbs1", sa.String(10), primary_key=True),
    sa.Column("listed_trnr", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("confirmed_trnr", sa.BigInteger, nullable=False, server_default="0"),
)

# Every move of a position: who listed or confirmed a subscriber's records, when,
# and up to which TRNR. A record was confirmed by the first confirmation whose
# trnr reaches it, which is how cleanup finds the records confirmed before a
# date.
outbox_moves = sa.Table(
    "outbox_moves",
    metadata,
    sa.Column(
        "move_id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("sbs1", sa.String(10), nullable=False),
    sa.Column("kind", sa.String(9), nullable=False),
    sa.Column("trnr", sa.BigInteger, nullable=False),
    sa.Column("moved_at", Timestamp, nullable=False),
    sa.Column("moved_by", sa.String(64), nullable=False, server_default=""),
    sa.Index("ix_outbox_moves_position", "sbs1", "kind", "trnr"),
)

# Net transfer batches that write records while another batch of the same run
# may commit first. PostgreSQL writes two batches of a run at once, and their
# TRNRs come from one sequence, so the later batch can commit higher TRNRs
# while the earlier one is still writing lower ones. Each batch inserts its
# row in a transaction of its own before it takes its first TRNR and deletes
# it in its own transaction, so the row vanishes exactly when the batch's
# records appear. A listing returns only records up to the lowest trnr_floor
# of the subscriber's rows visible to it. The rows of batches whose transaction
# (xid) rolled back or was cut off stay behind and are ignored.
open_batches = sa.Table(
    "open_batches",
    metadata,
    sa.Column(
        "batch_id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("sbs1", sa.String(10), nullable=False),
    sa.Column("trnr_floor", sa.BigInteger, nullable=False),
    sa.Column("xid", sa.BigInteger, nullable=False),
    sa.Column("opened_at", Timestamp, nullable=False),
    sa.Index("ix_open_batches_sbs1", "sbs1"),
)

# Named counters that only grow. TRNR comes from here on SQLite, where a
# rowid could be reused after cleanup removed the highest records; PostgreSQL
# uses the sequence of records.trnr instead.
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

# Net transfer, delete function and export runs, for the history and for
# telling a run cut off by a crash from one still going.
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sbs1", sa.String(10), nullable=False, server_default=""),
    sa.Column("function", sa.String(8), nullable=False),
    sa.Column("force", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("from_cuno", sa.String(10), nullable=False, server_default=""),
    sa.Column("to_cuno", sa.String(10), nullable=False, server_default=""),
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("heartbeat_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Column("customers_total", sa.Integer, nullable=False, server_default="0"),
    sa.Column("customers_done", sa.Integer, nullable=False, server_default="0"),
    sa.Column("summary", sa.Text, nullable=False, server_default=""),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("pid", sa.Integer, nullable=False, server_default="0"),
    sa.Column("host", sa.String(255), nullable=False, server_default=""),
    sa.Column("started_by", sa.String(64), nullable=False, server_default=""),
    sa.Index("ix_runs_state", "state"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("sbs1", sa.String(10), nullable=False, server_default=""),
    sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    *_audit_columns(),
)

# Backlog per subscriber and shop, sampled by the server for the console chart.
backlog_samples = sa.Table(
    "backlog_samples",
    metadata,
    sa.Column("sampled_at", Timestamp, primary_key=True),
    sa.Column("sbs1", sa.String(10), primary_key=True),
    sa.Column("whlo", sa.String(3), primary_key=True),
    sa.Column("unconfirmed", sa.Integer, nullable=False),
    sa.Column("oldest_age_seconds", sa.Integer, nullable=False),
)
