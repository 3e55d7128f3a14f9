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


def test_html_is_self_contained_and_says_what_the_markdown_says(report: Path) -> None:
    page = (report / "REPORT.html").read_text()
    md = (report / "REPORT.md").read_text()
    # nothing is fetched from anywhere: no external script, style sheet, font or image
    assert not re.search(r"<script|<link|@import|(src|href)=\"(https?:)?//", page)
    assert page.count('src="data:image/png;base64,') == md.count("![")
    headings = re.findall(r"^#{2,3} (.+)$", md, flags=re.M)
    shown = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<h[23] id=\"[^\"]+\">(.+?)</h[23]>", page)]
    assert shown == [h.replace("`", "") for h in headings]
    # one HTML table per Markdown table, each with its header row
    assert page.count("<thead>") == len(re.findall(r"^\|-", md, flags=re.M))
    assert "Contents" in page and 'href="#what-was-run"' in page


def test_latex_tables_carry_caption_label_and_right_aligned_numbers(report: Path) -> None:
    tex = (report / "tables" / "anova.tex").read_text()
    assert "\\caption{Analysis of variance}" in tex and "\\label{tab:anova}" in tex and "\\toprule" in tex
    columns = re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1)
    assert columns[0] == "l" and set(columns[1:-1]) == {"r"}  # term is text, df..p (HC3) numbers
    fragment = (report / "tables" / "cells.html").read_text()
    assert fragment.startswith("<table>") and '<th style="text-align: right">n</th>' in fragment


@needs_chromium
def test_every_figure_and_table_renders_without_console_errors(report: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright drives Chromium: pip install -e '.[test]'")
    errors: list[str] = []
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=FLAGS[1:])
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto((report / "REPORT.html").as_uri(), wait_until="load")
            images = page.eval_on_selector_all("img", "els => els.map(i => [i.alt, i.complete, i.naturalWidth])")
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
        finally:
            browser.close()
    assert len(images) >= 6 and all(complete and width > 0 for _, complete, width in images), images
    assert len(tables) >= 11
    for t in tables:
        assert t["header"] and all(t["header"]) and t["rows"] > 0 and t["height"] > 20, t
    assert align[0] in ("start", "left") and align[1] == "right"  # text reads left, numbers line up right
    assert anchors == [], "table of contents links to a missing heading"
    assert errors == [] and outside == []


@needs_chromium
def test_screenshot_of_a_real_report_is_not_blank(report: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "report.png"
    proc = subprocess.run([chromium(), *FLAGS, f"--screenshot={shot}", "--window-size=1280,2400",
                           (report / "REPORT.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    with Image.open(shot) as img:
        assert img.size == (1280, 2400)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    # a page of text, tables and a figure has thousands of colours; a blank or error page a handful
    assert colours is not None and len(colours) > 500, len(colours or [])
