#!/usr/bin/env python3
"""Take the dashboard screenshots in docs/images/ with Playwright and Debian's Chromium.

    /work/venv/bin/python scripts/screenshots.py [--out docs/images]

The script seeds a SQLite storage in a temporary folder through the public
API and runs an embedded server, so that jobs succeed, fail and retry. While
the server runs, it serves the dashboard with uvicorn on 127.0.0.1 and a free
port and saves one PNG per page. It needs the playwright package and
/usr/bin/chromium (``apt-get install chromium``); it never downloads a browser.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backburner import Backburner

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

logger = logging.getLogger("scripts.screenshots")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
# NOTE: at 1280 px the recurring jobs table is wider than its card (its last columns scroll
# out of view), so that page is taken wider, at the width where the whole table shows.
WIDE_VIEWPORT: ViewportSize = {"width": 1600, "height": 800}
#: How long the overview is left open before its screenshot, in milliseconds.
SETTLE_MS = 15_000
ROOT = Path(__file__).resolve().parent.parent


def make_app(url: str, release: threading.Event) -> Backburner:
    """Return an app with a few job functions that succeed, fail, retry or run long."""
    app = Backburner(url)

    @app.job(name="shop.send_receipt", queue="emails")
    def send_receipt(order_id: int, email: str) -> str:
        time.sleep(0.05)
        return f"receipt for order {order_id} sent to {email}"

    @app.job(name="shop.charge_card", retries=0)
    def charge_card(order_id: int, amount_cents: int) -> None:
        if order_id % 10 == 4:
            raise ValueError(f"card declined for order {order_id}: insufficient funds")

    @app.job(name="shop.fetch_exchange_rates", retries=3, retry_delays=[0.5, 3600, 7200])
    def fetch_exchange_rates(currency: str) -> None:
        raise TimeoutError(f"rates.example.com did not answer for {currency} within 10 s")

    @app.job(name="shop.rebuild_search_index", queue="critical")
    def rebuild_search_index(shard: int) -> None:
        release.wait(120)

    @app.job(name="shop.build_report")
    def build_report(kind: str) -> int:
        return 42

    return app


def seed(app: Backburner) -> str:
    """Create jobs, continuations, delayed and recurring jobs; return the id of a job that fails."""
    failing = ""
    for order_id in range(1, 13):
        charge = app.enqueue("shop.charge_card", order_id, 1999 + order_id * 100)
        app.continue_with(charge, "shop.send_receipt", order_id, f"customer{order_id}@example.com")
        if order_id == 4:
            failing = charge
    app.enqueue("shop.fetch_exchange_rates", "EUR")
    app.enqueue("shop.rebuild_search_index", 3)
    app.delete(app.enqueue("shop.build_report", "obsolete"))

    later = app.schedule(3600, "shop.charge_card", 101, 4900)
    app.continue_with(later, "shop.send_receipt", 101, "customer101@example.com")
    for kind in ("refunds", "returns", "payouts"):
        app.options(queue="reports").enqueue("shop.build_report", kind)

    app.recurring.add_or_update("reports/nightly-sales", "shop.build_report", "0 2 * * *",
                                args=["sales"], tz="Europe/Berlin")
    app.recurring.add_or_update("reports/weekly-stock", "shop.build_report", "30 6 * * MON",
                                args=["stock"], tz="America/New_York")
    app.recurring.add_or_update("rates/every-15-min", "shop.fetch_exchange_rates", "*/15 * * * *",
                                args=["USD"])
    app.recurring.trigger("reports/nightly-sales")
    return failing


def feed(app: Backburner, stop: threading.Event) -> None:
    """Enqueue a charge every 0.3 s until ``stop`` is set, so the live graph has data."""
    order_id = 200
    while not stop.wait(0.3):
        order_id += 1
        app.enqueue("shop.charge_card", order_id, 2500)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(app: Backburner) -> Iterator[str]:
    """Serve the dashboard with uvicorn in a thread; yield its base URL."""
    config = uvicorn.Config(app.dashboard(), host="127.0.0.1", port=free_port(),
                            log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 20 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def take_screenshots(base_url: str, pages: dict[str, str], out: Path) -> None:
    """Save one PNG of the viewport per page; raise if a page does not respond with 200."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport=VIEWPORT)
        for name, path in pages.items():
            tab.set_viewport_size(WIDE_VIEWPORT if path == "/recurring" else VIEWPORT)
            response = tab.goto(base_url + path)
            if response is None or response.status != 200:
                status = None if response is None else response.status
                raise RuntimeError(f"{path} responded with HTTP {status}, expected 200")
            # The overview's realtime graph starts after two refreshes of its numbers.
            tab.wait_for_timeout(SETTLE_MS if path == "/" else 300)
            target = out / f"{name}.png"
            tab.screenshot(path=str(target))
            overflow = tab.evaluate("Math.max(...[...document.querySelectorAll('table')].map("
                                    "t => t.parentElement.scrollWidth - t.parentElement.clientWidth), 0)")
            if overflow > 0:
                logger.warning("%s: a table is %d px wider than its container", path, overflow)
            logger.info("saved %s (%d KB)", target, target.stat().st_size // 1024)
        browser.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    # The seeded jobs fail on purpose, and the server logs each final failure as an error.
    logging.getLogger("backburner").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images",
                        help="folder for the PNG files (default docs/images)")
    options = parser.parse_args()

    release, stop_feeding = threading.Event(), threading.Event()
    with tempfile.TemporaryDirectory(prefix="backburner-screenshots-") as folder:
        app = make_app(f"sqlite:///{folder}/shop.db", release)
        try:
            failing = seed(app)
            feeder = threading.Thread(target=feed, args=(app, stop_feeding), daemon=True)
            with app.server(queues=["critical", "default", "emails"], workers=4,
                            schedule_poll_interval=0.2):
                feeder.start()
                time.sleep(3)
                pages = {"dashboard-overview": "/", "dashboard-failed": "/jobs/failed",
                         "dashboard-job-details": f"/jobs/details/{failing}",
                         "dashboard-recurring": "/recurring"}
                with serve(app) as base_url:
                    take_screenshots(base_url, pages, options.out)
                stop_feeding.set()
                release.set()
            feeder.join(timeout=5)
        finally:
            app.close()


if __name__ == "__main__":
    main()
