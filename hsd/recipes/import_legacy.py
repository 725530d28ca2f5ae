"""``hsd import-legacy OLD_RUN_DIR --out DIR [--keep-predictions]``: old pipeline run -> hsd run.

The old pipeline lost most of gpt-oss's final answers (its parser searched the reasoning and
defaulted to ``normal``), but it saved the raw responses. This re-reads every ``raw_response``
of ``intermediate_results_<ts>.jsonl`` with :func:`hsd.parsing.parse_response` and writes a
complete hsd run directory (seed files, ``metrics.json``, a ``manifest.json`` saying where it
came from; no ``config.yaml``: the old run had none), so a team corrects its numbers without
re-running the model. The old timestamp is kept in the file names.

``--keep-predictions`` instead takes the predictions of ``strategy_unified_results_<ts>.csv``
as they are (every row: the old jsonl may hold one rank's rows only) and recomputes the
metrics; with the old rule (a prediction other than hate/normal is left out of the confusion
counts, but counted in a group's ``sample_count``) this reproduces the old metric CSVs exactly.
Sample ids are then the CSV row numbers (the old jsonl's ids are rank-local).

Re-parsing finishes on any run directory of the old format, whatever its rows hold: a response
of any type (text, null, an object) is read by the parser, which never raises; a row without a
response is ``unknown`` (status ``empty``); a line that is not JSON (a run killed mid-write) is
``unknown`` with status ``legacy_unreadable_row`` when its text and true label can still be
found in it. Rows with no true label hate/normal cannot be scored and are left out. A row without
a strategy (a line cut off before it) takes the run's only strategy; in a run of several it is left
out. Every such row is listed in the manifest (``unreadable_rows``) and counted on stderr. A byte
that is not UTF-8 stops the import with the file and line (a last line cut off inside a character is
read up to it), and the old run is never changed: the fix is made in a copy. The old jsonl records
no token counts or stop reasons, so truncation there is the parser's documented heuristic
(``no_final_answer_likely_truncated``).
"""

from __future__ import annotations

import io
import json
import re
import shlex
import sys
from collections import defaultdict, deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from hsd import textio
from hsd.errors import HsdError
from hsd.metrics.performance import compute_performance
from hsd.parsing import ParseStatus, parse_response, response_text
from hsd.records import LABELS, Record
from hsd.reporting.seed_files import UNIFIED_COLUMNS, write_outputs
from hsd.runs import Status, atomic_write_json, base_manifest, publish_dir

_JSONL = re.compile(r"^intermediate_results_(.+)\.jsonl$")
_CSV = re.compile(r"^strategy_unified_results_(.+)\.csv$")
# Fields salvaged from a line that is not JSON (cut off mid-write): the label, then the text.
_SALVAGE_LABEL = re.compile(r'"true_label"\s*:\s*"(hate|normal)"', re.I)
_SALVAGE_TEXT = re.compile(r'"text"\s*:\s*("(?:[^"\\]|\\.)*")')
UNREADABLE_ROW = ParseStatus.LEGACY_UNREADABLE_ROW.value
MAX_LISTED = 100  # unreadable rows listed in the manifest (all are counted)
# Old report header line -> meta key of the new report.
_REPORT_HEADER = {"Model": "model", "Prompt Template File": "template", "Data Source": "data",
                  "Command Line": "old_command"}


class LegacyError(HsdError):
    """The old run directory is missing, ambiguous or malformed."""


@dataclass(frozen=True)
class OldRun:
    path: Path
    ts: str
    jsonl: Optional[Path]
    csv: Optional[Path]
    rows: list[dict[str, Any]]  # jsonl objects, in file order (those with a true label)
    table: Optional[pd.DataFrame]  # the old per-sample CSV, every cell a string
    unreadable: tuple[dict[str, Any], ...] = ()  # {"line", "reason", "kept"} per problem row


