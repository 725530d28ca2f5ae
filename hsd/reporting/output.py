"""Writing a report document: its plots first, then Markdown and HTML, each written atomically.

Shared by a run's report (:mod:`hsd.recipes.collate`) and the comparison (:mod:`hsd.recipes.compare`), so
neither imports the other for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from hsd.reporting import html, markdown, plots
from hsd.runs import atomic_write_text


def write_report(doc_dir: Path, full: dict[str, Any], build: Callable[[dict[str, Any], Path], Any]) -> list[Path]:
    """``build(full, doc_dir)`` draws the plots into ``doc_dir`` and returns the document."""
    doc = build(full, doc_dir)
    plots.finish_saves()  # plots drawn by forked processes (plots.forked_saves) are on disk before HTML embeds them
    outputs = {doc_dir / "report.md": markdown.render(doc, doc_dir), doc_dir / "report.html": html.render(doc)}
    for path, text in outputs.items():
        atomic_write_text(path, text)
    return list(outputs)
