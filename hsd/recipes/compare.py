"""``hsd compare RUN_A RUN_B [RUN_C ...] [--out DIR]``: are the differences between runs real?

Runs are compared only over the *same* sample ids (anything else compares two data sets, not
two models), with a paired bootstrap: each resample draws the same samples for every run, so
the interval of a difference is not inflated by which samples happened to be drawn. Deltas are
``run - RUN_A``. The old pipeline's success criterion - post-fine-tuning F1 with the simple
prompt >= baseline F1 with the rich prompt - gets a verdict that says whether the difference
is beyond noise. The reference classifiers are rows of every table, and the old summary files
``BASELINE_METRICS.txt`` / ``FINETUNING_RESULTS.txt`` are written for people's scripts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

from hsd.config import Config, ReportConfig
from hsd.errors import HsdError
from hsd.metrics import intervals
from hsd.metrics.references import REFERENCES, as_records
from hsd.metrics.summary import encode, evaluate, nan_to_none, paired, paired_bias_auc, settings
from hsd.reporting import comparison_report, refcache, summary_files
from hsd.reporting.output import write_report
from hsd.reporting.rundata import RunData, threshold_transfer
from hsd.runs import atomic_write_json, atomic_write_text, timestamp

DELTA_METRICS = ("accuracy", "f1", "mcc", "eod", "unknown_rate")
TFIDF = "tfidf_logreg"


class CompareError(HsdError):
    """Runs that cannot be compared (different samples, too few runs, no output directory)."""


def check_same_samples(runs: Sequence[RunData]) -> None:
    """Same sample ids, and for each id the same true label and group, in every run."""
    first = {r.sample_id: (r.true_label, r.target_group) for r in runs[0].records}
    for run in runs[1:]:
        other = {r.sample_id: (r.true_label, r.target_group) for r in run.records}
        only_a, only_b = sorted(first.keys() - other.keys()), sorted(other.keys() - first.keys())
        if only_a or only_b:
            raise CompareError(
                f"runs are not over the same sample ids: {runs[0].name} has {len(first)}, {run.name} has "
                f"{len(other)}; {len(only_a)} only in {runs[0].name} (e.g. {only_a[:3]}), {len(only_b)} only in "
                f"{run.name} (e.g. {only_b[:3]}). Compare runs made with the same data selection "
                "(data.split / data.subset / data.max_samples / data.seed)")
        differ = [i for i in first if first[i] != other[i]]
        if differ:
            raise CompareError(f"sample {differ[0]} has label/group {first[differ[0]]} in {runs[0].name} but "
                               f"{other[differ[0]]} in {run.name} ({len(differ)} such ids): the runs read "
                               "different versions of the data")


def verdict(delta: intervals.Interval, level: float) -> dict[str, Any]:
    """Is F1(candidate) >= F1(baseline), and is the difference beyond noise (interval excludes 0)?"""
    if delta.estimate != delta.estimate:  # NaN: a run has no answered hate prediction or sample
        return {"met": None, "beyond_noise": None, "delta": delta.to_json(),
                "text": "CANNOT BE JUDGED: F1 is undefined for one of the runs (no answered samples, "
                        "or no hate predictions and no hate samples); see the unknown rates"}
    met, beyond = delta.estimate >= 0, delta.low > 0 or delta.high < 0
    word = "MET" if met else "NOT MET"
    how = ("beyond noise" if beyond else "within noise") + f": the {level:.0%} paired-bootstrap interval of " \
        f"the F1 difference, [{delta.low:+.3f}, {delta.high:+.3f}], {'excludes' if beyond else 'includes'} 0"
    return {"met": met, "beyond_noise": beyond, "delta": delta.to_json(), "text": f"{word}, {how}"}


def criterion_roles(runs: Sequence[RunData]) -> tuple[int, list[int], str]:
    """(baseline index, candidate indices, how the roles were decided)."""
    base = [i for i, r in enumerate(runs) if r.role == "baseline"]
    tuned = [i for i, r in enumerate(runs) if r.role == "fine-tuned"]
    if base and tuned:
        rich = [i for i in base if runs[i].info()["template"] == "rich"]
        return (rich or base)[0], tuned, "from each run's config.yaml (model.adapter set = fine-tuned)"
    return 0, list(range(1, len(runs))), "from argument order (first run = baseline; config.yaml did not say)"


def success_criterion(runs: Sequence[RunData], data: Sequence[intervals.Sample3], cfg: ReportConfig,
                      f1s: Sequence[Optional[float]]) -> dict:
    """The verdict of each candidate against the baseline; ``f1s``: each run's headline F1, for the
    old pipeline's percent change and SUCCESS / NEEDS WORK."""
    b, candidates, how = criterion_roles(runs)
    rows = []
    for c in candidates:
        delta = intervals.paired_bootstrap(data[b], data[c], cfg.bootstrap_resamples, cfg.bootstrap_seed,
                                           cfg.confidence)["f1"]
        templates = (runs[c].info()["template"], runs[b].info()["template"])
        note = "" if templates == ("simple", "rich") else (
            f"note: the old criterion compares the simple prompt after fine-tuning with the rich prompt before; "
            f"here the templates are {templates[0]} and {templates[1]}")
        rows.append({"candidate": runs[c].name, **verdict(delta, cfg.confidence), "note": note,
                     "old_pipeline": summary_files.old_result(f1s[b], f1s[c])})
    return {"baseline": runs[b].name, "roles": how, "rule": "post-FT F1 (simple prompt) >= baseline F1 (rich prompt)",
            "verdicts": rows}


