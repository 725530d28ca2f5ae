"""The parse-status table: how much of a run was readable, and why the rest was not.

One table shape for the text report (``evaluation_report_<ts>.txt``) and the run report
(``report.md`` / ``report.html``): a row per status with its count, share and meaning, answers
first. A reader sees at once how many answers were read in the harmony frame, how many only
after repairing a broken frame (``ok_unframed``, what LoRA-tuned gpt-oss writes), and how many
were cut off at the token limit.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from hsd.parsing import ParseStatus, describe_status

HEADERS = ["parse status", "samples", "share", "label read", "meaning"]
_ORDER = {s.value: i for i, s in enumerate(ParseStatus)}


def ordered(statuses: Iterable[str]) -> list[str]:
    """Answers first, then in the order of :class:`hsd.parsing.ParseStatus` (unknown names last)."""
    return sorted(statuses, key=lambda s: (not s.startswith("ok"), _ORDER.get(s, len(_ORDER)), s))


def status_rows(counts: Mapping[str, int]) -> list[list[str]]:
    """One row per status, in :func:`ordered` order."""
    total = sum(counts.values())
    return [[status, str(counts[status]), f"{100 * counts[status] / total:.1f}%" if total else "n/a",
             "yes" if status.startswith("ok") else "no", describe_status(status)]
            for status in ordered(counts)]


def comparison_rows(counts_by_run: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """One row per status seen in any run, a "count (share)" cell per run: did fine-tuning break the format?"""
    totals = [sum(counts.values()) for counts in counts_by_run.values()]
    seen = {status for counts in counts_by_run.values() for status in counts}
    return [[status, *(f"{counts.get(status, 0)} ({100 * counts.get(status, 0) / total:.1f}%)" if total else "n/a"
                       for counts, total in zip(counts_by_run.values(), totals)), describe_status(status)]
            for status in ordered(seen)]


def summary(counts: Mapping[str, int]) -> str:
    """Readable, repaired and cut-off counts in one sentence."""
    total = sum(counts.values())
    read = sum(n for s, n in counts.items() if s.startswith("ok"))
    unframed = counts.get(ParseStatus.OK_UNFRAMED.value, 0)
    cut = counts.get(ParseStatus.NO_FINAL_ANSWER_TRUNCATED.value, 0)
    likely = counts.get(ParseStatus.NO_FINAL_ANSWER_LIKELY_TRUNCATED.value, 0)
    text = (f"{read} of {total} samples have a readable answer ({unframed} only after repairing a broken "
            f"harmony frame); {cut} stopped at the token limit without an answer")
    return text + (f"; {likely} likely cut off (no stop reason recorded)." if likely else ".")


def text_table(counts: Mapping[str, int], indent: str = "  ") -> list[str]:
    """The table as fixed-width text lines, for the seed-compatible text report."""
    rows = [HEADERS] + status_rows(counts)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS) - 1)]
    lines = [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    return [indent + summary(counts)] + [line.rstrip() for line in lines]
