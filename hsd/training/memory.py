"""``train.ds_config: auto``: the fastest DeepSpeed stage whose per-GPU memory fits, by estimate.

ZeRO-2 keeps a whole bf16 replica on every GPU and is the fast one: measured on H200s,
2 ranks train 2.07x one rank's tokens/s, where ZeRO-3 gathers every weight around every
module and trains at 0.83x of ONE GPU (../shared/notes/measured-2xh200.md). ZeRO-3 is for a
model whose replica, LoRA state and activations do not fit one GPU (an A100 40 GB, gpt-oss-120b,
long sequences); ZeRO-3 with parameters and optimizer offloaded to the host when even its
shard does not fit.

The estimate per GPU, in bytes (b = bytes per weight, N = parameters with LoRA, T = trainable,
W = ranks, tokens = micro-batch x max_length):

- weights: N*b (ZeRO-2), N*b/W plus two layers gathered (ZeRO-3; the current and the
  prefetched one), two layers only (offload);
- LoRA state: T*b gradients + 16*T/W fp32 master, Adam moments and gradient partition;
- activations: a checkpointed layer keeps its input (H*b per token), plus one layer
  recomputed at a time (times :data:`ACTIVATION_CALIBRATION`); a layer kept whole keeps all its
  saved tensors (times :data:`STORED_CALIBRATION`); scores (heads x seq per token and layer)
  only for eager attention;
- logits: the loss projects only labelled positions (``answer_loss_sum``), assumed
  :data:`ANSWER_POSITIONS` per row, 201,088-wide in bf16 + fp32 upcast + fp32 gradient.

It fits when the sum is at most the device memory less :data:`MARGIN_FRACTION` (CUDA context,
NCCL buffers, allocator fragmentation). The parameter count comes from the model's config,
built on the meta device: no weights are read.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from hsd.config import Config, ConfigError, LoraConfig, ModelConfig

GIB = 2**30
MARGIN_FRACTION = 0.10
ANSWER_POSITIONS = 64  # labelled tokens per row: the answers of both ftdata formats are short JSON
# Fitted so the estimate reproduces the one measured point: 1 x H200, ZeRO-2, gpt-oss-20b,
# seq 1,024, micro-batch 8, LoRA r 32 on q,k,v,o, checkpointing, peak 42.0 GiB (notes).
ACTIVATION_CALIBRATION = 0.82
# Fitted to the same setting without checkpointing: 1 x H100 80GB, ZeRO-2, peak 68.4 GiB (BENCHMARKS.md,
# issue 29 call 1), where the formula alone said 62.0.
STORED_CALIBRATION = 1.06
STAGES = ("zero2", "zero3", "zero3_offload")  # cheapest in time first


def usable_gib(memory_gib: float) -> float:
    """What an estimate must fit: the device memory less :data:`MARGIN_FRACTION`."""
    return memory_gib * (1 - MARGIN_FRACTION)


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about the model (from its config alone)."""

    params: int  # with LoRA
    trainable: int
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    experts_per_token: int
    num_experts: int
    vocab: int
    layer_params: int  # the largest decoder layer: what ZeRO-3 gathers at once (a leaf MoE block and its attention)
    bytes_per_param: int


@dataclass(frozen=True)
class Workload:
    micro_batch: int
    seq_len: int
    gradient_checkpointing: bool
    world_size: int
    eager_attention: bool = False
    stored_layers: int = 0  # with checkpointing: layers kept whole anyway (the last ones; train.gradient_checkpointing auto)


@dataclass(frozen=True)
class DsChoice:
    """What ``auto`` chose and why; recorded in the manifest as ``ds_choice``."""

    name: str
    device_memory_gib: Optional[float]
    memory_source: str
    usable_gib: Optional[float]
    estimate_gib: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _config_of(model_cfg: Any) -> Any:
    from hsd.models.fullsize import PREFIX, architecture_config, is_random_spec

    if is_random_spec(model_cfg.name_or_path):
        return architecture_config(model_cfg.name_or_path[len(PREFIX):])
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model_cfg.name_or_path, trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"train.ds_config=auto and train.gradient_checkpointing=auto need the model's config to "
                          f"size the memory: model.name_or_path={model_cfg.name_or_path!r} has none readable ({exc}); "
                          "name a ds_config and set train.gradient_checkpointing to true or false instead") from None


