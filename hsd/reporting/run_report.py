"""The report of one validation run, built from its ``metrics_full.json`` content only.

Sections: what was evaluated; headline metrics with intervals beside the reference
classifiers; confusion matrix; per-group FPR/FNR with intervals, equalized odds and small-group
flags; parse statuses; error examples; the loss curve of the linked training run; how the
numbers were made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from hsd.reporting import plots, score_report
from hsd.reporting.document import Bullets, Document, Figure, Heading, Paragraph, Table
from hsd.reporting.fmt import interval, num, pct, rate_interval
from hsd.reporting.parse_status import HEADERS as STATUS_HEADERS, status_rows, summary as status_summary

METRIC_HEADERS = ["classifier", "answered / samples", "accuracy", "precision", "recall", "F1", "MCC",
                  "balanced acc.", "unknown rate", "ROC-AUC", "EO difference"]
REFERENCE_IN_PLOTS = "tfidf_logreg"  # the constant references add nothing to rate plots (0 or 1)


def metric_row(label: str, m: Mapping[str, Any]) -> list[str]:
    """One classifier's headline row: interval cells for accuracy, F1, MCC and EO difference."""
    perf, ivs, head = m["performance"], m["intervals"], m["performance"]["answered"]
    return [label, f"{head['n']} / {m['n_samples']}", interval(ivs["accuracy"]), num(head["precision"]),
            num(head["recall"]), interval(ivs["f1"]), interval(ivs["mcc"]), num(head["balanced_accuracy"]),
            pct(m["unknown_rate"]), num(perf["roc_auc"]), interval(ivs["eod"])]


def _what(full: Mapping[str, Any]) -> list:
    run, m = full["run"], full["metrics"]
    strict = m["performance"]["strict"]
    adapter = f", adapter `{run['adapter']}`" if run.get("adapter") else ""
    return [
        Paragraph(f"Run `{run['path']}`: strategy `{run['strategy']}`, template `{run['template']}`, model "
                  f"`{run['model']}`{adapter}; data {run['data']}; role: {run['role']}."),
        Paragraph(f"{m['n_samples']} samples read from `{run['records_file']}` (sha256 "
                  f"`{run['records_sha256'][:16]}`). Headline metrics are over the "
                  f"{m['performance']['answered']['n']} answered samples; {m['unknown_count']} samples "
                  f"({pct(m['unknown_rate'])}) have no readable answer (`unknown`) and are left out of the "
                  f"confusion counts, as in the seed CSVs. Counting every unknown as an error (strict): "
                  f"accuracy {num(strict['accuracy'])}, F1 {num(strict['f1_score'])}, MCC {num(strict['mcc'])}."),
    ]


def _headline(full: Mapping[str, Any], plot_dir: Path) -> list:
    level = full["bootstrap"]["level"]
    rows = [metric_row(f"{full['run']['name']} (this run)", full["metrics"])]
    rows += [metric_row(f"reference: {name}", ref["metrics"]) for name, ref in full["references"].items()]
    forest = [(full["run"]["name"], full["metrics"]["intervals"])]
    forest += [(name, ref["metrics"]["intervals"]) for name, ref in full["references"].items()]
    fig = plots.forest(forest, ["accuracy", "f1", "mcc"], plot_dir / "metrics.png",
                       title=f"{level:.0%} bootstrap intervals")
    refs = [f"`{name}`: {ref['description']}" for name, ref in full["references"].items()]
    versus = [Paragraph(f"This run minus `{name}` on the same samples (paired bootstrap): "
                        f"F1 {interval(d['f1'], sign=True)}, MCC {interval(d['mcc'], sign=True)}, "
                        f"accuracy {interval(d['accuracy'], sign=True)}.") for name, d in full["vs_tfidf"].items()]
    return [
        Heading("Headline metrics and reference classifiers"),
        Table(METRIC_HEADERS, rows, caption=f"Point estimate [{level:.0%} interval]; references are scored on "
                                            "exactly this run's samples with the same code"),
        *versus,
        Bullets(refs),
        Figure(fig, "Accuracy, F1 and MCC with intervals: this run and the references"),
    ]


def _confusion(full: Mapping[str, Any], plot_dir: Path) -> list:
    matrix = full["metrics"]["confusion"]
    cols = list(next(iter(matrix.values())))
    rows = [[f"true {t}"] + [str(matrix[t][p]) for p in cols] for t in matrix]
    fig = plots.confusion(matrix, full["run"]["name"], plot_dir / "confusion.png")
    return [Heading("Confusion matrix"),
            Table(["", *[f"predicted {c}" for c in cols]], rows),
            Figure(fig, "Confusion matrix (unknown predictions in their own column)")]


