"""Typed, frozen configuration for every hsd command.

One YAML file drives a whole experiment. It is read with ``yaml.safe_load`` into frozen
dataclasses; an unknown key or a wrong type is a :class:`ConfigError` naming the key, the
file and the valid keys, because a silently ignored typo (``batchsize: 64``) costs a user a
GPU-hour before they notice. Defaults live here and nowhere else.

Dotted overrides from the command line (``inference.batch_size=8``) are parsed as YAML
scalars and go through the same checks as the file.
"""

from __future__ import annotations

import dataclasses
import datetime
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from hsd.errors import HsdError


class ConfigError(HsdError, ValueError):
    """A configuration problem the user must fix; the message says what, where and how."""


# --------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """Which samples are evaluated."""

    dir: Optional[str] = None  # dataset directory; None -> $HSD_DATA_DIR or ./data
    split: Literal["train", "val", "test"] = "test"  # unified_<split>.json
    subset: Optional[str] = None  # a named file in <dir>/canned/ (e.g. canned_50_quick); overrides split
    max_samples: Union[int, Literal["all"]] = "all"  # N drawn stratified by label x target group
    seed: int = 42  # seed of the stratified draw
    # A row whose text is "" (unified_val.json has one): skip = left out, one warning line naming it,
    # counted in the run's manifest and report; error = the file is refused. Missing or null text is
    # always an error. Older configs' drop_empty_text is read too (see LEGACY_KEYS).
    empty_text: Literal["skip", "error"] = "skip"


@dataclass(frozen=True)
class PromptConfig:
    """How a sample becomes a chat prompt."""

    template: str = "rich"  # a built-in name (rich, simple), a YAML template or a legacy JSON file
    strategy: Optional[str] = None  # strategy name inside a legacy JSON template file
    reasoning_effort: Literal["low", "medium", "high"] = "low"  # harmony "Reasoning:" line
    date: str = "2025-08-05"  # pinned "Current date" so prompts (and their hashes) never drift
    few_shot_per_group: int = 2  # rich prompts: examples per target group and label, from train
    few_shot_seed: int = 13  # which train examples become few-shot examples


@dataclass(frozen=True)
class ModelConfig:
    """Model weights, tokenizer and optional LoRA adapter."""

    name_or_path: str = "openai/gpt-oss-20b"  # local directory or hub name
    adapter: Optional[str] = None  # a peft LoRA adapter directory
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: hsd's sink-aware SDPA kernel (hsd.gptoss.attention; equals eager, no score matrices
    # in memory); or eager | flex_attention (gpt-oss has no plain SDPA: attention sinks)
    attn_implementation: str = "auto"
    # None: hsd_grouped (transformers' grouped_mm with fused element-wise work, hsd.gptoss.experts);
    # or eager | batched_mm | grouped_mm
    experts_implementation: Optional[str] = None
    # On CUDA, hsd's decode attention (attn_implementation auto) is torch.compile'd so its element-wise
    # passes fuse into a few kernels; false: no compile at start-up, the one-token attention runs as
    # hsd's hand-written Triton kernel (hsd.gptoss.triton_attention; eager torch where Triton cannot run).
    # auto: compiled for training only (hsd.gptoss.kernels.compile_flag says why)
    compile_attention: Union[bool, Literal["auto"]] = "auto"
    # On CUDA, hsd_grouped's element-wise stages are torch.compile'd; false: no compile in the first
    # step, their forwards run as hand-written Triton kernels (hsd.gptoss.triton_experts), the backwards
    # eagerly: ~5-20% slower training steps (BENCHMARKS.md, measured eager). auto: as above
    compile_experts: Union[bool, Literal["auto"]] = "auto"
    trust_remote_code: bool = False  # off unless you trust the model repository's code


