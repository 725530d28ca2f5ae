"""Load a causal LM + tokenizer (+ optional LoRA adapter) the same way for every model.

The real gpt-oss-20b, the tiny test model and a fine-tuned adapter all go through
:func:`load_model_and_tokenizer`, so what the tests exercise is what runs on GPUs. Problems a
user can fix (a missing directory, a directory that is not a model, a missing adapter, a hub
name that is not cached on an offline node) become :class:`ModelError` naming the path and
the fix instead of a deep transformers traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hsd.config import ModelConfig
from hsd.errors import ModelError

# "org/name" or "name": what a hub id looks like. Anything else is meant as a local path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def resolve_device(model_cfg: ModelConfig) -> str:
    """``auto`` -> ``cuda:0`` when CUDA is available, else ``cpu`` (a rank's own GPU is bound by
    :func:`hsd.distributed.init_distributed`)."""
    import torch

    if model_cfg.device == "cpu" or (model_cfg.device == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        raise ModelError("model.device is 'cuda' but no CUDA device is visible; set model.device=cpu or auto")
    return "cuda:0"


def resolve_dtype(model_cfg: ModelConfig, device: str) -> Any:
    """``auto`` -> bf16 on GPU (what gpt-oss is served in), fp32 on CPU (bf16 matmuls are slow there)."""
    import torch

    if model_cfg.dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, model_cfg.dtype)


def check_source(name_or_path: str) -> str:
    """A local model directory, or a hub id; ModelError when it can be neither."""
    from hsd.models.fullsize import is_random_spec

    if is_random_spec(name_or_path):  # random:gpt-oss-20b — built in place (hsd.models.fullsize)
        return name_or_path
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelError(
                f"model.name_or_path {path} is not a model directory (no config.json). Point it at "
                "a directory written by save_pretrained, or build the tiny model: hsd model tiny --out DIR"
            )
        return str(path)
    if name_or_path.startswith((".", "/", "~")) or not _HUB_ID.match(name_or_path):
        raise ModelError(
            f"model directory not found: {path}. Fix model.name_or_path (a local directory or a hub "
            "name such as openai/gpt-oss-20b); for tests and the demo: hsd model tiny --out DIR"
        )
    return name_or_path


def from_pretrained(loader: Any, source: str, what: str, mxfp4_kernels: bool = False, compile_attention: bool = True,
                    compile_experts: bool = True, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` with hsd's kernels resolved, errors a user can act on, and MXFP4
    checkpoints loaded on purpose (hsd.models.mxfp4_load): kept MXFP4 only where ``mxfp4_kernels``
    allows it and transformers' kernels can run, else dequantized (public: training and the
    deepspeed backend build their models through it too). ``compile_attention`` /
    ``compile_experts``: ``model.compile_attention`` / ``model.compile_experts`` (hsd.gptoss.kernels)."""
    from hsd.models import mxfp4_load
    from hsd.models.fullsize import is_random_spec, random_from_pretrained
    from hsd.paths import use_compile_cache

    if what == "model":  # before anything compiles: kernels compiled by an earlier job are reused
        use_compile_cache()
    if "attn_implementation" in kwargs:  # "auto" -> hsd's sink-aware SDPA kernel, registered first
        from hsd.gptoss.kernels import resolve_attn_implementation, resolve_experts_implementation

        kwargs["attn_implementation"] = resolve_attn_implementation(kwargs["attn_implementation"], compile_attention)
        # no experts_implementation (None) -> hsd's fused grouped_mm experts (hsd.gptoss.experts)
        kwargs["experts_implementation"] = resolve_experts_implementation(kwargs.get("experts_implementation"),
                                                                          compile_experts)
    if is_random_spec(source):
        return random_from_pretrained(what, source, **kwargs)
    try:
        if what == "model" and mxfp4_load.is_mxfp4_checkpoint(source, kwargs.get("trust_remote_code", False)):
            return mxfp4_load.load(loader, source, kwargs, allow_kernels=mxfp4_kernels)
        return loader.from_pretrained(source, **kwargs)
    except OSError as exc:
        raise ModelError(
            f"cannot load the {what} '{source}': {' '.join(str(exc).split())} On an offline node (HF_HUB_OFFLINE=1) the "
            "model must be in the Hugging Face cache or a local directory (model.name_or_path)"
        ) from None
    except ValueError as exc:  # transformers: an unusable directory or setting (no tokenizer files, attn name)
        raise ModelError(f"cannot load the {what} '{source}': {' '.join(str(exc).split())[:600]}") from None


