"""Everything a report says about one set of records, as one JSON-ready dict.

The same function scores an LLM run and each reference classifier (whose "records" are the
run's records with the reference's predictions), so the two can never be scored differently.
Point estimates come from scikit-learn (:mod:`hsd.metrics.performance`, the numbers of the seed
CSVs) and fairlearn (:mod:`hsd.metrics.fairness`); the bootstrap only adds the intervals, and
its own point estimates are checked against those values.

Records are sorted by sample id first, so the seeded bootstrap draws the same resamples
whatever the shard layout (one rank or eight) the records came from.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from hsd.config import ReportConfig
from hsd.metrics import bias_auc, calibration, fairness, intervals
from hsd.metrics.frame import nan_to_none  # noqa: F401  (collate and compare import it from here)
from hsd.metrics.performance import HEADLINE, compute_performance
from hsd.records import Record

assert HEADLINE == "answered", "intervals.py leaves unknowns out, as the headline policy does"


def sorted_records(records: Sequence[Record]) -> list[Record]:
    return sorted(records, key=lambda r: r.sample_id)


def encode(records: Sequence[Record]) -> intervals.Sample3:
    return intervals.encode([r.true_label for r in records], [r.predicted_label for r in records],
                            [r.target_group for r in records])


def evaluate(records: Sequence[Record], cfg: ReportConfig) -> dict[str, Any]:
    """Headline and strict metrics, per-group rates, intervals, equalized odds, flags, statuses."""
    records = sorted_records(records)
    perf = compute_performance(records)
    y_true = [r.true_label for r in records]
    y_pred = [r.predicted_label for r in records]
    groups = [r.target_group for r in records]
    table = fairness.group_table(y_true, y_pred, groups)
    eod = fairness.equalized_odds(table)
    ivs = intervals.bootstrap(encode(records), cfg.bootstrap_resamples, cfg.bootstrap_seed, cfg.confidence)
    head = perf.headline
    expected = {"accuracy": head.accuracy, "f1": head.f1_score, "mcc": head.mcc,
                "unknown_rate": perf.unknown_rate, "eod": eod}
    for g, row in table.iterrows():
        expected[f"fpr/{g}"], expected[f"fnr/{g}"] = row.fpr, row.fnr
    intervals.check_point_estimates(ivs, expected)
    flags = fairness.small_groups(table, cfg.min_class_count)
    return {
        "n_samples": perf.n_samples,
        "unknown_count": perf.unknown_count,
        "unknown_rate": perf.unknown_rate,
        "performance": perf.to_dict(),
        "intervals": {k: v.to_json() for k, v in ivs.items()},
        "groups": _group_rows(table, ivs, {f.group for f in flags}),
        "equalized_odds_difference": eod,
        "small_group_flags": [f.message() for f in flags],
        "parse_status_counts": dict(sorted(Counter(r.parse_status for r in records).items())),
        "confusion": _confusion(records),
        **score_metrics(records, cfg),
    }


def score_metrics(records: Sequence[Record], cfg: ReportConfig) -> dict[str, Any]:
    """Threshold-free metrics of P(hate): bias AUCs per group, calibration, the run's own best
    threshold, and how many samples have no score and why (the blocks are None without scores)."""
    return {"score_coverage": score_coverage(records),
            "bias_auc": bias_auc.summarize(records, cfg.bootstrap_resamples, cfg.bootstrap_seed, cfg.confidence),
            "calibration": calibration.summarize(records), "threshold": calibration.own_threshold(records)}


def score_coverage(records: Sequence[Record]) -> dict[str, Any]:
    """Samples with and without a P(hate); the unscored counted by why (their parse status says it:
    no label in the answer, or a label the decoder recorded no probability for)."""
    missing = [r for r in records if not bias_auc.has_score(r)]
    why = Counter("no hate/normal label in the answer" if r.predicted_label not in intervals.PRED[:2]
                  else "label read but no label-token probability: the answer's label token does not follow a "
                       "classification/label key, or the run predates generate-mode scores" for r in missing)
    return {"scored": len(records) - len(missing), "unscored": len(missing), "unscored_why": dict(sorted(why.items()))}


def paired(a: Sequence[Record], b: Sequence[Record], cfg: ReportConfig) -> dict[str, Any]:
    """Paired-bootstrap intervals of ``statistic(b) - statistic(a)`` over the same samples."""
    res = intervals.paired_bootstrap(encode(sorted_records(a)), encode(sorted_records(b)),
                                     cfg.bootstrap_resamples, cfg.bootstrap_seed, cfg.confidence)
    return {k: v.to_json() for k, v in res.items()}


def paired_bias_auc(a: Sequence[Record], b: Sequence[Record], cfg: ReportConfig) -> dict[str, Any] | None:
    """Paired-bootstrap intervals of bias-AUC differences ``b - a`` over the samples both scored."""
    return bias_auc.paired(a, b, cfg.bootstrap_resamples, cfg.bootstrap_seed, cfg.confidence)


def _group_rows(table, ivs: dict[str, intervals.Interval], flagged: set[str]) -> list[dict[str, Any]]:
    rows = []
    for g, row in table.iterrows():
        out = {"group": str(g), **{k: (int(v) if k not in ("fpr", "fnr") else float(v)) for k, v in row.items()}}
        for rate in ("fpr", "fnr"):
            iv = ivs[f"{rate}/{g}"]
            out[f"{rate}_low"], out[f"{rate}_high"] = iv.low, iv.high
        out["flagged"] = str(g) in flagged
        rows.append(out)
    return rows


def _confusion(records: Sequence[Record]) -> dict[str, dict[str, int]]:
    """true label -> predicted label (hate, normal, unknown) -> count; unknown = anything else."""
    out = {t: {p: 0 for p in intervals.PRED} for t in intervals.TRUE}
    for r in records:
        pred = r.predicted_label if r.predicted_label in intervals.PRED[:2] else "unknown"
        out[r.true_label][pred] += 1
    return out


def settings(cfg: ReportConfig) -> dict[str, Any]:
    """How the intervals were made, written next to them: every part of ``cfg`` that :func:`evaluate`
    reads (:mod:`hsd.reporting.refcache` reuses numbers computed under equal settings)."""
    return {"method": "percentile bootstrap", "resamples": cfg.bootstrap_resamples, "seed": cfg.bootstrap_seed,
            "level": cfg.confidence, "strata": "target group x true label (sizes fixed)",
            "unknown_policy": HEADLINE, "min_class_count": cfg.min_class_count}