@dataclass(frozen=True)
class InferenceConfig:
    """How responses are produced."""

    backend: str = "hf"  # registry name: hf | deepspeed | tp
    mode: Literal["generate", "score"] = "generate"  # reasoning+answer, or P(hate) in one pass
    batch_size: int = 8  # per rank; halved and retried on CUDA OOM
    max_new_tokens: Optional[int] = None  # None: the template's max_tokens
    temperature: Optional[float] = None  # None: the template's temperature (0 = greedy)
    top_p: Optional[float] = None  # None: the template's top_p
    min_new_tokens: Optional[int] = None  # benchmarks force an output length with this
    seed: int = 1234  # sampling seed (per rank offset added)
    threshold: float = 0.5  # score mode: P(hate) >= threshold -> hate
    threshold_from: Optional[str] = None  # score mode: a run dir whose records choose the threshold
    threshold_metric: Literal["f1", "youden"] = "f1"  # score mode: what threshold_from maximises
    prefix_cache: bool = True  # the prompts' shared token prefix (system + few-shot) computed once (score; generate with refill)
    static_cache: bool = True  # generate: one fixed-shape KV cache reused by every batch (short batches padded)
    cuda_graphs: bool = True  # generate on CUDA: decode step replayed as a CUDA graph (needs static_cache)
    refill: bool = True  # generate: a finished row's slot takes the next sample at once (needs static_cache)
    slots: Optional[int] = None  # refill: rows decoding at once; None = as many as fit in GPU memory, up to 512
    ds_config: str = "ds_configs/zero3_inference.json"  # backend deepspeed: the ZeRO-3 inference JSON
    progress: bool = True  # a progress bar per rank


@dataclass(frozen=True)
class LoraConfig:
    """peft LoRA settings."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    target_parameters: tuple[str, ...] = ()  # e.g. mlp.experts.gate_up_proj (expert weights)
    # Modules trained in full and saved with the adapter (e.g. lm_head): a tiny random model
    # learns the answer format much faster with them; the 20B model does not need them.
    modules_to_save: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainConfig:
    """LoRA fine-tuning under Accelerate + DeepSpeed."""

    format: Literal["simple", "optimized", "old_optimized"] = "simple"  # which ftdata chat format to train on (hsd.training.ftdata.FORMATS)
    holdout_fraction: float = 0.1  # stratified eval hold-out carved from the train split
    # auto: the fastest stage whose estimated memory per GPU fits (hsd.training.memory): zero2,
    # else zero3, else zero3_offload; or a JSON path / name.
    ds_config: str = "auto"
    # auto's memory budget per rank in GiB; None: the GPU's total (no CUDA: host RAM / local ranks).
    device_memory_gib: Optional[float] = None
    # The two ZeRO-3 speed-ups (each measured in BENCHMARKS.md; false: DeepSpeed's own behaviour).
    zero3_moe_leaves: bool = True  # each MoE block one ZeRO-3 leaf: its weights gathered at once, not per submodule hook
    zero3_tuning: bool = True  # the JSON's "auto" prefetch / live / reuse / persistence sized from the model's layers
    lora: LoraConfig = field(default_factory=LoraConfig)
    epochs: float = 1.0
    max_steps: Optional[int] = None  # overrides epochs when set
    # Per GPU. 8 x 1,024 tokens: 1.5x the tokens/s of 4 on the H100 for +1.5 GiB (BENCHMARKS.md).
    micro_batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    max_length: int = 1024  # longer examples are truncated from the left of the prompt
    # auto: recompute (checkpoint) only as many layers as memory needs, by estimate (hsd.training.memory)
    gradient_checkpointing: Union[bool, Literal["auto"]] = "auto"
    eval_every: int = 50  # steps
    save_every: int = 50  # steps
    keep_checkpoints: int = 2
    early_stopping_patience: Optional[int] = None  # evals without improvement before stopping
    early_stopping_min_delta: float = 0.0  # an eval improves only if it beats the best by more than this
    seed: int = 42
    stop_after_steps: Optional[int] = None  # testing: exit cleanly after N steps (simulates preemption)
    max_train_samples: Union[int, Literal["all"]] = "all"  # N train rows drawn stratified (after the hold-out)
    max_grad_norm: float = 1.0  # gradient clipping (DeepSpeed "gradient_clipping")
    # A row longer than max_length: "truncate" cuts the prompt from the left (the answer stays
    # whole; the count is reported), "error" refuses the data with the row and its length.
    on_too_long: Literal["truncate", "error"] = "truncate"
    # Experiment trackers for the loss curves (hsd.tracking); None: tensorboard when installed, else none;
    # [] logs to none. Files go in <run>/tracker (TensorBoard: tensorboard --logdir results/<experiment>).
    report_to: Optional[tuple[Literal["tensorboard", "wandb", "mlflow", "trackio"], ...]] = None


@dataclass(frozen=True)
class DistributedConfig:
    """A job of several ranks (validation, training), whatever started it."""

    # A rank whose heartbeat has not moved this long is dead, and every rank stops (hsd.watchdog);
    # no live heartbeat thread is starved this long. Without it the others wait for the 2-hour timeout.
    peer_timeout_s: float = 30.0


@dataclass(frozen=True)
class CpuStageConfig:
    """Resources of the CPU-only stages (ftdata, collate): one task, no GPU. They format JSONL and
    compute metrics over at most a few thousand records, so asking for the GPU stages' CPUs and
    memory would only make them wait longer in the queue."""

    cpus_per_task: int = 2
    mem_gb: int = 8
    timeout_min: int = 60
    partition: Optional[str] = None  # None: executor.partition (a CPU partition, if the cluster has one)


@dataclass(frozen=True)
class ExecutorConfig:
    """Where jobs run (submitit). The keys below are the GPU stages' (validation, training)."""

    kind: Literal["slurm", "local", "debug"] = "local"
    nodes: int = 1  # validate/train jobs span this many nodes (Slurm only); CPU stages take one
    gpus_per_node: int = 0
    tasks_per_node: Optional[int] = None  # None: = gpus_per_node (at least 1)
    cpus_per_task: int = 2
    mem_gb: int = 16
    timeout_min: int = 120
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    signal_delay_s: int = 120  # USR2 this long before the time limit -> checkpoint + requeue
    max_num_timeout: int = 3
    extra_sbatch: dict[str, str] = field(default_factory=dict)  # passed as slurm_additional_parameters
    cpu_stage: CpuStageConfig = field(default_factory=CpuStageConfig)  # ftdata and collate


