"""Collate an experiment, then recompute every number in its reports from the per-sample file.

The recomputation reads the merged ``intermediate_results_*.jsonl`` with plain ``json`` and
uses scikit-learn / fairlearn directly; for the intervals it redraws the bootstrap with the
seed the report states and checks the first resamples' statistics against scikit-learn.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from fairlearn.metrics import equalized_odds_difference
from sklearn import metrics as skm
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from _report_helpers import make_dataset, make_experiment, make_run
from hsd import cli
from hsd.metrics import intervals as iv
from hsd.reporting.misclassified import select_errors, top_errors
from hsd.records import Record

NUM = r"(-?\d+\.\d+|n/a)"


# ----------------------------------------------------------------------------- parsing the report

def tables(md: str) -> dict[str, list[list[str]]]:
    """Markdown tables keyed by their header line's first two cells ('classifier|samples')."""
    out, lines = {}, md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            cells = lambda s: [c.strip() for c in s.strip().strip("|").split(" | ")]  # noqa: E731
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(cells(row))
            key = "|".join(cells(line)[:2])
            out.setdefault(key, [])
            out[key] += rows
    return out


def ci(cell: str) -> tuple[float, float, float]:
    m = re.fullmatch(rf"{NUM} \[{NUM}, {NUM}\]", cell)
    assert m, f"not an interval cell: {cell!r}"
    return tuple(float("nan") if x == "n/a" else float(x) for x in m.groups())


def f3(x: float) -> str:
    return "n/a" if x is None or np.isnan(x) else f"{x:.3f}"


# ----------------------------------------------------------------------------- recomputation

def read_records(run: Path) -> list[dict]:
    files = sorted(run.glob("intermediate_results_*.jsonl"))
    assert len(files) == 1
    return [json.loads(line) for line in files[0].read_text().splitlines()]


def arrays(rows: list[dict], pred_key: str = "predicted_label"):
    rows = sorted(rows, key=lambda r: r["sample_id"])
    t = np.array([r["true_label"] for r in rows])
    p = np.array([r[pred_key] for r in rows])
    g = np.array([r["target_group"] for r in rows])
    return t, p, g


def point_metrics(t, p, g) -> dict[str, float]:
    a = np.isin(p, ["hate", "normal"])
    ta, pa, ga = t[a], p[a], g[a]
    out = {"n": len(t), "answered": int(a.sum()), "accuracy": skm.accuracy_score(ta, pa),
           "precision": skm.precision_score(ta, pa, pos_label="hate", zero_division=np.nan),
           "recall": skm.recall_score(ta, pa, pos_label="hate"), "f1": skm.f1_score(ta, pa, pos_label="hate"),
           "mcc": skm.matthews_corrcoef(ta, pa), "balanced": skm.balanced_accuracy_score(ta, pa),
           "unknown_rate": 1 - a.mean(),
           "eod": equalized_odds_difference((ta == "hate").astype(int), (pa == "hate").astype(int), sensitive_features=ga)}
    for grp in sorted(set(g)):
        m = ga == grp
        neg, pos = m & (ta == "normal"), m & (ta == "hate")
        out[f"fpr/{grp}"] = (pa[neg] == "hate").mean()
        out[f"fnr/{grp}"] = (pa[pos] == "normal").mean()
    return out


def recomputed_intervals(t, p, g, seed: int, resamples: int = 1000) -> dict[str, tuple[float, float]]:
    """Redraw the report's bootstrap; check 30 resamples' F1/MCC/FPR against scikit-learn."""
    data = iv.encode(t, p, g)
    idx = iv.resample_indices(iv.strata_of(data), resamples, seed)
    stats = iv.statistics(iv.group_counts(data, idx))
    for b in range(30):
        tb, pb = t[idx[b]], p[idx[b]]
        a = np.isin(pb, ["hate", "normal"])
        assert stats["f1"][b] == pytest.approx(skm.f1_score(tb[a], pb[a], pos_label="hate"), abs=1e-12)
        assert stats["mcc"][b] == pytest.approx(skm.matthews_corrcoef(tb[a], pb[a]), abs=1e-12)
        neg = a & (tb == "normal") & (g[idx[b]] == data.groups[0])
        assert stats["fpr/0"][b] == pytest.approx((pb[neg] == "hate").mean(), abs=1e-12)
    out = {}
    for k, v in stats.items():
        finite = v[np.isfinite(v)]
        out[iv._named(k, data.groups)] = tuple(np.quantile(finite, [0.025, 0.975])) if finite.size else (np.nan,) * 2
    return out


