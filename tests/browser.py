"""The console in a real browser: Debian's headless Chromium driven by selenium (no
browser download: the binary and driver are the Debian packages `make test` installs).

``python -m tests.browser`` (``make screenshots``) runs the time-compressed demo, opens
the console's pages once they have data and writes ``docs/console-*.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
PAGES = {
    "overview": "/console",
    "tenant": "/console/tenants/acme",
    "security": "/console/security",
}
DOCS = Path(__file__).resolve().parents[1] / "docs"


@dataclass(frozen=True)
class Loaded:
    title: str
    errors: list[str]  # SEVERE entries of the browser console
    charts: int  # inline SVG polylines drawn
    sections: list[str]  # the page's section headings
    external: list[str]  # resources fetched from anywhere but the page's origin


def driver() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or CHROMIUM
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1800"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium try to download one
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)


def load(browser: Any, base: str, path: str, screenshot: Path | None = None) -> Loaded:
    browser.get(base + path)
    time.sleep(0.3)
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    charts = len(browser.find_elements("css selector", "svg polyline"))
    sections = [h.text for h in browser.find_elements("css selector", "section h2")]
    origin = base.rstrip("/")
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    external = [r for r in resources if not str(r).startswith(origin)]
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(screenshot))
    return Loaded(browser.title, errors, charts, sections, external)


def open_console(base: str, screenshots: Path | None = None) -> dict[str, Loaded]:
    browser = driver()
    try:
        return {
            name: load(browser, base, path,
                       screenshots / f"console-{name}.png" if screenshots else None)
            for name, path in PAGES.items()
        }  # fmt: skip
    finally:
        browser.quit()


def main() -> None:
    """Screenshots of the console over the time-compressed demo, into docs/."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "VIGIL_DATA_DIR": f"{tmp}/.vigil", "VIGIL_WEB_PORT": "0"}
        up = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "up", "--demo", "--rate", "300", "--speed",
             "10", "--for", "150"],
            env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            stack = Path(tmp) / ".vigil" / "stack.json"
            while not stack.exists():
                time.sleep(1)
            base = f"http://127.0.0.1:{json.loads(stack.read_text())['web_port']}"
            time.sleep(110)  # the first round's incidents and a canary verdict
            urllib.request.urlopen(base + "/api/v1/views/overview", timeout=60).read()  # noqa: S310
            for name, page in open_console(base, DOCS).items():
                print(f"docs/console-{name}.png: {page.title} ({page.charts} chart lines)")
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=120)


if __name__ == "__main__":
    main()
