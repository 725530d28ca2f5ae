"""``evaluation_report_<ts>.txt``: the old human-readable report, with numbers that hold up.

Same shape as the old pipeline's report (header, per-strategy performance, per-group error
rates) with what it lacked: MCC, balanced accuracy, the unknown count and rate with a sentence
saying unknowns are excluded from the confusion counts, the strict numbers, the parse statuses
(a line per strategy, and at the end a table with what each status means), and per-group counts
next to every rate. It states facts; it gives no fairness verdict.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any, Mapping, Sequence

from hsd.metrics.bias import GroupMetrics
from hsd.metrics.performance import Performance
from hsd.reporting.parse_status import text_table

_RULE = "=" * 60
# Header lines: meta key -> label, in this order; other meta keys follow under their own names.
_HEADER = (("model", "Model"), ("template", "Prompt Template"), ("data", "Data Source"),
           ("command", "Command Line"))


def render_report(results: Mapping[str, tuple[Performance, Sequence[GroupMetrics]]],
                  status_counts: Mapping[str, Mapping[str, int]], meta: Mapping[str, Any],
                  top: Mapping[str, Mapping[str, Any]] | None = None,
                  scores: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """``top``: per strategy, :func:`hsd.reporting.misclassified.top_errors` (listed when given);
    ``scores``: per strategy, :func:`hsd.metrics.summary.score_metrics` (bias AUCs, calibration)."""
    lines = ["HATE SPEECH DETECTION - STRATEGY EVALUATION REPORT", _RULE,
             f"Generated: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M:%S')}"]
    lines += _header(meta)
    total = sum(perf.n_samples for perf, _ in results.values())
    lines += [f"Total samples tested: {total}", "", "", "STRATEGY PERFORMANCE:", "-" * 25]
    for strategy, (perf, _) in results.items():
        lines += [""] + _performance(strategy, perf, status_counts[strategy])
    lines += ["", "", "BIAS AND FAIRNESS METRICS BY TARGET GROUP:", "-" * 40,
              "FPR = false positive rate (normal text flagged as hate) = FP / (FP + TN)",
              "FNR = false negative rate (hate text missed) = FN / (FN + TP)",
              "Counts are over answered samples; 'strict' counts an unknown as an error."]
    for strategy, (_, bias) in results.items():
        lines += [""] + _bias(strategy, bias)
    for strategy, block in (scores or {}).items():
        lines += ["", ""] + score_lines(strategy, block)
    lines += ["", "", "PARSE STATUS (how each response was read):", "-" * 40]
    for strategy in results:
        lines += ["", f"{strategy.upper()} Strategy:"] + text_table(status_counts[strategy])
    for strategy, t in (top or {}).items():
        lines += _top(strategy, t)
    return "\n".join(lines) + "\n"


def _top(strategy: str, top: Mapping[str, Any]) -> list[str]:
    lines = []
    for key, title in (("false_positives", "FALSE POSITIVES (normal text flagged as hate)"),
                       ("false_negatives", "FALSE NEGATIVES (hate text missed)")):
        rows = top[key]
        lines += ["", "", f"TOP {top['n']} {title}, {strategy.upper()} Strategy: {len(rows)} of "
                          f"{top['counts'][key]}, {top['selection']}:", "-" * 40]
        lines += [f"  {r['sample_id']}  [{r['group']}]  confidence {_f(r['confidence'])}  {r['text']}" for r in rows]
    return lines


def score_lines(strategy: str, block: Mapping[str, Any]) -> list[str]:
    """Bias AUCs per group (Subgroup, BPSN, BNSP with intervals), their generalized means, the
    final bias score, ECE per group and the threshold, or why there are none."""
    cov, b = block["score_coverage"], block["bias_auc"]
    lines = [f"THRESHOLD-FREE BIAS METRICS (ROC-AUC of P(hate)), {strategy.upper()} Strategy:", "-" * 40]
    if cov["unscored"]:
        why = "; ".join(f"{n} {reason}" for reason, n in cov["unscored_why"].items())
        total = cov["scored"] + cov["unscored"]
        lines.append(f"  Score not available for {cov['unscored']} of {total} samples ({why}).")
    if not b:
        return lines + ["  No sample has a P(hate) score (inference.mode=score gives one for every sample)."]
    lines += ["  Subgroup = within the group; BPSN = hate about other groups vs harmless posts about the group;",
              "  BNSP = harmless posts about other groups vs hate about the group.",
              "  [bootstrap interval at report.confidence]"]
    for g in b["groups"]:
        lines.append(f"  Target Group: {g['group'].upper()} (scored hate {g['positives']}, normal {g['negatives']})")
        lines += [f"     {name}: {_auc(g, key)}" for key, name in _AUCS]
    lines.append(f"  Generalized mean (p = {b['power']:g}) over groups: "
                 + ", ".join(f"{name} {_iv(b['generalized_mean'][key])}" for key, name in _AUCS))
    lines.append(f"  Overall AUC: {_iv(b['overall_auc'])}; final bias score (0.25 x overall + 0.25 x each mean): "
                 f"{_iv(b['final_score'])}")
    cal = block["calibration"]
    lines.append(f"  Expected calibration error ({cal['n_bins']} {cal['binning']} bins): "
                 f"all {_f(cal['overall']['ece'])}, "
                 + ", ".join(f"{g} {_f(rel['ece'])}" for g, rel in cal["groups"].items()))
    t = block["threshold"]
    if t:
        lines.append(f"  Threshold ({t['rule']}) picked on these samples: {_f(t['picked']['threshold'])} "
                     f"(F1 {_f(t['picked']['f1'])}; at 0.5: F1 {_f(t['default']['f1'])}). A test run gets the "
                     "validation run's threshold in report.html (hsd collate).")
    return lines


_AUCS = (("subgroup_auc", "Subgroup AUC"), ("bpsn_auc", "BPSN AUC"), ("bnsp_auc", "BNSP AUC"))


def _iv(iv: Mapping[str, Any]) -> str:
    return f"{_f(iv['estimate'])} [{_f(iv['low'])}, {_f(iv['high'])}]"


def _auc(row: Mapping[str, Any], key: str) -> str:
    why = row[f"{key}_undefined"]
    return f"n/a ({why})" if why else _iv(row[key])


def _header(meta: Mapping[str, Any]) -> list[str]:
    known = dict(_HEADER)
    lines = [f"{label}: {meta[key] if meta.get(key) is not None else '(not recorded)'}"
             for key, label in _HEADER]
    lines += [f"{key}: {value}" for key, value in meta.items() if key not in known]
    return lines


def _f(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _performance(strategy: str, perf: Performance, statuses: Mapping[str, int]) -> list[str]:
    a, s = perf.answered, perf.strict
    lines = [
        f"{strategy.upper()} Strategy:",
        f"  Samples:           {perf.n_samples} (answered {a.n}, unknown {perf.unknown_count} "
        f"= {_pct(perf.unknown_rate)})",
        f"  Accuracy:          {_f(a.accuracy)}",
        f"  Precision:         {_f(a.precision)}",
        f"  Recall:            {_f(a.recall)}",
        f"  F1-Score:          {_f(a.f1_score)}",
        f"  MCC:               {_f(a.mcc)}",
        f"  Balanced accuracy: {_f(a.balanced_accuracy)}",
        f"  Confusion Matrix: TP={a.true_positive}, TN={a.true_negative}, "
        f"FP={a.false_positive}, FN={a.false_negative}",
        f"  Unknown predictions (no readable final answer): {perf.unknown_count} of {perf.n_samples} "
        f"({_pct(perf.unknown_rate)}). They are excluded from the numbers and confusion counts above.",
        f"  Strict (unknown counted as an error): accuracy {_f(s.accuracy)}, precision {_f(s.precision)}, "
        f"recall {_f(s.recall)}, F1 {_f(s.f1_score)}, MCC {_f(s.mcc)}, "
        f"balanced accuracy {_f(s.balanced_accuracy)}",
    ]
    if perf.roc_auc is not None:
        lines.append(f"  ROC-AUC (p_hate):  {_f(perf.roc_auc)}")
    shown = ", ".join(f"{k} {v}" for k, v in sorted(statuses.items(), key=lambda kv: -kv[1]))
    lines.append(f"  Parse status: {shown}")
    return lines


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.2f}%"


def _bias(strategy: str, bias: Sequence[GroupMetrics]) -> list[str]:
    lines = [f"{strategy.upper()} Strategy - error rates by target group:"]
    for g in bias:
        lines += [
            f"  Target Group: {g.group.upper()}",
            f"     Samples: {g.sample_count} (unknown {g.unknown_count})",
            f"     FPR: {_f(g.false_positive_rate)} (FP={g.false_positive}, TN={g.true_negative}); "
            f"strict {_f(g.strict_false_positive_rate)}",
            f"     FNR: {_f(g.false_negative_rate)} (FN={g.false_negative}, TP={g.true_positive}); "
            f"strict {_f(g.strict_false_negative_rate)}",
        ]
    lines += _gaps(bias)
    return lines


def _gaps(bias: Sequence[GroupMetrics]) -> list[str]:
    """Largest difference between groups: the number a fairness review starts from."""
    out = []
    for name, attr in (("FPR", "false_positive_rate"), ("FNR", "false_negative_rate")):
        values = {g.group: getattr(g, attr) for g in bias if not math.isnan(getattr(g, attr))}
        if len(values) >= 2:
            hi, lo = max(values, key=values.get), min(values, key=values.get)
            out.append(f"  {name} gap across groups: {_f(values[hi] - values[lo])} "
                       f"(highest {hi} {_f(values[hi])}, lowest {lo} {_f(values[lo])})")
    return out