def paired_difference(t, p_a, p_b, g, seed: int, key: str) -> tuple[float, float, float]:
    """stat(b) - stat(a) and its 95% interval over the same resampled samples."""
    a, b = iv.encode(t, p_a, g), iv.encode(t, p_b, g)
    idx = iv.resample_indices(iv.strata_of(a), 1000, seed)
    k = key if "/" not in key else f"{key.split('/')[0]}/{a.groups.index(key.split('/')[1])}"
    diff = iv.statistics(iv.group_counts(b, idx))[k] - iv.statistics(iv.group_counts(a, idx))[k]
    est = point_metrics(t, p_b, g)[key] - point_metrics(t, p_a, g)[key]
    lo, hi = np.quantile(diff[np.isfinite(diff)], [0.025, 0.975])
    return est, lo, hi


def check_interval_cell(cell: str, est: float, bounds: tuple[float, float]) -> None:
    got = ci(cell)
    assert cell == f"{f3(est)} [{f3(bounds[0])}, {f3(bounds[1])}]", (cell, est, bounds, got)


def check_metric_row(row: list[str], t, p, g, seed: int, p_hate=None) -> None:
    m, ivs = point_metrics(t, p, g), recomputed_intervals(t, p, g, seed)
    assert row[1] == f"{m['answered']} / {m['n']}"
    check_interval_cell(row[2], m["accuracy"], ivs["accuracy"])
    assert row[3:5] == [f3(m["precision"]), f3(m["recall"])]
    check_interval_cell(row[5], m["f1"], ivs["f1"])
    check_interval_cell(row[6], m["mcc"], ivs["mcc"])
    assert row[7] == f3(m["balanced"])
    assert row[8] == f"{100 * m['unknown_rate']:.1f}%"
    assert row[9] == ("n/a" if p_hate is None else f3(skm.roc_auc_score(t == "hate", p_hate)))
    check_interval_cell(row[10], m["eod"], ivs["eod"])


