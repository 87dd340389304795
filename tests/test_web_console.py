"""End-to-end tests of the console: a real ``posoutbox serve`` subprocess on
127.0.0.1, driven over HTTP and through Debian's Chromium with Playwright.

Every page a test visits is checked with axe-core for serious or critical
accessibility violations. The browser tests need /usr/bin/chromium and the
axe-core script (``npm install --prefix build/npm axe-core@4.14.1``, or the
path in POSOUTBOX_AXE_SCRIPT); outside CI they skip without them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from outbox_states import record_states
from posoutbox import customers, fields, importer, outbox, shops, transfer, users
from posoutbox.db import migrate, schema
from posoutbox.db.storage import Database, open_database, process_identity, utcnow
from posoutbox.errors import InvalidValue

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE_SCRIPT = Path(
    os.environ.get(
        "POSOUTBOX_AXE_SCRIPT",
        Path(__file__).resolve().parent.parent
        / "build/npm/node_modules/axe-core/axe.min.js",
    )
)

ADMIN = "admin"
POS_USER = "pos-north"
PASSWORD = "console test password"
GENERATED = 2400

# Bounds for waiting on the server, which normally responds within a second.
STARTUP_LIMIT_SECONDS = 60.0
WAIT_LIMIT_SECONDS = 60.0


def _require(available: bool, reason: str) -> None:
    """Skip a test that lacks a tool, except in CI, where that is a failure."""
    if available:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}, and the console's browser tests must run in CI")
    pytest.skip(reason)


# The server


@dataclass
class Server:
    """A running ``posoutbox serve`` process and its database."""

    base_url: str
    db: Database
    db_path: Path
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def client(self, user: str | None = ADMIN, **options: Any) -> httpx.Client:
        auth = None if user is None else (user, PASSWORD)
        return httpx.Client(base_url=self.base_url, auth=auth, timeout=60, **options)


def seed(db: Database) -> None:
    """Add users, two subscribers with shops and segments, the Northwind
    customers and GENERATED preliminary customers for paging."""
    users.add_user(db, ADMIN, PASSWORD, admin=True)
    shops.add_subscriber(db, "NORTH", name="Northern stores")
    shops.add_subscriber(db, "SOUTH", name="Southern stores")
    users.add_user(db, POS_USER, PASSWORD, sbs1="NORTH")
    shops.add_segment(db, "DACH", conditions=["CSCD=DE,AT,CH"])
    shops.add_segment(db, "NORDIC", conditions=["CSCD=SE,DK,FI,NO"])
    shops.add_segment(db, "SOUTH", conditions=["CSCD=ES,IT,PT,FR"])
    shops.add_shop(db, "B01", "NORTH", name="Berlin", segments=["DACH"])
    shops.add_shop(db, "S01", "NORTH", name="Stockholm", segments=["NORDIC"])
    shops.add_shop(db, "M01", "SOUTH", name="Madrid", segments=["SOUTH"])

    data = resources.files("posoutbox") / "data" / "northwind-customers.csv"
    with resources.as_file(data) as path:
        result = customers.import_customers(
            db, importer.read_customer_file(path, "northwind")
        )
    assert result.added == 90
    generated = [
        (line, {"CUNO": f"Z{line:05d}", "CUNM": f"Generated {line}", "STAT": "10"})
        for line in range(2, GENERATED + 2)
    ]
    assert customers.import_customers(db, generated).added == GENERATED


@contextlib.contextmanager
def running_server(directory: Path, *options: str) -> Iterator[Server]:
    """Start ``posoutbox serve`` on a free port of 127.0.0.1 for a seeded
    SQLite database in ``directory``."""
    db_path = directory / "console.db"
    url = f"sqlite:///{db_path}"
    db = open_database(url)
    migrate.upgrade(db)
    seed(db)
    command = [
        sys.executable,
        "-m",
        "posoutbox",
        "--database-url",
        url,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--backlog-sample-seconds",
        "1",
        *options,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    server = Server("", db, db_path, process)
    address = threading.Event()

    def read_output() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.output.append(line)
            found = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                server.base_url = found.group(1)
                address.set()

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    try:
        if not address.wait(STARTUP_LIMIT_SECONDS):
            raise RuntimeError(
                "posoutbox serve did not start:\n" + "".join(server.output)
            )
        yield server
    finally:
        process.terminate()
        process.wait(STARTUP_LIMIT_SECONDS)
        reader.join(STARTUP_LIMIT_SECONDS)
        db.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("console")) as running:
        yield running


def wait_until(check: Any, what: str) -> None:
    """Call ``check`` until it returns true, for at most WAIT_LIMIT_SECONDS."""
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


# Sign-in, CSRF and metrics over plain HTTP


def test_console_needs_sign_in(server: Server) -> None:
    with server.client(user=None) as client:
        response = client.get("/customers")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic ")


def test_console_rejects_subscriber_user(server: Server) -> None:
    with server.client(user=POS_USER) as client:
        response = client.get("/")
    assert response.status_code == 403
    assert "for administrators only" in response.text


def test_console_rejects_wrong_password(server: Server) -> None:
    with httpx.Client(base_url=server.base_url, auth=(ADMIN, "wrong")) as client:
        assert client.get("/").status_code == 401


def test_post_without_csrf_token(server: Server) -> None:
    with server.client() as client:
        response = client.post(
            "/customer/save", data={"CUNO": "ALFKI", "CUNM": "Changed elsewhere"}
        )
    assert response.status_code == 403
    assert customers.get_customer(server.db, "ALFKI")["CUNM"] == "Alfreds Futterkiste"


def test_post_with_foreign_csrf_token(server: Server) -> None:
    with server.client() as client:
        response = client.post(
            "/customer/save",
            data={"CUNO": "ALFKI", "CUNM": "Changed elsewhere", "csrf_token": "1.abc"},
        )
    assert response.status_code == 403


def test_pages_carry_security_headers(server: Server) -> None:
    with server.client() as client:
        response = client.get("/customers")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["cache-control"] == "no-store"


def test_metrics_need_admin(server: Server) -> None:
    with server.client(user=None) as client:
        assert client.get("/metrics").status_code == 401
    with server.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'posoutbox_backlog_records{sbs1="NORTH",state="new",whlo="B01"}' in (
        response.text
    )


def test_metrics_public_option(tmp_path: Path) -> None:
    with (
        running_server(tmp_path, "--metrics-public") as public,
        public.client(user=None) as client,
    ):
        metrics_response = client.get("/metrics")
        console_response = client.get("/")
    assert metrics_response.status_code == 200
    assert "posoutbox_outbox_records" in metrics_response.text
    assert console_response.status_code == 401


def test_run_of_gone_process_is_interrupted(server: Server) -> None:
    # A run recorded as running by a process of this host that no longer
    # exists, as a server stopped with kill -9 leaves it.
    with server.db.transaction() as conn:
        run_id = conn.execute(
            sa.insert(schema.runs)
            .values(
                sbs1="SOUTH",
                function="update",
                state="running",
                started_at=utcnow(),
                heartbeat_at=utcnow(),
                pid=2**22 + 1,
                host=process_identity()[1],
                started_by="crashed",
            )
            .returning(schema.runs.c.run_id)
        ).scalar_one()
    try:
        with server.client() as client:
            history = client.get("/transfer/history").text
            page = client.get("/transfer/run", params={"id": run_id}).text
        row = re.search(
            rf"<td><a href=\"/transfer/run\?id={run_id}\">.*?</tr>", history, re.S
        )
        assert row is not None
        assert "interrupted" in row.group(0)
        assert "keep their changes, which the next run" in page
    finally:
        with server.db.transaction() as conn:
            conn.execute(sa.delete(schema.runs).where(schema.runs.c.run_id == run_id))


def test_unknown_customer_page(server: Server) -> None:
    with server.client() as client:
        response = client.get("/customer", params={"cuno": "NOSUCH"})
    assert response.status_code == 404
    assert "customer NOSUCH not found" in response.text


# The browser


@pytest.fixture(scope="module")
def axe_source() -> str:
    _require(
        AXE_SCRIPT.is_file(),
        f"{AXE_SCRIPT} is missing: run npm install --prefix build/npm axe-core@4.14.1",
    )
    return AXE_SCRIPT.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require(CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context(
        base_url=server.base_url,
        viewport={"width": 1280, "height": 900},
        http_credentials={"username": ADMIN, "password": PASSWORD},
    )
    context.set_default_timeout(WAIT_LIMIT_SECONDS * 1000)
    try:
        yield context.new_page()
    finally:
        context.close()


def check_accessibility(page: Any, axe_source: str) -> None:
    """Run axe-core on the page; fail on a serious or critical violation."""
    # evaluate() runs outside the page's Content-Security-Policy, which would
    # block an injected script tag.
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source)
    violations = page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(" ")),
            }));
        }"""
    )
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert serious == [], f"{page.url}: {serious}"


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=WAIT_LIMIT_SECONDS * 1000)
    return playwright_expect(target)


