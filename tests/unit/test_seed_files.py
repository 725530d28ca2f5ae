"""hsd.reporting.seed_files: old names and column order, numbers from the metrics, atomic files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hsd.records import Record
from hsd.recipes.import_legacy import import_run
from hsd.reporting.seed_files import (BIAS_COLUMNS, PERFORMANCE_COLUMNS, UNIFIED_COLUMNS, UNIFIED_NEW_COLUMNS,
                                      write_run_outputs)
from hsd.runs import RunError

SHARED = Path(__file__).parents[2].parent / "shared"
REFERENCE = SHARED / "reference" / "recorded_runs" / "baseline_std_20251025_175009"
TS = "20250101_120000"
META = {"model": "tiny-gptoss", "template": "rich", "data": "canned_50_quick", "command": "hsd validate -c x.yaml"}


def rec(i, true, pred, group, status=None) -> Record:
    return Record(sample_id=f"id{i}", text=f"text, with comma {i}", true_label=true, target_group=group,
                  persona_tag=group.upper(), source="toxigen", strategy="rich", prompt_hash="abc",
                  raw_response=f"<|channel|>final<|message|>{{\"classification\":\"{pred}\"}}<|return|>",
                  predicted_label=pred, rationale=None if i % 2 else "because",
                  parse_status=status or ("ok_final_channel" if pred != "unknown" else "no_final_answer_truncated"),
                  latency_s=0.25, rank=i % 2)


RECORDS = [rec(0, "hate", "hate", "middle_east"), rec(1, "normal", "hate", "lgbtq"), rec(2, "hate", "normal", "lgbtq"),
           rec(3, "normal", "normal", "mexican"), rec(4, "hate", "unknown", "mexican"), rec(5, "normal", "normal", "lgbtq")]


@pytest.fixture()
def outputs(tmp_path):
    paths = write_run_outputs(tmp_path, RECORDS, "rich", TS, META)
    return tmp_path, paths


def test_file_names(outputs):
    run, paths = outputs
    names = sorted(p.name for p in paths)
    assert names == sorted([f"performance_metrics_{TS}.csv", f"bias_metrics_{TS}.csv",
                            f"strategy_unified_results_{TS}.csv", f"evaluation_report_{TS}.txt",
                            f"intermediate_results_{TS}.jsonl", "metrics.json"])
    assert sorted(p.name for p in run.iterdir()) == names  # no temporary files left behind


def test_performance_csv_old_columns_first(outputs):
    run, _ = outputs
    perf = pd.read_csv(run / f"performance_metrics_{TS}.csv")
    groups = [f"{g}_{k}" for g in ("lgbtq", "mexican", "middle_east") for k in ("fpr", "fnr", "samples")]
    assert list(perf.columns[: len(PERFORMANCE_COLUMNS) + 9]) == PERFORMANCE_COLUMNS + groups
    row = perf.iloc[0]
    # answered: TP=1 (id0) TN=2 (id3,id5) FP=1 (id1) FN=1 (id2); id4 unknown
    assert (row.true_positive, row.true_negative, row.false_positive, row.false_negative) == (1, 2, 1, 1)
    assert row.accuracy == 3 / 5 and row.unknown_count == 1 and row.unknown_rate == 1 / 6
    assert row.mexican_samples == 2 and row.mexican_fnr == 0.0  # no answered mexican hate: undefined, 0.0 as the old files
    assert row.strict_accuracy == 3 / 6


def test_bias_csv(outputs):
    run, _ = outputs
    bias = pd.read_csv(run / f"bias_metrics_{TS}.csv")
    assert list(bias.columns[: len(BIAS_COLUMNS)]) == BIAS_COLUMNS
    assert list(bias.persona_tag) == ["middle_east", "lgbtq", "mexican"]  # first appearance, as the old file
    lgbtq = bias.set_index("persona_tag").loc["lgbtq"]
    assert (lgbtq.sample_count, lgbtq.false_positive_rate, lgbtq.false_negative_rate) == (3, 0.5, 1.0)


def test_unified_csv_and_jsonl_hold_every_record_once(outputs):
    run, _ = outputs
    unified = pd.read_csv(run / f"strategy_unified_results_{TS}.csv", keep_default_na=False)
    assert list(unified.columns[: len(UNIFIED_COLUMNS)]) == UNIFIED_COLUMNS
    assert list(unified.columns[len(UNIFIED_COLUMNS): len(UNIFIED_COLUMNS) + 3]) == ["sample_id", "parse_status", "prompt_hash"]
    assert list(unified.input_text) == [r.text for r in RECORDS] and set(unified.status) == {"success"}
    assert list(unified.predicted_label) == [r.predicted_label for r in RECORDS]
    lines = (run / f"intermediate_results_{TS}.jsonl").read_text().splitlines()
    assert [Record.from_json(json.loads(line)) for line in lines] == RECORDS


def test_report_states_unknowns_and_counts(outputs):
    run, _ = outputs
    text = (run / f"evaluation_report_{TS}.txt").read_text()
    for needle in ("Model: tiny-gptoss", "Prompt Template: rich", "Data Source: canned_50_quick",
                   "Command Line: hsd validate -c x.yaml", "MCC:", "Balanced accuracy:",
                   "unknown 1 = 16.67%", "excluded from the numbers and confusion counts above",
                   "Confusion Matrix: TP=1, TN=2, FP=1, FN=1", "FPR: 0.500 (FP=1, TN=1)", "FNR: n/a (FN=0, TP=0)"):
        assert needle in text, needle


def test_metrics_json_is_strict_json(outputs):
    run, _ = outputs
    metrics = json.loads((run / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    perf = metrics["strategies"]["rich"]["performance"]
    assert metrics["headline_policy"] == "answered" and perf["unknown_count"] == 1
    assert perf["answered"]["f1_score"] == 0.5 and perf["strict"]["false_negative"] == 2
    assert metrics["strategies"]["rich"]["parse_status_counts"] == {"ok_final_channel": 5, "no_final_answer_truncated": 1}


def test_duplicate_sample_ids_are_refused(tmp_path):
    with pytest.raises(RunError, match="more than once"):
        write_run_outputs(tmp_path, RECORDS + RECORDS[:1], "rich", TS, META)
    assert not any(tmp_path.iterdir())


def test_strategy_mismatch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="strategies"):
        write_run_outputs(tmp_path, RECORDS, "simple", TS, META)


def test_float_format_matches_old_files(tmp_path):
    """pandas' default float format, as in the old CSVs (e.g. 0.39644970414201186), and CRLF in
    the performance file as the old pipeline wrote it."""
    if not REFERENCE.exists():
        pytest.skip(f"{REFERENCE} not found (../shared beside the repository)")
    old = (REFERENCE / "performance_metrics_20251025_175009.csv").read_bytes()
    write_run_outputs(tmp_path, RECORDS, "rich", TS, META)
    new = (tmp_path / f"performance_metrics_{TS}.csv").read_bytes()
    assert old.count(b"\r\n") == new.count(b"\r\n") == 2
    assert b"0.16666666666666666" in new


def test_unified_persona_tag_is_the_bias_group_and_raw_tag_is_last(outputs):
    run, _ = outputs
    unified = pd.read_csv(run / f"strategy_unified_results_{TS}.csv", keep_default_na=False)
    assert list(unified.columns) == UNIFIED_COLUMNS + UNIFIED_NEW_COLUMNS and unified.columns[-1] == "raw_persona_tag"
    assert list(unified.persona_tag) == [r.target_group for r in RECORDS]
    assert list(unified.raw_persona_tag) == [r.persona_tag for r in RECORDS]  # e.g. "MIDDLE_EAST"


def users_recheck(unified_csv: Path) -> dict[str, tuple[float, float]]:
    """The old pipeline's users' script, as they run it: group by persona_tag, answered rows only."""
    df = pd.read_csv(unified_csv)
    df = df[df["predicted_label"].isin(["hate", "normal"])]
    out = {}
    for group, d in df.groupby("persona_tag"):
        tp = ((d.true_label == "hate") & (d.predicted_label == "hate")).sum()
        tn = ((d.true_label == "normal") & (d.predicted_label == "normal")).sum()
        fp = ((d.true_label == "normal") & (d.predicted_label == "hate")).sum()
        fn = ((d.true_label == "hate") & (d.predicted_label == "normal")).sum()
        out[group] = (float(fp / (fp + tn)) if fp + tn > 0 else 0.0, float(fn / (fn + tp)) if fn + tp > 0 else 0.0)
    return out


def printed_rates(bias_csv: Path) -> dict[str, tuple[str, str]]:
    """FPR/FNR per group as the bias CSV prints them (text, so the comparison is to the last digit)."""
    bias = pd.read_csv(bias_csv, dtype=str, keep_default_na=False)
    return {row.persona_tag: (row.false_positive_rate, row.false_negative_rate) for row in bias.itertuples()}


def test_users_recheck_by_persona_tag_gets_the_bias_csv_numbers(outputs):
    run, _ = outputs
    mine = users_recheck(run / f"strategy_unified_results_{TS}.csv")
    # middle_east has no answered normal sample and mexican no answered hate one: those rates are
    # undefined; the bias CSV writes 0.0 for them, as the old files and the users' script do, and says so
    assert printed_rates(run / f"bias_metrics_{TS}.csv") == {
        "middle_east": ("0.0", "0.0"), "lgbtq": ("0.5", "1.0"), "mexican": ("0.0", "0.0")}
    assert mine == {"middle_east": (0.0, 0.0), "lgbtq": (0.5, 1.0), "mexican": (0.0, 0.0)}
    bias = pd.read_csv(run / f"bias_metrics_{TS}.csv").set_index("persona_tag")
    assert bias.loc["middle_east", "false_positive_rate_defined"] == False  # noqa: E712 (numpy bool)
    assert bias.loc["mexican", "false_negative_rate_defined"] == False  # noqa: E712
    assert bias.loc["lgbtq", ["false_positive_rate_defined", "false_negative_rate_defined"]].all()
    perf = pd.read_csv(run / f"performance_metrics_{TS}.csv")
    assert (perf.loc[0, "middle_east_fpr"], perf.loc[0, "mexican_fnr"]) == (0.0, 0.0)


def test_users_recheck_on_the_recorded_run_matches_bias_csv(tmp_path):
    """1009 real samples (predictions kept from the old run), every rate defined: equal to the digit."""
    if not REFERENCE.exists():
        pytest.skip(f"{REFERENCE} not found (../shared beside the repository)")
    out = import_run(REFERENCE, tmp_path / "kept", True, "test")
    ts = "20251025_175009"
    printed = printed_rates(out / f"bias_metrics_{ts}.csv")
    mine = users_recheck(out / f"strategy_unified_results_{ts}.csv")
    assert sorted(mine) == sorted(printed) == ["lgbtq", "mexican", "middle_east"]
    assert {g: (repr(fpr), repr(fnr)) for g, (fpr, fnr) in mine.items()} == printed
    assert printed["mexican"] == ("0.4823529411764706", "0.4878048780487805")  # the old file's numbers


def test_report_lists_top_false_positives_and_negatives(outputs, tmp_path):
    run, _ = outputs
    lines = (run / f"evaluation_report_{TS}.txt").read_text().splitlines()
    fp = lines.index("TOP 10 FALSE POSITIVES (normal text flagged as hate), RICH Strategy: 1 of 1, first by sample id:")
    assert lines[fp + 1:fp + 3] == ["-" * 40, "  id1  [lgbtq]  confidence n/a  text, with comma 1"]
    fn = lines.index("TOP 10 FALSE NEGATIVES (hate text missed), RICH Strategy: 1 of 1, first by sample id:")
    assert lines[fn + 1:] == ["-" * 40, "  id2  [lgbtq]  confidence n/a  text, with comma 2"]
    write_run_outputs(tmp_path / "none", RECORDS, "rich", TS, META, top_n=0)
    text = (tmp_path / "none" / f"evaluation_report_{TS}.txt").read_text().splitlines()
    assert text[-2:] == ["TOP 0 FALSE NEGATIVES (hate text missed), RICH Strategy: 0 of 1, first by sample id:", "-" * 40]
