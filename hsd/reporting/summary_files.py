"""The old guide's summary files, ``BASELINE_METRICS.txt`` and ``FINETUNING_RESULTS.txt``.

The old guide built them with awk over the metric CSVs; hsd writes them from the comparison
(and ``BASELINE_METRICS.txt`` also into every baseline run's directory when it is collated),
one ``key: value`` per line (``grep '^f1_score:'`` / ``awk -F': ' ...`` still work), with the
interval after each headline number, the success-criterion verdict and the old pipeline's
line (F1 change in percent of the baseline, SUCCESS / NEEDS WORK).
"""

from __future__ import annotations

from typing import Any, Mapping

import math

from hsd.reporting.fmt import interval, num, pct

PERF_KEYS = ("precision", "recall", "balanced_accuracy")


def _metric_lines(run: Mapping[str, Any]) -> list[str]:
    info, m = run["info"], run["metrics"]
    head, ivs = m["performance"]["answered"], m["intervals"]
    lines = [f"run: {info['path']}", f"strategy: {info['strategy']}", f"template: {info['template']}",
             f"model: {info['model']}", f"adapter: {info['adapter'] or 'none'}",
             f"samples: {m['n_samples']}", f"answered: {head['n']}",
             f"unknown: {m['unknown_count']} ({pct(m['unknown_rate'])})",
             f"accuracy: {interval(ivs['accuracy'])}"]
    lines += [f"{k}: {num(head[k])}" for k in PERF_KEYS]
    lines += [f"f1_score: {interval(ivs['f1'])}", f"mcc: {interval(ivs['mcc'])}",
              f"equalized_odds_difference: {interval(ivs['eod'])}",
              f"strict_f1_score (unknown = wrong): {num(m['performance']['strict']['f1_score'])}"]
    for g in m["groups"]:
        lines.append(f"{g['group']}_fpr: {num(g['fpr'])} [{num(g['fpr_low'])}, {num(g['fpr_high'])}]")
        lines.append(f"{g['group']}_fnr: {num(g['fnr'])} [{num(g['fnr_low'])}, {num(g['fnr_high'])}]")
    return lines


def _references(comp: Mapping[str, Any]) -> list[str]:
    lines = ["", "references (same samples):"]
    for name, ref in comp["references"].items():
        ivs = ref["metrics"]["intervals"]
        lines.append(f"  {name}: accuracy {num(ivs['accuracy']['estimate'])}, f1_score "
                     f"{num(ivs['f1']['estimate'])}, mcc {num(ivs['mcc']['estimate'])}")
    return lines


def _header(title: str, comp: Mapping[str, Any], by: str = "hsd compare") -> list[str]:
    b = comp["bootstrap"]
    return [title, "=" * len(title), f"generated: {comp['generated']} by {by}",
            f"intervals: {b['level']:.0%} {b['method']}, {b['resamples']} resamples, seed {b['seed']}", ""]


def render_baseline(full: Mapping[str, Any]) -> str:
    """A baseline run's own ``BASELINE_METRICS.txt``, from its ``metrics_full.json`` content."""
    run = {"info": full["run"], "metrics": full["metrics"]}
    return "\n".join(_header("BASELINE METRICS", full, "hsd collate") + _metric_lines(run) + _references(full)) + "\n"


def old_result(base_f1: float | None, post_f1: float | None) -> dict[str, Any]:
    """The old pipeline's comparison: F1 change in percent of the baseline F1, and SUCCESS when
    post-FT F1 >= baseline F1 else NEEDS WORK (no interval: that is the verdict beside it)."""
    undefined = [x is None or math.isnan(x) for x in (base_f1, post_f1)]
    change = None if any(undefined) or base_f1 == 0 else (post_f1 - base_f1) / base_f1 * 100
    result = "n/a" if any(undefined) else ("SUCCESS" if post_f1 >= base_f1 else "NEEDS WORK")
    return {"f1_change_pct": change, "result": result}


def change_line(v: Mapping[str, Any]) -> str:
    """``F1 change +28.57% vs baseline: SUCCESS``, as every comparison output prints it."""
    old = v["old_pipeline"]
    change = "n/a" if old["f1_change_pct"] is None else f"{old['f1_change_pct']:+.2f}%"
    return f"F1 change {change} vs baseline: {old['result']}"


def render(comp: Mapping[str, Any]) -> dict[str, str]:
    by_name = {r["info"]["name"]: r for r in comp["runs"]}
    crit = comp["criterion"]
    base = _header("BASELINE METRICS", comp) + _metric_lines(by_name[crit["baseline"]]) + _references(comp)
    ft = _header("FINE-TUNING RESULTS", comp) + [f"baseline: {crit['baseline']}",
                                                   f"success_criterion: {crit['rule']}", f"roles: {crit['roles']}"]
    if not crit["verdicts"]:
        ft.append("no fine-tuned run in this comparison")
    ft += [f"did_not_finish: {u['stage']} ({u['state']}): {u.get('error') or '-'}" for u in comp.get("unfinished", [])]
    for v in crit["verdicts"]:
        ft += ["", f"[{v['candidate']}]"] + _metric_lines(by_name[v["candidate"]])
        ft += [f"f1_difference_vs_baseline: {interval(v['delta'], sign=True)}",
               f"success_criterion_met: {_yes_no(v['met'])}",
               f"beyond_noise: {_yes_no(v['beyond_noise'])}", f"verdict: {v['text']}",
               f"old_pipeline: {change_line(v)}"]
        if v["note"]:
            ft.append(v["note"])
    ft += _references(comp)
    return {"BASELINE_METRICS.txt": "\n".join(base) + "\n", "FINETUNING_RESULTS.txt": "\n".join(ft) + "\n"}


def _yes_no(flag: bool | None) -> str:
    return "n/a" if flag is None else ("yes" if flag else "no")