def tfidf_predictions(data_dir: Path, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, P(hate)) of the documented reference, rebuilt here with scikit-learn alone."""
    train = json.loads((data_dir / "unified" / "unified_train.json").read_text())
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
                          LogisticRegression(C=1.0, max_iter=2000))
    model.fit([r["text"] for r in train], [r["label_binary"] for r in train])
    texts = [r["text"] for r in sorted(rows, key=lambda r: r["sample_id"])]
    return model.predict(texts), model.predict_proba(texts)[:, list(model.classes_).index("hate")]


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def collated(tmp_path_factory) -> tuple[Path, Path]:
    exp, data = make_experiment(tmp_path_factory.mktemp("collate"))
    assert cli.main(["collate", str(exp)]) == 0
    return exp, data


# ----------------------------------------------------------------------------- tests

def test_collate_merges_shards_and_writes_everything(collated):
    exp, data = collated
    test_ids = sorted(r["original_id"] for r in json.loads((data / "unified" / "unified_test.json").read_text()))
    for name in ("baseline_rich", "finetuned_simple"):
        run = exp / name
        assert sorted(r["sample_id"] for r in read_records(run)) == test_ids  # every sample exactly once
        for pattern in ("performance_metrics_*.csv", "bias_metrics_*.csv", "metrics_full.json", "report.md",
                        "report.html", "plots/confusion.png", "plots/group_rates.png", "plots/metrics.png"):
            assert list(run.glob(pattern)), f"{run}: no {pattern}"
    assert (exp / "finetuned_simple" / "plots" / "loss_curve.png").is_file()  # linked training run
    for name in ("report.md", "report.html", "comparison.json", "BASELINE_METRICS.txt", "FINETUNING_RESULTS.txt",
                 "plots/deltas.png", "plots/group_rates.png"):
        assert (exp / "comparison" / name).is_file()


@pytest.mark.parametrize("name", ["baseline_rich", "finetuned_simple"])
def test_every_number_in_the_run_report_is_recomputed(collated, name):
    exp, data = collated
    run = exp / name
    md = (run / "report.md").read_text()
    seed = int(re.search(r"1000 resamples, seed (\d+)", md).group(1))
    rows = read_records(run)
    t, p, g = arrays(rows)
    tabs = tables(md)

    head = {r[0]: r for r in tabs["classifier|answered / samples"]}
    check_metric_row(head[f"{name} (this run)"], t, p, g, seed)
    tfidf, tfidf_p = tfidf_predictions(data, rows)
    refs = {"always_hate": np.full(len(t), "hate"), "always_normal": np.full(len(t), "normal"), "tfidf_logreg": tfidf}
    for ref, pred in refs.items():
        check_metric_row(head[f"reference: {ref}"], t, pred, g, seed, tfidf_p if ref == "tfidf_logreg" else None)
    assert "0.643" in head["reference: always_hate"][5]  # F1 of always-hate = 2P/(2P+N) on this data
    versus = re.search(r"This run minus `tfidf_logreg` on the same samples \(paired bootstrap\): (.*)\.", md).group(1)
    for key, label in (("f1", "F1"), ("mcc", "MCC"), ("accuracy", "accuracy")):
        est, lo, hi = paired_difference(t, tfidf, p, g, seed, key)
        assert f"{label} {est:+.3f} [{lo:+.3f}, {hi:+.3f}]" in versus

    # strict numbers: an unknown is wrong
    strict = np.where(np.isin(p, ["hate", "normal"]), p, np.where(t == "hate", "normal", "hate"))
    assert (f"accuracy {f3(skm.accuracy_score(t, strict))}, F1 {f3(skm.f1_score(t, strict, pos_label='hate'))}, "
            f"MCC {f3(skm.matthews_corrcoef(t, strict))}") in md

    # confusion matrix, unknown column included
    conf = {r[0]: r[1:] for r in tabs["|predicted hate"]}
    for label in ("hate", "normal"):
        assert conf[f"true {label}"] == [str(int(((t == label) & (p == q)).sum())) for q in ("hate", "normal", "unknown")]

    # per-group table: counts, rates with intervals, flags
    m, ivs = point_metrics(t, p, g), recomputed_intervals(t, p, g, seed)
    a = np.isin(p, ["hate", "normal"])
    for row in tabs["group|samples"]:
        grp = row[0]
        in_g = g == grp
        assert row[1:5] == [str(in_g.sum()), str((in_g & a & (t == "hate")).sum()),
                            str((in_g & a & (t == "normal")).sum()), str((in_g & ~a).sum())]
        check_interval_cell(row[5], m[f"fpr/{grp}"], ivs[f"fpr/{grp}"])
        check_interval_cell(row[6], m[f"fnr/{grp}"], ivs[f"fnr/{grp}"])
        small = min((in_g & a & (t == "hate")).sum(), (in_g & a & (t == "normal")).sum()) < 30
        assert (row[7] == "too few samples") == small
    assert "mexican" in md.split("Flag:")[1]  # 22 normal samples in the synthetic mexican group
    assert f"{f3(m['eod'])} [{f3(ivs['eod'][0])}, {f3(ivs['eod'][1])}]" in md.split("Equalized-odds")[1].split("\n")[0]

    # references per group
    for row in tabs["reference|group"]:
        rm = point_metrics(t, refs[row[0]], g)
        rivs = recomputed_intervals(t, refs[row[0]], g, seed)
        check_interval_cell(row[2], rm[f"fpr/{row[1]}"], rivs[f"fpr/{row[1]}"])
        check_interval_cell(row[3], rm[f"fnr/{row[1]}"], rivs[f"fnr/{row[1]}"])

    # parse statuses and error counts
    statuses = {r[0]: int(r[1]) for r in tabs["parse status|samples"]}
    assert statuses == {s: sum(r["parse_status"] == s for r in rows) for s in {r["parse_status"] for r in rows}}
    counts = re.search(r"Error counts: (.*)\.", md).group(1)
    for grp in sorted(set(g)):
        assert f"{grp} {int(((g == grp) & a & (t != p)).sum())}" in counts


def test_comparison_numbers_are_recomputed(collated):
    exp, _ = collated
    base, ft = (arrays(read_records(exp / n)) for n in ("baseline_rich", "finetuned_simple"))
    md = (exp / "comparison" / "report.md").read_text()
    tabs = tables(md)
    rows = {r[0]: r for r in tabs["classifier|answered / samples"]}
    check_metric_row(rows["baseline_rich"], *base, seed=0)
    check_metric_row(rows["finetuned_simple"], *ft, seed=0)
    # paired difference: same resampled samples for both runs
    t, p_base, g = base
    assert np.array_equal(ft[0], t) and np.array_equal(ft[2], g)
    delta, lo, hi = paired_difference(t, p_base, ft[1], g, 0, "f1")
    cell = {r[0]: r for r in tabs["run|accuracy"]}["finetuned_simple"][2]
    assert cell == f"{delta:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    for row in tabs["run|group"]:
        if row[0] == "finetuned_simple":
            for col, rate in ((3, "fpr"), (5, "fnr")):
                est, lo_g, hi_g = paired_difference(t, p_base, ft[1], g, 0, f"{rate}/{row[1]}")
                assert row[col] == f"{est:+.3f} [{lo_g:+.3f}, {hi_g:+.3f}]"
    # The verdict as whole lines: "MET, within noise" is also a substring of "NOT MET, within noise".
    met, beyond = delta >= 0, lo > 0 or hi < 0
    verdict = (f"{'MET' if met else 'NOT MET'}, {'beyond' if beyond else 'within'} noise: the 95% paired-bootstrap "
               f"interval of the F1 difference, [{lo:+.3f}, {hi:+.3f}], {'excludes' if beyond else 'includes'} 0")
    assert f"- finetuned_simple vs baseline_rich: F1 difference {cell} - {verdict}." in md.splitlines()
    summary = (exp / "comparison" / "FINETUNING_RESULTS.txt").read_text().splitlines()
    assert f"success_criterion_met: {'yes' if met else 'no'}" in summary
    assert f"beyond_noise: {'yes' if beyond else 'no'}" in summary and f"verdict: {verdict}" in summary
    assert f"f1_difference_vs_baseline: {cell}" in summary
    assert f"f1_score: {rows['finetuned_simple'][5]}" in summary
    baseline = (exp / "comparison" / "BASELINE_METRICS.txt").read_text().splitlines()
    assert f"f1_score: {rows['baseline_rich'][5]}" in baseline


def test_report_regenerates_identically_without_data_or_model(collated, tmp_path):
    exp, data = collated
    before = {p: p.read_text() for p in exp.glob("*/report.md")}
    moved = tmp_path / "data_elsewhere"
    shutil.move(str(data), moved)
    try:
        assert cli.main(["report", str(exp)]) == 0
    finally:
        shutil.move(str(moved), data)
    assert {p: p.read_text() for p in exp.glob("*/report.md")} == before


def test_intervals_do_not_depend_on_the_shard_layout(tmp_path):
    data = make_dataset(tmp_path / "data")
    one = make_run(tmp_path / "exp", "one_rank", data, "rich", 0.7, 0.03, seed=5, world_size=1)
    three = make_run(tmp_path / "exp", "three_ranks", data, "rich", 0.7, 0.03, seed=5, world_size=3)
    for run in (one, three):
        assert cli.main(["collate", str(run)]) == 0
    full = [json.loads((r / "metrics_full.json").read_text()) for r in (one, three)]
    assert full[0]["metrics"]["intervals"] == full[1]["metrics"]["intervals"]


def test_incomplete_shards_fail_clearly_and_write_nothing(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    run = make_run(tmp_path / "exp", "partial", data, "rich", 0.7, 0.0, seed=5, world_size=2)
    (run / "shards" / "rank1.jsonl").unlink()  # rank 1 never wrote anything
    assert cli.main(["collate", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "selected samples have no record" in err
    assert not list(run.glob("intermediate_results_*")) and not (run / "report.md").exists()


def test_a_run_without_any_readable_answer_is_reported_not_crashed(tmp_path):
    """A tiny or broken model may answer nothing: every rate is n/a, the references still show."""
    data = make_dataset(tmp_path / "data")
    run = make_run(tmp_path / "exp", "mute", data, "simple", 0.7, 1.0, seed=5)
    assert cli.main(["collate", str(run)]) == 0
    md = (run / "report.md").read_text()
    row = {r[0]: r for r in tables(md)["classifier|answered / samples"]}["mute (this run)"]
    assert row[1] == "0 / 230" and row[5] == "n/a" and row[8] == "100.0%"
    assert "reference: tfidf_logreg" in md


def test_not_an_hsd_run_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["collate", str(tmp_path / "empty")]) == 2
    assert "holds no validation run" in capsys.readouterr().err


def test_score_mode_errors_are_the_most_confident_per_group():
    recs = [Record(f"s{i}", "t", "normal", "lgbtq", "p", "src", "x", "h", "", "hate", None, "ok", 0.1, p_hate=p)
            for i, p in enumerate([0.6, 0.99, 0.8])]
    recs.append(Record("s9", "t", "hate", "lgbtq", "p", "src", "x", "h", "", "normal", None, "ok", 0.1, p_hate=0.05))
    chosen = select_errors(recs, per_group=2, seed=0)
    assert chosen["selection"].startswith("most confident")
    assert [r["sample_id"] for r in chosen["by_group"]["lgbtq"]] == ["s1", "s9"]  # confidence 0.99, 0.95


def test_a_baseline_run_gets_its_own_baseline_metrics(collated):
    """Written when the run is collated (before any comparison in the old guide), the same lines as
    the comparison's file but the line that says who generated it."""
    exp, _ = collated
    assert not (exp / "finetuned_simple" / "BASELINE_METRICS.txt").exists()  # model.adapter set: not a baseline
    own = (exp / "baseline_rich" / "BASELINE_METRICS.txt").read_text().splitlines()
    theirs = (exp / "comparison" / "BASELINE_METRICS.txt").read_text().splitlines()
    assert own[:2] == ["BASELINE METRICS", "================"]
    assert re.fullmatch(r"generated: \S+ by hsd collate", own[2]) and theirs[2].endswith(" by hsd compare")
    assert own[:2] + own[3:] == theirs[:2] + theirs[3:]
    row = {r[0]: r for r in tables((exp / "baseline_rich" / "report.md").read_text())["classifier|answered / samples"]}
    assert f"f1_score: {row['baseline_rich (this run)'][5]}" in own
    assert f"run: {exp / 'baseline_rich'}" in own and "adapter: none" in own


