"""The old guide's summary files, ``BASELINE_METRICS.txt`` and ``FINETUNING_RESULTS.txt``.

The old guide built them with awk over the metric CSVs; hsd writes them from the comparison,
one ``key: value`` per line (``grep '^f1_score:'`` / ``awk -F': ' ...`` still work), with the
interval after each headline number and the success-criterion verdict.
"""

from __future__ import annotations

from typing import Any, Mapping

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


def _header(title: str, comp: Mapping[str, Any]) -> list[str]:
    b = comp["bootstrap"]
    return [title, "=" * len(title), f"generated: {comp['generated']} by hsd compare",
            f"intervals: {b['level']:.0%} {b['method']}, {b['resamples']} resamples, seed {b['seed']}", ""]


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
               f"beyond_noise: {_yes_no(v['beyond_noise'])}", f"verdict: {v['text']}"]
        if v["note"]:
            ft.append(v["note"])
    ft += _references(comp)
    return {"BASELINE_METRICS.txt": "\n".join(base) + "\n", "FINETUNING_RESULTS.txt": "\n".join(ft) + "\n"}


def _yes_no(flag: bool | None) -> str:
    return "n/a" if flag is None else ("yes" if flag else "no")