@dataclass(frozen=True)
class SweepConfig:
    """A job array of training runs: each entry overrides train.lora keys."""

    lora: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class PipelineConfig:
    """Prompt strategies of the two validation runs in the pipeline."""

    baseline_template: str = "rich"
    baseline_strategy: Optional[str] = None
    finetuned_template: str = "simple"
    finetuned_strategy: Optional[str] = None
    run_baseline: bool = True


@dataclass(frozen=True)
class ReportConfig:
    """Collate, compare and report: intervals, small-group flags, error examples."""

    bootstrap_resamples: int = 1000  # percentile bootstrap; >= 1000 keeps 95% bounds stable to ~0.005
    bootstrap_seed: int = 0  # the same seed gives the same intervals (reports are reproducible)
    confidence: float = 0.95  # interval level
    min_class_count: int = 30  # flag a group with fewer answered hate or normal samples than this
    errors_per_group: int = 5  # error examples per target group in the report
    top_errors: int = 10  # the run's top N false positives and N false negatives in its report (the old users' lists)
    # Trackers a validation and a comparison log their metrics to; None: the same as train.report_to.
    report_to: Optional[tuple[Literal["tensorboard", "wandb", "mlflow", "trackio"], ...]] = None
    progress_every_s: float = 30.0  # a progress line in the job log this often (validation per rank, training)
    # `hsd validate` of a baseline: its own collation's imports, reference fits and reference scores
    # done by a second process while the model generates (hsd.recipes.collate_ahead); None: on a GPU
    collate_ahead: Optional[bool] = None


