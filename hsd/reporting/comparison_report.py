"""The comparison report, built from ``comparison.json`` content only (see :mod:`hsd.recipes.compare`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from hsd.reporting import plots, score_report
from hsd.reporting.document import Bullets, Document, Figure, Heading, Paragraph, Table
from hsd.reporting.fmt import interval, num, pct, rate_interval
from hsd.reporting.parse_status import comparison_rows
from hsd.reporting.summary_files import change_line
from hsd.reporting.run_report import METRIC_HEADERS, REFERENCE_IN_PLOTS, method_notes, metric_row

DELTA_LABELS = {"accuracy": "accuracy", "f1": "F1", "mcc": "MCC", "eod": "EO difference",
                "unknown_rate": "unknown rate"}


def _runs(comp: Mapping[str, Any]) -> list:
    rows = [[r["info"]["name"], r["info"]["role"], r["info"]["strategy"], str(r["info"]["template"]),
             str(r["info"]["model"]) + (f" + {r['info']['adapter']}" if r["info"]["adapter"] else ""),
             str(r["metrics"]["n_samples"]), pct(r["metrics"]["unknown_rate"])] for r in comp["runs"]]
    extra = [Paragraph("Not compared (different samples): " + ", ".join(comp["not_compared"]))] \
        if comp.get("not_compared") else []
    return [Paragraph(f"{len(comp['runs'])} runs over the same {comp['n_samples']} sample ids. Differences are "
                      f"`run - {comp['runs'][0]['info']['name']}` with paired-bootstrap intervals."),
            Heading("Runs"),
            Table(["run", "role", "strategy", "template", "model", "samples", "unknown"], rows), *extra]


def _statuses(comp: Mapping[str, Any]) -> list:
    counts = {r["info"]["name"]: r["metrics"]["parse_status_counts"] for r in comp["runs"]}
    return [Heading("Parse status"),
            Table(["parse status", *counts, "meaning"], comparison_rows(counts),
                  caption="Samples per parse status in each run: ok_unframed counts answers whose harmony frame "
                          "was broken, no_final_answer_truncated those cut at the token limit")]


def _metrics(comp: Mapping[str, Any], plot_dir: Path) -> list:
    level = comp["bootstrap"]["level"]
    rows = [metric_row(r["info"]["name"], r["metrics"]) for r in comp["runs"]]
    rows += [metric_row(f"reference: {name}", ref["metrics"]) for name, ref in comp["references"].items()]
    forest = [(r["info"]["name"], r["metrics"]["intervals"]) for r in comp["runs"]]
    forest += [(name, ref["metrics"]["intervals"]) for name, ref in comp["references"].items()]
    fig = plots.forest(forest, ["accuracy", "f1", "mcc"], plot_dir / "metrics.png",
                       title=f"{level:.0%} bootstrap intervals")
    return [Heading("Metrics"), Table(METRIC_HEADERS, rows, caption=f"Point estimate [{level:.0%} interval]"),
            Bullets([f"`{n}`: {ref['description']}" for n, ref in comp["references"].items()]),
            Figure(fig, "Accuracy, F1 and MCC per run and reference")]


def _unfinished(comp: Mapping[str, Any]) -> list:
    """The stages that did not complete: what this comparison is missing, and why."""
    rows = [[u["stage"], u["state"], u.get("error") or ""] for u in comp.get("unfinished", [])]
    if not rows:
        return []
    return [Heading("Stages that did not finish"),
            Paragraph("This comparison holds only the runs that finished. `hsd submit resume <experiment>` "
                      "runs the rest again (finished runs are reused)."),
            Table(["stage", "state", "error or reason"], rows)]


def _criterion(comp: Mapping[str, Any]) -> list:
    crit = comp["criterion"]
    items = [f"{v['candidate']} vs {crit['baseline']}: F1 difference {interval(v['delta'], sign=True)} - "
             f"{v['text']}." + (f" ({v['note']})" if v["note"] else "") for v in crit["verdicts"]]
    # the old pipeline's line beside it: percent change and SUCCESS / NEEDS WORK, no interval
    items += [f"{v['candidate']} vs {crit['baseline']} (old pipeline): {change_line(v)}." for v in crit["verdicts"]]
    items = items or ["Not judged: no fine-tuned run in this comparison."]
    return [Heading("Success criterion"),
            Paragraph(f"The old pipeline's rule: {crit['rule']}. Roles {crit['roles']}."), Bullets(items)]


def _deltas(comp: Mapping[str, Any], plot_dir: Path) -> list:
    base = comp["runs"][0]["info"]["name"]
    rows = [[name] + [interval(d[m], sign=True) for m in DELTA_LABELS] + [
            "yes" if (d["f1"]["low"] or 0) > 0 or (d["f1"]["high"] or 0) < 0 else "no"]
            for name, d in comp["deltas"].items()]
    vs = [[name, interval(d["f1"], sign=True), interval(d["mcc"], sign=True), interval(d["accuracy"], sign=True)]
          for name, d in comp["vs_tfidf"].items()]
    forest = [(f"{name} - {base}", d) for name, d in comp["deltas"].items()]
    forest += [(f"{name} - tfidf", d) for name, d in comp["vs_tfidf"].items()]
    fig = plots.forest(forest, ["f1", "mcc"], plot_dir / "deltas.png", title="paired differences", zero_line=True)
    blocks = [Heading(f"Differences from {base}"),
              Table(["run", *DELTA_LABELS.values(), "F1 difference beyond noise"], rows,
                    caption="Paired-bootstrap interval of (run - first run)")]
    if vs:
        blocks.append(Table(["run", "F1 - TF-IDF", "MCC - TF-IDF", "accuracy - TF-IDF"], vs,
                            caption="Each run against the TF-IDF reference on the same samples (paired)"))
    return blocks + [Figure(fig, "Paired differences with intervals (dashed line: no difference)")]


def _groups(comp: Mapping[str, Any], plot_dir: Path) -> list:
    base = comp["runs"][0]
    rows = []
    for r in comp["runs"]:
        d = comp["deltas"].get(r["info"]["name"])
        for g in r["metrics"]["groups"]:
            rows.append([r["info"]["name"], g["group"], rate_interval(g, "fpr"),
                         interval(d[f"fpr/{g['group']}"], sign=True) if d else "",
                         rate_interval(g, "fnr"), interval(d[f"fnr/{g['group']}"], sign=True) if d else ""])
    for name, ref in comp["references"].items():
        rows += [[f"reference: {name}", g["group"], rate_interval(g, "fpr"), "", rate_interval(g, "fnr"), ""]
                 for g in ref["metrics"]["groups"]]
    series = [(r["info"]["name"], r["metrics"]["groups"]) for r in comp["runs"]]
    if REFERENCE_IN_PLOTS in comp["references"]:
        series.append((REFERENCE_IN_PLOTS, comp["references"][REFERENCE_IN_PLOTS]["metrics"]["groups"]))
    fig = plots.group_rates(series, plot_dir / "group_rates.png", comp["bootstrap"]["level"])
    flags = sorted({msg for r in comp["runs"] for msg in r["metrics"]["small_group_flags"]})
    return [Heading("Per-group error rates"),
            Table(["run", "group", "FPR", f"FPR - {base['info']['name']}", "FNR", f"FNR - {base['info']['name']}"],
                  rows, caption="Rates [interval]; differences with paired-bootstrap intervals"),
            *([Bullets([f"Flag: {m}" for m in flags])] if flags else []),
            Figure(fig, "Per-group FPR and FNR per run, with intervals")]


def _pictures(comp: Mapping[str, Any], plot_dir: Path) -> list:
    blocks: list = [Heading("Confusion matrices")]
    for k, r in enumerate(comp["runs"]):
        fig = plots.confusion(r["metrics"]["confusion"], r["info"]["name"], plot_dir / f"confusion_{k}.png")
        blocks.append(Figure(fig, f"Confusion matrix of {r['info']['name']}"))
    logs = [(k, r) for k, r in enumerate(comp["runs"]) if r.get("training_log") and Path(r["training_log"]).is_file()]
    if logs:
        blocks.append(Heading("Training"))
    for k, r in logs:
        fig = plots.loss_curve(Path(r["training_log"]), plot_dir / f"loss_curve_{k}.png")
        blocks.append(Figure(fig, f"Loss curve of the training run behind {r['info']['name']}"))
    return blocks


def build(comp: Mapping[str, Any], out_dir: Path) -> Document:
    plot_dir = out_dir / "plots"
    names = " vs ".join(r["info"]["name"] for r in comp["runs"])
    doc = Document(f"hsd comparison: {names}")
    doc.add(*_runs(comp), *_unfinished(comp), *_criterion(comp), *_metrics(comp, plot_dir), *_deltas(comp, plot_dir),
            *_groups(comp, plot_dir), *score_report.comparison_sections(comp, plot_dir / "reliability.png"),
            *_statuses(comp), *_pictures(comp, plot_dir), *method_notes(comp["bootstrap"]))
    return doc


def _short_verdict(v: Mapping[str, Any]) -> str:
    if v["met"] is None:
        return "cannot be judged"
    return ("MET" if v["met"] else "NOT MET") + (" (beyond noise)" if v["beyond_noise"] else " (within noise)")


def terminal_table(comp: Mapping[str, Any], report: Path) -> str:
    """A few lines for the terminal: each run's answered rate, F1 and MCC, the TF-IDF reference,
    the success-criterion verdict with the old pipeline's F1 change line, what did not finish, and where the full report is."""
    verdicts = {v["candidate"]: f"{_short_verdict(v)}; {change_line(v)}" for v in comp["criterion"]["verdicts"]}
    rows = [(r["info"]["name"], r["info"]["role"], r["metrics"], verdicts.get(r["info"]["name"], "-"))
            for r in comp["runs"]]
    if REFERENCE_IN_PLOTS in comp["references"]:
        rows.append((REFERENCE_IN_PLOTS, "reference", comp["references"][REFERENCE_IN_PLOTS]["metrics"], "-"))
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{'run':<{width}}{'role':<12}{'answered':>9}{'F1':>8}{'MCC':>8}  success criterion"]
    for name, role, m, verdict in rows:
        ivs, unknown = m["intervals"], m["unknown_rate"]
        lines.append(f"{name:<{width}}{role:<12}{pct(None if unknown is None else 1 - unknown):>9}{num(ivs['f1']['estimate']):>8}"
                     f"{num(ivs['mcc']['estimate']):>8}  {verdict}")
    lines.append(f"success criterion: {comp['criterion']['rule']}")
    lines += [f"did not finish: {u['stage']} ({u['state']}): {u.get('error') or '-'}" for u in comp.get("unfinished", [])]
    lines.append(f"report: {report}")
    return "\n".join(lines)
