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
import warnings
from pathlib import Path
from typing import Any, Optional

from hsd import textio, tracking
from hsd.config import Config, ConfigError
from hsd.distributed import DistEnv
from hsd.paths import package_data
from hsd.training.memory import CheckpointPlan, DsChoice, checkpoint_plan

BUILTIN_DIR = package_data("ds_configs")  # shipped in the wheel; the checkout's ds_configs/ links here
AUTO = "auto"


def resolve_ds_config(name: str) -> Path:
    """A path (absolute or relative to the working directory), else one of the built-in configs.

    ``zero3`` and ``ds_configs/zero3.json`` both name the built-in file from any working
    directory (jobs start in others), in a checkout and in an installed hsd alike.
    """
    given = Path(name).expanduser()
    candidates = [given, BUILTIN_DIR / given.name, BUILTIN_DIR / f"{given.name}.json"]
    for path in candidates:
        if path.is_file():
            return path
    builtins = ", ".join(sorted(p.stem for p in BUILTIN_DIR.glob("*.json")))
    raise ConfigError(f"train.ds_config: no DeepSpeed config {name!r}; give a JSON path, auto, or one of: {builtins}")


def load_ds_config(cfg: Config, device_kind: str = "cpu", world_size: int = 1,
                   local_world: int = 1) -> tuple[dict[str, Any], Optional[DsChoice]]:
    """The DeepSpeed config with the batch settings filled in from ``cfg.train``, and ``auto``'s
    choice (None for a named config).

    A number written in the JSON where hsd has its own setting is refused: two sources for
    one value is how a run ends up with a batch size nobody chose. ``auto`` picks by memory
    (:mod:`hsd.training.memory`).
    """
    from hsd.training import memory

    train, choice = cfg.train, None
    name = train.ds_config
    if name == AUTO:
        choice = memory.plan(cfg, device_kind, world_size, local_world)
        name = choice.name
    path = resolve_ds_config(name)
    try:
        config = json.loads(textio.read_text(path, error=ConfigError))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if "zero_optimization" not in config:
        raise ConfigError(f"{path}: no 'zero_optimization' section; start from {BUILTIN_DIR / 'zero3.json'}")
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
    if zero_stage(config) == 3:
        _fill_zero3(config["zero_optimization"], cfg, device_kind)
    return config, choice


def hidden_size_autos(hidden: int) -> dict[str, int]:
    """The values accelerate / transformers give ZeRO-3's ``"auto"`` keys from the hidden size."""
    return {"reduce_bucket_size": hidden * hidden, "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
            "stage3_param_persistence_threshold": 10 * hidden}


def fill_autos(zero: dict[str, Any], values: dict[str, int]) -> None:
    """Replace the ``"auto"`` values of a ``zero_optimization`` section that ``values`` names."""
    for key, value in values.items():
        if zero.get(key) == "auto":
            zero[key] = value


def zero3_settings(layer_params: int, hidden: int, tuned: bool) -> dict[str, int]:
    """The ZeRO-3 values a JSON may leave ``"auto"``.

    Tuned for a MoE model: prefetch the whole next layer while this one computes (its 32 or
    128 experts are most of its weights); keep two layers live, and a layer that gradient
    checkpointing recomputes right before its backward gathered in between (reuse distance
    one layer); never partition a parameter below 128 x hidden elements — LoRA matrices up to
    r 64, routers, norms, sinks, biases — each of which would otherwise be its own all-gather.
    Untuned: accelerate's hidden-size values and DeepSpeed's 1e9 live / reuse.
    """
    if not tuned:
        autos = hidden_size_autos(hidden)
        return {key: autos[key] for key in ("stage3_prefetch_bucket_size", "stage3_param_persistence_threshold")} | {
            "stage3_max_live_parameters": 10**9, "stage3_max_reuse_distance": 10**9}
    return {"stage3_prefetch_bucket_size": layer_params, "stage3_param_persistence_threshold": 128 * hidden,
            "stage3_max_live_parameters": 2 * layer_params, "stage3_max_reuse_distance": layer_params}


def _fill_zero3(zero: dict[str, Any], cfg: Config, device_kind: str) -> None:
    from hsd.training import memory

    autos = [k for k in ("stage3_prefetch_bucket_size", "stage3_param_persistence_threshold",
                         "stage3_max_live_parameters", "stage3_max_reuse_distance") if zero.get(k) == "auto"]
    if not autos:
        return
    shape = memory.model_shape(cfg, device_kind)
    fill_autos(zero, zero3_settings(shape.layer_params, shape.hidden, cfg.train.zero3_tuning))