def _groups(full: Mapping[str, Any], plot_dir: Path) -> list:
    m, level = full["metrics"], full["bootstrap"]["level"]
    rows = [[g["group"], str(g["samples"]), str(g["positives"]), str(g["negatives"]), str(g["unknown"]),
             rate_interval(g, "fpr"), rate_interval(g, "fnr"), "too few samples" if g["flagged"] else ""]
            for g in m["groups"]]
    ref_rows = [[name, g["group"], rate_interval(g, "fpr"), rate_interval(g, "fnr")]
                for name, ref in full["references"].items() for g in ref["metrics"]["groups"]]
    series = [(full["run"]["name"], m["groups"])]
    if REFERENCE_IN_PLOTS in full["references"]:
        series.append((REFERENCE_IN_PLOTS, full["references"][REFERENCE_IN_PLOTS]["metrics"]["groups"]))
    fig = plots.group_rates(series, plot_dir / "group_rates.png", level)
    blocks = [
        Heading("Per-group error rates"),
        Table(["group", "samples", "hate (answered)", "normal (answered)", "unknown", "FPR", "FNR", "flag"], rows,
              caption=f"FPR = normal text flagged as hate, FP/(FP+TN); FNR = hate missed, FN/(FN+TP); "
                      f"[{level:.0%} interval]"),
        Paragraph(f"Equalized-odds difference (fairlearn, largest between-group gap in TPR or FPR): "
                  f"{interval(m['intervals']['eod'])}."),
    ]
    if m["small_group_flags"]:
        blocks.append(Bullets([f"Flag: {msg}" for msg in m["small_group_flags"]]))
    return blocks + [Figure(fig, f"Per-group FPR and FNR with {level:.0%} intervals"),
                     Table(["reference", "group", "FPR", "FNR"], ref_rows, caption="References, per group")]


def _scores(full: Mapping[str, Any], plot_dir: Path) -> list:
    """Bias AUCs, calibration and threshold of this run and of the references that have scores."""
    own = {**full["metrics"], "threshold_from_validation": full.get("threshold_from_validation")}
    series = [(f"{full['run']['name']} (this run)", own)]
    series += [(f"reference: {name}", ref["metrics"]) for name, ref in full["references"].items()
               if ref["metrics"].get("bias_auc")]
    return score_report.sections(series, full["bootstrap"]["level"], plot_dir / "reliability.png")


def _statuses(full: Mapping[str, Any]) -> list:
    counts = full["metrics"]["parse_status_counts"]
    return [Heading("Parse status"), Paragraph(status_summary(counts) + " The label comes only from the final answer."),
            Table(STATUS_HEADERS, status_rows(counts))]


def _errors(full: Mapping[str, Any]) -> list:
    errs = full["errors"]
    blocks = [Heading("Errors"), Paragraph(f"Wrong answers per group: {errs['selection']}. Error counts: "
                                           + ", ".join(f"{g} {n}" for g, n in errs["error_counts"].items()) + ".")]
    for group, rows in errs["by_group"].items():
        table = [[r["sample_id"], r["true"], r["predicted"], num(r["confidence"]), r["text"], r["rationale"]]
                 for r in rows]
        blocks.append(Table(["sample id", "true", "predicted", "confidence", "text", "rationale"], table,
                            caption=f"{group}"))
    blocks += _top_errors(full.get("top_errors"))
    if full["unanswered"]:
        table = [[u["sample_id"], u["group"], u["parse_status"], u["response_tail"]] for u in full["unanswered"]]
        blocks.append(Table(["sample id", "group", "parse status", "end of response"], table,
                            caption="Unanswered samples (first by id)"))
    return blocks


def _top_errors(top: Mapping[str, Any] | None) -> list:
    """The old users' lists: the run's top N false positives and false negatives."""
    if not top:
        return []
    blocks = []
    for key, title in (("false_positives", "false positives (normal text flagged as hate)"),
                       ("false_negatives", "false negatives (hate missed)")):
        rows = [[r["sample_id"], r["group"], num(r["confidence"]), r["text"], r["rationale"]] for r in top[key]]
        blocks.append(Table(["sample id", "group", "confidence", "text", "rationale"], rows,
                            caption=f"Top {top['n']} {title}: {len(rows)} of {top['counts'][key]}, {top['selection']}"))
    return blocks


def _training(full: Mapping[str, Any], plot_dir: Path) -> list:
    log = full.get("training_log")
    if not log or not Path(log).is_file():
        return []
    fig = plots.loss_curve(Path(log), plot_dir / "loss_curve.png")
    return [Heading("Training"), Paragraph(f"Loss curve of the linked training run `{Path(log).parent}`."),
            Figure(fig, "Training and hold-out loss")]


def method_notes(boot: Mapping[str, Any]) -> list:
    return [Heading("How these numbers were made"), Bullets([
        "Every number is computed from the per-sample records (scikit-learn, fairlearn); "
        "`hsd report RUN_DIR` regenerates this report from them without a model.",
        f"Intervals: {boot['method']}, {boot['resamples']} resamples, seed {boot['seed']}, "
        f"level {boot['level']}, resampled within {boot['strata']}.",
        f"Unknown predictions: left out of the confusion counts (policy `{boot['unknown_policy']}`); their "
        "rate is reported, and the strict numbers count them as errors.",
        f"Groups with fewer than {boot['min_class_count']} answered hate or normal samples are flagged.",
    ])]


def build(full: Mapping[str, Any], out_dir: Path) -> Document:
    plot_dir = out_dir / "plots"
    doc = Document(f"hsd report: {full['run']['name']}")
    doc.add(*_what(full), *_headline(full, plot_dir), *_confusion(full, plot_dir), *_groups(full, plot_dir),
            *_scores(full, plot_dir), *_statuses(full), *_errors(full), *_training(full, plot_dir),
            *method_notes(full["bootstrap"]))
    return doc