@dataclass(frozen=True)
class Config:
    """The whole experiment."""

    experiment: str = "default"  # results/<experiment>/...
    run_name: Optional[str] = None  # None: <command>_<strategy>_<timestamp>
    results_dir: str = "results"
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


# --------------------------------------------------------------------------------------
# Strict construction
# --------------------------------------------------------------------------------------

_POSITIVE = {
    "inference.batch_size",
    "inference.slots",
    "inference.max_new_tokens",
    "inference.min_new_tokens",
    "inference.top_p",
    "train.micro_batch_size",
    "train.grad_accum",
    "train.max_length",
    "train.lora.r",
    "train.eval_every",
    "train.save_every",
    "train.keep_checkpoints",
    "train.epochs",
    "train.max_steps",
    "train.stop_after_steps",
    "train.max_train_samples",
    "train.learning_rate",
    "train.max_grad_norm",
    "distributed.peer_timeout_s",
    "train.holdout_fraction",
    "train.lora.alpha",
    "executor.nodes",
    "executor.cpus_per_task",
    "executor.mem_gb",
    "executor.timeout_min",
    "executor.cpu_stage.cpus_per_task",
    "executor.cpu_stage.mem_gb",
    "executor.cpu_stage.timeout_min",
    "report.bootstrap_resamples",
    "report.min_class_count",
    "report.progress_every_s",
}
_NON_NEGATIVE = {"executor.gpus_per_node", "prompt.few_shot_per_group", "report.errors_per_group",
                 "inference.temperature"}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (tuples for sequences)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{where}' must be a mapping of {tp.__name__} keys, got {type(value).__name__}")
        return _build(tp, value, where, source)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where, source)
            except ConfigError:
                continue
    elif tp is type(None):
        if value is None:
            return None
    elif tp is Any:
        return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, datetime.date):  # YAML reads an unquoted 2025-08-05 as a date
            return value.isoformat()
    elif origin in (tuple, list):
        args = typing.get_args(tp)
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value))
    elif origin is dict:
        kt, vt = typing.get_args(tp)
        if isinstance(value, dict):
            return {_coerce(k, kt, where, source): _coerce(v, vt, f"{where}.{k}", source) for k, v in value.items()}
    raise ConfigError(
        f"{source}: '{where}' must be {_type_name(tp)}, got {value!r} ({type(value).__name__})"
    )


def _build(cls: type, values: dict[str, Any], prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        where = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(
                f"{source}: unknown key '{where}'. Valid keys{' under ' + repr(prefix) if prefix else ''}: "
                f"{', '.join(names)}"
            )
        value = _coerce(value, hints[key], where, source)
        _check_range(where, value, source)
        kwargs[key] = value
    return cls(**kwargs)


def _check_range(where: str, value: Any, source: str) -> None:
    if where in _POSITIVE and isinstance(value, (int, float)) and value <= 0:
        raise ConfigError(f"{source}: '{where}' must be > 0, got {value}")
    if where in _NON_NEGATIVE and isinstance(value, (int, float)) and value < 0:
        raise ConfigError(f"{source}: '{where}' must be >= 0, got {value}")
    if where == "inference.top_p" and value is not None and value > 1:
        raise ConfigError(f"{source}: 'inference.top_p' must be in (0, 1], got {value}")
    if where == "results_dir" and not value.strip():
        raise ConfigError(f"{source}: 'results_dir' is empty; give a directory (e.g. results)")
    if where == "data.max_samples" and isinstance(value, int) and value <= 0:
        raise ConfigError(f"{source}: 'data.max_samples' must be a positive integer or 'all', got {value}")
    if where == "report.bootstrap_resamples" and value < 1000:
        raise ConfigError(f"{source}: 'report.bootstrap_resamples' must be >= 1000 (fewer gives unstable "
                          f"95% bounds); got {value}")
    if where == "report.confidence" and not 0.0 < value < 1.0:
        raise ConfigError(f"{source}: 'report.confidence' must be in (0, 1), e.g. 0.95; got {value}")
    if where == "inference.threshold" and not 0.0 <= value <= 1.0:
        raise ConfigError(f"{source}: 'inference.threshold' must be in [0, 1], got {value}")


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], yaml-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value (e.g. inference.batch_size=8)")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}': empty key part")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from None
    return key.split("."), value


