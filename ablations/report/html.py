"""REPORT.html: the page's blocks as one self-contained HTML file that opens offline.

No external CSS, script or font: the style sheet is inline, and every figure's SVG is embedded
as a data URI (the PNG where no SVG was drawn), so the file can be mailed or moved on its own;
links to tables/, figures/ and export/ still work beside the report folder. Collapsed sections
are <details> elements: they open without JavaScript, and print opened. Sections and headings
of level 2 make the table of contents. The same blocks give the same bytes (no clock, no random ids).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from ablations.report.blocks import Answer, Block, Bullets, Facts, Figure, Heading, Paragraph, Section, Table
from ablations.report.format import html_table, humanize

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       max-width: 76rem; margin: 1rem auto; padding: 0 1.5rem; }
h1, h2, h3 { line-height: 1.25; } h1 { font-size: 1.6rem; margin: .5rem 0; }
h2 { margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
.answer { display: grid; grid-template-columns: minmax(0, 11fr) minmax(0, 9fr); gap: 1.5rem; align-items: start; }
.answer figure { margin: 0; } .answer ul { margin: 0; padding-left: 1.1rem; font-size: 14px; line-height: 1.4; }
.answer li { margin-bottom: .3rem; }
@media (max-width: 900px) { .answer { grid-template-columns: 1fr; } }
details { margin: .6rem 0; } details > summary { cursor: pointer; }
details > summary h2 { display: inline; border: 0; font-size: 1.2rem; }
details.section { border-top: 1px solid #d0d7de; padding-top: .4rem; }
@media print { details::details-content { content-visibility: visible; display: contents; }
               .scroll { overflow: visible; } thead th { position: static; } }
code { font: 0.9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f3f4f6;
       padding: .1em .3em; border-radius: 3px; }
nav.toc { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .4rem 1rem; font-size: 13px;
          margin: 1rem 0; }
.scroll { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: .25rem .6rem; vertical-align: top; text-align: left; }
td[style] { white-space: nowrap; }  /* numbers (the only cells with an inline alignment) never break */
thead th { background: #eef1f4; position: sticky; top: 0; }
tbody tr:nth-child(even) { background: #fafbfc; }
table.facts th { text-align: left; background: #eef1f4; white-space: nowrap; }
p.files { font-size: 13px; color: #57606a; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 13px; color: #57606a; max-width: 60rem; }
"""


def to_html(blocks: list[Block], folder: Path) -> str:
    """The page; `folder` is where the report lives (the figures' PNGs are read from it to embed)."""
    ids = _ids(blocks)
    title = next((b.text for b in blocks if isinstance(b, Heading) and b.level == 1), "Report")
    body = [_block(b, ids, folder) for b in blocks]
    first_section = next((i for i, b in enumerate(blocks) if isinstance(b, Section)), None)
    if first_section is not None:  # the contents go after the answer, before the evidence
        body.insert(first_section, _contents(blocks, ids))
    return "\n".join(['<!DOCTYPE html>', '<html lang="en">', "<head>", '<meta charset="utf-8">',
                      '<meta name="viewport" content="width=device-width, initial-scale=1">',
                      f"<title>{html.escape(_plain(title))}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
                      *body, "</body>", "</html>", ""])


