"""The parse-status table of the text report and the run report: counts from the records, answers first."""

from __future__ import annotations

from collections import Counter

from hsd.parsing import ParseStatus
from hsd.records import Record
from hsd.reporting.parse_status import HEADERS, comparison_rows, status_rows, summary, text_table
from hsd.reporting.seed_files import write_outputs

STATUSES = (["ok_final_channel"] * 6 + ["ok_unframed"] * 3 + ["no_final_answer_truncated"] * 2
            + ["no_final_answer_likely_truncated", "invalid_label", "ok_json"])


def _records() -> list[Record]:
    return [Record(sample_id=str(i), text=f"t{i}", true_label="hate" if i % 2 else "normal", target_group="lgbtq",
                   persona_tag="lgbtq", source="s", strategy="rich", prompt_hash="h", raw_response="r",
                   predicted_label=("hate" if i % 3 else "normal") if s.startswith("ok") else "unknown",
                   rationale=None, parse_status=s, latency_s=0.1,
                   stop_reason="length" if s == "no_final_answer_truncated" else "stop")
            for i, s in enumerate(STATUSES)]


def test_rows_answers_first_with_counts_shares_and_meanings():
    rows = status_rows(Counter(STATUSES))
    assert [r[0] for r in rows] == ["ok_final_channel", "ok_json", "ok_unframed", "no_final_answer_truncated",
                                    "no_final_answer_likely_truncated", "invalid_label"]
    assert [r[1] for r in rows] == ["6", "1", "3", "2", "1", "1"]
    assert rows[0][2] == "42.9%" and [r[3] for r in rows] == ["yes"] * 3 + ["no"] * 3
    assert all(r[4] for r in rows) and len(HEADERS) == len(rows[0])
    assert status_rows({"ok_something_new": 2})[0][4] == ""  # a status nobody described still gets a row
    text = summary(Counter(STATUSES))
    assert text.startswith("10 of 14 samples have a readable answer (3 only after repairing")
    assert "2 stopped at the token limit" in text and "1 likely cut off" in text


def test_evaluation_report_gains_the_table_and_keeps_its_content(tmp_path):
    write_outputs(tmp_path, {"rich": _records()}, "20990101_000000", {"model": "m"})
    report = (tmp_path / "evaluation_report_20990101_000000.txt").read_text()
    before, table = report.split("PARSE STATUS (how each response was read):")
    assert "STRATEGY PERFORMANCE:" in before and "BIAS AND FAIRNESS METRICS BY TARGET GROUP:" in before
    assert "  Parse status: ok_final_channel 6, ok_unframed 3" in before  # the old one-line summary stays
    lines = table.splitlines()
    assert lines[3] == "RICH Strategy:" and lines[4].startswith("  10 of 14 samples have a readable answer")
    assert lines[5].split() == ["parse", "status", "samples", "share", "label", "read", "meaning"]
    assert lines[6].split()[:4] == ["ok_final_channel", "6", "42.9%", "yes"]
    assert lines[9].split()[:4] == [ParseStatus.NO_FINAL_ANSWER_TRUNCATED.value, "2", "14.3%", "no"]
    assert text_table(Counter(STATUSES))[1:] == lines[5:12]


def test_comparison_rows_put_the_runs_side_by_side():
    rows = comparison_rows({"baseline": {"ok_stripped_final": 8, "no_final_answer_truncated": 2},
                            "finetuned": {"ok_unframed": 3, "ok_stripped_final": 7}})
    assert [r[:3] for r in rows] == [["ok_stripped_final", "8 (80.0%)", "7 (70.0%)"],
                                     ["ok_unframed", "0 (0.0%)", "3 (30.0%)"],
                                     ["no_final_answer_truncated", "2 (20.0%)", "0 (0.0%)"]]
    assert rows[1][3].startswith("an answer with a broken frame")