def caption_table(md: str, caption_start: str) -> tuple[str, list[list[str]]]:
    """(caption, rows) of the table whose caption starts with ``caption_start``."""
    lines = md.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(f"*{caption_start}"))
    rows = []
    for line in lines[i + 4:]:  # caption, blank, header, separator
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return lines[i].strip("*"), rows


@pytest.mark.parametrize("name", ["baseline_rich", "finetuned_simple"])
def test_the_run_report_lists_the_top_false_positives_and_negatives(collated, name):
    """No P(hate) in these runs: the first 10 (report.top_errors) of each kind by sample id."""
    exp, _ = collated
    md = (exp / name / "report.md").read_text()
    recs = sorted(read_records(exp / name), key=lambda r: r["sample_id"])
    for kind, true, pred in (("false positives (normal text flagged as hate)", "normal", "hate"),
                             ("false negatives (hate missed)", "hate", "normal")):
        wrong = [r for r in recs if r["true_label"] == true and r["predicted_label"] == pred]
        caption, rows = caption_table(md, f"Top 10 {kind}")
        assert len(wrong) > 10 and caption == f"Top 10 {kind}: 10 of {len(wrong)}, first by sample id"
        assert [(r[0], r[1], r[2]) for r in rows] == [(r["sample_id"], r["target_group"], "n/a") for r in wrong[:10]]
    html = (exp / name / "report.html").read_text()
    assert "Top 10 false positives (normal text flagged as hate): 10 of" in html


