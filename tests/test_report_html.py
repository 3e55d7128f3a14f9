"""REPORT.html in a real browser: a report written from a real store, opened offline by headless Chromium.

Every figure must decode (naturalWidth > 0), every table must render with its header row, the page
must log no console error and ask for nothing outside the file, and the HTML must say what
REPORT.md says (same headings, same tables). Chromium comes from the system (`apt-get install
chromium`); these tests skip, saying so, only where none is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report_store import build_store

from ablations.report.publish import write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Root (CI containers) cannot use Chromium's sandbox; the page is our own file.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]


def chromium() -> str | None:
    given = os.environ.get("ABLATIONS_CHROMIUM")
    return given if given else next((p for p in map(shutil.which, BROWSERS) if p), None)


needs_chromium = pytest.mark.skipif(chromium() is None, reason="no Chromium found (apt-get install chromium, "
                                    "or set ABLATIONS_CHROMIUM to a Chromium or Chrome binary)")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("html")
    build_store(results)  # 2 x 2 x 2 cells x 3 seeds, plus a failed and a diverged run
    paths = write_report(results, results)
    assert paths[-2:] == [results / "REPORT.html", results / "REPORT.md"]
    return results


def artifacts(tmp_path: Path) -> Path:
    """Where screenshots and PDFs go: $ABLATIONS_ARTIFACTS when CI sets it (so the run keeps them), else tmp."""
    folder = Path(os.environ.get("ABLATIONS_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_html_is_self_contained_and_says_what_the_markdown_says(report: Path) -> None:
    page = (report / "REPORT.html").read_text()
    md = (report / "REPORT.md").read_text()
    # nothing is fetched from anywhere: no external script, style sheet, font or image
    assert not re.search(r"<script|<link|@import|(src|href)=\"(https?:)?//", page)
    # SVG in the page, PNG in the Markdown, one for one
    assert page.count('src="data:image/svg+xml;base64,') == md.count("![") == md.count(".png)")
    # the same sections in the same order: headings and collapsed sections alike
    md_titles = re.findall(r"^#{2,3} (.+)$|^<details><summary><b>(.+)</b></summary>$", md, flags=re.M)
    html_titles = re.findall(r"<h[23] id=\"[^\"]+\">(.+?)</h[23]>", page)
    assert [re.sub(r"<[^>]+>", "", h) for h in html_titles] == [(a or b).replace("`", "") for a, b in md_titles]
    # one HTML table per Markdown table, each with its header row
    assert page.count("<thead>") == len(re.findall(r"^\|-", md, flags=re.M))
    assert 'href="#per-cell"' in page and '<details class="section">' in page
    # the answer comes first: the first figure before the first table, in both renderings
    assert page.index("<img") < page.index("<table") and md.index("![") < md.index("\n|")


def test_latex_tables_carry_caption_label_and_right_aligned_numbers(report: Path) -> None:
    tex = (report / "tables" / "anova.tex").read_text()
    assert "\\caption{Analysis of variance}" in tex and "\\label{tab:anova}" in tex and "\\toprule" in tex
    columns = re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1)
    assert columns[0] == "l" and set(columns[1:-1]) == {"r"}  # term is text, df..p (HC3) numbers
    fragment = (report / "tables" / "cells.html").read_text()
    assert fragment.startswith("<table>") and '<th style="text-align: right">n</th>' in fragment


def browse(report: Path, run) -> object:
    """Open the page in headless Chromium at 1280x800, offline; `run(page)` returns what it measures,
    with the console errors and any request that left the file."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright drives Chromium: pip install -e '.[test]'")
    errors: list[str] = []
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=FLAGS[1:])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto((report / "REPORT.html").as_uri(), wait_until="load")
            result = run(page)
        finally:
            browser.close()
    assert errors == [] and outside == []
    return result


