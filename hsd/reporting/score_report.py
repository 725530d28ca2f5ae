"""Report sections on P(hate): bias AUCs per group, calibration, the decision threshold.

Shared by the run report (one run and the TF-IDF reference) and the comparison (every run side
by side, the paired differences from the first run, and in words which groups got worse), from
the blocks :func:`hsd.metrics.summary.score_metrics` writes. A classifier without scores gets a
line saying so instead of a table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from hsd.metrics.bias_auc import SUBMETRICS
from hsd.reporting import plots
from hsd.reporting.document import Bullets, Figure, Heading, Paragraph, Table
from hsd.reporting.fmt import interval, num

NAMES = {"subgroup_auc": "Subgroup AUC", "bpsn_auc": "BPSN AUC", "bnsp_auc": "BNSP AUC"}
# what a fall of each AUC means for group {g}, said of the classifier {run}
FELL = {"subgroup_auc": "{run} separates hate from harmless posts within {g} less well",
        "bpsn_auc": "{run} confuses harmless {g} posts with hate more (harmless {g} posts score closer to hate "
                    "about other groups)",
        "bnsp_auc": "{run} misses hate against {g} more (it scores closer to harmless posts about other groups)"}
ROSE = {"subgroup_auc": "{run} separates hate from harmless posts within {g} better",
        "bpsn_auc": "{run} confuses harmless {g} posts with hate less",
        "bnsp_auc": "{run} misses hate against {g} less"}
Series = Sequence[tuple[str, Mapping[str, Any]]]  # (classifier label, its metrics block)


def auc_cell(row: Mapping[str, Any], metric: str) -> str:
    """The AUC with its interval, or ``n/a (why)`` when the group's subset lacks a class."""
    why = row.get(f"{metric}_undefined")
    return f"n/a ({why})" if why else interval(row[metric])


def coverage(label: str, m: Mapping[str, Any]) -> Optional[str]:
    """``score not available for N samples (why)``, or None when every sample has a score."""
    cov = m.get("score_coverage")
    if not cov or not cov["unscored"]:
        return None
    why = "; ".join(f"{n} {reason}" for reason, n in cov["unscored_why"].items())
    return f"`{label}`: score not available for {cov['unscored']} of {cov['scored'] + cov['unscored']} samples ({why})."


def auc_table(series: Series, level: float) -> list:
    rows = []
    for label, m in series:
        b = m.get("bias_auc")
        if not b:
            continue
        rows += [[label, g["group"], f"{g['positives']} / {g['negatives']}", *(auc_cell(g, s) for s in SUBMETRICS)]
                 for g in b["groups"]]
        rows.append([label, f"generalized mean (p = {b['power']:g})", "",
                     *(interval(b["generalized_mean"][s]) for s in SUBMETRICS)])
    summary = [[label, interval(m["bias_auc"]["overall_auc"]), interval(m["bias_auc"]["final_score"]),
                str(m["bias_auc"]["n_scored"])] for label, m in series if m.get("bias_auc")]
    return [Table(["classifier", "group", "hate / normal scored", *NAMES.values()], rows,
                  caption=f"ROC-AUC of P(hate) [{level:.0%} interval]. Subgroup: within the group; BPSN: hate about "
                          "other groups vs harmless posts about the group (low = false alarms on the group); BNSP: "
                          "harmless posts about other groups vs hate about the group (low = the group's hate missed)"),
            Table(["classifier", "overall AUC", "final bias score", "scored samples"], summary,
                  caption="Final bias score = 0.25 x overall AUC + 0.25 x each generalized mean (Jigsaw Unintended "
                          "Bias, Borkan et al. 2019)")]


def calibration_blocks(series: Series, plot_path: Path) -> list:
    cal = [(label, m["calibration"]) for label, m in series if m.get("calibration")]
    if not cal:
        return []
    rows = [[label, "all", str(c["overall"]["n"]), num(c["overall"]["ece"])] for label, c in cal]
    rows += [[label, g, str(rel["n"]), num(rel["ece"])] for label, c in cal for g, rel in c["groups"].items()]
    first = cal[0][1]
    return [Heading("Calibration", 3),
            Table(["classifier", "group", "scored", "ECE"], rows,
                  caption=f"Expected calibration error of P(hate): {first['n_bins']} {first['binning']} bins, "
                          "sum of (bin share) x |fraction hate - mean P(hate)|; 0 = calibrated"),
            Figure(plots.reliability(cal, plot_path), "Reliability diagram: fraction hate against mean P(hate) per "
                                                      "bin (dashed: perfect calibration)")]


def _at(t: Mapping[str, Any], named: bool = True) -> str:
    return ((f"threshold {num(t['threshold'])}: " if named else "")
            + f"accuracy {num(t['accuracy'])}, precision {num(t['precision'])}, "
            f"recall {num(t['recall'])}, F1 {num(t['f1'])}, MCC {num(t['mcc'])}")


