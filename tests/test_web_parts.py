"""Tests of the console's parts below the pages: CSRF tokens, the chart, its
queries, the backlog sampler, the metrics and the background runs.

Queries and runs go to real databases, SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime
import json
import os
import threading

import pytest
import sqlalchemy as sa

from posoutbox import customers, metrics, outbox, rules, shops, transfer
from posoutbox.db import schema
from posoutbox.db.storage import Database, process_identity, utcnow
from posoutbox.errors import Busy, InvalidValue, NotFound
from posoutbox.web import chart, csrf, queries
from posoutbox.web.jobs import (
    FINISHED,
    STOPPED,
    StopRequested,
    TransferJob,
    TransferJobs,
)
from posoutbox.web.queries import BacklogPoint
from posoutbox.web.settings import ConsoleSettings

# CSRF tokens


def test_csrf_token_valid_for_its_user() -> None:
    token = csrf.issue("admin", "hash-1", now=1_000_000)
    assert csrf.is_valid(token, "admin", "hash-1", now=1_000_100)


def test_csrf_token_rejected_for_other_user() -> None:
    token = csrf.issue("admin", "hash-1", now=1_000_000)
    assert not csrf.is_valid(token, "other", "hash-1", now=1_000_100)


def test_csrf_token_rejected_after_password_change() -> None:
    token = csrf.issue("admin", "hash-1", now=1_000_000)
    assert not csrf.is_valid(token, "admin", "hash-2", now=1_000_100)


def test_csrf_token_expires() -> None:
    token = csrf.issue("admin", "hash-1", now=1_000_000)
    later = 1_000_000 + csrf.TOKEN_LIFETIME_SECONDS + 1
    assert not csrf.is_valid(token, "admin", "hash-1", now=later)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "1000000.",
        ".abc",
        "\uff11\uff10\uff10\uff10000.abc",
        "99999999999999.abc",
    ],
)
def test_csrf_token_malformed(token: str) -> None:
    assert not csrf.is_valid(token, "admin", "hash-1", now=1_000_000)


def test_csrf_token_tampered_time() -> None:
    token = csrf.issue("admin", "hash-1", now=1_000_000)
    _, signature = token.split(".")
    assert not csrf.is_valid(f"1000050.{signature}", "admin", "hash-1", now=1_000_100)


# Chart


def _points(series: str, values: list[int]) -> list[BacklogPoint]:
    start = datetime.datetime(2026, 1, 1, 12, 0)
    return [
        BacklogPoint(start + datetime.timedelta(minutes=index), series, value, 0)
        for index, value in enumerate(values)
    ]


def test_chart_axis_top_is_round() -> None:
    assert chart._axis_top(0) == 4
    assert chart._axis_top(13) == 20
    assert chart._axis_top(21) == 40
    assert chart._axis_top(1000) == 1000


def test_chart_one_line_per_series() -> None:
    series = chart.build_series(_points("NORTH", [5, 3, 0]) + _points("SOUTH", [1, 2]))
    svg = chart.render_svg(
        series,
        start=datetime.datetime(2026, 1, 1, 12, 0),
        end=datetime.datetime(2026, 1, 1, 12, 5),
        title="Backlog",
        description="test",
    )
    assert svg.count("<polyline") == 2
    assert 'role="img"' in svg
    assert [item.name for item in series] == ["NORTH", "SOUTH"]
    assert series[0].last == 0
    assert series[0].peak == 5


def test_chart_escapes_names() -> None:
    series = chart.build_series(_points("<b>&", [1]))
    svg = chart.render_svg(
        series,
        start=datetime.datetime(2026, 1, 1, 12, 0),
        end=datetime.datetime(2026, 1, 1, 13, 0),
        title="<script>",
        description="x",
    )
    assert "<b>&" not in svg
    assert "<script>" not in svg
    assert "&lt;b&gt;&amp;" in svg


def test_chart_thins_long_series_keeping_peaks() -> None:
    values = [1] * 5000
    values[2345] = 99
    series = chart.build_series(_points("NORTH", values))
    assert len(series[0].points) <= chart.MAX_POINTS
    assert series[0].peak == 99


def test_chart_keeps_busiest_series() -> None:
    points = []
    for index in range(10):
        points += _points(f"S{index}", [index, index])
    series = chart.build_series(points, max_series=3)
    assert [item.name for item in series] == ["S7", "S8", "S9"]


# Queries


def _add_customers(db: Database, count: int) -> list[str]:
    cunos = [f"C{number:04d}" for number in range(count)]
    rows = [
        (line, {"CUNO": cuno, "CUNM": f"Shop customer {cuno}", "CSCD": "SE"})
        for line, cuno in enumerate(cunos, start=2)
    ]
    result = customers.import_customers(db, rows)
    assert result.rejected_rows == 0
    return cunos


def test_search_pages_forward_and_back(db: Database) -> None:
    cunos = _add_customers(db, 125)

    seen: list[str] = []
    after = ""
    pages = []
    while True:
        page = queries.search_customers(db, after=after, limit=50)
        pages.append(page)
        seen += [str(customer["CUNO"]) for customer in page.customers]
        if not page.next_after:
            break
        after = page.next_after
    assert seen == cunos
    assert len(pages) == 3
    assert pages[0].previous_before == ""

    back = queries.search_customers(db, before=pages[2].previous_before, limit=50)
    assert [customer["CUNO"] for customer in back.customers] == cunos[50:100]
    assert back.next_after == cunos[99]
    assert back.previous_before == cunos[50]

    first = queries.search_customers(db, before=back.previous_before, limit=50)
    assert [customer["CUNO"] for customer in first.customers] == cunos[:50]
    assert first.previous_before == ""


def test_search_by_number_prefix_and_name(db: Database) -> None:
    _add_customers(db, 30)
    customers.add_customer(db, "ALFKI", {"CUNM": "Alfreds Futterkiste"})

    by_number = queries.search_customers(db, "c001")
    assert [customer["CUNO"] for customer in by_number.customers] == [
        f"C00{number}" for number in range(10, 20)
    ]
    by_name = queries.search_customers(db, "futter")
    assert [customer["CUNO"] for customer in by_name.customers] == ["ALFKI"]


def test_search_wildcards_are_literal(db: Database) -> None:
    customers.add_customer(db, "P1", {"CUNM": "100% Bio"})
    customers.add_customer(db, "P2", {"CUNM": "1000 Bio"})
    customers.add_customer(db, "P3", {"CUNM": "A_B"})
    customers.add_customer(db, "P4", {"CUNM": "AXB"})

    assert [c["CUNO"] for c in queries.search_customers(db, "0%").customers] == ["P1"]
    assert [c["CUNO"] for c in queries.search_customers(db, "a_b").customers] == ["P3"]


def test_segment_match_count_agrees_with_rules(db: Database) -> None:
    rows = [
        ("A1", "DE", "RET", "20", 0),
        ("A2", "DE", "WHO", "20", 0),
        ("A3", "AT", "RET", "10", 0),
        ("A4", "SE", "RET", "20", 9),
        ("A5", "", "RET", "90", 0),
    ]
    for cuno, country, group, status, kind in rows:
        customers.add_customer(
            db, cuno, {"CSCD": country, "CUCL": group, "STAT": status, "CUTP": kind}
        )
    every = [customers.get_customer(db, row[0]) for row in rows]
    for texts in (
        ["CSCD=DE,AT"],
        ["CSCD=DE,AT", "CUCL=RET"],
        ["CSCD="],
        ["CUTP=0"],
        [],
    ):
        conditions = rules.parse_conditions(texts)
        expected = [c for c in every if rules.matches(conditions, c)]
        counted = queries.count_segment_matches(db, conditions)
        assert counted.matching == len(expected), texts
        assert counted.definite == sum(1 for c in expected if c["STAT"] == "20")


# Backlog samples and metrics


def _set_up_outbox(db: Database) -> None:
    shops.add_segment(db, "ALL")
    shops.add_subscriber(db, "NORTH")
    shops.add_shop(db, "N01", "NORTH", segments=["ALL"])
    shops.add_shop(db, "N02", "NORTH", segments=["ALL"])
    _add_customers(db, 3)
    transfer.net_transfer(db)


def test_sample_backlog_and_series(db: Database) -> None:
    _set_up_outbox(db)
    start = utcnow().replace(microsecond=0) - datetime.timedelta(minutes=5)

    assert metrics.sample_backlog(db, now=start) == 2
    # A second sample of the same second, as another worker would take it.
    assert metrics.sample_backlog(db, now=start) == 2
    records = outbox.list_records(db, "NORTH", maxrecs=0)
    outbox.confirm_records(db, "NORTH", up_to=records[-1].trnr)
    metrics.sample_backlog(db, now=start + datetime.timedelta(minutes=1))

    by_subscriber = queries.backlog_series(db, since=start)
    assert [(p.series, p.unconfirmed) for p in by_subscriber] == [
        ("NORTH", 6),
        ("NORTH", 0),
    ]
    by_shop = queries.backlog_series(db, since=start, sbs1="NORTH")
    assert [(p.series, p.unconfirmed) for p in by_shop] == [
        ("N01", 3),
        ("N02", 3),
        ("N01", 0),
        ("N02", 0),
    ]


def test_sampler_skips_recent_or_running_sample(db: Database) -> None:
    _set_up_outbox(db)

    assert metrics.sample_unless_taken(db, 60.0)
    assert not metrics.sample_unless_taken(db, 60.0)
    with db.run_lock("backlog sampling", wait=False):
        assert not metrics.sample_unless_taken(db, 0.001)
    assert metrics.sample_unless_taken(db, 0.001)


def test_sample_backlog_removes_old_samples(db: Database) -> None:
    _set_up_outbox(db)
    now = utcnow()
    metrics.sample_backlog(db, now=now - datetime.timedelta(days=40))
    metrics.sample_backlog(db, now=now)
    with db.reading() as conn:
        oldest = conn.execute(
            sa.select(sa.func.min(schema.backlog_samples.c.sampled_at))
        ).scalar_one()
    assert oldest >= (now - datetime.timedelta(days=30)).replace(microsecond=0)


def test_metrics_render_backlog(db: Database) -> None:
    _set_up_outbox(db)
    text = metrics.render(db).decode()
    assert 'posoutbox_backlog_records{sbs1="NORTH",state="new",whlo="N01"} 3.0' in text
    assert 'posoutbox_outbox_records{sbs1="NORTH",state="new"} 3.0' in text
    assert "# TYPE posoutbox_backlog_oldest_age_seconds gauge" in text
    assert "# TYPE posoutbox_api_requests_total counter" in text


def _requests(label: str, status: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "posoutbox_api_requests_total", {"transaction": label, "status": status}
    )
    return value or 0.0


def test_api_request_labels_are_bounded() -> None:
    before_known = _requests("OPS600MI/LstCus", "200")
    before_unknown = _requests("unknown", "404")

    metrics.count_api_request(
        "/m3api-rest/execute/OPS600MI/LstCus",
        {"program": "OPS600MI", "transaction": "LstCus"},
        200,
    )
    metrics.count_api_request(
        "/m3api-rest/execute/MADEUP/Nonsense",
        {"program": "MADEUP", "transaction": "Nonsense"},
        404,
    )
    metrics.count_api_request("/customers", {}, 200)

    assert _requests("OPS600MI/LstCus", "200") == before_known + 1
    assert _requests("unknown", "404") == before_unknown + 1
    assert _requests("MADEUP/Nonsense", "404") == 0


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSOUTBOX_METRICS_PUBLIC", "1")
    monkeypatch.setenv("POSOUTBOX_BACKLOG_SAMPLE_SECONDS", "2.5")
    monkeypatch.setenv("POSOUTBOX_STALE_RUN_SECONDS", "30")
    settings = ConsoleSettings.from_environment()
    assert settings.metrics_public
    assert settings.sample_seconds == 2.5
    assert settings.stale_seconds == 30


def test_settings_reject_bad_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSOUTBOX_BACKLOG_SAMPLE_SECONDS", "often")
    with pytest.raises(InvalidValue, match="POSOUTBOX_BACKLOG_SAMPLE_SECONDS"):
        ConsoleSettings.from_environment()


# Background runs


def _job(function: str = transfer.UPDATE_FUNCTION, sbs1: str = "NORTH") -> TransferJob:
    return TransferJob(
        job_id=1,
        function=function,
        sbs1=sbs1,
        force=False,
        from_cuno="",
        to_cuno="",
        user="tester",
        started_at=utcnow(),
    )


def test_job_runs_net_transfer_in_thread(db: Database) -> None:
    shops.add_segment(db, "ALL")
    shops.add_subscriber(db, "NORTH")
    shops.add_shop(db, "N01", "NORTH", segments=["ALL"])
    _add_customers(db, 3)
    jobs = TransferJobs(db)

    job = jobs.start(function=transfer.UPDATE_FUNCTION, sbs1="NORTH", user="tester")
    assert job.thread is not None
    job.thread.join()

    assert job.state == FINISHED
    assert job.result.records == 3
    runs = queries.list_runs(db)
    assert [run.state for run in runs] == ["finished"]
    assert runs[0].started_by == "tester"
    assert runs[0].customers_done == 3
    assert runs[0].summary_records == [("OCUSMA", "*UPD", 3)]


def test_job_for_unknown_subscriber_raises(db: Database) -> None:
    jobs = TransferJobs(db)
    with pytest.raises(NotFound, match="subscriber NOPE not found"):
        jobs.start(function=transfer.UPDATE_FUNCTION, sbs1="NOPE", user="tester")


def test_job_rejects_force_with_update(db: Database) -> None:
    shops.add_subscriber(db, "NORTH")
    jobs = TransferJobs(db)
    with pytest.raises(InvalidValue, match="force"):
        jobs.start(
            function=transfer.UPDATE_FUNCTION, sbs1="NORTH", force=True, user="t"
        )


def test_stopped_run_is_interrupted_and_keeps_changes(db: Database) -> None:
    shops.add_segment(db, "ALL")
    shops.add_subscriber(db, "NORTH")
    shops.add_shop(db, "N01", "NORTH", segments=["ALL"])
    _add_customers(db, 3)
    jobs = TransferJobs(db)
    job = _job()
    job.stop.set()

    assert not jobs._run_one(job, "NORTH")

    assert job.state == STOPPED
    assert [run.state for run in queries.list_runs(db)] == ["interrupted"]
    # The stop came before the first batch, so the next run sends everything.
    assert transfer.net_transfer(db, sbs1="NORTH").records == 3


def test_second_run_of_subscriber_is_busy(sqlite_db: Database) -> None:
    shops.add_subscriber(sqlite_db, "NORTH")
    jobs = TransferJobs(sqlite_db)
    # The run lock is what a run in another process would hold.
    with sqlite_db.run_lock("net transfer of subscriber NORTH", wait=True):
        result: list[BaseException] = []

        def start() -> None:
            try:
                jobs.start(function=transfer.UPDATE_FUNCTION, sbs1="NORTH", user="t")
            except BaseException as error:
                result.append(error)

        thread = threading.Thread(target=start)
        thread.start()
        thread.join()
    assert len(result) == 1
    assert isinstance(result[0], Busy)


def _insert_run(
    db: Database, *, heartbeat: datetime.datetime, pid: int, host: str
) -> int:
    with db.transaction() as conn:
        return int(
            conn.execute(
                sa.insert(schema.runs)
                .values(
                    sbs1="NORTH",
                    function="update",
                    state="running",
                    started_at=heartbeat,
                    heartbeat_at=heartbeat,
                    pid=pid,
                    host=host,
                    summary=json.dumps({}),
                )
                .returning(schema.runs.c.run_id)
            ).scalar_one()
        )


def test_shown_state_of_running_runs(sqlite_db: Database) -> None:
    jobs = TransferJobs(sqlite_db, stale_seconds=60)
    now = utcnow()
    own_pid, host = process_identity()
    fresh_elsewhere = _insert_run(sqlite_db, heartbeat=now, pid=1, host="other-host")
    stale_elsewhere = _insert_run(
        sqlite_db, heartbeat=now - datetime.timedelta(minutes=5), pid=1, host="other"
    )
    # Linux allows process ids up to 2**22 (PID_MAX_LIMIT), so this one is free.
    dead_here = _insert_run(sqlite_db, heartbeat=now, pid=2**22 + 1, host=host)
    own_without_thread = _insert_run(sqlite_db, heartbeat=now, pid=own_pid, host=host)
    alive_here = _insert_run(sqlite_db, heartbeat=now, pid=os.getppid(), host=host)

    def state(run_id: int) -> str:
        run = queries.get_run(sqlite_db, run_id)
        assert run is not None
        return jobs.shown_state(run, now)

    assert state(fresh_elsewhere) == "running"
    assert state(stale_elsewhere) == "interrupted"
    assert state(dead_here) == "interrupted"
    assert state(own_without_thread) == "interrupted"
    assert state(alive_here) == "running"


def test_stop_requested_is_not_an_exception() -> None:
    # The engine records an Exception as failed and anything else as
    # interrupted, which is what a stop is.
    assert not issubclass(StopRequested, Exception)
