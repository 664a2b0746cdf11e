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


def _look(report: Path, screenshot: Path) -> dict:
    """Open ``report`` in headless Chromium: console errors, images (rendered or not), headings, result tables,
    and a full-page screenshot."""
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
        page.goto(report.as_uri())
        seen = page.evaluate("""() => ({
            images: Array.from(document.images).map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0})),
            h2: Array.from(document.querySelectorAll('h2')).map(h => h.textContent),
            h3: Array.from(document.querySelectorAll('h3')).map(h => h.textContent),
            tables: document.querySelectorAll('table.results').length,
            imbalance: document.querySelectorAll('table.results-imbalance').length})""")
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return {**seen, "errors": errors, "broken": [i["alt"] for i in seen["images"] if not i["ok"]]}


NEW_SECTIONS = ("Sensitivity, specificity, average precision and calibration", "Shot groups",
                "Single-label reading: top-1 accuracy, balanced accuracy, macro F1")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_demo_report_renders_in_chromium(demo_report, tmp_path):
    seen = _look(demo_report, tmp_path / "report.png")
    assert not seen["errors"], seen["errors"]
    assert len(seen["images"]) >= 10 and not seen["broken"], seen["broken"]
    assert seen["h2"][:3] == ["What was run", "Datasets", "Loss Function Assessment (Figure 2)"]
    assert seen["tables"] == seen["imbalance"] == 2
    assert all(any(h.startswith(s) for h in seen["h3"]) for s in NEW_SECTIONS), seen["h3"]
    assert (tmp_path / "report.png").stat().st_size > 100_000


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_a_single_label_release_report_renders_in_chromium(releases_run, tmp_path):
    seen = _look(releases_run / "reports" / "report.html", tmp_path / "report.png")
    assert not seen["errors"], seen["errors"]
    assert not seen["broken"], seen["broken"]
    assert seen["tables"] == seen["imbalance"] == 5
    assert all(any(h.startswith(s) for h in seen["h3"]) for s in NEW_SECTIONS), seen["h3"]