def threshold_blocks(series: Series) -> list:
    items = []
    for label, m in series:
        own, val = m.get("threshold"), m.get("threshold_from_validation")
        if own:
            items.append(f"`{label}`, threshold its own samples pick (in-sample, optimistic): {_at(own['picked'])}; "
                         f"at 0.5: {_at(own['default'], False)}.")
        if val and val.get("validation_run"):
            items.append(f"`{label}`, threshold picked on the validation split by `{val['validation_run']}` "
                         f"(validation F1 {num(val['validation_f1'])}) applied to these samples: {_at(val['picked'])}.")
            items.append(f"`{label}` at 0.5 on these samples: {_at(val['default'], False)}.")
        elif val:
            items.append(f"`{label}`: {val['note']}.")
    if not items:
        return []
    rule = next(m["threshold"]["rule"] for _, m in series if m.get("threshold"))
    return [Heading("Decision threshold", 3),
            Paragraph(f"Rule: {rule}. Picked on the validation split and applied unchanged to a test-split run "
                      "it is an honest estimate; picked on a run's own samples it is in-sample (optimistic)."),
            Bullets(items)]


def sections(series: Series, level: float, plot_path: Path) -> list:
    """The whole P(hate) section for these classifiers; one line when none of them has scores."""
    blocks: list = [Heading("Threshold-free bias metrics and calibration (P(hate))")]
    notes = [line for label, m in series if (line := coverage(label, m))]
    if not any(m.get("bias_auc") for _, m in series):
        return blocks + [Paragraph("No sample has a P(hate) score: bias AUCs, calibration and the threshold need "
                                   "inference.mode=score, or a generate run whose answers' label-token "
                                   "probabilities were recorded."), *([Bullets(notes)] if notes else [])]
    return (blocks + ([Bullets(notes)] if notes else []) + auc_table(series, level)
            + calibration_blocks(series, plot_path) + threshold_blocks(series))


def changes(base: str, run: str, before: Mapping[str, Any], after: Mapping[str, Any],
            delta: Mapping[str, Any]) -> list[str]:
    """Which groups got worse (and better) from ``base`` to ``run`` beyond noise, in words."""
    lines = []
    rows_a = {g["group"]: g for g in after["groups"]}
    for g0 in before["groups"]:
        g1 = rows_a.get(g0["group"])
        for metric in SUBMETRICS:
            d = delta.get(f"{metric}/{g0['group']}")
            if g1 is None or not d or d["low"] is None or d["low"] <= 0 <= d["high"]:
                continue
            fell = d["estimate"] < 0
            meaning = (FELL if fell else ROSE)[metric].format(run=f"`{run}`", g=g0["group"])
            lines.append(f"{NAMES[metric]} for {g0['group']} {'fell' if fell else 'rose'} from "
                         f"{num(g0[metric]['estimate'])} to {num(g1[metric]['estimate'])} (difference "
                         f"{interval(d, sign=True)}, interval excludes 0): {meaning}.")
    if not lines:
        lines.append(f"No per-group bias AUC of `{run}` differs from `{base}` beyond noise (every paired interval "
                     "includes 0).")
    d = delta.get("final_score")
    if d:
        lines.append(f"Final bias score: {num(before['final_score']['estimate'])} -> "
                     f"{num(after['final_score']['estimate'])} (difference {interval(d, sign=True)}).")
    return lines


def comparison_sections(comp: Mapping[str, Any], plot_path: Path) -> list:
    """Every run and reference side by side, then the paired differences from the first run in words."""
    series = [(r["info"]["name"], r["metrics"]) for r in comp["runs"]]
    series += [(f"reference: {name}", ref["metrics"]) for name, ref in comp["references"].items()
               if ref["metrics"].get("bias_auc")]  # the constant references have no scores
    blocks = sections(series, comp["bootstrap"]["level"], plot_path)
    base = comp["runs"][0]
    words = []
    for r in comp["runs"][1:]:
        delta = (comp.get("bias_auc_deltas") or {}).get(r["info"]["name"])
        if delta and base["metrics"].get("bias_auc") and r["metrics"].get("bias_auc"):
            words += changes(base["info"]["name"], r["info"]["name"], base["metrics"]["bias_auc"],
                             r["metrics"]["bias_auc"], delta)
        else:
            unscored = [x["info"]["name"] for x in (base, r) if not x["metrics"].get("bias_auc")]
            words.append(f"`{r['info']['name']}` vs `{base['info']['name']}`: bias AUCs not compared ("
                         + (", ".join(f"`{n}`" for n in unscored) + " has no P(hate) scores" if unscored
                            else "no sample is scored in both runs") + ").")
    if words:
        blocks += [Heading(f"Which groups got worse or better than {base['info']['name']}", 3),
                   Paragraph("Paired bootstrap over the samples both runs scored: a difference counts when its "
                             "interval excludes 0."), Bullets(words)]
    return blocks
