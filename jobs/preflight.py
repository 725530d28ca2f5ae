"""Every setting of a plan checked before anything is queued (``hsd submit``).

A mistake found inside a job costs a queue wait and a model load, and in a sweep it costs the
whole comparison (one failed training used to block collate). So the plan's own configs — one
per sweep entry — are checked here with the same functions the jobs use: LoRA settings peft
would refuse, the DeepSpeed config, the prompt template, the model path, the data selection,
and, on Slurm, the resources against the partition's nodes. The first problem is one
:class:`~hsd.config.ConfigError` naming the entry and the fix.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from hsd.config import Config, ConfigError, ExecutorConfig, from_dict
from hsd.errors import HsdError


def check_training(cfg: Config, where: str) -> None:
    """What ``hsd train`` would refuse after loading the model; ``where`` names the entry."""
    from hsd.models.loader import check_source
    from hsd.training.accel import AUTO, resolve_ds_config
    from hsd.training.lora import check_lora

    check_lora(cfg.train.lora, where)
    if cfg.model.adapter is not None:
        raise ConfigError(f"{where}: model.adapter is set ({cfg.model.adapter}) but training starts a new adapter "
                          "from the base model; set model.adapter: null (the post-FT validation sets it)")
    _named(where, lambda: check_source(cfg.model.name_or_path))
    check_lora_targets(cfg, where)
    if cfg.train.ds_config != AUTO:
        _named(where, lambda: resolve_ds_config(cfg.train.ds_config))


def check_lora_targets(cfg: Config, where: str) -> None:
    """``train.lora``'s target modules and parameters exist in the model: LoRA applied as ``hsd train``
    applies it (peft's own check), to the model built from its config on the meta device, as
    ``train.ds_config: auto`` sizes it (no weights read). A hub model not in the local cache is left
    to the training job."""
    from hsd.models.fullsize import is_random_spec
    from hsd.training.memory import model_shape

    name = cfg.model.name_or_path
    local_dir = Path(name).expanduser().is_dir()
    if not (is_random_spec(name) or local_dir or (not name.startswith((".", "/", "~")) and _cached_config(cfg))):
        return
    with warnings.catch_warnings():  # transformers' deprecation notes, from peft: not the user's business
        warnings.simplefilter("ignore", FutureWarning)
        _named(where, lambda: model_shape(cfg, "cpu"))


def _cached_config(cfg: Config) -> bool:
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(cfg.model.name_or_path, local_files_only=True,
                                   trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError):
        return False
    return True


def check_validation(cfg: Config, where: str) -> None:
    """What ``hsd validate`` would refuse: backend, DeepSpeed config, template, model, data."""
    from hsd.data import select_samples
    from hsd.inference import BACKENDS
    from hsd.models.loader import check_source
    from hsd.prompts.template import load_template
    from hsd.training.accel import resolve_ds_config

    if cfg.inference.backend not in BACKENDS:
        raise ConfigError(f"{where}: inference.backend '{cfg.inference.backend}' is unknown; valid: "
                          f"{', '.join(sorted(BACKENDS))}")
    if cfg.inference.backend == "deepspeed":
        _named(where, lambda: resolve_ds_config(cfg.inference.ds_config))
    _named(where, lambda: load_template(cfg.prompt.template, cfg.prompt.strategy))
    _named(where, lambda: check_source(cfg.model.name_or_path))
    _named(where, lambda: select_samples(cfg.data))


def check_resources(exe: ExecutorConfig) -> None:
    """On Slurm: each stage's request fits a node of its partition (else sbatch refuses it half-way
    through submitting a chain, or it pends forever)."""
    if exe.kind != "slurm":
        return
    from jobs.executor import node_limits, tasks_per_node

    stages = (("executor", exe.partition, exe.cpus_per_task * tasks_per_node(exe), exe.mem_gb, exe.gpus_per_node),
              ("executor.cpu_stage", exe.cpu_stage.partition or exe.partition, exe.cpu_stage.cpus_per_task,
               exe.cpu_stage.mem_gb, 0))
    limits = {partition: node_limits(partition) for partition in {stage[1] for stage in stages}}  # sinfo once each
    _check_nodes(exe, limits[exe.partition])
    for key, partition, cpus, mem_gb, gpus in stages:
        limit = limits[partition]
        name = partition or "the default partition"
        if cpus > limit.cpus:
            raise ConfigError(f"{key}: {cpus} CPUs per node requested but the largest node of {name} has "
                              f"{limit.cpus}; lower {key}.cpus_per_task")
        if mem_gb * 1024 > limit.mem_mb:
            raise ConfigError(f"{key}.mem_gb={mem_gb} but the largest node of {name} has "
                              f"{limit.mem_mb // 1024} GB; lower {key}.mem_gb")
        if gpus > limit.gpus:
            raise ConfigError(f"executor.gpus_per_node={gpus} but the nodes of {name} have at most {limit.gpus} "
                              "GPUs (sinfo %G); lower it or set executor.partition to a GPU partition")


def _check_nodes(exe: ExecutorConfig, limit: Any) -> None:
    """``executor.nodes`` fits the partition: more nodes than it has would pend forever."""
    name = exe.partition or "the default partition"
    if exe.nodes > limit.nodes:
        raise ConfigError(f"executor.nodes={exe.nodes} but {name} has {limit.nodes} node(s) (sinfo); lower "
                          "executor.nodes or set executor.partition to a larger partition")
    if exe.nodes > limit.usable:
        raise ConfigError(f"executor.nodes={exe.nodes} but only {limit.usable} of the {limit.nodes} nodes of {name} "
                          "are up (the others are down or drained, see `sinfo -R`); lower executor.nodes or "
                          "wait until the nodes are back")


def check_plan(cfg: Config, steps: list[Any]) -> None:
    """Every job config of ``steps`` (a plan of :class:`jobs.pipeline.Step`) and the resources."""
    check_resources(cfg.executor)
    for step in steps:
        for i, job in zip(step.task_indices, step.jobs):
            where = step.name if len(step.jobs) == 1 else f"{step.name}[{i}]"
            job_cfg = from_dict(job.config, source=where)
            if job.stage_kind == "train":
                check_training(job_cfg, where)
            elif job.stage_kind == "validate":
                check_validation(job_cfg, where)


def _named(where: str, check: Any) -> None:
    """Run ``check``; its error (which says what and how to fix) is prefixed with the entry."""
    try:
        check()
    except HsdError as exc:
        raise ConfigError(f"{where}: {exc}") from None
