"""The index page: every experiment and run under ``results/`` in two sortable tables.

Self-contained like the reports (CSS and a few lines of JavaScript inline, nothing fetched);
links are relative to the page, so the ``results/`` folder can be copied off the cluster whole.
Clicking a column heading sorts by it (numbers by value: F1 and MCC by their estimates);
``index.html#sort=-f1`` opens it sorted (``-``: descending).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from hsd.reporting.html import CSS
from hsd.reporting.index import ExperimentRow, RunRow, collect
from hsd.runs import atomic_write_text, timestamp

INDEX_CSS = """
th { cursor: pointer; user-select: none; } th.asc::after { content: " \\25B2"; } th.desc::after { content: " \\25BC"; }
td.COMPLETED { color: #1a7f37; font-weight: 600; } td.FAILED, td.UNREADABLE, td.LOST { color: #c62828; font-weight: 600; }
td.RUNNING, td.PENDING, td.PREEMPTED { color: #b26a00; font-weight: 600; }
td.date, td.num { white-space: nowrap; } td.detail { max-width: 32em; font-size: .92em; color: #555; }
"""
# Sort a table by the clicked column: data-sort (numbers) when given, else the cell's text.
SORT_JS = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0], asc = !th.classList.contains("asc"), col = th.cellIndex;
    table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
    th.classList.add(asc ? "asc" : "desc");
    var key = function (row) {
      var cell = row.cells[col], v = cell.getAttribute("data-sort");
      return v !== null ? parseFloat(v) : cell.textContent.trim().toLowerCase();
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      if (typeof x === "number" && isNaN(x)) return 1;
      if (typeof y === "number" && isNaN(y)) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
    }).forEach(function (row) { body.appendChild(row); });
  });
});
// index.html#sort=f1 (or #sort=-f1, descending) opens the page sorted: a link that shows the best runs first.
var wanted = /^#sort=(-?)([a-z0-9_]+)$/.exec(location.hash);
if (wanted) {
  document.querySelectorAll('th[data-key="' + wanted[2] + '"]').forEach(function (th) {
    th.click(); if (wanted[1]) th.click();
  });
}
"""
RUN_COLUMNS = ("experiment", "run", "kind", "date", "model", "adapter / LoRA", "prompt", "F1 [95% CI]",
               "MCC [95% CI]", "answered", "verdict", "status", "detail", "links")
EXPERIMENT_COLUMNS = ("experiment", "date", "status", "runs", "verdict", "detail", "links")


def _cell(text: Any, cls: str = "", sort: Optional[float] = None) -> str:
    attrs = (f' class="{cls}"' if cls else "") + (f' data-sort="{"NaN" if sort is None else sort}"'
                                                   if sort is not None or cls == "num" else "")
    return f"<td{attrs}>{html.escape(str(text))}</td>"


def _links(links: Sequence[tuple[str, str]], prefix: str) -> str:
    return "<td>" + " · ".join(f'<a href="{html.escape(prefix + path)}">{html.escape(label)}</a>'
                               for label, path in links) + "</td>"


def _key(column: str) -> str:
    """``F1 [95% CI]`` -> ``f1``, ``adapter / LoRA`` -> ``adapter``: the name ``#sort=`` takes."""
    return column.split(" ")[0].lower()


def _table(caption: str, columns: Sequence[str], rows: list[str], table_id: str) -> str:
    head = "".join(f'<th data-key="{_key(c)}">{html.escape(c)}</th>' for c in columns)
    body = "\n".join(rows) or f'<tr><td colspan="{len(columns)}">none</td></tr>'
    return (f'<div class="scroll"><table class="sortable" id="{table_id}"><caption>{html.escape(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></div>")


def _experiment_tr(e: ExperimentRow, prefix: str) -> str:
    status_cls = e.status.split()[0]
    return ("<tr>" + _cell(e.name) + _cell(e.date, "date") + _cell(e.status, status_cls) + _cell(e.runs, "num", e.runs)
            + _cell(e.verdict) + _cell(e.detail, "detail") + _links(e.links, prefix) + "</tr>")


def _run_tr(r: RunRow, prefix: str) -> str:
    return ("<tr>" + _cell(r.experiment) + _cell(r.name) + _cell(r.kind) + _cell(r.date, "date") + _cell(r.model)
            + _cell(r.adapter) + _cell(r.prompt) + _cell(r.f1, "num", r.f1_sort) + _cell(r.mcc, "num", r.mcc_sort)
            + _cell(r.answered) + _cell(r.verdict) + _cell(r.status, r.status) + _cell(r.detail, "detail")
            + _links(r.links, prefix) + "</tr>")


def render(results: Path, prefix: str = "") -> str:
    """The page; ``prefix``: the results directory relative to where the page is written."""
    experiments, runs = collect(results)
    title = f"hsd experiments under {results}"
    parts = [
        f"<p>{len(experiments)} experiments, {len(runs)} runs; written {html.escape(timestamp())} by "
        "<code>hsd report index</code> from the files alone (a job's live state: <code>hsd status</code>). "
        "Click a column heading to sort.</p>",
        _table("Experiments", EXPERIMENT_COLUMNS, [_experiment_tr(e, prefix) for e in experiments], "experiments"),
        _table("Runs (F1 and MCC on answered samples, with bootstrap intervals once collated)", RUN_COLUMNS,
               [_run_tr(r, prefix) for r in runs], "runs"),
    ]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}{INDEX_CSS}</style></head>\n<body><h1>{html.escape(title)}</h1>\n" + "\n".join(parts)
            + f"\n<script>{SORT_JS}</script>\n</body></html>\n")


def write_index(results: Path, out: Optional[Path] = None) -> Path:
    """Write the index page (default ``<results>/index.html``); returns its path."""
    out = (out or results / "index.html").resolve()
    prefix = os.path.relpath(results.resolve(), out.parent)
    atomic_write_text(out, render(results, "" if prefix == "." else prefix + "/"))
    return out