def load_old_run(path: Path, need_csv: bool = False) -> OldRun:
    """Find and read the old run's files; one :class:`LegacyError` for a directory that is not one.

    Without ``need_csv`` (re-parsing) the CSV only supplies persona tags: one it cannot read is
    left out with a warning instead of stopping the import."""
    if not path.is_dir():
        raise LegacyError(f"old run directory {path} does not exist (pass the directory holding "
                          "intermediate_results_<ts>.jsonl)")
    jsonls = {m.group(1): p for p in path.iterdir() if (m := _JSONL.match(p.name))}
    csvs = {m.group(1): p for p in path.iterdir() if (m := _CSV.match(p.name))}
    stamps = sorted(set(jsonls) | set(csvs))
    if not stamps:
        raise LegacyError(f"{path} holds no intermediate_results_<ts>.jsonl or "
                          "strategy_unified_results_<ts>.csv: not an old pipeline run directory")
    if len(stamps) > 1:
        raise LegacyError(f"{path} holds several old runs (timestamps {', '.join(stamps)}); copy one "
                          "run's files into a directory of its own and import that")
    ts = stamps[0]
    jsonl, csv = jsonls.get(ts), csvs.get(ts)
    rows, unreadable = _read_jsonl(jsonl) if jsonl else ([], [])
    table = None
    if csv:
        try:
            table = _read_csv(csv)
        except LegacyError as exc:
            if need_csv:
                raise
            print(f"warning: {exc}; persona tags are taken from the jsonl's target_group", file=sys.stderr)
    return OldRun(path, ts, jsonl, csv, rows, table, tuple(unreadable))


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows with a true label (those the parser can score) and a note for every problem row.

    Split on "\\n" only (str.splitlines would also cut at U+2028 and friends inside a JSON string).
    A last line cut off inside a multi-byte character is read up to that character; a byte that is
    not UTF-8 on an earlier line stops the import, naming file and line."""
    numbered, notes = [], {}
    for line in textio.lines(path.read_bytes(), path, error=LegacyError, fix=_fix(path)):
        if not line.text.strip():
            continue
        row, reason = _row(line.text)
        if reason:
            notes[line.number] = {"line": line.number, "reason": reason, "kept": row is not None}
        if row is not None:
            numbered.append((line.number, row))
    rows = _with_strategies(numbered, notes)
    if not rows:
        raise LegacyError(f"{path} holds no record with a true_label of hate/normal "
                          f"({len(notes)} unreadable lines); is this an old pipeline intermediate_results file?")
    return rows, [notes[n] for n in sorted(notes)]


def _fix(path: Path) -> str:
    """How to fix a damaged file of an old run and leave the old run as it is: import a copy."""
    old = shlex.quote(str(path.parent))
    return (f"the old run is left as it is: copy it (cp -r {old} {old}.fixed), repair that line of "
            f"{path.name} in the copy (or re-save the file as UTF-8) and import the copy")


def _with_strategies(numbered: list[tuple[int, dict[str, Any]]],
                     notes: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """A row without a strategy (very old files; a line cut off before its strategy) takes the run's
    only one, "legacy" where no row names one. With several it cannot be told: left out, noted."""
    named = sorted({_str(row.get("strategy")) for _, row in numbered} - {""})
    if len(named) <= 1:
        only = named[0] if named else "legacy"
        return [row if _str(row.get("strategy")) else {**row, "strategy": only} for _, row in numbered]
    rows = []
    for n, row in numbered:
        if _str(row.get("strategy")):
            rows.append(row)
            continue
        why = f"no strategy, and the run has several ({', '.join(named)}): left out"
        note = notes.setdefault(n, {"line": n, "reason": "", "kept": False})
        note.update(reason=f"{note['reason']}; {why}" if note["reason"] else why, kept=False)
    return rows


def _row(line: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """(row or None, why it is a problem or None) for one jsonl line."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        label, text = _SALVAGE_LABEL.search(line), _SALVAGE_TEXT.search(line)
        why = f"not valid JSON ({getattr(exc, 'msg', type(exc).__name__)})"
        if label is None or text is None:
            return None, why + "; no text and true_label in it: left out"
        try:
            salvaged = json.loads(text.group(1))
        except ValueError:  # e.g. an escape JSON does not have (\q) inside the cut-off text
            return None, why + "; its text is not a readable JSON string: left out"
        return {"text": salvaged, "true_label": label.group(1).lower(), UNREADABLE_ROW: True}, why + "; kept as unknown"
    if not isinstance(obj, dict):
        return None, f"a JSON {type(obj).__name__}, not an object: left out"
    label = str(obj.get("true_label", "")).strip().lower()
    if label not in LABELS or "text" not in obj:
        return None, f"true_label {obj.get('true_label')!r} is not hate/normal or text is missing: left out"
    if "raw_response" not in obj and "response" not in obj:
        return {**obj, "true_label": label}, "no raw_response: unknown (empty)"
    return {**obj, "true_label": label}, None


