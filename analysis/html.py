"""One self-contained HTML page: tables as HTML tables, figures as base64 PNG data URIs, inline
CSS; no scripts, no external files, nothing fetched."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from analysis import tables

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #ccc; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; margin: .6em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; }
th { background: #f0f0f0; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; }
.scroll { overflow-x: auto; }
.files, .note { color: #555; font-size: 13px; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-weight: 600; margin-bottom: .3em; }
code { background: #f4f4f4; padding: 0 3px; }
"""
NUMBER = re.compile(r"^-?\d+(\.\d+)?( ± \d+(\.\d+)?)?$")


def inline(text: str) -> str:
    """Escaped text, `code` spans kept as <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def table(df: pd.DataFrame) -> str:
    """The table as tables.to_markdown formats it (mean ± std, rounded), in HTML."""
    f = tables.formatted(df)
    head = "".join(f"<th>{html.escape(str(c)).replace('/', '/<wbr>')}</th>" for c in f.columns)
    rows = []
    for row in f.itertuples(index=False):
        cells = "".join(f'<td class="num">{html.escape(v)}</td>' if NUMBER.match(v) else f"<td>{html.escape(v)}</td>"
                        for v in map(str, row))
        rows.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(rows) + \
        "\n</tbody></table></div>"


def image(png: Path, alt: str, density: int = 2) -> str:
    """The PNG inline; shown at 1/density of its pixel width (marl.plots saves at 200 dpi: sharp
    on high-density screens, the figure's size in inches × 100 CSS pixels)."""
    raw = Path(png).read_bytes()
    width = int.from_bytes(raw[16:20], "big") // density if raw[:8] == b"\x89PNG\r\n\x1a\n" else 0
    size = f' width="{width}"' if width else ""
    data = base64.b64encode(raw).decode("ascii")
    return f'<img alt="{html.escape(alt, quote=True)}"{size} src="data:image/png;base64,{data}">'


class Page:
    """Sections added in order, rendered by `render`."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []

    def text(self, markdown_line: str) -> None:
        if markdown_line.strip():
            self.parts.append(f"<p>{inline(markdown_line.strip())}</p>")

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{inline(text)}</p>')

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{inline(text)}</h{level}>")

    def table(self, title: str, df: pd.DataFrame, note: str = "", files: str = "") -> None:
        self.heading(title, 2)
        if note:
            self.text(note)
        self.parts.append(table(df))
        if files:
            self.parts.append(f'<p class="files">Files: {inline(files)}</p>')

    def figure(self, title: str, png: Path) -> None:
        self.parts.append(f"<figure><figcaption>{inline(title)}</figcaption>{image(png, title)}</figure>")

    def render(self) -> str:
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f"<title>{html.escape(self.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
                f"<h1>{html.escape(self.title)}</h1>\n" + "\n".join(self.parts) + "\n</body>\n</html>\n")
