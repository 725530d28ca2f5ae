"""The plans of ``hsd submit``: which stages an experiment runs, with which run directories, after what.

A plan is a list of :class:`Step` (a job, or a job array) with the steps each waits for::

    baseline (rich prompt)                                                  ─┐
    ftdata ──► train ──► finetuned (simple prompt + <train>/adapter) ──────────┴─► collate

``baseline_plan`` and ``pipeline_plan`` are here, ``jobs.sweep.sweep_plan`` builds on the same
steps; :mod:`jobs.pipeline` submits or runs a plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hsd.config import Config, replace, to_dict
from jobs.base import HsdJob


@dataclass
class Step:
    """One stage: a single job, or a job array when ``jobs`` has several entries."""

    name: str
    jobs: list[HsdJob]
    run_dirs: list[Path]
    after: tuple[str, ...] = ()  # steps whose every task must succeed first
    after_each: str | None = None  # an array step whose task i must succeed before task i here
    gpus: bool = True  # False: one task, no GPU (ftdata, collate)
    after_any: bool = False  # True: wait for ``after`` to end, whatever the outcome (collate)
    indices: Optional[tuple[int, ...]] = None  # the tasks' indices in the full plan (resume runs a subset)

    @property
    def task_indices(self) -> tuple[int, ...]:
        return self.indices if self.indices is not None else tuple(range(len(self.jobs)))


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
    return Step("collate", [job], [exp], after=tuple(s.name for s in before), gpus=False, after_any=True)


def baseline_plan(cfg: Config, exp: Path) -> list[Step]:
    steps = [baseline_step(cfg, exp)]
    return steps + [collate_step(cfg, exp, steps)]


def pipeline_plan(cfg: Config, exp: Path) -> list[Step]:
    steps = [baseline_step(cfg, exp)] if cfg.pipeline.run_baseline else []
    steps += [ftdata_step(cfg, exp), *finetune_steps([cfg], exp, [""])]
    validations = [s for s in steps if s.name in ("baseline", "finetuned")]
    return steps + [collate_step(cfg, exp, validations)]
