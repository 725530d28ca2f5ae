"""``report.html``: one self-contained page (CSS inline, PNG plots embedded as base64).

Self-contained so it survives being mailed, attached to a ticket or copied off the cluster
without its ``plots/`` folder. No JavaScript, no external fonts or scripts.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from hsd.reporting.document import Bullets, Document, Figure, Heading, Paragraph, Preformatted, Table

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1400px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #ddd; padding-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #eee; }
h3 { font-size: 1.05em; }
div.scroll { overflow-x: auto; }  /* a wide table scrolls inside the page, never cut off */
table { border-collapse: collapse; margin: .6em 0 1em; font-size: .82em; }
th, td { border: 1px solid #ccc; padding: .25em .55em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: .3em; }
code, pre { font-family: Menlo, Consolas, monospace; font-size: .9em; background: #f6f6f6; }
pre { padding: .6em; overflow-x: auto; white-space: pre-wrap; }
figure { margin: 1em 0; } figcaption { font-size: .85em; color: #555; }
img { max-width: 100%; border: 1px solid #eee; }
td.num { white-space: nowrap; }
"""
# A cell holding only numbers (an estimate, an interval, a count, a percentage) is kept on one line.
_NUMERIC = re.compile(r"^[-+]?(\d+(\.\d+)?%?|n/a)( \[[-+]?(\d+\.\d+|n/a), [-+]?(\d+\.\d+|n/a)\])?$")


def _inline(text: str) -> str:
    """Escape, then turn `code` spans into <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _cell(text: str) -> str:
    return f'<td class="num">{_inline(text)}</td>' if _NUMERIC.match(text) else f"<td>{_inline(text)}</td>"


def _table(block: Table) -> str:
    head = "".join(f"<th>{_inline(h)}</th>" for h in block.headers)
    body = "".join("<tr>" + "".join(_cell(str(c)) for c in row) + "</tr>" for row in block.rows)
    caption = f"<caption>{_inline(block.caption)}</caption>" if block.caption else ""
    return f'<div class="scroll"><table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _figure(block: Figure) -> str:
    data = base64.b64encode(Path(block.path).read_bytes()).decode("ascii")
    alt = html.escape(block.caption, quote=True)
    return (f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_inline(block.caption)}</figcaption></figure>")


def render(doc: Document) -> str:
    parts = []
    for block in doc.blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            parts.append(_table(block))
        elif isinstance(block, Figure):
            parts.append(_figure(block))
        elif isinstance(block, Preformatted):
            parts.append(f"<pre>{html.escape(block.text)}</pre>")
        else:
            raise TypeError(f"no HTML for {type(block).__name__}")
    title = html.escape(doc.title)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{CSS}</style></head>\n<body><h1>{title}</h1>\n" + "\n".join(parts) + "\n</body></html>\n")