def model_shape(cfg: Config, device_kind: str) -> ModelShape:
    """Count parameters (LoRA applied as training applies it) on the meta device."""
    return _model_shape(cfg.model, cfg.train.lora, "cuda" if device_kind == "cuda" else "cpu")


@functools.lru_cache(maxsize=8)  # a few seconds for 120B on the meta device; asked for twice per run
def _model_shape(model_cfg: ModelConfig, lora: LoraConfig, device_kind: str) -> ModelShape:
    import torch
    from transformers import AutoModelForCausalLM

    from hsd.models.loader import resolve_dtype
    from hsd.training.lora import apply_lora

    config = _config_of(model_cfg)
    dtype = resolve_dtype(model_cfg, device_kind)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model = apply_lora(model, lora, seed=0)  # the seed draws values, not shapes
    layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    get = lambda name, default=0: getattr(config, name, default) or default  # noqa: E731
    hidden = get("hidden_size")
    heads = get("num_attention_heads", 1)
    return ModelShape(
        params=sum(p.numel() for p in model.parameters()),
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        layers=get("num_hidden_layers", 1), hidden=hidden, intermediate=get("intermediate_size", 4 * hidden),
        heads=heads, kv_heads=get("num_key_value_heads", heads), head_dim=get("head_dim", hidden // heads),
        experts_per_token=get("num_experts_per_tok", 1), num_experts=get("num_local_experts", 1),
        vocab=get("vocab_size"),
        layer_params=max((sum(p.numel() for p in layer.parameters()) for layer in layers), default=0),
        bytes_per_param=torch.tensor([], dtype=dtype).element_size(),
    )


def _activation_bytes(s: ModelShape, w: Workload) -> float:
    tokens = w.micro_batch * w.seq_len
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    # one layer's saved tensors per token: norms and residuals, q/k/v/o, the router, and per
    # routed expert its input, gate_up output and activation
    layer = 6 * s.hidden + 2 * q + 2 * kv + s.num_experts + s.experts_per_token * (s.hidden + 3 * s.intermediate)
    if w.eager_attention:
        layer += 3 * s.heads * w.seq_len  # bf16 scores + fp32 softmax
    stored = min(w.stored_layers, s.layers) if w.gradient_checkpointing else s.layers
    checkpointed = s.layers - stored
    # a checkpointed layer keeps its input; one is recomputed at a time (counted on top of the
    # stored layers: conservative, the last layers are stored and freed before any recompute)
    kept = (checkpointed * s.hidden + (layer if checkpointed else 0)) * ACTIVATION_CALIBRATION
    per_token = kept + stored * layer * STORED_CALIBRATION
    hidden_acts = tokens * per_token * s.bytes_per_param
    logits = w.micro_batch * min(ANSWER_POSITIONS, w.seq_len) * s.vocab * (s.bytes_per_param + 4 + 4)
    return hidden_acts + logits


def estimate_bytes(s: ModelShape, w: Workload, stage: str) -> float:
    """Peak bytes per GPU of one training step under ``stage`` (one of :data:`STAGES`)."""
    b, gathered = s.bytes_per_param, 2 * s.layer_params * s.bytes_per_param
    weights = {"zero2": s.params * b, "zero3": s.params * b / w.world_size + gathered, "zero3_offload": gathered}
    if stage not in weights:
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    optimizer = 0.0 if stage == "zero3_offload" else 16 * s.trainable / w.world_size
    return weights[stage] + s.trainable * b + optimizer + _activation_bytes(s, w)


def device_memory(cfg: Config, device_kind: str, local_world: int) -> tuple[Optional[float], str]:
    """(GiB per rank, where that came from): the config, the GPU, or the host's RAM split over its ranks."""
    if cfg.train.device_memory_gib is not None:
        return float(cfg.train.device_memory_gib), "train.device_memory_gib"
    if device_kind == "cuda":
        import torch

        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return props.total_memory / GIB, f"torch.cuda ({props.name})"
    try:
        host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError):
        return None, "unknown (no CUDA; set train.device_memory_gib)"
    return host / max(1, local_world), f"host memory / {max(1, local_world)} local ranks (no CUDA)"