def _read_csv(path: Path) -> pd.DataFrame:
    text = textio.read_text(path, error=LegacyError, fix=_fix(path))
    try:  # strings as written: an empty cell stays "", a text "NA" stays "NA"
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise LegacyError(f"{path} is not a readable CSV: {exc}") from None
    missing = [c for c in UNIFIED_COLUMNS if c not in table.columns]
    if missing:
        raise LegacyError(f"{path} lacks columns {missing}; expected the old header {','.join(UNIFIED_COLUMNS)}")
    bad = table.index[~table["true_label"].isin(LABELS)]
    if len(bad):
        raise LegacyError(f"{path}: row {bad[0] + 2} has true_label {table['true_label'][bad[0]]!r} (not hate/normal)")
    return table


def _csv_rows_by_text(table: Optional[pd.DataFrame]) -> dict[tuple[str, str], deque]:
    """(strategy, text) -> CSV row indices in order, to align jsonl rows (duplicates texts exist)."""
    index: dict[tuple[str, str], deque] = defaultdict(deque)
    if table is not None:
        for i, (strategy, text) in enumerate(zip(table["strategy"], table["input_text"])):
            index[(strategy, text)].append(i)
    return index


def reparsed_records(old: OldRun) -> list[Record]:
    """One Record per jsonl row, its label re-read from the raw response."""
    if not old.rows:
        raise LegacyError(f"{old.path} has no intermediate_results_{old.ts}.jsonl to re-parse "
                          "(use --keep-predictions to recompute the metrics from the CSV)")
    align = _csv_rows_by_text(old.table)
    # hsd's own per-sample CSV keeps the raw tag in its last column (persona_tag holds the group there)
    persona_column = "raw_persona_tag" if old.table is not None and "raw_persona_tag" in old.table else "persona_tag"
    records = []
    for n, row in enumerate(old.rows):
        raw = _raw_response(row)
        parsed = parse_response(raw)
        if row.get(UNREADABLE_ROW):
            parsed = replace(parsed, label="unknown", rationale=None, status=UNREADABLE_ROW)
        strategy = _str(row.get("strategy")) or "legacy"  # absent in very old files
        text, group = _str(row["text"]), _str(row.get("target_group")) or "unknown"
        rows = align.get((strategy, text))
        persona = old.table[persona_column][rows.popleft()] if rows else group
        records.append(Record(
            sample_id=_str(row.get("sample_id", n)), text=text, true_label=row["true_label"],
            target_group=group, persona_tag=persona, source=_str(row.get("source")),
            strategy=strategy, prompt_hash="", raw_response=raw, predicted_label=parsed.label,
            rationale=parsed.rationale, parse_status=parsed.status, latency_s=0.0))
    return records


def _raw_response(row: dict[str, Any]) -> str:
    """An old row's response as text (newer files call it raw_response, older ones response)."""
    return _str(response_text(row.get("raw_response", row.get("response"))))