def load_tokenizer(model_cfg: ModelConfig) -> Any:
    """The tokenizer, left-padded (decoder-only batches must end at the prompt's last token)."""
    from transformers import AutoTokenizer

    from hsd.models import fast_tokenizer

    source = check_source(model_cfg.name_or_path)
    plain = not model_cfg.trust_remote_code and fast_tokenizer.is_plain(source)  # gpt-oss's: parsed once, not twice
    return left_padded(from_pretrained(fast_tokenizer if plain else AutoTokenizer, source, "tokenizer",
                                       trust_remote_code=model_cfg.trust_remote_code))


def left_padded(tok: Any) -> Any:
    """``tok`` set up for decoder-only batches: padded on the left, eos as pad when it has none."""
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(model_cfg: ModelConfig, device: str | None = None) -> Any:
    """The model on ``device`` in eval mode, with the LoRA adapter applied when configured."""
    from transformers import AutoModelForCausalLM

    source = check_source(model_cfg.name_or_path)
    device = device or resolve_device(model_cfg)
    kwargs: dict[str, Any] = {
        "dtype": resolve_dtype(model_cfg, device),
        "attn_implementation": model_cfg.attn_implementation,
        "trust_remote_code": model_cfg.trust_remote_code,
        "device_map": {"": device},  # load straight onto the device: no 40 GB CPU detour
    }
    if model_cfg.experts_implementation is not None:  # None: let transformers choose
        kwargs["experts_implementation"] = model_cfg.experts_implementation
    from hsd.gptoss.kernels import compile_flag

    # MXFP4 experts stay MXFP4 only for inference without an adapter (peft needs dense weights)
    kernels = model_cfg.adapter is None
    model = from_pretrained(AutoModelForCausalLM, source, "model", mxfp4_kernels=kernels,
                            compile_attention=compile_flag(model_cfg.compile_attention, training=False),
                            compile_experts=compile_flag(model_cfg.compile_experts, training=False), **kwargs)
    if device.startswith("cuda"):
        # One torch.rms_norm kernel per norm instead of transformers' ~7 element-wise passes (49
        # norms in each forward of gpt-oss-20b). Not on CPU: there hsd's decoding paths are tested
        # bit for bit against transformers' own forward (the two agree to ~1e-5, test_fused_norm.py).
        from hsd.gptoss.norm import fuse_rms_norms

        fuse_rms_norms(model)
    if model_cfg.adapter is not None:
        model = apply_adapter(model, model_cfg.adapter)
    return model.eval()


def check_adapter(adapter: str) -> Path:
    """The adapter directory, or ModelError; callers check it before creating a run directory."""
    import json

    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise ModelError(
            f"LoRA adapter not found: {path} has no adapter_config.json. Set model.adapter to the "
            "adapter directory a training run wrote (<train run>/adapter), or null for the base model"
        )
    try:
        config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        config = None
    if not isinstance(config, dict) or "peft_type" not in config:
        raise ModelError(f"{path / 'adapter_config.json'} is not a peft adapter config (no peft_type); "
                         "point model.adapter at the adapter directory a training run wrote")
    if not (path / "adapter_model.safetensors").is_file():  # weights as safetensors only: no pickle loading
        raise ModelError(f"LoRA adapter {path} has no adapter_model.safetensors (hsd loads adapter weights "
                         "as safetensors only; re-save a .bin adapter with save_pretrained(safe_serialization=True))")
    return path


def apply_adapter(model: Any, adapter: str) -> Any:
    """The model with the checked LoRA adapter on it, frozen (for inference)."""
    from peft import PeftModel

    path = check_adapter(adapter)
    try:
        return PeftModel.from_pretrained(model, str(path), is_trainable=False)
    except (KeyError, ValueError, OSError, RuntimeError) as exc:  # e.g. an adapter trained for another base model
        raise ModelError(f"cannot load the LoRA adapter {path}: {' '.join(str(exc).split())[:600]}") from None


def load_model_and_tokenizer(model_cfg: ModelConfig, device: str | None = None) -> tuple[Any, Any]:
    """Model (eval, on ``device`` or the configured one) and left-padding tokenizer."""
    tokenizer = load_tokenizer(model_cfg)
    model = load_model(model_cfg, device)
    return model, tokenizer