@needs_chromium
def test_the_answer_is_above_the_fold_and_nothing_overflows_at_1280(report: Path, tmp_path: Path) -> None:
    shot = artifacts(tmp_path) / "report-1280x800.png"

    def measure(page):
        first = page.eval_on_selector("img", "i => { const r = i.getBoundingClientRect(); "
                                      "return {alt: i.alt, top: r.top, bottom: r.bottom, width: r.width}; }")
        lines = page.eval_on_selector_all(".answer li", "els => els.map(li => li.getBoundingClientRect().bottom)")
        page.screenshot(path=str(shot))
        closed = page.evaluate("() => ({scroll: document.documentElement.scrollWidth, view: window.innerWidth})")
        page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
        page.wait_for_timeout(200)
        images = page.eval_on_selector_all("img", "els => els.map(i => [i.alt, i.complete, i.naturalWidth])")
        opened = page.evaluate("() => ({scroll: document.documentElement.scrollWidth, view: window.innerWidth})")
        return first, lines, closed, opened, images

    first, lines, closed, opened, images = browse(report, measure)
    assert first["alt"] == "What each factor does" and first["top"] >= 0 and first["bottom"] <= 800, first
    assert first["width"] > 400  # visible at a readable size, not a thumbnail
    assert 1 <= len(lines) <= 10 and max(lines) <= 800, lines  # the reading, every line above the fold
    assert closed["scroll"] <= closed["view"] and opened["scroll"] <= opened["view"], (closed, opened)
    assert len(images) >= 6 and all(complete and width > 0 for _, complete, width in images), images
    assert shot.stat().st_size > 10_000


@needs_chromium
def test_every_table_renders_with_its_header_and_the_contents_resolve(report: Path) -> None:
    def measure(page):
        page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
        tables = page.eval_on_selector_all("table:not(.facts)", """els => els.map(t => ({
            header: [...t.querySelectorAll('thead th')].map(th => th.textContent),
            height: t.getBoundingClientRect().height, rows: t.querySelectorAll('tbody tr').length}))""")
        align = page.evaluate("""() => {
            const t = document.querySelector('#per-cell ~ .scroll table');
            const n = [...t.querySelectorAll('thead th')].findIndex(th => th.textContent === 'n');
            return [t.rows[1].cells[0], t.rows[1].cells[n]].map(c => getComputedStyle(c).textAlign);
        }""")
        anchors = page.evaluate("""() => [...document.querySelectorAll('a[href^="#"]')]
            .filter(a => !document.getElementById(a.getAttribute('href').slice(1))).map(a => a.href)""")
        return tables, align, anchors

    tables, align, anchors = browse(report, measure)
    assert len(tables) >= 15
    for t in tables:
        assert t["header"] and all(t["header"]) and t["rows"] > 0 and t["height"] > 20, t
    assert align[0] in ("start", "left") and align[1] == "right"  # text reads left, numbers line up right
    assert anchors == [], "table of contents links to a missing heading"


@needs_chromium
def test_screenshot_and_pdf_of_a_real_report(report: Path, tmp_path: Path) -> None:
    from PIL import Image

    folder = artifacts(tmp_path)
    shot, pdf = folder / "report-full.png", folder / "report.pdf"
    proc = subprocess.run([chromium(), *FLAGS, f"--screenshot={shot}", "--window-size=1280,2400",
                           (report / "REPORT.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    with Image.open(shot) as img:
        assert img.size == (1280, 2400)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    # a page of text, tables and a figure has thousands of colours; a blank or error page a handful
    assert colours is not None and len(colours) > 500, len(colours or [])
    proc = subprocess.run([chromium(), *FLAGS, "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                           (report / "REPORT.html").as_uri()], capture_output=True, text=True, timeout=120)
    data = pdf.read_bytes() if pdf.is_file() else b""
    assert data.startswith(b"%PDF") and len(data) > 50_000, proc.stderr[-2000:]
    # the collapsed sections print opened: the evidence makes many pages, not the one screen of the answer
    assert data.count(b"/Type /Page\n") + data.count(b"/Type /Page ") + data.count(b"/Type/Page") >= 4
