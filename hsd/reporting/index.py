"""``hsd report index [RESULTS_DIR]``: what is under ``results/``, read from the files alone.

Each run directory and experiment is summarised from what hsd wrote into it — ``manifest.json``
(status, dates, error), ``config.yaml`` (model, adapter or LoRA settings, prompt),
``metrics_full.json`` (F1 / MCC with their intervals; ``metrics.json`` without intervals
before a collate), the experiment's ``comparison/comparison.json`` (the verdict), ``jobs.json``
(the submitted jobs' last recorded states). A run that cannot be read (a torn manifest, a bad
config, no manifest at all) is listed with what is wrong with it: the index is where a user
looks for what went wrong, so it must never be the thing that fails.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hsd.reporting.fmt import interval, num

# Directories inside runs and experiments that are never runs themselves.
SKIP = {"tracker", "shards", "checkpoints", "adapter", "plots", "ftdata", "mlruns", "submitit", "wandb", "profile"}
RUN_MARKS = {"manifest.json", "config.yaml", "shards", "train_log.jsonl", "ftdata.json"}
MAX_DEPTH = 4  # results/<experiment>/<run>, or one level deeper (the demo's results/demo/<experiment>)
FAILED = {"FAILED", "LOST", "CANCELLED", "INTERRUPTED"}
ACTIVE = {"RUNNING", "PENDING", "PREEMPTED"}


@dataclass
class RunRow:
    """One run of the index (every field already text, except the sort keys)."""

    experiment: str
    name: str
    kind: str = "?"
    date: str = ""
    model: str = ""
    adapter: str = ""
    prompt: str = ""
    f1: str = ""
    mcc: str = ""
    f1_sort: Optional[float] = None
    mcc_sort: Optional[float] = None
    answered: str = ""
    verdict: str = ""
    status: str = "?"
    detail: str = ""  # progress of a running job, the error of a failed one, a problem reading the run
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, path relative to the results dir)


@dataclass
class ExperimentRow:
    name: str
    status: str
    date: str = ""
    runs: int = 0
    verdict: str = ""
    detail: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)


def _json(path: Path) -> dict[str, Any]:
    """A JSON file's mapping; a problem is raised as one readable line."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} does not hold a JSON object")
    return data


def date_of(ts: Optional[str]) -> str:
    """``20261205_153052`` -> ``2026-12-05 15:30``; anything else as it is."""
    if ts and len(ts) == 15 and ts[8] == "_" and ts.replace("_", "").isdigit():
        return f"{ts[:4]}-{ts[4:6]}-{ts[6:8]} {ts[9:11]}:{ts[11:13]}"
    return ts or ""


def find(results: Path) -> dict[Path, list[Path]]:
    """experiment directory -> its run directories (sorted), for every experiment under ``results``."""
    found: dict[Path, list[Path]] = {}

    def walk(d: Path, depth: int) -> None:
        children = sorted(p for p in d.iterdir() if p.is_dir() and p.name not in SKIP and not p.name.startswith("."))
        if (d / "jobs.json").is_file():
            found.setdefault(d, [])
        for child in children:
            names = {p.name for p in child.iterdir()}
            if names & RUN_MARKS or any(n.startswith("intermediate_results") for n in names):
                found.setdefault(d, []).append(child)
            elif "comparison.json" not in names and depth < MAX_DEPTH:
                walk(child, depth + 1)

    if results.is_dir():
        walk(results, 1)
    return found


def verdicts(exp: Path) -> dict[str, str]:
    """candidate run name -> the short verdict (``MET, beyond noise``); empty without a comparison."""
    path = exp / "comparison" / "comparison.json"
    if not path.is_file():
        return {}
    crit = _json(path).get("criterion", {})
    out = {v["candidate"]: v["text"].split(":")[0] for v in crit.get("verdicts", [])}
    if crit.get("baseline"):
        out.setdefault(crit["baseline"], "baseline")
    return out


def _config(run: Path) -> Optional[Any]:
    from hsd.config import ConfigError, load_config

    if not (run / "config.yaml").is_file():
        return None
    try:
        return load_config(run / "config.yaml")
    except ConfigError as exc:
        raise ValueError(f"config.yaml: {str(exc).splitlines()[0]}") from None


def _describe(row: RunRow, cfg: Any, manifest: dict[str, Any]) -> None:
    kind = row.kind
    row.model = Path(cfg.model.name_or_path).name if cfg else str(manifest.get("model", ""))
    if cfg and kind == "train":
        lora = cfg.train.lora
        row.adapter = f"LoRA r={lora.r} alpha={lora.alpha} on {', '.join(lora.target_modules + lora.target_parameters)}"
        row.prompt = f"{cfg.train.format} (training data)"
    elif cfg:
        row.adapter = Path(cfg.model.adapter).parent.name + "/adapter" if cfg.model.adapter else "none"
        row.prompt = cfg.prompt.template + (f" / {cfg.prompt.strategy}" if cfg.prompt.strategy else "")


