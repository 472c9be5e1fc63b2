"""The dashboard in a real headless browser: Debian's Chromium driven by Selenium through
Debian's chromedriver (nothing is downloaded), against a ``streamflow run`` job of 20
tasks found through ``streamflow status JOB --web``.

Checks that the page draws the job graph (every vertex, every subtask), that its values
update within 2 s, that a checkpoint row expands to every subtask, and that the browser
logs no error. Reports the page load time (goal: under 1 s) and saves a screenshot into
the test's tmp dir and, when ``STREAMFLOW_SCREENSHOT_DIR`` is set, there too.
``STREAMFLOW_CHROMIUM`` and ``STREAMFLOW_CHROMEDRIVER`` name other binaries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("STREAMFLOW_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STREAMFLOW_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1440,1200"]
VERTICES = ["events", "parse", "drop-refunds", "total-per-user", "slow-db"]


def cli(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamflow.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(0.1)


@pytest.fixture
def job_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "STREAMFLOW_HOME": str(tmp_path / "home")}


@pytest.fixture
def dashboard_job(tmp_path: Path, job_env: dict[str, str]) -> Iterator[str]:
    """The example job at parallelism 4, unchained (5 vertices, 20 tasks); its dashboard's
    address as ``streamflow status --web`` prints it."""
    args = [sys.executable, "-m", "streamflow.cli", "run", "examples.backpressure_dashboard:build", "-p", "4",
            "--job-name", "dash", "--web-port", "0", "--checkpoint-interval", "1",
            "--checkpoint-dir", str(tmp_path / "checkpoints"), "--metrics-interval", "0"]
    log = (tmp_path / "job.log").open("w")
    job = subprocess.Popen(args, cwd=REPO, env=job_env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        def address() -> str | None:
            assert job.poll() is None, (tmp_path / "job.log").read_text()
            done = cli("status", "dash", "--web", env=job_env)
            return done.stdout.strip() if done.returncode == 0 else None

        yield wait_for(address, 30, "the job registers its dashboard")
    finally:
        cli("cancel", "dash", env=job_env)
        try:
            job.wait(timeout=30)
        finally:
            if job.poll() is None:
                job.kill()
            log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    assert not missing, (
        f"{missing} not found: ./dev.sh test installs Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver), or name them with STREAMFLOW_CHROMIUM / STREAMFLOW_CHROMEDRIVER"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_dashboard_draws_the_graph_updates_every_second_and_loads_fast(
    dashboard_job: str, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    assert dashboard_job.startswith("http://127.0.0.1:")
    browser.get(dashboard_job)  # returns after the load event
    first_render = wait_for(lambda: browser.execute_script("return window.sfDashboard.firstRender"), 5,
                            "the page shows the job's values")
    loaded = browser.execute_script("return performance.getEntriesByType('navigation')[0].loadEventEnd")
    timing = {"load_event_ms": round(loaded), "first_values_ms": round(first_render)}
    (tmp_path / "dashboard-timing.json").write_text(json.dumps(timing))
    print(f"dashboard page load: {timing}")

    vertices = browser.find_elements(By.CSS_SELECTOR, "#graph g.vertex")
    assert [v.get_attribute("data-vertex") for v in vertices] == VERTICES
    cells = browser.find_elements(By.CSS_SELECTOR, "#graph rect.subtask")
    assert sorted(c.get_attribute("data-task") for c in cells) == sorted(f"{v}[{i}]" for v in VERTICES for i in range(4))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#graph g.edge")) == 4
    assert browser.find_element(By.ID, "job-status").text.lower() == "running"

    before = browser.execute_script("return [document.body.dataset.updates, document.body.dataset.updated]")
    after = wait_for(
        lambda: (lambda now: now if now[0] != before[0] and now[1] != before[1] else None)(
            browser.execute_script("return [document.body.dataset.updates, document.body.dataset.updated]")),
        2.0, "the values update")
    assert float(after[1]) > float(before[1])
    assert browser.find_element(By.ID, "fact-in").text.endswith("/s")

    row = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#checkpoint-rows tr.checkpoint"), 10,
                   "a checkpoint completes")[0]
    row.click()
    details = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#checkpoint-rows tr.detail .subtable tbody tr"),
                       3, "the checkpoint row expands")
    assert len(details) == 20  # one line per subtask

    time.sleep(1.5)  # let the charts hold a few points for the picture
    screenshot = tmp_path / "dashboard.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    shown = os.environ.get("STREAMFLOW_SCREENSHOT_DIR")
    if shown:
        Path(shown).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(shown) / "dashboard.png")
        shutil.copy(tmp_path / "dashboard-timing.json", Path(shown) / "dashboard-timing.json")
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
