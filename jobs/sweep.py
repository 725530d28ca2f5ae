"""``hsd submit sweep --config F``: one training job per LoRA setting, as a job array.

``sweep.lora`` lists settings, each a mapping of ``train.lora`` keys::

    ftdata ──► train[0..N-1] (array) ──► finetuned[0..N-1] (array, task i after train task i) ─┐
    baseline ───────────────────────────────────────────────────────────────────────────────────┴─► collate

On Slurm the two arrays are linked with ``aftercorr``: validation i starts as soon as training
i has finished, whatever the others do. Run directories: ``train_00``, ``finetuned_00``, ...
"""

from __future__ import annotations

from pathlib import Path

from hsd.config import Config, ConfigError, from_dict, to_dict
from hsd.training.lora import check_lora
from jobs.plans import Step, baseline_step, collate_step, finetune_steps, ftdata_step
from jobs.preflight import check_lora_targets


def setting_config(cfg: Config, index: int, setting: dict) -> Config:
    """``cfg`` with one sweep entry applied to ``train.lora`` (checked like the config file)."""
    tree = to_dict(cfg)
    tree["train"]["lora"].update(setting)
    tree["sweep"] = {"lora": []}  # the run trains one setting; the sweep lives in the experiment config
    return from_dict(tree, source=f"sweep.lora[{index}] (keys of train.lora)")


def sweep_plan(cfg: Config, exp: Path) -> list[Step]:
    if not cfg.sweep.lora:
        raise ConfigError("sweep.lora is empty: list the LoRA settings to train, e.g. "
                          "sweep: {lora: [{r: 8, alpha: 16}, {r: 32, alpha: 64}]}")
    cfgs = [setting_config(cfg, i, s) for i, s in enumerate(cfg.sweep.lora)]
    for i, c in enumerate(cfgs):  # an impossible LoRA entry is refused by its name (the rest: check_plan)
        check_lora(c.train.lora, f"sweep.lora[{i}]")
        check_lora_targets(c, f"sweep.lora[{i}]")
    steps = [baseline_step(cfg, exp)] if cfg.pipeline.run_baseline else []
    steps += [ftdata_step(cfg, exp), *finetune_steps(cfgs, exp, [f"_{i:02d}" for i in range(len(cfgs))])]
    validations = [s for s in steps if s.name in ("baseline", "finetuned")]
    return steps + [collate_step(cfg, exp, validations)]
