"""The report page as content objects, built once and rendered twice: REPORT.md and REPORT.html.

`page.sections` decides what the page says; this module and `html` only decide how it looks.
Text inside a block may carry the few inline marks the reading uses (`code`, **bold**, *italic*,
[links](path)): Markdown keeps them as they are, HTML turns them into tags. A collapsed section
is a <details> element in both (GitHub renders it in Markdown), so both read in the same order
and both open without JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ablations.report.format import markdown


@dataclass(frozen=True)
class Heading:
    level: int  # 1 is the page title; 2 and 3 go into the HTML table of contents
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Facts:
    """Named facts (what was run, on what, when): a bulleted list in Markdown, a two-column table in HTML."""

    rows: list[tuple[str, str]]


@dataclass(frozen=True)
class Table:
    name: str  # the file name under tables/
    frame: pd.DataFrame  # the numbers; the renderers humanize them with `labels`
    labels: dict[str, str] | None
    note: str
    formats: tuple[str, ...]
    compact: tuple[str, ...] = ()  # the columns shown at first; the others behind an "all columns" toggle

    @property
    def first(self) -> pd.DataFrame:
        """The frame as first shown: the compact columns where they are given."""
        keep = [c for c in self.frame.columns if c in self.compact or _merged_into(c, self.compact)]
        return self.frame[keep] if self.compact else self.frame

    @property
    def links(self) -> list[tuple[str, str]]:
        return [(f, f"tables/{self.name}.{f}") for f in self.formats]


@dataclass(frozen=True)
class Figure:
    src: str  # the PNG, relative to the report folder: what Markdown shows
    alt: str
    caption: str = ""  # empty: the image stands alone
    svg: str = ""  # the vector copy: what the HTML page shows, and linked after the caption


@dataclass(frozen=True)
class Section:
    """A titled part of the page; `collapsed` puts it behind a <details> toggle."""

    title: str
    blocks: list = field(default_factory=list)
    collapsed: bool = False
    level: int = 2


@dataclass(frozen=True)
class Answer:
    """The answer at the top: side by side in HTML (figure beside the reading), one after the other in Markdown."""

    blocks: list = field(default_factory=list)


Block = Heading | Paragraph | Bullets | Facts | Table | Figure | Section | Answer


@dataclass(frozen=True)
class Plot:
    """A figure as drawn (or why not): what `figures` returns and the page places."""

    name: str
    title: str
    caption: str = ""
    paths: tuple[Path, ...] = ()
    skipped: str | None = None  # why it was not drawn

    def blocks(self) -> list:
        """The figure as page blocks (PNG for Markdown, SVG for HTML), or why it was not drawn."""
        if self.skipped:
            return [Paragraph(f"*{self.title}: not drawn: {self.skipped}.*")]
        return [Figure(f"figures/{self.name}.png", self.title, f"**{self.title}.** {self.caption}",
                       f"figures/{self.name}.svg")]


def _merged_into(column: str, compact: tuple[str, ...]) -> bool:
    """A std or interval column goes where its mean goes."""
    return any(column.startswith(f"{c}_") and column.endswith(("_std", "_ci_low", "_ci_high")) for c in compact)


def to_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for b in blocks:
        lines += _markdown(b) + [""]
    return "\n".join(lines).rstrip() + "\n"


def _markdown(b: Block) -> list[str]:
    match b:
        case Heading(level, text):
            return [f"{'#' * level} {text}"]
        case Paragraph(text):
            return [text]
        case Bullets(items):
            return [f"- {item}" for item in items]
        case Facts(rows):
            return [f"- **{k}**: {v}" for k, v in rows]
        case Table():
            links = " ".join(f"[{f}]({path})" for f, path in b.links)
            files = f"{b.note} Files: {links}" if b.note else f"Files: {links}"
            if not len(b.frame):
                return [files, "", "*(no rows)*"]
            out = [files, "", markdown(b.first, b.labels)]
            if b.compact and len(b.first.columns) < len(b.frame.columns):
                out += ["", "<details><summary>All columns</summary>", "", markdown(b.frame, b.labels), "",
                        "</details>"]
            return out
        case Figure(src, alt, caption, svg):
            image = [f"![{alt}]({src})"]
            if not caption:
                return image
            return [*image, "", f"{caption} [SVG]({svg})" if svg else caption]
        case Section(title, blocks, collapsed, level):
            inner = [line for block in blocks for line in [*_markdown(block), ""]]
            if collapsed:
                return [f"<details><summary><b>{title}</b></summary>", "", *inner, "</details>"]
            return [f"{'#' * level} {title}", "", *inner[:-1]]
        case Answer(blocks):
            return [line for block in blocks for line in [*_markdown(block), ""]][:-1]
    raise TypeError(f"not a page block: {b!r}")
