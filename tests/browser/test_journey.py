"""A user's journey in headless Chromium against a real `streamlit run app.py` and a real worker.

Launch Iris under p, w and p -> w -> p at the smoke budget, watch the Runs page's live table
move them to done without reloading, then read the Compare grid and one test example under
two strategies side by side. Screenshots of every page land in docs/screenshots (the README's)
and test-artifacts/. Real runs of the embedded model on CPU: this takes minutes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import select

from tests.processes import free_port, stop_group, wait_until_healthy

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STRATEGIES = ("p", "w", "p -> w -> p")
RUNS_TIMEOUT_S = 25 * 60
SCREENSHOTS = (ROOT / "docs" / "screenshots", ROOT / "test-artifacts")
VIEWPORT = {"width": 1440, "height": 900}


def worker_pids(db_url: str) -> list[int]:
    """Workers register as host:pid; the app started them in their own sessions (process groups)."""
    from db.models import Worker
    from db.session import session_factory

    with session_factory(db_url)() as session:
        return [int(worker_id.rsplit(":", 1)[1]) for worker_id in session.scalars(select(Worker.id))]


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(app URL, database URL) of a fresh dashboard that starts its own worker."""
    db_url = f"sqlite:///{tmp_path / 'studio.sqlite'}"
    port = free_port()
    env = {**os.environ, "BT_HOME": str(tmp_path / "home"), "BT_DATABASE_URL": db_url, "BT_AUTOSTART_WORKER": "1"}
    with open(tmp_path / "streamlit.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    app_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(app_url, server)
        yield app_url, db_url
    finally:
        stop_group(server.pid)
        for pid in worker_pids(db_url):
            stop_group(pid)
        shutil.copy(tmp_path / "streamlit.log", SCREENSHOTS[1] / "streamlit.log")


def shoot(page, name: str) -> None:
    """The whole page: the app scrolls inside its main block, so grow the window to fit it."""
    page.wait_for_timeout(1500)  # let charts finish drawing
    height = page.get_by_test_id("stMain").evaluate("main => main.scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], height)})
    page.wait_for_timeout(1000)
    for folder in SCREENSHOTS:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"))
    page.set_viewport_size(VIEWPORT)


def table_rows(page, index: int = 0) -> list[dict[str, str]]:
    """The rows of a st.dataframe, read from the accessible table the data grid keeps in the DOM."""
    grid = page.get_by_test_id("stDataFrame").nth(index)
    grid.locator("td").first.wait_for(state="attached")
    header = grid.locator("th").all_text_contents()
    cells = grid.locator("td").all_text_contents()
    return [dict(zip(header, cells[i:i + len(header)])) for i in range(0, len(cells), len(header))]


def open_page(page, title: str, heading: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    page.get_by_role("heading", name=heading).wait_for()


def test_launch_watch_compare_and_read_traces(studio):
    app_url, db_url = studio
    from playwright.sync_api import sync_playwright  # here: without Playwright this test fails, never skips

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(60_000)
        page.goto(app_url)
        page.get_by_role("heading", name="Launch an experiment").wait_for()
        selected = page.get_by_test_id("stMultiSelect").nth(1).inner_text()
        assert all(strategy in selected for strategy in STRATEGIES)  # the defaults are the journey's
        seeds = page.get_by_role("textbox", name="Seeds")
        assert seeds.input_value() == "0-2"  # the page proposes the paper's 3 seeds
        seeds.fill("0")  # one seed keeps the journey to 3 smoke runs
        seeds.press("Enter")
        page.get_by_test_id("stMetricValue").filter(has_text=re.compile(r"^3$")).wait_for()
        shoot(page, "launch")
        page.get_by_role("button", name="Queue experiment").click()
        page.get_by_text("with 3 runs").wait_for()
        page.get_by_role("link", name="Watch them on the Runs page").click()
        page.get_by_role("heading", name="Runs", exact=True).wait_for()

        page.evaluate("window.notReloaded = true")  # a reload would drop it
        seen = watch_runs_until_done(page)
        assert page.evaluate("window.notReloaded === true")
        assert "running" in seen, "the live table never showed a run in progress"
        shoot(page, "runs")

        open_page(page, "Compare", "Compare strategies")
        page.get_by_test_id("stDataFrame").first.wait_for()
        grid = table_rows(page)
        assert grid and set(STRATEGIES) <= set(grid[0]) and grid[0]["task"] == "iris"
        assert all(re.fullmatch(r"\d+\.\d ± \d+\.\d \[\d+\.\d, \d+\.\d\] 15×1( †)?", grid[0][s]) for s in STRATEGIES)
        assert "95% CI" in page.get_by_test_id("stMain").inner_text()
        shoot(page, "compare")

        open_page(page, "Traces", "Traces")
        add_run_to_traces(page, re.compile(r"^#\d+ p ·"))
        page.get_by_text("COMPLETION", exact=True).nth(1).wait_for()
        columns = page.get_by_test_id("stColumn").filter(has=page.get_by_text("COMPLETION", exact=True))
        assert columns.count() == 2
        page.get_by_text(re.compile(r"^Prompt: \d+ messages$")).first.click()  # show the rendered prompt
        page.get_by_text("SYSTEM", exact=True).first.wait_for()
        titles = page.get_by_test_id("stHeading").all_inner_texts()
        assert any(t.endswith("p → w → p") or t.endswith("p -> w -> p") for t in titles)
        shoot(page, "traces")

        open_page(page, "Prompts", "Prompts")
        page.get_by_text("INSTRUCTIONS", exact=True).first.wait_for()
        shoot(page, "prompts")
        browser.close()


def watch_runs_until_done(page) -> set[str]:
    """Poll the live runs table until every run is done; return every status it showed."""
    seen: set[str] = set()
    live_shot = False
    deadline = time.monotonic() + RUNS_TIMEOUT_S
    while time.monotonic() < deadline:
        statuses = [row["status"] for row in table_rows(page)]
        seen.update(statuses)
        assert not {"failed", "cancelled"} & set(statuses), f"a run ended badly: {statuses}"
        if "running" in statuses and not live_shot:
            shoot(page, "runs-live")
            live_shot = True
        if len(statuses) == len(STRATEGIES) and set(statuses) == {"done"}:
            return seen
        page.wait_for_timeout(3000)
    raise TimeoutError(f"runs not done after {RUNS_TIMEOUT_S}s; statuses seen: {seen}")


def add_run_to_traces(page, label: re.Pattern[str]) -> None:
    """Add the run whose label matches to the Traces page's runs multiselect."""
    page.get_by_test_id("stMultiSelect").first.click()
    page.get_by_role("option").filter(has_text=label).first.click()
    page.keyboard.press("Escape")
