"""The Accelerator with DeepSpeed, set up the same way under torchrun, submitit and by hand.

Two traps shape this (../shared/notes/deepspeed-cpu.md): without CUDA, accelerate with
DeepSpeed silently runs every rank as a world of one unless the process group is gloo, set
through ``InitProcessGroupKwargs``; and ``use_cpu`` makes accelerate skip DeepSpeed. The
DeepSpeed JSON keeps ``"auto"`` for every batch setting: the values come from the hsd config
(micro batch, accumulation, clipping, bf16) so they live in one place.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import warnings
from pathlib import Path
from typing import Any

from hsd.config import ConfigError, TrainConfig

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUILTIN_DIR = PROJECT_ROOT / "ds_configs"


AUTO = "auto"


def auto_ds_config(world_size: int) -> str:
    """``train.ds_config: auto``: ZeRO-3 across ranks, ZeRO-2 on a single one.

    ZeRO-3 splits the 20B model's weights across GPUs, which is what lets it train on 4 x A100;
    on one rank it splits nothing, yet its hooks still gather and release every weight around
    every module: measured on the H100 (BENCHMARKS.md), 1.46 s per step against ZeRO-2's 0.55 s
    for the same model, batch and kernels. ZeRO-2 leaves the weights whole and keeps the rest
    of DeepSpeed (bf16 optimizer, clipping, checkpoints).
    """
    return "zero3" if world_size > 1 else "zero2"


def resolve_ds_config(name: str) -> Path:
    """A path (absolute or relative to the working directory), else one of ``ds_configs/``.

    Jobs start in other working directories, so ``ds_configs/zero3.json`` and ``zero3`` both
    find the project's own file.
    """
    given = Path(name).expanduser()
    candidates = [given, PROJECT_ROOT / given, BUILTIN_DIR / given.name, BUILTIN_DIR / f"{given.name}.json"]
    for path in candidates:
        if path.is_file():
            return path
    builtins = ", ".join(sorted(p.stem for p in BUILTIN_DIR.glob("*.json")))
    raise ConfigError(f"train.ds_config: no DeepSpeed config {name!r}; give a JSON path, auto, or one of: {builtins}")


def load_ds_config(train: TrainConfig, world_size: int | None = None) -> dict[str, Any]:
    """The DeepSpeed config with the batch settings filled in from ``train``.

    A number written in the JSON where hsd has its own setting is refused: two sources for
    one value is how a run ends up with a batch size nobody chose. ``auto`` picks by
    ``world_size`` (default: the launcher's WORLD_SIZE).
    """
    name = train.ds_config
    if name == AUTO:
        name = auto_ds_config(world_size if world_size is not None else int(os.environ.get("WORLD_SIZE", "1")))
    path = resolve_ds_config(name)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if "zero_optimization" not in config:
        raise ConfigError(f"{path}: no 'zero_optimization' section; start from ds_configs/zero3.json")
    for key in ("optimizer", "scheduler"):
        if key in config:
            raise ConfigError(f"{path}: remove the '{key}' section; hsd sets the optimizer and schedule from train.*")
    owned = {
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "gradient_clipping": train.max_grad_norm,
    }
    config = copy.deepcopy(config)
    for key, value in owned.items():
        if config.get(key, "auto") != "auto":
            raise ConfigError(f"{path}: '{key}' must be \"auto\" (hsd sets it from the train section of the config)")
        config[key] = value
    config.setdefault("train_batch_size", "auto")
    config["zero_allow_untested_optimizer"] = True  # a torch AdamW: no DeepSpeed op to compile
    return config


def zero_stage(ds_config: dict[str, Any]) -> int:
    return int(ds_config["zero_optimization"].get("stage", 0))


def single_process_env() -> None:
    """Started without a launcher (plain ``hsd train``): make this process a world of one.

    DeepSpeed needs a process group even for one rank; a launcher (torchrun, submitit's
    TorchDistributedEnvironment, accelerate launch) sets these variables itself.
    """
    if "WORLD_SIZE" in os.environ:
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def _forget_accelerate_state() -> None:
    # Accelerate keeps one global state per process and refuses a second DeepSpeed plugin; the
    # debug executor runs several stages (and tests several runs) in one process.
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def release(owns_process_group: bool) -> None:
    """Undo what :func:`make_accelerator` set up process-wide, so later code starts clean.

    transformers remembers the ZeRO-3 config globally (a later ``from_pretrained`` would
    partition); the process group is destroyed only if training created it, else the
    launcher may report exit 250 on CPU (deepspeed-cpu notes) — or a caller loses its group.
    """
    import torch.distributed as dist
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    _forget_accelerate_state()
    if owns_process_group and dist.is_initialized():
        dist.destroy_process_group()
        _forget_deepspeed_groups()


def _forget_deepspeed_groups() -> None:
    # DeepSpeed caches sub-groups of the process group in module globals; once the group is
    # destroyed they are dangling, and a second training run in this process would use them.
    from deepspeed.utils import groups

    for name, value in list(vars(groups).items()):
        if name.startswith("_") and name.endswith(("_GROUP", "_GROUP_RANKS")) and name.isupper():
            setattr(groups, name, {} if isinstance(value, dict) else None)


def make_accelerator(train: TrainConfig) -> Any:
    """Accelerator + DeepSpeed plugin; gloo process group when there is no CUDA (trap 1)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DeepSpeedPlugin, InitProcessGroupKwargs

    # DeepSpeed calls torch.distributed's deprecated collectives on every step: one warning
    # per call and rank would bury the log.
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    single_process_env()
    ds_config = load_ds_config(train)
    cuda = torch.cuda.is_available()
    plugin = DeepSpeedPlugin(
        hf_ds_config=ds_config,
        gradient_accumulation_steps=train.grad_accum,
        gradient_clipping=train.max_grad_norm,
        # Under ZeRO-3, from_pretrained partitions weights as it loads them (a 20B model
        # never sits whole in each rank's memory).
        zero3_init_flag=zero_stage(ds_config) == 3,
    )
    handlers = [] if cuda else [InitProcessGroupKwargs(backend="gloo")]
    _forget_accelerate_state()
    return Accelerator(
        deepspeed_plugin=plugin,
        mixed_precision="bf16" if cuda else "no",
        gradient_accumulation_steps=train.grad_accum,
        kwargs_handlers=handlers,
    )
