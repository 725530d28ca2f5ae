"""The base model with LoRA on it, and the adapter exported whole from a sharded model.

Under ZeRO-3 every parameter — the LoRA matrices too — is split across ranks, so the
adapter is assembled from DeepSpeed's fp32 master copies (a collective every rank joins)
before rank 0 writes it. Saving ``model.state_dict()`` there would write empty shards: an
adapter that loads without error and does nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hsd.config import ConfigError, LoraConfig, ModelConfig
from hsd.gptoss.kernels import compile_flag
from hsd.gptoss.norm import fuse_rms_norms
from hsd.runs import publish_dir
from hsd.models.loader import check_source, from_pretrained, resolve_dtype


def load_base(model_cfg: ModelConfig, checkpointing: int | bool) -> Any:
    """The model for training: no device map (DeepSpeed places it; under ZeRO-3 it is
    partitioned while it loads). ``checkpointing``: True every decoder layer recomputes its
    activations in the backward, False none, N the first N (the plan of
    :func:`hsd.training.memory.checkpoint_plan`: the last layers' activations are freed first)."""
    import torch
    from transformers import AutoModelForCausalLM

    if model_cfg.adapter is not None:
        raise ConfigError(
            f"model.adapter is set ({model_cfg.adapter}) but training starts a new adapter from the base "
            "model; set model.adapter=null for hsd train (post-FT validation sets it)"
        )
    source = check_source(model_cfg.name_or_path)
    if Path(source).exists():
        source = str(Path(source).resolve())  # the adapter records it; merge finds the base from anywhere
    device = "cuda" if torch.cuda.is_available() and model_cfg.device != "cpu" else "cpu"
    kwargs: dict[str, Any] = {
        "dtype": resolve_dtype(model_cfg, device),
        "attn_implementation": model_cfg.attn_implementation,
        "trust_remote_code": model_cfg.trust_remote_code,
    }
    if model_cfg.experts_implementation is not None:
        kwargs["experts_implementation"] = model_cfg.experts_implementation
    model = from_pretrained(AutoModelForCausalLM, source, "model",
                            compile_attention=compile_flag(model_cfg.compile_attention, training=True),
                            compile_experts=compile_flag(model_cfg.compile_experts, training=True), **kwargs)
    model.config.use_cache = False  # no KV cache in training (and it conflicts with checkpointing)
    fuse_rms_norms(model)
    if checkpointing is not False and checkpointing != 0:
        # Non-reentrant: works with frozen inputs (LoRA) without enable_input_require_grads.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if checkpointing is not True:
            keep_whole_after(model, int(checkpointing))
    return model


def decoder_layers(model: Any) -> list[Any]:
    """The layers transformers can checkpoint, in order (the GradientCheckpointingLayer subclasses)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def keep_whole_after(model: Any, first: int) -> None:
    """Only the first ``first`` decoder layers recompute; the others keep their activations."""
    for layer in decoder_layers(model)[first:]:
        layer.gradient_checkpointing = False


def check_lora(lora: LoraConfig, where: str = "train.lora") -> None:
    """Settings peft would refuse, checked without a model so ``hsd submit`` refuses a bad sweep
    entry before anything is queued (``where`` names the entry: ``sweep.lora[3]``)."""
    if not lora.target_modules and not lora.target_parameters:
        raise ConfigError(f"{where}: set target_modules (e.g. [q_proj, v_proj]) and/or target_parameters")
    if lora.target_parameters and lora.dropout:
        raise ConfigError(
            f"{where}.target_parameters ({', '.join(lora.target_parameters)}) needs {where}.dropout: 0.0: "
            f"peft applies no dropout to expert weights (got dropout {lora.dropout}); add dropout: 0.0 to it"
        )


def apply_lora(model: Any, lora: LoraConfig, seed: int) -> Any:
    """``get_peft_model`` with the LoRA init seeded (it draws lora_A at random)."""
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    check_lora(lora)
    check_targets(model, lora)
    peft_cfg = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules) or None,
        target_parameters=list(lora.target_parameters) or None,
        modules_to_save=list(lora.modules_to_save) or None,
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(seed)
    try:
        return get_peft_model(model, peft_cfg)
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        raise ConfigError(f"train.lora: {exc}") from None


def check_targets(model: Any, lora: LoraConfig) -> None:
    """Every name in ``train.lora.target_modules`` must name modules of the model. peft refuses a
    list none of whose names match, but trains silently on the rest when only some are misspelt
    (``[q_proj, qq_proj]`` adapts q_proj alone): a typo must not change what is trained."""
    names = [name for name, _ in model.named_modules()]
    leaves = {name.rsplit(".", 1)[-1] for name in names}
    missing = [t for t in lora.target_modules if t not in leaves and not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
        raise ConfigError(f"train.lora.target_modules: {missing} name no module of the model; "
                          f"its linear modules are {linear}")


def trainable_counts(model: Any) -> dict[str, int]:
    total = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in model.parameters())
    train = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": total, "trainable_parameters": train}


def optimizer_parameters(engine: Any) -> int:
    """Parameter elements DeepSpeed's optimizer holds fp32 master, Adam state and gradient
    partitions for. Equal to the trainable count: frozen weights get no gradient buffers."""
    opt = engine.optimizer
    groups = getattr(opt, "fp16_groups", None) or getattr(opt, "bit16_groups", None) \
        or [g["params"] for g in opt.param_groups]
    return sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for group in groups for p in group)


def training_modes(model: Any) -> dict[str, bool]:
    """Whether the model trains in train mode and its layers really recompute activations.

    Both depend on ``module.training`` (transformers checks ``gradient_checkpointing and
    training`` per layer), so a model left in eval mode trains without either and says nothing;
    the manifest records what was in force.
    """
    active = sum(1 for m in decoder_layers(model) if m.gradient_checkpointing and m.training)
    return {"train_mode": bool(model.training), "gradient_checkpointing_active": active > 0,
            "checkpointed_layers_active": active}


def export_adapter(accelerator: Any, engine: Any, out_dir: Path) -> Path:
    """Write the complete adapter (safetensors) to ``out_dir``; every rank must call this."""
    from deepspeed.utils import safe_get_full_fp32_param

    model = accelerator.unwrap_model(engine)
    state = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        full = safe_get_full_fp32_param(param)  # collective under ZeRO-3
        if full is None:
            raise RuntimeError(f"DeepSpeed returned no fp32 weights for {name}; the adapter would be incomplete")
        state[name] = full.detach().to("cpu").clone()
    if accelerator.is_main_process:
        with publish_dir(out_dir, replace=True) as tmp:  # an adapter of an earlier attempt is replaced whole
            model.save_pretrained(str(tmp), state_dict=state, safe_serialization=True)
    accelerator.wait_for_everyone()
    return out_dir