def test_customer_search_edit_and_export(
    page: Any, server: Server, axe_source: str
) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    check_accessibility(page, axe_source)

    page.get_by_role("link", name="Customers", exact=True).click()
    page.get_by_label("Customer number or name").fill("Alfreds")
    page.get_by_label("Customer number or name").press("Enter")
    expect(page.get_by_role("link", name="ALFKI")).to_be_visible()
    check_accessibility(page, axe_source)

    page.get_by_role("link", name="ALFKI").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Alfreds Futterkiste")
    check_accessibility(page, axe_source)

    page.get_by_label("Your reference (contact)").fill("Maria Anders-Schmidt")
    page.get_by_role("button", name="Save customer").click()
    expect(page.get_by_role("status")).to_have_text("Customer ALFKI saved.")
    assert customers.get_customer(server.db, "ALFKI")["YREF"] == "Maria Anders-Schmidt"
    with server.db.reading() as conn:
        changed_by = conn.execute(
            sa.select(schema.customers.c.changed_by).where(
                schema.customers.c.cuno == "ALFKI"
            )
        ).scalar_one()
    assert changed_by == ADMIN


def test_customer_error_next_to_field(
    page: Any, server: Server, axe_source: str
) -> None:
    page.goto("/customer?cuno=ALFKI")
    page.get_by_label("Country (ISO 3166-1 alpha-2)").fill("Germany")
    page.get_by_label("Customer name").fill("Alfreds Futterkiste GmbH")
    page.get_by_role("button", name="Save customer").click()

    with pytest.raises(InvalidValue) as raised:
        fields.validate("CSCD", "Germany")
    country = page.get_by_label("Country (ISO 3166-1 alpha-2)")
    expect(country).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#CSCD-error")).to_have_text(raised.value.message)
    assert "CSCD-error" in (country.get_attribute("aria-describedby") or "")
    expect(page.get_by_label("Customer name")).not_to_have_attribute(
        "aria-invalid", "true"
    )
    check_accessibility(page, axe_source)
    # Nothing was saved, the valid name change included.
    saved = customers.get_customer(server.db, "ALFKI")
    assert saved["CSCD"] == "DE"
    assert saved["CUNM"] == "Alfreds Futterkiste"


