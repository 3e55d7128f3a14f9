"""REPORT.html: the page's blocks as one self-contained HTML file that opens offline.

No external CSS, script or font: the style sheet is inline, and every figure's PNG is embedded
as a data URI, so the file can be mailed or moved on its own; links to tables/, figures/ (SVG)
and export/ still work beside the report folder. Headings of level 2 and 3 make the table of
contents. The same blocks give the same bytes (no clock, no random ids).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from ablations.report.blocks import Block, Bullets, Facts, Figure, Heading, Paragraph, Table
from ablations.report.format import html_table, humanize

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       max-width: 72rem; margin: 2rem auto; padding: 0 1.5rem; }
h1, h2, h3 { line-height: 1.25; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
code { font: 0.9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f3f4f6;
       padding: .1em .3em; border-radius: 3px; }
nav.toc { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .5rem 1.5rem; }
nav.toc ul { margin: .2rem 0; padding-left: 1.2rem; }
.scroll { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: .25rem .6rem; vertical-align: top; text-align: left; }
td[style] { white-space: nowrap; }  /* numbers (the only cells with an inline alignment) never break */
thead th { background: #eef1f4; position: sticky; top: 0; }
tbody tr:nth-child(even) { background: #fafbfc; }
table.facts th { text-align: left; background: #eef1f4; white-space: nowrap; }
p.files { font-size: 13px; color: #57606a; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #57606a; max-width: 60rem; }
"""


def to_html(blocks: list[Block], folder: Path) -> str:
    """The page; `folder` is where the report lives (the figures' PNGs are read from it to embed)."""
    ids = _ids(blocks)
    title = next((b.text for b in blocks if isinstance(b, Heading) and b.level == 1), "Report")
    body: list[str] = []
    for i, b in enumerate(blocks):
        body.append(_block(b, ids.get(i, ""), folder))
        if isinstance(b, Heading) and b.level == 1:
            body.append(_contents(blocks, ids))
    return "\n".join(['<!DOCTYPE html>', '<html lang="en">', "<head>", '<meta charset="utf-8">',
                      '<meta name="viewport" content="width=device-width, initial-scale=1">',
                      f"<title>{html.escape(_plain(title))}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
                      *body, "</body>", "</html>", ""])


def _block(b: Block, anchor: str, folder: Path) -> str:
    match b:
        case Heading(level, text):
            return f'<h{level} id="{anchor}">{inline(text)}</h{level}>'
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
            table = (f'<div class="scroll">{html_table(humanize(b.frame, b.labels))}</div>' if len(b.frame)
                     else "<p><em>(no rows)</em></p>")
            return f'<p class="files">{note}Files: {links}</p>\n{table}'
        case Figure(src, alt, caption, svg):
            image = f'<img src="{_embed(folder / src, src)}" alt="{html.escape(alt)}">'
            svg_link = f' <a href="{html.escape(svg)}">SVG</a>' if svg else ""
            text = f"<figcaption>{inline(caption)}{svg_link}</figcaption>" if caption else ""
            return f"<figure>{image}{text}</figure>"
    raise TypeError(f"not a page block: {b!r}")


def _embed(path: Path, src: str) -> str:
    """A PNG as a data URI (the page stands alone); a missing file stays a relative link."""
    if not path.is_file():
        return html.escape(src)
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _contents(blocks: list[Block], ids: dict[int, str]) -> str:
    """Nested list of the level-2 headings with their level-3 headings under them."""
    groups: list[tuple[str, list[str]]] = []
    for i, b in enumerate(blocks):
        if isinstance(b, Heading) and b.level in (2, 3):
            link = f'<a href="#{ids[i]}">{inline(b.text)}</a>'
            if b.level == 2 or not groups:
                groups.append((link, []))
            else:
                groups[-1][1].append(link)
    items = [f"<li>{link}" + ("<ul>" + "".join(f"<li>{c}</li>" for c in children) + "</ul>" if children else "")
             + "</li>" for link, children in groups]
    return '<nav class="toc"><strong>Contents</strong>\n<ul>\n' + "\n".join(items) + "\n</ul></nav>"


def _ids(blocks: list[Block]) -> dict[int, str]:
    """A unique, stable anchor per heading, from its words."""
    ids: dict[int, str] = {}
    seen: set[str] = set()
    for i, b in enumerate(blocks):
        if isinstance(b, Heading):
            base = re.sub(r"[^a-z0-9]+", "-", _plain(b.text).lower()).strip("-") or "section"
            anchor, n = base, 2
            while anchor in seen:
                anchor, n = f"{base}-{n}", n + 1
            seen.add(anchor)
            ids[i] = anchor
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