def choose(s: ModelShape, w: Workload, memory_gib: Optional[float], source: str) -> DsChoice:
    """The first of :data:`STAGES` whose estimate fits the usable memory; offload if none does."""
    estimates = {stage: round(estimate_bytes(s, w, stage) / GIB, 2) for stage in STAGES}
    if memory_gib is None:  # nothing to size against: the replica, ZeRO-2's speed
        return DsChoice("zero2", None, source, None, estimates, "device memory unknown: zero2")
    usable = round(usable_gib(memory_gib), 2)
    for stage in STAGES:
        if estimates[stage] <= usable:
            return DsChoice(stage, round(memory_gib, 2), source, usable, estimates,
                            f"{stage}: estimate {estimates[stage]} GiB <= usable {usable} GiB")
    return DsChoice("zero3_offload", round(memory_gib, 2), source, usable, estimates,
                    f"nothing fits {usable} GiB (zero3_offload needs {estimates['zero3_offload']} GiB); "
                    "lower train.micro_batch_size or train.max_length")


def workload(cfg: Config, world_size: int, stored_layers: int = 0) -> Workload:
    """The step's workload; ``auto`` checkpointing counts as checkpointed when a stage is chosen
    (the least memory: the stage comes first, then the layers that still fit are kept whole)."""
    return Workload(cfg.train.micro_batch_size, cfg.train.max_length, cfg.train.gradient_checkpointing is not False,
                    world_size, cfg.model.attn_implementation == "eager", stored_layers)


def plan(cfg: Config, device_kind: str, world_size: int, local_world: int) -> DsChoice:
    """``auto``'s choice for this config on this machine."""
    shape = model_shape(cfg, device_kind)
    memory, source = device_memory(cfg, device_kind, local_world)
    return choose(shape, workload(cfg, world_size), memory, source)


@dataclass(frozen=True)
class CheckpointPlan:
    """Which decoder layers recompute their activations in the backward (``train.gradient_checkpointing``);
    recorded in the manifest as ``checkpointing``."""

    setting: str  # auto | true | false, as configured
    layers: Optional[int]  # decoder layers (auto only: true/false need no model config)
    checkpointed: Optional[int]  # auto: the first ``checkpointed`` layers recompute, the rest keep their activations
    estimate_gib: Optional[float]
    usable_gib: Optional[float]
    reason: str

    @property
    def recompute(self) -> int | bool:
        """What :func:`hsd.training.lora.load_base` takes: True every layer, False none, N the first N."""
        return self.setting == "true" if self.checkpointed is None else self.checkpointed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def checkpoint_plan(cfg: Config, stage: str, device_kind: str, world_size: int, local_world: int) -> CheckpointPlan:
    """``train.gradient_checkpointing``: true recomputes every layer, false none; ``auto`` keeps
    as many of the last layers whole as the estimate (under DeepSpeed ``stage``, one of
    :data:`STAGES`) fits in the usable memory. Recomputing is a third forward pass per step:
    measured on one H100 (BENCHMARKS.md), none recomputed trains 1.39x the tokens/s of all."""
    setting = cfg.train.gradient_checkpointing
    if setting != "auto":
        name = str(bool(setting)).lower()
        return CheckpointPlan(name, None, None, None, None, f"train.gradient_checkpointing={name}")
    shape = model_shape(cfg, device_kind)
    memory, source = device_memory(cfg, device_kind, local_world)
    if memory is None:
        return CheckpointPlan("auto", shape.layers, shape.layers, None, None, f"device memory {source}: every layer")
    usable = usable_gib(memory)
    estimates = {k: estimate_bytes(shape, workload(cfg, world_size, k), stage) / GIB for k in range(shape.layers + 1)}
    stored = max((k for k, est in estimates.items() if est <= usable), default=0)  # the most layers kept whole that fit
    checkpointed, est = shape.layers - stored, estimates[stored]
    verdict = "fits" if est <= usable else "does not fit even with every layer recomputed:"
    return CheckpointPlan("auto", shape.layers, checkpointed, round(est, 2), round(usable, 2),
                          f"{checkpointed} of {shape.layers} layers recomputed: estimate {est:.2f} GiB {verdict} "
                          f"usable {usable:.2f} GiB ({source}, {stage})")