def test_customer_export_shows_records(
    page: Any, server: Server, axe_source: str
) -> None:
    page.goto("/customer?cuno=FRANK")
    page.get_by_role("button", name="Export customer to POS").click()
    result = page.locator(
        "section", has=page.get_by_role("heading", name="Export result")
    )
    expect(result).to_be_visible()
    expect(result.get_by_role("row", name=re.compile("NORTH"))).to_contain_text(
        "OCUSMA"
    )
    check_accessibility(page, axe_source)

    with server.db.reading() as conn:
        created = conn.execute(
            sa.select(schema.records.c.sbs1, schema.records.c.trtp).where(
                schema.records.c.cuno == "FRANK",
                schema.records.c.origin == transfer.ORIGIN_EXPORT,
            )
        ).all()
    assert ("NORTH", "OCUSMA") in [tuple(row) for row in created]
    assert all(sbs1 == "NORTH" for sbs1, _ in created)


def test_customer_children(page: Any, server: Server, axe_source: str) -> None:
    page.goto("/customer?cuno=BLAUS")

    page.get_by_role("link", name="Add address").click()
    check_accessibility(page, axe_source)
    page.get_by_label("Address id").fill("DEL1")
    page.get_by_label("Customer name").fill("Blauer See Lager")
    page.get_by_label("City").fill("Mannheim")
    page.get_by_role("button", name="Save delivery address").click()
    expect(page.get_by_role("status")).to_contain_text("Delivery address DEL1")
    expect(page.get_by_role("link", name="DEL1")).to_be_visible()

    page.get_by_role("link", name="Add card").click()
    page.get_by_label("Card number").fill("4000123412341234")
    page.get_by_label("Valid through month").fill("13")
    page.get_by_role("button", name="Save card").click()
    expect(page.locator("#VTMM-error")).to_contain_text("VTMM")
    check_accessibility(page, axe_source)
    page.get_by_label("Valid through month").fill("12")
    page.get_by_label("Valid through year").fill("2030")
    page.get_by_role("button", name="Save card").click()
    expect(page.get_by_role("link", name="4000123412341234")).to_be_visible()

    page.get_by_role("link", name="Add message").click()
    page.get_by_label("Message id").fill("WELCOME")
    page.get_by_label("Message text").fill("Regular customer")
    page.get_by_role("button", name="Save message").click()
    expect(page.get_by_role("link", name="WELCOME")).to_be_visible()
    check_accessibility(page, axe_source)

    page.get_by_role("link", name="WELCOME").click()
    page.get_by_role("button", name="Delete message…").click()
    check_accessibility(page, axe_source)
    page.get_by_role("button", name="Delete message", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Message WELCOME")

    assert [a["ADID"] for a in customers.list_addresses(server.db, "BLAUS")] == ["DEL1"]
    cards = customers.list_cards(server.db, "BLAUS")
    assert [(c["CCNR"], c["VTMM"], c["VTYY"]) for c in cards] == [
        (4000123412341234, 12, 2030)
    ]
    assert customers.list_messages(server.db, "BLAUS") == []


def _first_numbers(page: Any) -> list[str]:
    return list(page.locator("tbody tr td:first-child").all_inner_texts())


def test_customers_page_through_thousands(page: Any, server: Server) -> None:
    with server.db.reading() as conn:
        expected = list(
            conn.execute(
                sa.select(schema.customers.c.cuno).order_by(schema.customers.c.cuno)
            ).scalars()
        )

    # Every page, over HTTP: the links lead through all customers once.
    seen: list[str] = []
    path: str | None = "/customers"
    with server.client() as client:
        while path is not None:
            html = client.get(path).text
            seen += re.findall(
                r'<td class="code"><a href="/customer\?cuno=[^"]*">([^<]+)<', html
            )
            following = re.search(r'<a href="([^"]+)" rel="next">', html)
            path = following.group(1).replace("&amp;", "&") if following else None
    assert seen == expected

    # A few pages in the browser, forward and back.
    page.goto("/customers")
    expect(page.get_by_text(f"{len(expected)} customers in all")).to_be_visible()
    first_page = _first_numbers(page)
    page.get_by_role("link", name="Next page").click()
    second_page = _first_numbers(page)
    page.get_by_role("link", name="Next page").click()
    assert _first_numbers(page)[0] == expected[2 * len(first_page)]
    page.get_by_role("link", name="Previous page").click()
    assert _first_numbers(page) == second_page
    page.get_by_role("link", name="First page").click()
    assert _first_numbers(page) == first_page
    assert first_page == expected[: len(first_page)]


def test_subscribers_shops_and_segments(
    page: Any, server: Server, axe_source: str
) -> None:
    page.goto("/subscribers")
    page.get_by_label("Subscriber", exact=True).fill("NORTH")
    page.get_by_role("button", name="Add subscriber").click()
    expect(page.locator("#SBS1-error")).to_have_text("subscriber NORTH already exists")
    check_accessibility(page, axe_source)
    page.get_by_label("Subscriber", exact=True).fill("EAST")
    page.get_by_label("Name").fill("Eastern stores")
    page.get_by_role("button", name="Add subscriber").click()
    expect(page.get_by_role("status")).to_have_text("Subscriber EAST added.")

    page.goto("/segment")
    page.get_by_label("Segment id").fill("UK")
    page.get_by_label("Conditions").fill("XXXX=1")
    page.get_by_role("button", name="Save segment").click()
    expect(page.locator("#conditions-error")).to_contain_text("condition")
    check_accessibility(page, axe_source)
    page.get_by_label("Conditions").fill("CSCD=GB")
    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_role("status")).to_have_text("Segment UK saved.")
    british = sum(
        1
        for customer in customers.list_customers(server.db)
        if customer["CSCD"] == "GB"
    )
    expect(page.get_by_text(f"{british}, of them {british} definite")).to_be_visible()
    page.get_by_label("Conditions").fill("CSCD=GB,IE")
    page.get_by_role("button", name="Save segment").click()
    irish = sum(
        1
        for customer in customers.list_customers(server.db)
        if customer["CSCD"] == "IE"
    )
    total = british + irish
    expect(page.get_by_text(f"{total}, of them {total} definite")).to_be_visible()
    check_accessibility(page, axe_source)

    page.goto("/shop?sbs1=EAST")
    page.get_by_label("Shop (warehouse)").fill("E01")
    page.get_by_label("Name").fill("Dublin")
    page.get_by_role("button", name="Save shop").click()
    expect(page.get_by_role("status").first).to_contain_text("receives no customers")
    expect(page.locator(".notice.warning")).to_contain_text("no segment")
    check_accessibility(page, axe_source)

    page.get_by_label(re.compile("^UK")).check()
    page.get_by_label("POS interface on").uncheck()
    page.get_by_role("button", name="Save shop").click()
    expect(page.locator(".notice.warning")).to_contain_text("POS interface off")
    assert shops.get_shop(server.db, "E01").segments == ("UK",)

    page.get_by_label("POS interface on").check()
    page.get_by_role("button", name="Save shop").click()
    expect(page.get_by_role("status")).to_have_text("Shop E01 saved.")
    expect(page.locator(".notice.warning")).to_have_count(0)

    page.goto("/shops?sbs1=EAST")
    expect(page.get_by_role("row", name=re.compile("E01"))).to_contain_text(
        "receives customers"
    )
    check_accessibility(page, axe_source)
    page.goto("/segments")
    expect(page.get_by_role("row", name=re.compile("^UK"))).to_contain_text("E01")
    check_accessibility(page, axe_source)

    page.goto("/shop?whlo=E01")
    page.get_by_role("button", name="Delete shop…").click()
    page.get_by_role("button", name="Delete shop", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Shop E01 deleted.")
    page.goto("/subscribers")
    page.get_by_role("button", name=re.compile("Delete subscriber EAST")).click()
    page.get_by_role("button", name="Delete subscriber", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Subscriber EAST deleted.")
    assert [s.sbs1 for s in shops.list_subscribers(server.db)] == ["NORTH", "SOUTH"]


def test_net_transfer_shows_progress(
    page: Any, server: Server, axe_source: str
) -> None:
    customers.change_customer(server.db, "BERGS", {"PHNO": "0921-12 34 99"})
    page.goto("/transfer")
    check_accessibility(page, axe_source)
    page.get_by_label("Subscriber").select_option("NORTH")

    # An open write transaction keeps the run waiting at its start, so the page
    # shows it starting and must then follow it by polling to the end.
    lock = sqlite3.connect(server.db_path, isolation_level=None, timeout=60)
    try:
        lock.execute("BEGIN IMMEDIATE")
        page.get_by_role("button", name="Start run").click()
        expect(page.get_by_role("status")).to_have_text(
            "Net transfer of NORTH started."
        )
        expect(page.locator("#live")).to_contain_text("is starting")
        page.evaluate("() => { window.notReloaded = true; }")
    finally:
        lock.rollback()
        lock.close()

    newest = page.locator("#live tbody tr").first
    expect(newest).to_contain_text("NORTH")
    expect(newest).to_contain_text("finished")
    expect(page.locator("#live")).to_contain_text("No run is going on.")
    assert page.evaluate("() => window.notReloaded === true")
    check_accessibility(page, axe_source)

    newest.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("NORTH")
    expect(page.locator("#run-live")).to_contain_text("finished")
    check_accessibility(page, axe_source)
    with server.db.reading() as conn:
        run = conn.execute(
            sa.select(schema.runs).order_by(schema.runs.c.run_id.desc()).limit(1)
        ).one()
    assert run.state == "finished"
    assert run.started_by == ADMIN
    assert run.customers_done == run.customers_total
    assert run.customers_done > 0


def _lst_cus(client: httpx.Client) -> list[dict[str, str]]:
    response = client.get(
        "/m3api-rest/execute/OPS600MI/LstCus;maxrecs=100",
        params={"SBS1": "NORTH"},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200
    return [
        {pair["Name"]: pair["Value"] for pair in record["NameValue"]}
        for record in response.json()["MIRecord"]
    ]


def _drain(server: Server) -> int:
    """List and confirm NORTH's records as its POS would; return how many."""
    drained = 0
    with server.client(user=POS_USER) as client:
        for _ in range(1000):
            records = _lst_cus(client)
            if not records:
                return drained
            response = client.get(
                "/m3api-rest/execute/OPS600MI/CnfCus",
                params={"SBS1": "NORTH", "TRNR": records[-1]["TRNR"]},
                headers={"Accept": "application/json"},
            )
            assert response.status_code == 200
            drained += len(records)
    raise AssertionError("the outbox of NORTH did not drain in 1000 calls")


def _latest_sample(server: Server, whlo: str) -> tuple[Any, int] | None:
    table = schema.backlog_samples
    with server.db.reading() as conn:
        row = conn.execute(
            sa.select(table.c.sampled_at, table.c.unconfirmed)
            .where(table.c.sbs1 == "NORTH", table.c.whlo == whlo)
            .order_by(table.c.sampled_at.desc())
            .limit(1)
        ).first()
    return None if row is None else (row.sampled_at, row.unconfirmed)


def test_backlog_falls_after_pos_drains(
    page: Any, server: Server, axe_source: str
) -> None:
    transfer.export_customer(server.db, "ALFKI")
    wait_until(
        lambda: (_latest_sample(server, "B01") or (None, 0))[1] > 0,
        "a backlog sample of B01 above 0",
    )

    page.goto("/outbox?sbs1=NORTH&period=1h")
    row = page.locator('tr[data-shop="NORTH/B01"]')
    unconfirmed = int(row.locator("td").nth(4).inner_text())
    assert unconfirmed > 0
    check_accessibility(page, axe_source)

    page.goto("/outbox/records?sbs1=NORTH")
    page.locator("details summary").first.click()
    expect(page.locator("details dl").first).to_contain_text("CUNO")
    check_accessibility(page, axe_source)

    assert _drain(server) >= unconfirmed
    wait_until(
        lambda: (_latest_sample(server, "B01") or (None, 1))[1] == 0,
        "a backlog sample of B01 at 0",
    )

    page.goto("/outbox?sbs1=NORTH&period=1h")
    row = page.locator('tr[data-shop="NORTH/B01"]')
    expect(row.locator("td").nth(2)).to_have_text("0")
    expect(row.locator("td").nth(4)).to_have_text("0")
    expect(page.locator("svg.chart polyline, svg.chart circle").first).to_be_attached()
    chart_row = page.get_by_role("row", name=re.compile("^B01"))
    cells = chart_row.locator("td").all_inner_texts()
    assert cells[0] == "0"
    assert int(cells[1]) >= unconfirmed
    check_accessibility(page, axe_source)

    with server.client() as client:
        text = client.get("/metrics").text
    assert 'posoutbox_backlog_records{sbs1="NORTH",state="new",whlo="B01"} 0.0' in text
    found = re.search(
        r'posoutbox_api_requests_total\{status="200",transaction="OPS600MI/LstCus"\} '
        r"(\d+)",
        text,
    )
    assert found is not None
    assert int(found.group(1)) >= 1
    confirmed = re.search(
        r'posoutbox_records_confirmed_total\{sbs1="NORTH"\} (\d+)', text
    )
    assert confirmed is not None
    assert int(confirmed.group(1)) >= unconfirmed


def test_cleanup_preview_and_run(page: Any, server: Server, axe_source: str) -> None:
    transfer.export_customer(server.db, "ANATR")
    _drain(server)
    states = record_states(server.db, "NORTH").values()
    confirmed = sum(1 for state in states if state == outbox.CONFIRMED)
    assert confirmed > 0

    page.goto("/outbox/cleanup")
    page.get_by_label("Subscriber").select_option("NORTH")
    page.get_by_role("button", name="Preview cleanup").click()
    expect(page.get_by_role("status")).to_contain_text(
        f"would remove {confirmed} confirmed records"
    )
    check_accessibility(page, axe_source)
    assert outbox.cleanup(server.db, sbs1="NORTH", preview=True).total == confirmed

    page.get_by_role("button", name="Remove these records").click()
    expect(page.get_by_role("status")).to_have_text(
        f"Cleanup removed {confirmed} confirmed records (NORTH: {confirmed})."
    )
    assert outbox.cleanup(server.db, sbs1="NORTH", preview=True).total == 0


def test_keyboard_reaches_a_customer(page: Any) -> None:
    page.goto("/customers")
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to content")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_attribute("name", "q")
    page.keyboard.type("BERGS")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"q=BERGS"))
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent") == "BERGS":
            break
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Berglunds")


@pytest.mark.parametrize(
    "path",
    ["/", "/customers", "/customer?cuno=ALFKI", "/shops", "/transfer", "/outbox"],
)
def test_pages_fit_a_phone(
    browser: Any, server: Server, axe_source: str, path: str
) -> None:
    context = browser.new_context(
        base_url=server.base_url,
        viewport={"width": 390, "height": 844},
        http_credentials={"username": ADMIN, "password": PASSWORD},
    )
    try:
        phone = context.new_page()
        phone.goto(path)
        width = phone.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390
        check_accessibility(phone, axe_source)
    finally:
        context.close()