def test_top_errors_are_the_most_confident_with_p_hate():
    def rec(i: int, true: str, pred: str, p: float) -> Record:
        return Record(f"s{i}", "t", true, "lgbtq", "p", "src", "x", "h", "", pred, None, "ok", 0.1, p_hate=p)
    recs = [rec(0, "normal", "hate", 0.6), rec(1, "normal", "hate", 0.99), rec(2, "normal", "hate", 0.8),
            rec(3, "hate", "normal", 0.3), rec(4, "hate", "normal", 0.05), rec(5, "hate", "hate", 0.9)]
    top = top_errors(recs, 2)
    assert top["selection"] == "most confident (P(hate))" and top["counts"] == {"false_positives": 3,
                                                                               "false_negatives": 2}
    assert [(r["sample_id"], r["confidence"]) for r in top["false_positives"]] == [("s1", 0.99), ("s2", 0.8)]
    assert [(r["sample_id"], round(r["confidence"], 6)) for r in top["false_negatives"]] == [("s4", 0.95), ("s3", 0.7)]


def test_top_errors_without_p_hate_are_in_sample_id_order():
    recs = [Record(f"s{i}", "t", "normal", "mexican", "p", "src", "x", "h", "", "hate", None, "ok", 0.1)
            for i in (3, 1, 2)]
    top = top_errors(recs, 2)
    assert top["selection"] == "first by sample id" and top["false_negatives"] == []
    assert [r["sample_id"] for r in top["false_positives"]] == ["s1", "s2"]


SHARED = Path(__file__).parents[2].parent / "shared"
RECORDED = SHARED / "reference" / "recorded_runs" / "baseline_std_20251025_175009"


@pytest.mark.skipif(not RECORDED.is_dir() or not (SHARED / "data" / "unified").is_dir(),
                    reason=f"the recorded gpt-oss run or the dataset is not under {SHARED}")
def test_the_recorded_gpt_oss_run_is_reported_from_its_reparsed_records(tmp_path):
    """The real run, imported with hsd's parser, reported without a config: same numbers as its records."""
    run = tmp_path / "recorded"
    assert cli.main(["import-legacy", str(RECORDED), "--out", str(run)]) == 0
    assert cli.main(["report", str(run), "--data-dir", str(SHARED / "data")]) == 0
    md = (run / "report.md").read_text()
    t, p, g = arrays(read_records(run))
    row = {r[0]: r for r in tables(md)["classifier|answered / samples"]}["recorded (this run)"]
    check_metric_row(row, t, p, g, seed=0)
    assert ci(row[5])[0] == pytest.approx(0.672, abs=0.0005)  # F1 of the re-parsed answers (old report: 0.535)
    assert "reference: tfidf_logreg" in md and "role: unknown" in md