def _metrics(row: RunRow, run: Path) -> None:
    full = run / "metrics_full.json"
    if full.is_file():
        m = _json(full)["metrics"]
        f1, mcc = m["intervals"]["f1"], m["intervals"]["mcc"]
        row.f1, row.mcc, row.f1_sort, row.mcc_sort = interval(f1), interval(mcc), f1["estimate"], mcc["estimate"]
        row.answered = _percent(m.get("unknown_rate"))
    elif (run / "metrics.json").is_file():
        (_, s), = _json(run / "metrics.json")["strategies"].items()
        head = s["performance"]["answered"]
        row.f1, row.mcc, row.f1_sort, row.mcc_sort = num(head["f1_score"]), num(head["mcc"]), head["f1_score"], head["mcc"]
        row.answered = _percent(s["performance"].get("unknown_rate"))


def _percent(unknown_rate: Optional[float]) -> str:
    return "" if unknown_rate is None else f"{100 * (1 - unknown_rate):.1f}%"


def _progress(row: RunRow, run: Path, manifest: dict[str, Any]) -> str:
    if row.kind == "train":
        steps = [json.loads(l).get("step", 0) for l in _lines(run / "train_log.jsonl")]
        return f"step {max(steps, default=0)}/{manifest.get('total_steps', '?')}"
    if row.kind == "validate":
        done = sum(len(_lines(p)) for p in (run / "shards").glob("rank*.jsonl"))
        return f"{done} samples recorded"
    return ""


def _lines(path: Path) -> list[str]:
    try:
        return [l for l in path.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip().endswith("}")]
    except OSError:
        return []


LINKS = (("report", "report.html"), ("text report", "evaluation_report_*.txt"), ("loss curve", "loss_curve.png"),
         ("log", "validation_log_*.log"), ("train log", "train_log.jsonl"), ("manifest", "manifest.json"))


def run_row(results: Path, exp: Path, run: Path, verdict: dict[str, str]) -> RunRow:
    """The index row of one run directory; what cannot be read is in ``detail``, never raised."""
    row = RunRow(experiment=str(exp.relative_to(results)) or ".", name=run.name)
    for label, pattern in LINKS:
        hit = sorted(run.glob(pattern))
        if hit:
            row.links.append((label, str(hit[-1].relative_to(results))))
    try:
        if (run / "ftdata.json").is_file():
            row.kind, row.status = "ftdata", "COMPLETED"
            return row
        if not (run / "manifest.json").is_file():
            row.detail = "no manifest.json: the run was killed before it started, or hsd did not write it"
            return row
        manifest = _json(run / "manifest.json")
        row.kind = str(manifest.get("command", "?"))
        row.status = str(manifest.get("status", "?"))
        row.date = date_of(manifest.get("ts") or manifest.get("started"))
        _describe(row, _config(run), manifest)
        _metrics(row, run)
        row.verdict = verdict.get(run.name, "")
        if row.status in FAILED and manifest.get("error"):
            row.detail = str(manifest["error"]).splitlines()[0][:300]
        elif row.status in ACTIVE:
            row.detail = _progress(row, run, manifest)
        elif row.kind == "train" and manifest.get("final_eval_loss") is not None:
            row.detail = f"{manifest.get('steps', '?')} steps, final eval loss {num(manifest['final_eval_loss'], 4)}"
    except Exception as exc:  # a torn or hand-edited file: the row says so, the page still renders
        row.detail = f"cannot read this run: {exc}"
        row.status = row.status if row.status != "?" else "UNREADABLE"
    return row


def experiment_row(results: Path, exp: Path, rows: list[RunRow]) -> ExperimentRow:
    """The experiment's state: its jobs' last recorded states (``jobs.json``), else its runs'."""
    out = ExperimentRow(name=str(exp.relative_to(results)) or ".", status="?", runs=len(rows))
    states = [r.status for r in rows]
    try:
        if (exp / "jobs.json").is_file():
            book = _json(exp / "jobs.json")
            states = [str(j.get("state", "?")) for j in book.get("jobs", [])]
            out.date = date_of(book.get("submitted"))
            errors = [f"{j.get('stage')}: {j['error']}" for j in book.get("jobs", []) if j.get("error")]
            out.detail = "; ".join(errors)[:400]
        comp = exp / "comparison" / "report.html"
        if comp.is_file():
            out.links.append(("comparison", str(comp.relative_to(results))))
            out.verdict = "; ".join(f"{k}: {v}" for k, v in verdicts(exp).items() if v != "baseline")
    except Exception as exc:
        out.detail = f"cannot read this experiment: {exc}"
    out.date = out.date or min((r.date for r in rows if r.date), default="")
    out.status = _overall(states)
    return out


def _overall(states: list[str]) -> str:
    if not states:
        return "EMPTY"
    if any(s in FAILED or s == "UNREADABLE" for s in states):
        return "FAILED" if not any(s in ACTIVE for s in states) else "RUNNING (some failed)"
    if any(s in ACTIVE for s in states):
        return "RUNNING"
    return "COMPLETED" if all(s == "COMPLETED" for s in states) else "PARTIAL"


def collect(results: Path) -> tuple[list[ExperimentRow], list[RunRow]]:
    """Every experiment and run under ``results``, newest experiment first."""
    experiments, runs = [], []
    for exp, run_dirs in find(results).items():
        try:
            verdict = verdicts(exp)
        except Exception:
            verdict = {}
        rows = [run_row(results, exp, r, verdict) for r in run_dirs]
        experiments.append(experiment_row(results, exp, rows))
        runs += rows
    experiments.sort(key=lambda e: e.date, reverse=True)
    return experiments, runs
