"""``hsd submit {baseline,pipeline,sweep} --config F [overrides]``: plans of jobs, two ways to run them.

A plan is a list of :class:`Step` (a job, or a job array) with the steps each waits for::

    baseline (rich prompt)                                                  ─┐
    ftdata ──► train ──► finetuned (simple prompt + <train>/adapter) ──────────┴─► collate

On Slurm every step is submitted at once, each with ``afterok`` dependencies on the steps it
waits for (``aftercorr`` between two arrays, task i after task i), and the command returns.
Collate waits with ``afterany``: it runs whatever the validations' outcome and its comparison
reports what finished and what did not (with the failed job's error line), so one bad sweep
entry no longer costs the whole comparison. On the local and debug executors the steps run one
after the other, each waited for; a task whose dependency failed is not run, the others are.
Ctrl-C or SIGTERM stops the running job and records it and the stages not started as CANCELLED
(:mod:`jobs.interrupt`). Either way the experiment directory gets ``jobs.json`` (:mod:`jobs.book`) for ``hsd status``
and ``hsd submit resume``, and the last line printed is the experiment directory.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Optional

from hsd.config import Config, dump_config
from hsd.errors import HsdError
from hsd.runs import RunError, Status, atomic_write_text, ensure_writable, experiment_dir
from jobs import local
from jobs.book import JOBS_FILE, JobBook
from jobs.executor import SubmitError, cancel, check_executor, error_summary, make_executor, submit
from jobs.interrupt import StopSignals, interrupted, stop_and_record
from jobs.plans import Step
from jobs.preflight import check_plan


# command -> "module:function" building its plan (lazy: the sweep module loads on demand)
PLANS: dict[str, str] = {
    "baseline": "jobs.plans:baseline_plan",
    "pipeline": "jobs.plans:pipeline_plan",
    "sweep": "jobs.sweep:sweep_plan",
}


# ---------------------------------------------------------------------------------------------
# Running a plan
# ---------------------------------------------------------------------------------------------


class StagesFailed(SubmitError):
    """Some stages failed on the local executor; the others ran (``exp`` has their results)."""

    def __init__(self, message: str, exp: Path) -> None:
        super().__init__(message)
        self.exp = exp


def entries(step: Step) -> list[dict[str, Any]]:
    """The ``jobs.json`` entries of a new step, PENDING until submitted."""
    return [
        {"stage": step.name if len(step.jobs) == 1 else f"{step.name}[{i}]", "step": step.name,
         "index": i, "kind": job.stage_kind, "job_id": "-", "run_dir": str(run), "state": Status.PENDING.value,
         "after": list(step.after) + ([step.after_each] if step.after_each else []), "error": None,
         "attempts": []}
        for i, job, run in zip(step.task_indices, step.jobs, step.run_dirs)
    ]


def _dependency(step: Step, ids: dict[str, str], steps: dict[str, Step] | None = None) -> str | None:
    """The sbatch dependency on the steps submitted with this one (a resumed plan leaves out the
    steps that completed: nothing to wait for)."""
    kind = "afterany" if step.after_any else "afterok"
    parts = [f"{kind}:{ids[a]}" for a in step.after if a in ids]
    if step.after_each in ids:
        other = (steps or {}).get(step.after_each)
        # task i after task i only when both arrays hold the same tasks; else after all of them
        same = other is None or other.task_indices == step.task_indices
        parts.append(f"{'aftercorr' if same else 'afterok'}:{ids[step.after_each]}")
    return ",".join(parts) or None


def submit_all(cfg: Config, exp: Path, steps: list[Step], book: JobBook, guard: StopSignals) -> None:
    """Slurm: everything at once, chained by dependencies; returns without waiting. Refused or
    interrupted half-way, the jobs already queued are cancelled: never half a chain."""
    ids: dict[str, str] = {}  # step -> job id (an array's own id: afterok on it = all tasks)
    by_name = {s.name: s for s in steps}
    submitted: list[str] = []
    try:
        for step in steps:
            dependency = _dependency(step, ids, by_name)
            executor = make_executor(cfg.executor, exp, step.name, step.gpus, dependency)
            with guard.held():
                jobs = submit(executor, step.jobs, step.name)
                submitted += [j.job_id for j in jobs]
                ids[step.name] = jobs[0].job_id.split("_")[0]
                for i, job in zip(step.task_indices, jobs):
                    book.find(step.name, i).update(job_id=job.job_id, state=Status.PENDING.value)
                book.save()
            print(f"{step.name:<10} job {ids[step.name]:<8} after {dependency or '-'}", flush=True)
    except (HsdError, KeyboardInterrupt) as exc:
        guard.quiet()
        cancel(submitted)
        why = "cancelled: " + (f"the submission stopped half-way ({exc})" if isinstance(exc, HsdError)
                               else "hsd submit was interrupted while submitting")
        cancelled = [e for e in book.data["jobs"] if e["state"] == Status.PENDING.value]
        for entry in cancelled:
            entry.update(state=Status.CANCELLED.value, error=why)
        book.save()
        if isinstance(exc, KeyboardInterrupt):
            raise interrupted(exc, exp, stopped=[], not_run=[e["stage"] for e in cancelled]) from None
        raise


def blocker(step: Step, index: int, book: JobBook) -> dict[str, Any] | None:
    """The entry of a dependency that did not complete, if task ``index`` of ``step`` must wait for it."""
    if step.after_any:
        return None
    needed = [e for a in step.after for e in book.of_step(a)]
    if step.after_each:
        needed.append(book.find(step.after_each, index))
    return next((e for e in needed if e["state"] != Status.COMPLETED.value), None)


def run_in_order(cfg: Config, exp: Path, steps: list[Step], book: JobBook, guard: StopSignals) -> list[dict[str, Any]]:
    """Local/debug: one job at a time, each waited for. A task whose dependency did not complete is
    not run; every other task is (collate always). Returns the entries of the failed tasks. A stop
    signal stops the running job (its whole process group) and records it, and every task not
    started yet, as CANCELLED."""
    failed: list[dict[str, Any]] = []
    running: Optional[tuple[dict[str, Any], Any]] = None  # (entry, job) while a job runs
    try:
        executors = [make_executor(cfg.executor, exp, step.name, step.gpus) for step in steps]
        for step, executor in zip(steps, executors):
            for i, fn in zip(step.task_indices, step.jobs):
                entry = book.find(step.name, i)
                missing = blocker(step, i, book)
                if missing is not None:
                    why = "failed" if missing["state"] == Status.FAILED.value else "did not run"
                    entry.update(state=Status.CANCELLED.value, error=f"not run: stage {missing['stage']} {why}")
                    book.save()
                    continue
                with guard.held():  # a signal in here waits until the job is recorded: then it is stopped
                    job = submit(executor, [fn], step.name)[0]
                    running = (entry, job)
                    entry.update(job_id=job.job_id, state=Status.RUNNING.value, log=book.relative(job.paths.stdout),
                                 process=local.job_process(job))
                    book.save()
                print(f"{entry['stage']:<12} job {job.job_id:<10} running -> {exp / entry['run_dir']}", flush=True)
                error = job.exception()  # waits; the debug executor runs it here (no pdb)
                with guard.held():
                    running = None
                    entry.update(state=Status.FAILED.value if error else Status.COMPLETED.value,
                                 error=error_summary(error))
                    book.save()
                if error:
                    failed.append({**entry, "stderr": str(job.paths.stderr)})
    except KeyboardInterrupt as exc:
        guard.quiet()
        raise stop_and_record(exc, exp, book, running) from None
    return failed


def failure_message(failed: list[dict[str, Any]]) -> str:
    first = failed[0]
    more = f"; also failed: {', '.join(e['stage'] for e in failed[1:])}" if failed[1:] else ""
    return (f"stage '{first['stage']}' (job {first['job_id']}) failed: {first['error']}; log: {first['stderr']}"
            f"{more}. The other stages ran; fix the cause, then `hsd submit resume` runs only what did not complete")


def run_plan(cfg: Config, exp: Path, steps: list[Step], book: JobBook) -> Path:
    """Submit (Slurm) or run (local/debug) ``steps`` whose entries ``book`` holds."""
    with StopSignals() as guard:
        if cfg.executor.kind == "slurm":
            submit_all(cfg, exp, steps, book, guard)
            return exp
        failed = run_in_order(cfg, exp, steps, book, guard)
    if failed:
        raise StagesFailed(failure_message(failed), exp)
    return exp


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def prepare_experiment(cfg: Config) -> Path:
    """The experiment directory, refusing one that already holds a submission."""
    exp = experiment_dir(cfg.results_dir, cfg.experiment)
    if (exp / JOBS_FILE).exists():
        raise RunError(f"experiment directory {exp} already holds a submission ({JOBS_FILE}); "
                       f"choose a new name with experiment=NAME, or run what did not complete: hsd submit resume {exp}")
    ensure_writable(exp)
    atomic_write_text(exp / "config.yaml", dump_config(cfg))
    return exp


def make_plan(command: str, cfg: Config, exp: Path) -> list[Step]:
    """The plan of ``command`` (baseline | pipeline | sweep), every job's settings checked."""
    module, func = PLANS[command].split(":")
    plan_fn: Callable[[Config, Path], list[Step]] = getattr(importlib.import_module(module), func)
    check_executor(cfg.executor)
    steps = plan_fn(cfg, exp)
    check_plan(cfg, steps)
    return steps


def submit_command(command: str, cfg: Config) -> Path:
    """Build and check the plan for ``command``, then run or submit it; return the experiment directory."""
    steps = make_plan(command, cfg, experiment_dir(cfg.results_dir, cfg.experiment))  # before anything is written
    exp = prepare_experiment(cfg)
    book = JobBook.new(exp, command, cfg.executor.kind)
    if cfg.executor.kind != "slurm":
        book.data["driver"] = local.this_process()  # the PENDING entries wait for this process
    for step in steps:
        book.add(entries(step))
    return run_plan(cfg, exp, steps, book)