def set_zero3_leaves(model: Any, ds_config: dict[str, Any], enabled: bool) -> list[str]:
    """Under ZeRO-3, make every MoE block (a module with an ``experts`` child) a leaf: DeepSpeed
    then gathers the block's weights (router, experts, their LoRA) in one go at its forward and
    backward instead of through a hook per submodule. ``enabled``: ``train.zero3_moe_leaves``.
    Returns the leaf class names (the manifest's)."""
    if zero_stage(ds_config) != 3 or not enabled:
        return []
    from deepspeed.utils import set_z3_leaf_modules

    classes = sorted({type(m) for m in model.modules() if hasattr(m, "experts")}, key=lambda c: c.__name__)
    if classes:
        set_z3_leaf_modules(model, classes)
    return [c.__name__ for c in classes]


def zero_stage(ds_config: dict[str, Any]) -> int:
    return int(ds_config["zero_optimization"].get("stage", 0))


def stage_name(ds_config: dict[str, Any]) -> str:
    """The memory estimate's name (:data:`hsd.training.memory.STAGES`) for a DeepSpeed config:
    stages 0-2 keep a whole replica on every GPU, as ZeRO-2 does."""
    zero = ds_config["zero_optimization"]
    if zero_stage(ds_config) < 3:
        return "zero2"
    offloaded = (zero.get("offload_param") or {}).get("device", "none") not in ("none", None)
    return "zero3_offload" if offloaded else "zero3"


def checkpointing(cfg: Config, ds_config: dict[str, Any], env: DistEnv) -> CheckpointPlan:
    """``train.gradient_checkpointing`` for this job: which layers recompute (:mod:`hsd.training.memory`)."""
    kind = "cuda" if env.device.startswith("cuda") else "cpu"
    return checkpoint_plan(cfg, stage_name(ds_config), kind, env.world_size, env.local_world_size)


def _forget_accelerate_state() -> None:
    # Accelerate keeps one global state per process and refuses a second DeepSpeed plugin; the
    # debug executor runs several stages (and tests several runs) in one process.
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def release() -> None:
    """Undo what :func:`make_accelerator` set up process-wide, so later code starts clean.

    transformers remembers the ZeRO-3 config globally (a later ``from_pretrained`` would
    partition). The process group is :func:`hsd.distributed.teardown`'s.
    """
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    _forget_accelerate_state()


def make_accelerator(cfg: Config, env: DistEnv, project_dir: Optional[Path] = None) -> tuple[Any, Optional[DsChoice]]:
    """Accelerator + DeepSpeed plugin on the group ``env`` joined; gloo without CUDA (trap 1).

    With ``project_dir`` (the run directory) it logs to ``train.report_to``'s installed trackers
    (:mod:`hsd.tracking`; rank 0 warns once about the missing ones)."""
    from accelerate import Accelerator
    from accelerate.utils import DeepSpeedPlugin, InitProcessGroupKwargs

    # DeepSpeed calls torch.distributed's deprecated collectives on every step: one warning
    # per call and rank would bury the log.
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    cuda = env.device.startswith("cuda")
    ds_config, choice = load_ds_config(cfg, "cuda" if cuda else "cpu", env.world_size, env.local_world_size)
    train = cfg.train
    plugin = DeepSpeedPlugin(
        hf_ds_config=ds_config,
        gradient_accumulation_steps=train.grad_accum,
        gradient_clipping=train.max_grad_norm,
        # Under ZeRO-3, from_pretrained (and random:) partitions weights as it builds them (a
        # model never sits whole in each rank's memory).
        zero3_init_flag=zero_stage(ds_config) == 3,
    )
    handlers = [] if cuda else [InitProcessGroupKwargs(backend="gloo")]
    log_with = []
    if project_dir is not None:
        wanted = tracking.resolve(train.report_to)
        log_with = tracking.available(wanted) if env.rank == 0 else [n for n in wanted if tracking.installed(n)]
    _forget_accelerate_state()
    accelerator = Accelerator(
        deepspeed_plugin=plugin,
        mixed_precision="bf16" if cuda else "no",
        gradient_accumulation_steps=train.grad_accum,
        kwargs_handlers=handlers,
        log_with=log_with or None,
        project_dir=str(project_dir) if project_dir is not None else None,
    )
    return accelerator, choice
