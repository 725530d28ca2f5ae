"""``report.md``: the report's blocks as GitHub-flavoured Markdown (tables, linked PNGs)."""

from __future__ import annotations

import os
from pathlib import Path

from hsd.reporting.document import Bullets, Document, Figure, Heading, Paragraph, Preformatted, Table


def _cell(text: str) -> str:
    """A table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(block: Table) -> list[str]:
    lines = [f"*{block.caption}*", ""] if block.caption else []
    lines.append("| " + " | ".join(_cell(h) for h in block.headers) + " |")
    lines.append("|" + "|".join("---" for _ in block.headers) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
    return lines


def render(doc: Document, out_dir: Path) -> str:
    """Markdown text; figure links are relative to ``out_dir`` (where report.md is written)."""
    lines = [f"# {doc.title}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            lines.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            lines.append(block.text)
        elif isinstance(block, Bullets):
            lines += [f"- {' '.join(item.split())}" for item in block.items]
        elif isinstance(block, Table):
            lines += _table(block)
        elif isinstance(block, Figure):
            rel = Path(os.path.relpath(block.path, out_dir)).as_posix()
            lines.append(f"![{block.caption}]({rel})")
        elif isinstance(block, Preformatted):
            lines += ["```", block.text.rstrip("\n"), "```"]
        else:
            raise TypeError(f"no Markdown for {type(block).__name__}")
        lines.append("")
    return "\n".join(lines)