def _set_dotted(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"override '{'.'.join(path)}': '{part}' is not a section")
        node = child
    node[path[-1]] = value


class _UniqueKeySafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping setting one key twice (YAML itself keeps the
    last silently, so ``lr: 1e-4`` ... ``lr: 1e-3`` 40 lines apart would win without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise ConfigError(f"key '{key}' is set twice in one mapping, on line {seen[key]} and "
                                  f"line {line}; keep one of them")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping (safe loader, duplicate keys refused); errors name the file (and for
    a byte that is not UTF-8, its line, column and offset)."""
    from hsd import textio

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p} (pass an existing YAML file, e.g. configs/demo.yaml)")
    text = textio.read_text(p, error=ConfigError)  # one BOM dropped; a bad byte named by line and column
    try:
        data = yaml.load(text, Loader=_UniqueKeySafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    except ConfigError as exc:  # a duplicate key: the loader knows the lines, not the file
        raise ConfigError(f"{p}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


# Keys older configs hold (hsd itself wrote them into every resolved config.yaml) -> how they read now.
# data.drop_empty_text (bool, default false = refuse the file) became data.empty_text (skip | error,
# default skip): true reads as skip; false, the old default that every config.yaml of that time holds
# without anyone choosing it, says nothing (empty_text keeps its value, by default skip). A converter
# returns the new key's value, or None for "no opinion".
LEGACY_KEYS = {("data", "drop_empty_text"): ("empty_text", lambda old: "skip" if old else None)}


def _read_legacy_keys(tree: dict[str, Any], source: str) -> None:
    """Rewrite the :data:`LEGACY_KEYS` of ``tree`` in place; one set beside its new key is an error
    when the two disagree, so neither silently wins."""
    for (section, old), (new, convert) in LEGACY_KEYS.items():
        node = tree.get(section)
        if not isinstance(node, dict) or old not in node:
            continue
        value = node.pop(old)
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{section}.{old}' must be bool, got {value!r}; it is the old name "
                              f"of '{section}.{new}', write that instead")
        converted = convert(value)
        if converted is None:
            continue
        if new in node and node[new] != converted:
            raise ConfigError(f"{source}: '{section}.{old}: {str(value).lower()}' (the old name of "
                              f"'{section}.{new}') contradicts '{section}.{new}: {node[new]}'; keep only "
                              f"'{section}.{new}'")
        node[new] = converted


def from_dict(values: dict[str, Any], source: str = "<config>", overrides: list[str] = ()) -> Config:
    """Build a :class:`Config` from a plain mapping plus dotted overrides."""
    tree = _deep_copy(values)
    for text in overrides:
        path, value = parse_override(text)
        _set_dotted(tree, path, value)
    _read_legacy_keys(tree, source if not overrides else f"{source} (with overrides {' '.join(overrides)})")
    src = source if not overrides else f"{source} (with overrides {' '.join(overrides)})"
    return _build(Config, tree, "", src)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Load a config file (or the defaults when ``path`` is None) with overrides."""
    values = read_yaml(path) if path is not None else {}
    return from_dict(values, str(path) if path else "<defaults>", overrides)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML-safe mapping (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def dump_config(cfg: Config) -> str:
    """YAML text of the resolved config; ``load_config`` of it gives ``cfg`` back."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def replace(cfg: Any, **changes: Any) -> Any:
    """Dotted-key aware ``dataclasses.replace``: ``replace(cfg, **{"inference.batch_size": 4})``."""
    tree = to_dict(cfg)
    for key, value in changes.items():
        _set_dotted(tree, key.split("."), to_dict(value) if dataclasses.is_dataclass(value) else value)
    return _build(type(cfg), tree, "", "<replace>")


def _deep_copy(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in values.items()}
