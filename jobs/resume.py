"""``hsd submit resume EXPERIMENT [executor.KEY=VALUE ...]``: run what did not complete, again.

The experiment's own ``config.yaml`` and ``jobs.json`` say what was planned and what happened
(on Slurm, ``sacct`` says it for jobs the book still calls PENDING; locally, whether the recorded
processes live: :func:`jobs.status.collect`). Every task that did not complete (FAILED, CANCELLED,
LOST, or never started) is resubmitted on its own run directory — a validation resumes from its records, a
training from its newest checkpoint — with the dependencies among the resubmitted stages kept;
completed runs (the baseline, the trainings that finished) are reused as they are. Collate
runs again whenever anything else does. Only ``executor.*`` may be overridden: any other
change would make the resumed runs disagree with the finished ones.
"""

from __future__ import annotations

from dataclasses import replace as dc_replace
from pathlib import Path

from hsd.config import ConfigError, load_config
from hsd.runs import RunError, Status, experiment_dir
from jobs import local
from jobs.book import JOBS_FILE, JobBook
from jobs.pipeline import PLANS, make_plan, run_plan
from jobs.plans import Step


def find_experiment(given: str, results_dir: str, command: str = "hsd submit resume") -> Path:
    """An experiment directory, or an experiment name under ``results_dir``."""
    path = Path(given)
    if not (path / JOBS_FILE).exists() and "/" not in given:
        path = experiment_dir(results_dir, given)
    if not (path / JOBS_FILE).exists():
        raise RunError(f"{given}: no {JOBS_FILE} there (nor under {results_dir}/): pass the directory "
                       f"`hsd submit` printed, e.g. {command} results/gptoss20b_pipeline")
    return path.resolve()


def remaining(steps: list[Step], book: JobBook) -> list[Step]:
    """The steps reduced to their tasks that did not complete; collate whenever anything reruns."""
    todo = []
    for step in steps:
        keep = [k for k, i in enumerate(step.task_indices)
                if Status.parse(book.find(step.name, i)["state"]) is not Status.COMPLETED]
        if step.name == "collate" and todo:
            keep = [0]
        if keep:
            todo.append(dc_replace(step, jobs=[step.jobs[k] for k in keep], run_dirs=[step.run_dirs[k] for k in keep],
                                   indices=tuple(step.task_indices[k] for k in keep)))
    return todo


def resume_experiment(given: str, overrides: list[str], results_dir: str = "results") -> Path:
    from jobs.status import collect

    bad = [o for o in overrides if not o.startswith("executor.")]
    if bad:
        raise ConfigError(f"hsd submit resume takes executor.* overrides only, got {' '.join(bad)}: other settings "
                          "would change the results of the runs already done. Submit a new experiment instead")
    exp = find_experiment(given, results_dir)
    data, rows = collect(exp)  # states refreshed: sacct on Slurm; locally LOST or never started when gone
    for entry, (*_, detail) in zip(data["jobs"], rows):
        if entry["state"] != Status.COMPLETED and not entry.get("error"):
            entry["error"] = detail  # the failed job's error line (Slurm: from its log), kept in attempts
    busy = [f"{e['stage']} ({e['state']})" for e in data["jobs"] if not Status.parse(e["state"]).finished]
    if busy:
        raise RunError(f"{exp}: {', '.join(busy)} not finished yet; wait for them (hsd status {exp}) or stop "
                       f"them (hsd cancel {exp}) before resuming")
    if data["command"] not in PLANS:
        raise RunError(f"{exp / JOBS_FILE}: command '{data['command']}' is not one hsd submit runs "
                       f"({', '.join(PLANS)}); restore the file, or submit the experiment again under a new name")
    book = JobBook(exp, data)
    cfg = load_config(exp / "config.yaml", overrides)
    steps = remaining(make_plan(data["command"], cfg, exp), book)
    if not steps:
        print(f"every stage of {exp} completed: nothing to resume", flush=True)
        return exp
    for step in steps:
        for i in step.task_indices:
            book.new_attempt(book.find(step.name, i), cfg.executor.kind)
    if cfg.executor.kind != "slurm":
        book.data["driver"] = local.this_process()  # the PENDING entries wait for this process
    book.save()
    print(f"resuming {', '.join(book.find(s.name, i)['stage'] for s in steps for i in s.task_indices)}", flush=True)
    return run_plan(cfg, exp, steps, book)
