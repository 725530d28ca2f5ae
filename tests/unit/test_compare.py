"""``hsd compare``: refuses different samples, pairs the bootstrap, gives an honest verdict."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from _report_helpers import make_dataset, make_run, make_train_run
from hsd import cli
from hsd.recipes.compare import CompareError, check_same_samples, criterion_roles, verdict
from hsd.metrics.intervals import Interval
from hsd.reporting.rundata import load_run
from hsd.reporting.summary_files import change_line, old_result


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("cmpdata") / "data")


@pytest.mark.parametrize("delta, met, beyond, text", [
    (Interval(0.05, 0.01, 0.09), True, True, "MET, beyond noise"),
    (Interval(0.02, -0.01, 0.05), True, False, "MET, within noise"),
    (Interval(0.0, 0.0, 0.0), True, False, "MET, within noise"),  # identical runs: >= holds, no evidence
    (Interval(-0.02, -0.05, 0.01), False, False, "NOT MET, within noise"),
    (Interval(-0.05, -0.09, -0.01), False, True, "NOT MET, beyond noise"),
])
def test_verdict(delta, met, beyond, text):
    v = verdict(delta, 0.95)
    assert (v["met"], v["beyond_noise"]) == (met, beyond)
    assert v["text"].split(": ")[0] == text  # whole: "MET, within noise" is inside "NOT MET, within noise"
    assert v["text"].endswith("excludes 0" if beyond else "includes 0")


def test_different_sample_ids_fail_clearly_and_write_nothing(tmp_path, data, capsys):
    a = make_run(tmp_path / "exp", "a", data, "rich", 0.7, 0.0, seed=1)
    b = make_run(tmp_path / "exp", "b", data, "simple", 0.8, 0.0, seed=2)
    shard = b / "shards" / "rank0.jsonl"
    lines = shard.read_text().splitlines(keepends=True)
    shard.write_text("".join(lines[5:]))  # b lacks 5 samples
    out = tmp_path / "cmp"
    assert cli.main(["compare", str(a), str(b), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: runs are not over the same sample ids")
    assert "5 only in a" in err and "0 only in b" in err and "data.max_samples" in err
    assert not out.exists()


def test_same_ids_with_other_labels_fail(tmp_path, data):
    a = make_run(tmp_path / "exp", "a", data, "rich", 0.7, 0.0, seed=1)
    b = make_run(tmp_path / "exp", "b", data, "simple", 0.8, 0.0, seed=2)
    shard = b / "shards" / "rank0.jsonl"
    rows = [json.loads(x) for x in shard.read_text().splitlines()]
    rows[0]["true_label"] = "normal" if rows[0]["true_label"] == "hate" else "hate"
    shard.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(CompareError, match="different versions of the data"):
        check_same_samples([load_run(a), load_run(b)])


def test_roles_come_from_config_not_argument_order(tmp_path, data):
    exp = tmp_path / "exp"
    adapter = make_train_run(exp)
    ft = make_run(exp, "ft", data, "simple", 0.8, 0.0, seed=2, adapter=str(adapter))
    base = make_run(exp, "base", data, "rich", 0.7, 0.0, seed=1)
    b, cands, how = criterion_roles([load_run(ft), load_run(base)])
    assert (b, cands) == (1, [0]) and "config.yaml" in how


def test_without_configs_the_first_run_is_the_baseline(tmp_path, data):
    runs = [make_run(tmp_path / "exp", n, data, "rich", 0.7, 0.0, seed=i) for i, n in enumerate("xyz")]
    for r in runs:
        (r / "config.yaml").unlink()
    b, cands, how = criterion_roles([load_run(r) for r in runs])
    assert (b, cands) == (0, [1, 2]) and "argument order" in how


def test_compare_end_to_end(tmp_path, data):
    exp = tmp_path / "exp"
    adapter = make_train_run(exp)
    base = make_run(exp, "base", data, "rich", 0.70, 0.03, seed=1)
    better = make_run(exp, "ft_better", data, "simple", 0.90, 0.0, seed=2, adapter=str(adapter))
    assert cli.main(["compare", str(base), str(better)]) == 0
    out = exp / "comparison"  # default: beside the runs
    results = (out / "FINETUNING_RESULTS.txt").read_text()
    assert {"success_criterion_met: yes", "beyond_noise: yes"} <= set(results.splitlines())  # whole lines
    assert "tfidf_logreg" in results and "tfidf_logreg" in (out / "BASELINE_METRICS.txt").read_text()
    comp = json.loads((out / "comparison.json").read_text())
    assert comp["criterion"]["baseline"] == "base"
    assert set(comp["references"]) == {"always_hate", "always_normal", "tfidf_logreg"}
    for g in ("lgbtq", "mexican", "middle_east"):
        assert {f"fpr/{g}", f"fnr/{g}"} <= set(comp["deltas"]["ft_better"])
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html
    verdicts = re.findall(r"<li>ft_better vs base: F1 difference [^<]*? - ((?:NOT )?MET), (beyond|within) noise: ", html)
    assert verdicts == [("MET", "beyond")]
    f1 = {r["info"]["name"]: r["metrics"]["performance"]["answered"]["f1_score"] for r in comp["runs"]}
    old_line = f"F1 change {(f1['ft_better'] - f1['base']) / f1['base'] * 100:+.2f}% vs baseline: SUCCESS"
    assert f"old_pipeline: {old_line}" in results.splitlines()  # beside the unchanged verdict line
    assert f"- ft_better vs base (old pipeline): {old_line}." in (out / "report.md").read_text().splitlines()
    assert f"<li>ft_better vs base (old pipeline): {old_line}.</li>" in html


def test_a_tiny_difference_is_within_noise(tmp_path, data):
    """Two runs that differ on two samples: the criterion is met or not, but never 'beyond noise'."""
    exp = tmp_path / "exp"
    adapter = make_train_run(exp)
    base = make_run(exp, "base", data, "rich", 0.75, 0.0, seed=1)
    ft = make_run(exp, "ft", data, "simple", 0.75, 0.0, seed=1, adapter=str(adapter))
    shard = ft / "shards" / "rank0.jsonl"
    rows = [json.loads(x) for x in shard.read_text().splitlines()]
    for r in [r for r in rows if r["predicted_label"] != r["true_label"]][:2]:
        r["predicted_label"] = r["true_label"]
    shard.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli.main(["compare", str(base), str(ft), "--out", str(tmp_path / "cmp")]) == 0
    results = (tmp_path / "cmp" / "FINETUNING_RESULTS.txt").read_text().splitlines()
    assert {"success_criterion_met: yes", "beyond_noise: no"} <= set(results)  # whole lines


def test_the_same_run_twice_is_refused(tmp_path, data, capsys):
    a = make_run(tmp_path / "exp", "a", data, "rich", 0.7, 0.0, seed=1)
    assert cli.main(["compare", str(a), str(a)]) == 2
    assert "twice" in capsys.readouterr().err


def test_a_pipeline_with_a_failed_stage_still_gets_a_comparison_of_what_finished(tmp_path, data):
    from hsd.recipes.collate import collate_experiment

    exp = tmp_path / "exp"
    base = make_run(exp, "baseline", data, "rich", 0.70, 0.03, seed=1)
    make_run(exp, "finetuned", data, "simple", 0.90, 0.0, seed=2)  # partial records of a failed run: left alone
    unfinished = [{"stage": "train", "state": "FAILED", "run_dir": str(exp / "train"),
                   "error": "RuntimeError: CUDA out of memory"},
                  {"stage": "finetuned", "state": "CANCELLED", "run_dir": str(exp / "finetuned"),
                   "error": "never ran: train did not complete"}]
    report = collate_experiment(exp, [base], unfinished, str(data))
    assert report == exp / "comparison" / "report.html"
    comp = json.loads((exp / "comparison" / "comparison.json").read_text())
    assert [r["info"]["name"] for r in comp["runs"]] == ["baseline"] and comp["criterion"]["verdicts"] == []
    assert [(u["stage"], u["state"], u["error"]) for u in comp["unfinished"]] == [
        (u["stage"], u["state"], u["error"]) for u in unfinished]
    md = (exp / "comparison" / "report.md").read_text()
    assert "Stages that did not finish" in md and "RuntimeError: CUDA out of memory" in md
    assert "did_not_finish: train (FAILED): RuntimeError: CUDA out of memory" in (
        exp / "comparison" / "FINETUNING_RESULTS.txt").read_text()
    assert not (exp / "finetuned" / "report.html").exists()
    with pytest.raises(Exception, match="no validation run of .* finished.*train FAILED: RuntimeError"):
        collate_experiment(exp, [], unfinished, str(data))


def test_the_terminal_table_shows_rates_f1_mcc_tfidf_verdict_and_report(tmp_path, data):
    from hsd.reporting.comparison_report import terminal_table

    exp = tmp_path / "exp"
    adapter = make_train_run(exp)
    base = make_run(exp, "base", data, "rich", 0.70, 0.25, seed=1)
    better = make_run(exp, "ft_better", data, "simple", 0.90, 0.0, seed=2, adapter=str(adapter))
    assert cli.main(["compare", str(base), str(better)]) == 0
    comp = json.loads((exp / "comparison" / "comparison.json").read_text())
    lines = terminal_table(comp, exp / "comparison" / "report.html").splitlines()
    assert lines[0].split() == ["run", "role", "answered", "F1", "MCC", "success", "criterion"]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    m = {r["info"]["name"]: r["metrics"] for r in comp["runs"]}
    tf = comp["references"]["tfidf_logreg"]["metrics"]
    assert rows["base"][1:6] == ["baseline", f"{100 * (1 - m['base']['unknown_rate']):.1f}%",
                                 f"{m['base']['intervals']['f1']['estimate']:.3f}",
                                 f"{m['base']['intervals']['mcc']['estimate']:.3f}", "-"]
    f1 = {n: mm["performance"]["answered"]["f1_score"] for n, mm in m.items()}
    change = (f1["ft_better"] - f1["base"]) / f1["base"] * 100
    assert change > 0 and rows["ft_better"][5:] == ["MET", "(beyond", "noise);", "F1", "change", f"{change:+.2f}%",
                                                    "vs", "baseline:", "SUCCESS"]
    assert rows["tfidf_logreg"][1:5] == ["reference", "100.0%", f"{tf['intervals']['f1']['estimate']:.3f}",
                                         f"{tf['intervals']['mcc']['estimate']:.3f}"]
    assert lines[-1] == f"report: {exp / 'comparison' / 'report.html'}"


@pytest.mark.parametrize("base, post, line", [
    (0.5, 0.6, "F1 change +20.00% vs baseline: SUCCESS"),
    (0.6, 0.5, "F1 change -16.67% vs baseline: NEEDS WORK"),
    (0.5, 0.5, "F1 change +0.00% vs baseline: SUCCESS"),  # >=, as the old pipeline
    (0.0, 0.4, "F1 change n/a vs baseline: SUCCESS"),  # no percent of 0
    (0.0, 0.0, "F1 change n/a vs baseline: SUCCESS"),
    (None, 0.4, "F1 change n/a vs baseline: n/a"),  # undefined F1 (null in JSON)
    (0.4, float("nan"), "F1 change n/a vs baseline: n/a"),
])
def test_old_pipeline_line(base, post, line):
    assert change_line({"old_pipeline": old_result(base, post)}) == line
