"""The report page as content objects, built once and rendered twice: REPORT.md and REPORT.html.

`page.sections` decides what the page says; this module and `html` only decide how it looks.
Text inside a block may carry the few inline marks the reading uses (`code`, **bold**, *italic*,
[links](path)): Markdown keeps them as they are, HTML turns them into tags.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def links(self) -> list[tuple[str, str]]:
        return [(f, f"tables/{self.name}.{f}") for f in self.formats]


@dataclass(frozen=True)
class Figure:
    src: str  # relative to the report folder
    alt: str
    caption: str = ""  # empty: the image stands alone
    svg: str = ""  # the vector copy, linked after the caption


Block = Heading | Paragraph | Bullets | Facts | Table | Figure


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
            return [files, "", markdown(b.frame, b.labels) if len(b.frame) else "*(no rows)*"]
        case Figure(src, alt, caption, svg):
            image = [f"![{alt}]({src})"]
            if not caption:
                return image
            return [*image, "", f"{caption} [SVG]({svg})" if svg else caption]
    raise TypeError(f"not a page block: {b!r}")