def collated(run: RunData, cfg: ReportConfig, provenance: Optional[dict[str, Any]] = None) -> Optional[dict]:
    """The run's ``metrics_full.json`` if it was computed from these very records with these settings
    (and, when ``provenance`` is given, the same reference fit): reused instead of recomputed."""
    path = run.path / "metrics_full.json"
    if not path.is_file():
        return None
    full = json.loads(path.read_text(encoding="utf-8"))
    same = (full.get("run", {}).get("records_sha256") == run.sha256
            and full.get("bootstrap") == nan_to_none(settings(cfg))
            and (provenance is None or full.get("reference_provenance") == provenance))
    return full if same else None


def _summaries(runs: Sequence[RunData], ref_records: dict, provenance: dict[str, Any], cfg: ReportConfig):
    """Per-run and per-reference metrics, from the runs' collated files where they are current."""
    runs_m = []
    for run in runs:
        cached = collated(run, cfg)
        metrics = cached["metrics"] if cached and "bias_auc" in cached["metrics"] else evaluate(run.records, cfg)
        if cached and "threshold_from_validation" in cached:
            metrics["threshold_from_validation"] = cached["threshold_from_validation"]
        elif metrics["bias_auc"]:
            metrics["threshold_from_validation"] = threshold_transfer(run)
        runs_m.append(metrics)
    first = collated(runs[0], cfg, provenance)
    refs_m = {name: first["references"][name]["metrics"]
              if first and name in first["references"] and "bias_auc" in first["references"][name]["metrics"]
              else evaluate(recs, cfg) for name, recs in ref_records.items()}
    return runs_m, refs_m


def compare(runs: Sequence[RunData], refs, provenance: dict[str, Any], cfg: ReportConfig) -> dict[str, Any]:
    """Per-run metrics, paired deltas vs the first run and vs TF-IDF, the criterion, reference rows.
    One run is allowed (a pipeline whose other runs failed): its metrics against the references."""
    if not runs:
        raise CompareError("compare needs at least one run")
    check_same_samples(runs)
    data = [encode(r.records) for r in runs]
    ref_records = {ref.name: as_records(runs[0].records, ref) for ref in refs}
    tfidf = ref_records.get(TFIDF)
    runs_m, refs_m = _summaries(runs, ref_records, provenance, cfg)
    return nan_to_none({
        "generated": timestamp(), "bootstrap": settings(cfg), "n_samples": len(runs[0].records),
        "runs": [{"info": r.info(), "metrics": m,
                  "training_log": str(r.training_log()) if r.training_log() else None} for r, m in zip(runs, runs_m)],
        "references": {name: {"description": REFERENCES[name][0], "metrics": refs_m[name]} for name in ref_records},
        "reference_provenance": provenance,
        "deltas": {r.name: paired(runs[0].records, r.records, cfg) for r in runs[1:]},
        "bias_auc_deltas": {r.name: paired_bias_auc(runs[0].records, r.records, cfg) for r in runs[1:]},
        "vs_tfidf": {r.name: paired(tfidf, r.records, cfg) for r in runs} if tfidf else {},
        "criterion": success_criterion(runs, data, cfg, [m["performance"]["answered"]["f1_score"] for m in runs_m]),
    })


def write(comp: dict[str, Any], out: Path, cfg: Optional[Config] = None) -> Path:
    """comparison.json, report.md/html, plots and the old summary files into ``out``; the deltas and
    verdicts to the trackers of ``cfg`` (the baseline run's; None: the defaults)."""
    out.mkdir(parents=True, exist_ok=True)
    write_report(out, comp, comparison_report.build)
    atomic_write_json(out / "comparison.json", comp)
    for name, text in summary_files.render(comp).items():
        atomic_write_text(out / name, text)
    _track(comp, out, cfg or Config())
    return out / "report.html"


def _track(comp: dict[str, Any], out: Path, cfg: Config) -> None:
    from hsd import tracking
    from hsd.config import to_dict
    from hsd.reporting.tracked import comparison_values, log_to_trackers

    names = tracking.report_trackers(cfg)
    log_to_trackers(names, out, out.parent.name, {"report": to_dict(cfg.report)}, comparison_values(comp))


def compare_experiment(exp_dir: Path, runs: Sequence[RunData], data_dir: Optional[str],
                       unfinished: Sequence[dict[str, Any]] = ()) -> Path:
    """The experiment's comparison: the runs over the baseline's samples, baseline first, and the
    stages that did not finish (stage, state, error line) so a partial result says what is missing."""
    ordered = sorted(runs, key=lambda r: ({"baseline": 0, "fine-tuned": 1}.get(r.role, 2), r.name))
    ids = {r.sample_id for r in ordered[0].records}
    same = [r for r in ordered if {x.sample_id for x in r.records} == ids]
    if len(same) < 2 and not unfinished:
        raise CompareError(f"no two runs of {exp_dir} are over the same samples: nothing to compare")
    refs, provenance = refcache.references_for(same[0], data_dir, use_cache=True)
    comp = compare(same, refs, provenance, same[0].cfg.report if same[0].cfg else ReportConfig())
    comp["not_compared"] = [r.name for r in ordered if r not in same]
    comp["unfinished"] = [{k: u.get(k) for k in ("stage", "state", "run_dir", "error")} for u in unfinished]
    return write(comp, exp_dir / "comparison", same[0].cfg)


def default_out(runs: Sequence[RunData]) -> Path:
    parents = {r.path.parent for r in runs}
    if len(parents) != 1:
        raise CompareError("the runs are in different directories: pass --out DIR for the comparison")
    return parents.pop() / "comparison"