def _block(b: Block, ids: dict[int, str], folder: Path) -> str:
    match b:
        case Heading(level, text):
            return f'<h{level} id="{ids[id(b)]}">{inline(text)}</h{level}>'
        case Paragraph(text):
            return f"<p>{inline(text)}</p>"
        case Bullets(items):
            return "<ul>\n" + "\n".join(f"<li>{inline(item)}</li>" for item in items) + "\n</ul>"
        case Facts(rows):
            cells = "\n".join(f"<tr><th>{inline(k)}</th><td>{inline(v)}</td></tr>" for k, v in rows)
            return f'<div class="scroll"><table class="facts">\n<tbody>\n{cells}\n</tbody>\n</table></div>'
        case Table():
            links = " ".join(f'<a href="{html.escape(path)}">{f}</a>' for f, path in b.links)
            note = f"{inline(b.note)} " if b.note else ""
            if not len(b.frame):
                return f'<p class="files">{note}Files: {links}</p>\n<p><em>(no rows)</em></p>'
            table = f'<div class="scroll">{html_table(humanize(b.first, b.labels))}</div>'
            if b.compact and len(b.first.columns) < len(b.frame.columns):
                table += (f'\n<details><summary>All columns</summary><div class="scroll">'
                          f"{html_table(humanize(b.frame, b.labels))}</div></details>")
            return f'<p class="files">{note}Files: {links}</p>\n{table}'
        case Figure(src, alt, caption, svg):
            image = f'<img src="{_embed(folder, svg, src)}" alt="{html.escape(alt)}">'
            links = " ".join(f'<a href="{html.escape(path)}">{kind}</a>' for kind, path in (("SVG", svg), ("PNG", src))
                             if path)
            text = f"<figcaption>{inline(caption)} {links}</figcaption>" if caption else ""
            return f"<figure>{image}{text}</figure>"
        case Section(title, blocks, collapsed, level):
            inner = "\n".join(_block(x, ids, folder) for x in blocks)
            heading = f'<h{level} id="{ids[id(b)]}">{inline(title)}</h{level}>'
            if collapsed:
                return f'<details class="section">\n<summary>{heading}</summary>\n{inner}\n</details>'
            return f"<section>\n{heading}\n{inner}\n</section>"
        case Answer(blocks):
            return '<div class="answer">\n' + "\n".join(_block(x, ids, folder) for x in blocks) + "\n</div>"
    raise TypeError(f"not a page block: {b!r}")


def _embed(folder: Path, svg: str, png: str) -> str:
    """The figure as a data URI (the page stands alone): the SVG where there is one, else the PNG;
    a missing file stays a relative link."""
    for src, kind in ((svg, "image/svg+xml"), (png, "image/png")):
        if src and (folder / src).is_file():
            return f"data:{kind};base64," + base64.b64encode((folder / src).read_bytes()).decode("ascii")
    return html.escape(png)


def _walk(blocks: list[Block]) -> list[Block]:
    """Every block in page order, those inside sections and the answer included."""
    out: list[Block] = []
    for b in blocks:
        out.append(b)
        if isinstance(b, (Section, Answer)):
            out += _walk(b.blocks)
    return out


def _title(b: Block) -> str | None:
    return b.text if isinstance(b, Heading) else b.title if isinstance(b, Section) else None


def _contents(blocks: list[Block], ids: dict[int, str]) -> str:
    """One line of links to the level-2 headings and sections, in page order."""
    links = [f'<a href="#{ids[id(b)]}">{inline(_title(b))}</a>' for b in _walk(blocks)
             if _title(b) is not None and getattr(b, "level", 0) == 2]
    return '<nav class="toc"><strong>Contents:</strong> ' + " · ".join(links) + "</nav>"


def _ids(blocks: list[Block]) -> dict[int, str]:
    """A unique, stable anchor per heading and section (keyed by the block object), from its words."""
    ids: dict[int, str] = {}
    seen: set[str] = set()
    for b in _walk(blocks):
        title = _title(b)
        if title is None:
            continue
        base = re.sub(r"[^a-z0-9]+", "-", _plain(title).lower()).strip("-") or "section"
        anchor, n = base, 2
        while anchor in seen:
            anchor, n = f"{base}-{n}", n + 1
        seen.add(anchor)
        ids[id(b)] = anchor
    return ids


# ---- inline marks --------------------------------------------------------------------------
_CODE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")


def inline(text: str) -> str:
    """The reading's inline marks as HTML; everything else escaped. Code spans are taken first, so
    an asterisk inside `a * b` is not emphasis."""
    parts = _CODE.split(text)  # even indices: prose; odd: code
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
            continue
        prose = html.escape(part, quote=False)
        prose = _LINK.sub(lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', prose)
        prose = _BOLD.sub(r"<strong>\1</strong>", prose)
        out.append(_ITALIC.sub(r"<em>\1</em>", prose))
    return "".join(out)


def _plain(text: str) -> str:
    """Text without its marks, for the <title> and anchors."""
    return re.sub(r"[`*]", "", _LINK.sub(r"\1", text))
