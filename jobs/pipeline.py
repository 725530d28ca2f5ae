"""``hsd submit {baseline,pipeline,sweep} --config F [overrides]``: plans of jobs, two ways to run them.

A plan is a list of :class:`Step` (a job, or a job array) with the steps each waits for::

    baseline (rich prompt)                                                  ─┐
    ftdata ──► train ──► finetuned (simple prompt + <train>/adapter) ──────────┴─► collate

On Slurm every step is submitted at once, each with ``afterok`` dependencies on the steps it
waits for (``aftercorr`` between two arrays, task i after task i), and the command returns.
On the local and debug executors the steps run one after the other, each waited for. Either way
the experiment directory gets ``jobs.json`` (stages, job ids, run directories) for
``hsd status``, and the last line printed is the experiment directory.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hsd.config import Config, dump_config, load_config, replace, to_dict
from hsd.errors import HsdError
from hsd.runs import RunError, atomic_write_json, atomic_write_text, ensure_writable, experiment_dir
from jobs.base import HsdJob
from jobs.executor import SubmitError, cancel, check_executor, error_summary, make_executor, submit

JOBS_FILE = "jobs.json"


@dataclass
class Step:
    """One stage: a single job, or a job array when ``jobs`` has several entries."""

    name: str
    jobs: list[HsdJob]
    run_dirs: list[Path]
    after: tuple[str, ...] = ()  # steps whose every task must succeed first
    after_each: str | None = None  # an array step whose task i must succeed before task i here
    gpus: bool = True  # False: one task, no GPU (ftdata, collate)


# ---------------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------------


def validation_config(cfg: Config, template: str, strategy: str | None, adapter: str | None) -> dict:
    return to_dict(replace(cfg, **{"prompt.template": template, "prompt.strategy": strategy,
                                   "model.adapter": adapter}))


def baseline_step(cfg: Config, exp: Path) -> Step:
    from jobs.validate_job import ValidateJob

    config = validation_config(cfg, cfg.pipeline.baseline_template, cfg.pipeline.baseline_strategy, None)
    run = exp / "baseline"
    return Step("baseline", [ValidateJob(config, run_dir=str(run))], [run])


def ftdata_step(cfg: Config, exp: Path) -> Step:
    from jobs.ftdata_job import FtdataJob

    out = exp / "ftdata"
    return Step("ftdata", [FtdataJob(to_dict(cfg), out_dir=str(out))], [out], gpus=False)


def finetune_steps(cfgs: list[Config], exp: Path, suffixes: list[str]) -> list[Step]:
    """train -> finetuned for each config (one job each, or two arrays with task i after task i)."""
    from jobs.train_job import TrainJob
    from jobs.validate_job import ValidateJob

    ftdata = str(exp / "ftdata")
    train_dirs = [exp / f"train{s}" for s in suffixes]
    val_dirs = [exp / f"finetuned{s}" for s in suffixes]
    trains = [TrainJob(to_dict(c), run_dir=str(d), data_dir=ftdata) for c, d in zip(cfgs, train_dirs)]
    vals = [
        ValidateJob(validation_config(c, c.pipeline.finetuned_template, c.pipeline.finetuned_strategy,
                                      str(t / "adapter")), run_dir=str(v))
        for c, t, v in zip(cfgs, train_dirs, val_dirs)
    ]
    array = len(cfgs) > 1
    return [
        Step("train", trains, train_dirs, after=("ftdata",)),
        Step("finetuned", vals, val_dirs, after=() if array else ("train",),
             after_each="train" if array else None),
    ]


def collate_step(cfg: Config, exp: Path, before: list[Step]) -> Step:
    """Reports for every validation run of the experiment, and their comparison."""
    from jobs.collate_job import CollateJob

    job = CollateJob(to_dict(cfg), exp_dir=str(exp))
    return Step("collate", [job], [exp], after=tuple(s.name for s in before), gpus=False)


def baseline_plan(cfg: Config, exp: Path) -> list[Step]:
    steps = [baseline_step(cfg, exp)]
    return steps + [collate_step(cfg, exp, steps)]


def pipeline_plan(cfg: Config, exp: Path) -> list[Step]:
    steps = [baseline_step(cfg, exp)] if cfg.pipeline.run_baseline else []
    steps += [ftdata_step(cfg, exp), *finetune_steps([cfg], exp, [""])]
    validations = [s for s in steps if s.name in ("baseline", "finetuned")]
    return steps + [collate_step(cfg, exp, validations)]


# command -> "module:function" building its plan (lazy: the sweep module loads on demand)
PLANS: dict[str, str] = {
    "baseline": "jobs.pipeline:baseline_plan",
    "pipeline": "jobs.pipeline:pipeline_plan",
    "sweep": "jobs.sweep:sweep_plan",
}


# ---------------------------------------------------------------------------------------------
# Running a plan
# ---------------------------------------------------------------------------------------------


def _entries(step: Step, job_ids: list[str], state: str) -> list[dict[str, Any]]:
    return [
        {"stage": step.name if len(step.jobs) == 1 else f"{step.name}[{i}]", "step": step.name,
         "index": i, "kind": job.stage_kind, "job_id": jid, "run_dir": str(run), "state": state,
         "after": list(step.after) + ([step.after_each] if step.after_each else []), "error": None}
        for i, (job, jid, run) in enumerate(zip(step.jobs, job_ids, step.run_dirs))
    ]


def _dependency(step: Step, ids: dict[str, str]) -> str | None:
    parts = [f"afterok:{ids[a]}" for a in step.after]
    if step.after_each:
        parts.append(f"aftercorr:{ids[step.after_each]}")
    return ",".join(parts) or None


def submit_all(cfg: Config, exp: Path, steps: list[Step], book: "JobBook") -> None:
    """Slurm: everything at once, chained by dependencies; returns without waiting."""
    ids: dict[str, str] = {}  # step -> job id (an array's own id: afterok on it = all tasks)
    submitted: list[str] = []
    try:
        for step in steps:
            executor = make_executor(cfg.executor, exp, step.name, step.gpus, _dependency(step, ids))
            jobs = submit(executor, step.jobs, step.name)
            submitted += [j.job_id for j in jobs]
            ids[step.name] = jobs[0].job_id.split("_")[0]
            book.add(_entries(step, [j.job_id for j in jobs], "SUBMITTED"))
            print(f"{step.name:<10} job {ids[step.name]:<8} after {_dependency(step, ids) or '-'}", flush=True)
    except HsdError:
        cancel(submitted)  # never leave half a chain queued
        raise


def run_in_order(cfg: Config, exp: Path, steps: list[Step], book: "JobBook") -> None:
    """Local/debug: one job at a time, each waited for; the first failure stops the chain."""
    executors = [make_executor(cfg.executor, exp, step.name, step.gpus) for step in steps]
    for step in steps:
        book.add(_entries(step, ["-"] * len(step.jobs), "PENDING"))
    for step, executor in zip(steps, executors):
        for i, fn in enumerate(step.jobs):
            job = submit(executor, [fn], step.name)[0]
            entry = book.find(step.name, i)
            entry.update(job_id=job.job_id, state="RUNNING", log=str(job.paths.stdout))
            book.save()
            print(f"{entry['stage']:<12} job {job.job_id:<10} running -> {entry['run_dir']}", flush=True)
            error = job.exception()  # waits; the debug executor runs it here (no pdb)
            entry.update(state="FAILED" if error else "COMPLETED", error=error_summary(error))
            if error:
                book.cancel_rest(f"not run: stage {entry['stage']} failed")
                raise SubmitError(f"stage '{entry['stage']}' (job {job.job_id}) failed: {entry['error']}; "
                                  f"log: {job.paths.stderr}")
            book.save()


class JobBook:
    """``<exp>/jobs.json``: what was submitted where, read by ``hsd status``."""

    def __init__(self, exp: Path, command: str, cfg: Config) -> None:
        self.path = exp / JOBS_FILE
        self.data = {"experiment_dir": str(exp), "command": command, "executor": cfg.executor.kind,
                     "submitted": _dt.datetime.now().isoformat(timespec="seconds"), "jobs": []}

    def add(self, entries: list[dict[str, Any]]) -> None:
        self.data["jobs"] += entries
        self.save()

    def find(self, step: str, index: int) -> dict[str, Any]:
        return next(e for e in self.data["jobs"] if e["step"] == step and e["index"] == index)

    def cancel_rest(self, why: str) -> None:
        for e in self.data["jobs"]:
            if e["state"] == "PENDING":
                e.update(state="CANCELLED", error=why)
        self.save()

    def save(self) -> None:
        atomic_write_json(self.path, self.data)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def prepare_experiment(cfg: Config) -> Path:
    """The experiment directory, refusing one that already holds a submission."""
    exp = experiment_dir(cfg.results_dir, cfg.experiment)
    if (exp / JOBS_FILE).exists():
        raise RunError(f"experiment directory {exp} already holds a submission ({JOBS_FILE}); "
                       "choose a new name with experiment=NAME")
    ensure_writable(exp)
    atomic_write_text(exp / "config.yaml", dump_config(cfg))
    return exp


def submit_command(command: str, cfg: Config) -> Path:
    """Build the plan for ``command``, run or submit it; return the experiment directory."""
    module, func = PLANS[command].split(":")
    plan_fn: Callable[[Config, Path], list[Step]] = getattr(importlib.import_module(module), func)
    check_executor(cfg.executor)  # before anything is written
    exp = prepare_experiment(cfg)
    steps = plan_fn(cfg, exp)
    book = JobBook(exp, command, cfg)
    (submit_all if cfg.executor.kind == "slurm" else run_in_order)(cfg, exp, steps, book)
    return exp


def load_book(exp: Path) -> dict[str, Any]:
    path = exp / JOBS_FILE
    if not path.exists():
        raise RunError(f"{exp} has no {JOBS_FILE}: not an experiment submitted with `hsd submit`")
    return json.loads(path.read_text())


def main(args: Any) -> int:
    cfg = load_config(args.config, args.overrides)
    exp = submit_command(args.submit_command, cfg)
    print(exp)
    return 0