def _str(value: Any) -> str:
    """A field of an old row as text: None is "", anything else its string form, writable as UTF-8
    (a JSON ``\\ud800`` escape loads as a lone surrogate, which no UTF-8 file can hold: it becomes U+FFFD)."""
    text = "" if value is None else value if isinstance(value, str) else str(value)
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def kept_records(old: OldRun) -> list[Record]:
    """One Record per old CSV row with the old prediction, raw response attached where aligned."""
    if old.table is None:
        raise LegacyError(f"--keep-predictions needs strategy_unified_results_{old.ts}.csv in {old.path}")
    raws = defaultdict(deque)
    for row in old.rows:
        raws[(_str(row.get("strategy")), _str(row["text"]))].append(_raw_response(row))
    records = []
    for i, row in old.table.iterrows():
        queue = raws.get((row["strategy"], row["input_text"]))
        predicted = row["predicted_label"]
        ok = predicted in LABELS
        records.append(Record(
            sample_id=str(i), text=row["input_text"], true_label=row["true_label"],
            target_group=row["target_group_norm"], persona_tag=row["persona_tag"] or row["target_group_norm"],
            source=row["source_dataset"], strategy=row["strategy"], prompt_hash="",
            raw_response=queue.popleft() if queue else "",
            predicted_label=predicted if ok else "unknown", rationale=row["rationale"] or None,
            parse_status=(ParseStatus.OK_LEGACY_PREDICTION if ok else ParseStatus.LEGACY_UNKNOWN).value,
            latency_s=_seconds(row["response_time"], i, old.csv)))
    return records


def _seconds(value: str, row: int, path: Optional[Path]) -> float:
    try:
        return float(value)
    except ValueError:
        raise LegacyError(f"{path}: row {row + 2} has response_time {value!r}, not a number") from None


def old_report_meta(old: OldRun) -> dict[str, str]:
    """Model, template, data and command from the old report's header, where there is one."""
    report = old.path / f"evaluation_report_{old.ts}.txt"
    meta: dict[str, str] = {}
    if not report.exists():
        return meta
    try:
        text = textio.read_text(report, error=LegacyError, fix=_fix(report))
    except LegacyError as exc:  # only a header is read from it: the import goes on without
        print(f"warning: {exc}; the new report leaves out the old model, template and data", file=sys.stderr)
        return meta
    for line in text.splitlines()[:40]:
        key, sep, value = line.partition(":")
        if sep and key.strip() in _REPORT_HEADER:
            meta.setdefault(_REPORT_HEADER[key.strip()], value.strip())
    return meta


def old_prediction_scores(old: OldRun, records: list[Record]) -> dict[str, dict[str, float]]:
    """F1 etc. of the old pipeline's own predictions on the same jsonl rows, for comparison."""
    if not old.rows or "prediction" not in old.rows[0]:
        return {}
    old_preds = [replace(r, predicted_label=_str(row.get("prediction"))) for r, row in zip(records, old.rows)]
    out = {}
    for strategy in dict.fromkeys(r.strategy for r in records):
        perf = compute_performance([r for r in old_preds if r.strategy == strategy])
        out[strategy] = {"f1_score": perf.answered.f1_score, "accuracy": perf.answered.accuracy,
                         "unknown_count": perf.unknown_count, "n_samples": perf.n_samples}
    return out


def import_run(old_dir: Path, out: Path, keep_predictions: bool, command: str) -> Path:
    """Write the hsd run for ``old_dir`` into ``out`` (new or empty); nothing is overwritten."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LegacyError(f"--out {out} exists and is not empty; choose a new directory (nothing was written)")
    old = load_old_run(old_dir, need_csv=keep_predictions)
    records = kept_records(old) if keep_predictions else reparsed_records(old)
    by_strategy: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_strategy[r.strategy].append(r)
    mode = "keep_predictions" if keep_predictions else "reparse"
    meta = {**old_report_meta(old), "command": command, "imported_from": str(old.path.resolve()),
            "import_mode": mode}
    manifest = {**base_manifest("import-legacy"), "status": Status.COMPLETED.value, "imported_from": str(old.path.resolve()), "import_mode": mode,
                "old_timestamp": old.ts, "source_files": [str(p) for p in (old.jsonl, old.csv) if p],
                "n_records": len(records), "n_unreadable_rows": len(old.unreadable),
                "unreadable_rows": list(old.unreadable[:MAX_LISTED]),
                "old_pipeline_predictions": {} if keep_predictions else old_prediction_scores(old, records)}
    with publish_dir(out) as tmp:
        write_outputs(tmp, by_strategy, old.ts, meta)
        atomic_write_json(tmp / "manifest.json", manifest)
    return out


def _fmt(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.4f}"
