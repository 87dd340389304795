"""Take the screenshots of docs/console.md from a real server and browser.

Usage: .venv/bin/python docs/make_screenshots.py [OUTPUT_DIR]

The script builds a demo database in a temporary directory: the Northwind
customers, two subscribers, shops and segments. It starts ``posoutbox serve``
on 127.0.0.1 and drives Debian's Chromium (/usr/bin/chromium) with Playwright.
It writes one PNG per page, 1280 px wide, and one page at 390 px, into
OUTPUT_DIR (default: docs/screenshots next to this script).

The backlog chart needs samples spread over time. The script takes them itself
while a POS drains the outbox, and spaces their timestamps ten minutes apart
ending now, so the chart shows an hour of draining in a few seconds of run time.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

from posoutbox import customers, importer, metrics, outbox, shops, transfer, users
from posoutbox.db import migrate
from posoutbox.db.storage import Database, open_database, utcnow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN, PASSWORD = "admin", "console-demo-password"


def seed(db: Database) -> None:
    """Fill a migrated database with the demo set-up and the Northwind customers."""
    users.add_user(db, ADMIN, PASSWORD, admin=True, user="docs")
    shops.add_subscriber(db, "NORTH", name="Northern Europe stores", user="docs")
    shops.add_subscriber(db, "SOUTH", name="Southern Europe stores", user="docs")
    shops.add_segment(
        db,
        "DACH",
        description="German-speaking countries",
        conditions=["CSCD=DE,AT,CH"],
        user="docs",
    )
    shops.add_segment(
        db,
        "NORDIC",
        description="Nordic countries",
        conditions=["CSCD=SE,DK,FI,NO"],
        user="docs",
    )
    shops.add_segment(
        db,
        "SOUTH",
        description="Southern Europe",
        conditions=["CSCD=ES,IT,PT,FR"],
        user="docs",
    )
    shops.add_shop(db, "B01", "NORTH", name="Berlin", segments=["DACH"], user="docs")
    shops.add_shop(db, "S01", "NORTH", name="Stockholm", segments=["NORDIC"])
    shops.add_shop(db, "H01", "NORTH", name="Hamburg (opens soon)", segments=[])
    shops.add_shop(db, "M01", "SOUTH", name="Madrid", segments=["SOUTH"])
    shops.add_shop(
        db, "L01", "SOUTH", name="Lisbon", segments=["SOUTH"], pos_interface=False
    )
    users.add_user(db, "pos-north", PASSWORD, sbs1="NORTH", user="docs")

    data = resources.files("posoutbox") / "data" / "northwind-customers.csv"
    with resources.as_file(data) as path:
        customers.import_customers(
            db, importer.read_customer_file(path, "northwind"), user="docs"
        )
    customers.set_address(
        db,
        "ALFKI",
        "DEL1",
        {"CUNM": "Alfreds Futterkiste Lager", "CUA1": "Lagerweg 3", "TOWN": "Berlin"},
        user="docs",
    )
    customers.set_card(
        db,
        "ALFKI",
        4000123412341234,
        {"CTP1": 1, "MCRD": "1", "VTMM": 12, "VTYY": 2027},
        user="docs",
    )
    customers.set_message(
        db, "ALFKI", "WELCOME", "Regular customer: offer the loyalty card", user="docs"
    )


def drain_with_samples(db: Database) -> None:
    """Run the first net transfer, then let the POS of NORTH drain its outbox in
    steps, sampling the backlog after each step, ten minutes apart."""
    transfer.net_transfer(db, user=ADMIN)
    steps = 6
    end = utcnow()
    for step in range(steps + 1):
        moment = end - datetime.timedelta(minutes=10 * (steps - step))
        metrics.sample_backlog(db, now=moment)
        records = outbox.list_records(db, "NORTH", maxrecs=12)
        if records:
            outbox.confirm_records(db, "NORTH", up_to=records[-1].trnr)
    customers.change_customer(db, "BERGS", {"PHNO": "0921-12 34 99"}, user=ADMIN)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(url: str, port: int) -> subprocess.Popen[bytes]:
    environment = dict(os.environ, POSOUTBOX_BACKLOG_SAMPLE_SECONDS="3600")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "posoutbox",
            "--database-url",
            url,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=environment,
    )
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.terminate()
    raise RuntimeError("the server did not respond to /health within 10 s")


def shoot(page: Page, base: str, path: str, output: Path, name: str) -> None:
    page.goto(base + path)
    page.screenshot(path=str(output / f"{name}.png"), full_page=True)
    print(f"{name}.png  {path}")


def main() -> None:
    default_output = Path(__file__).resolve().parent / "screenshots"
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else default_output
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="posoutbox-screenshots-") as directory:
        url = f"sqlite:///{Path(directory) / 'console.db'}"
        db = open_database(url)
        migrate.upgrade(db)
        seed(db)
        drain_with_samples(db)

        port = free_port()
        server = start_server(url, port)
        base = f"http://127.0.0.1:{port}"
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS
                )
                context = browser.new_context(
                    viewport={"width": 1280, "height": 900},
                    http_credentials={"username": ADMIN, "password": PASSWORD},
                )
                page = context.new_page()
                take_pages(page, base, output)
                context.close()

                phone = browser.new_context(
                    viewport={"width": 390, "height": 844},
                    device_scale_factor=2,
                    http_credentials={"username": ADMIN, "password": PASSWORD},
                )
                phone_page = phone.new_page()
                phone_page.goto(base + "/customer?cuno=ALFKI")
                phone_page.screenshot(path=str(output / "phone.png"))
                print("phone.png  /customer?cuno=ALFKI, first screen")
                phone.close()
                browser.close()
        finally:
            server.terminate()
            server.wait(30)
            db.close()


def take_pages(page: Page, base: str, output: Path) -> None:
    shoot(page, base, "/", output, "overview")
    shoot(page, base, "/customers?q=berg", output, "customers")

    page.goto(base + "/customer?cuno=ALFKI")
    page.get_by_role("button", name="Export customer to POS").click()
    page.screenshot(path=str(output / "customer.png"), full_page=True)
    print("customer.png  export of ALFKI")

    page.goto(base + "/customer?cuno=ALFKI")
    page.get_by_label("Country (ISO 3166-1 alpha-2)").fill("Germany")
    page.get_by_label("E-mail address").fill("info@alfreds.example")
    page.get_by_role("button", name="Save customer").click()
    page.screenshot(path=str(output / "customer-error.png"), full_page=True)
    print("customer-error.png  invalid country")

    shoot(page, base, "/shops", output, "shops")
    shoot(page, base, "/shop?whlo=H01", output, "shop")
    shoot(page, base, "/segments", output, "segments")
    shoot(page, base, "/segment?seid=DACH", output, "segment")

    page.goto(base + "/transfer")
    page.get_by_role("button", name="Start run").click()
    page.locator("#live").get_by_text("No run is going on.").wait_for()
    page.screenshot(path=str(output / "transfer.png"), full_page=True)
    print("transfer.png  after a run of all subscribers")
    shoot(page, base, "/transfer/run?id=1", output, "run")

    shoot(page, base, "/outbox?period=1h", output, "outbox")
    shoot(page, base, "/outbox/records?sbs1=NORTH", output, "records")
    page.locator("details summary").first.click()
    page.screenshot(path=str(output / "records.png"), full_page=True)

    page.goto(base + "/outbox/cleanup")
    page.get_by_role("button", name="Preview cleanup").click()
    page.screenshot(path=str(output / "cleanup.png"), full_page=True)
    print("cleanup.png  preview")


if __name__ == "__main__":
    main()
