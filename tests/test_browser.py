"""The demo report as a person sees it: headless Chromium loads it, every image renders, no console error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import REPO, run_snakemake

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def demo_report(tmp_path_factory) -> Path:
    """README command 1's pipeline: the default config.yaml, run to reports/report.html."""
    work = tmp_path_factory.mktemp("demo")
    shutil.copy(REPO / "config.yaml", work / "config.yaml")
    run_snakemake(work, configfile=work / "config.yaml", timeout=1500)
    return work / "reports" / "report.html"


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_demo_report_renders_in_chromium(demo_report, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(demo_report.as_uri())
        images = page.evaluate(
            "Array.from(document.images).map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0}))"
        )
        headings = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        tables = page.evaluate("document.querySelectorAll('table.results').length")
        screenshot = tmp_path / "report.png"
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert not errors, errors
    assert len(images) >= 10
    broken = [i["alt"] for i in images if not i["ok"]]
    assert not broken, broken
    assert headings[:3] == ["What was run", "Datasets", "Loss Function Assessment (Figure 2)"]
    assert tables == 2
    assert screenshot.stat().st_size > 100_000
