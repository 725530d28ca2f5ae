"""Loading an MXFP4 checkpoint (gpt-oss's release, ``hsd model tiny --format mxfp4``) on purpose.

transformers decides by itself whether MXFP4 experts stay MXFP4 (triton kernels fetched by
the ``kernels`` package) or are dequantized, and it falls back with only a log line. hsd
decides explicitly and records what happened (:func:`record_for`, written to the manifests):

* inference with the ``hf`` backend on a CUDA GPU where transformers' kernels can run
  (:func:`kernels_usable`, the same checks as transformers' MXFP4 quantizer): MXFP4 kernels;
* everywhere else — training (transformers refuses to train MXFP4 weights), merging, CPU,
  GPUs without the ``kernels`` package: ``Mxfp4Config(dequantize=True)``, experts in the
  model's dtype (bf16 on GPU: gpt-oss-20b is then 39 GiB);
* under DeepSpeed ZeRO-3 (training, the ``deepspeed`` backend): hsd's own loader. transformers
  builds a quantized model — dequantized or not — whole on every rank, outside ``zero.Init``
  (``PreTrainedModel.get_init_context``); hsd builds the dense architecture under ``zero.Init``
  (partitioned as it is created) and streams the checkpoint in one parameter at a time: rank 0
  reads and dequantizes it, each rank keeps its partition. No rank ever holds the whole model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hsd.errors import ModelError
from hsd.models.mxfp4 import BLOCK, is_expert_weight, is_mxfp4_config, unpack_expert

_LOADS: dict[str, dict[str, Any]] = {}  # checkpoint -> what its latest load in this process did (manifests)


def is_mxfp4_checkpoint(source: str, trust_remote_code: bool = False) -> bool:
    """True when the model's config.json declares ``quantization_config.quant_method: mxfp4``."""
    from transformers import AutoConfig

    path = Path(source)
    if (path / "config.json").is_file():  # local: no AutoConfig round trip
        return is_mxfp4_config(json.loads((path / "config.json").read_text(encoding="utf-8")))
    return is_mxfp4_config(AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code))


def kernels_usable(device: str) -> tuple[bool, str]:
    """(whether transformers can run the experts in MXFP4 on ``device``, why not).

    The same conditions as ``Mxfp4HfQuantizer.validate_environment`` (transformers 5.x) for a
    CUDA device; on CPU transformers' MXFP4 path needs ``use_kernels=True``, which hsd does not set.
    """
    import torch
    from transformers.utils import is_kernels_available, is_triton_available

    if not device.startswith("cuda"):
        return False, "not a CUDA device"
    if torch.cuda.get_device_capability(torch.device(device)) < (7, 5):
        return False, "the GPU's compute capability is below 7.5"
    if not is_triton_available("3.4.0"):
        return False, "triton >= 3.4.0 is not installed"
    if not is_kernels_available():
        return False, "the kernels package (a version this transformers accepts) is not installed"
    return True, ""


def load(loader: Any, source: str, kwargs: dict[str, Any], allow_kernels: bool) -> Any:
    """``loader.from_pretrained(source, **kwargs)`` for an MXFP4 checkpoint, the way chosen above."""
    from transformers import Mxfp4Config
    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():
        model = _load_zero3(loader, source, kwargs)
        return _record(model, source, "hsd", "DeepSpeed ZeRO-3: partitioned as it loads")
    _check_before_transformers(loader, source, kwargs.get("trust_remote_code", False))
    device = str(next(iter((kwargs.get("device_map") or {"": "cpu"}).values())))
    dense_needed = "training, merging or a LoRA adapter needs dense weights"
    usable, why_not = kernels_usable(device) if allow_kernels else (False, dense_needed)
    model = loader.from_pretrained(source, quantization_config=Mxfp4Config(dequantize=not usable), **kwargs)
    if getattr(model, "is_quantized", False):
        return _record(model, source, None, "transformers' MXFP4 kernels")
    return _record(model, source, "transformers", why_not or "transformers fell back to dequantizing (see its log)")


def record_for(name_or_path: str) -> dict[str, Any] | None:
    """How this process last loaded the MXFP4 checkpoint ``name_or_path`` (experts' dtype, who
    dequantized, why; under ZeRO-3 the elements this rank holds), or None if it loaded none."""
    entry = _LOADS.get(_key(name_or_path))
    return dict(entry) if entry else None


def _key(name_or_path: str) -> str:
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else name_or_path


def _record(model: Any, source: str, dequantized_by: str | None, reason: str) -> Any:
    params = [p for n, p in model.named_parameters() if is_expert_weight(n)]
    dtype = "mxfp4" if dequantized_by is None or not params else str(params[0].dtype).removeprefix("torch.")
    entry = {"checkpoint_format": "mxfp4", "experts_loaded_as": dtype, "dequantized_by": dequantized_by,
             "reason": reason}
    if dequantized_by == "hsd":  # the evidence that ZeRO-3 partitioned while loading
        params = list(model.parameters())
        entry.update(elements_on_this_rank=sum(p.ds_tensor.numel() for p in params),
                     elements_in_model=sum(p.ds_numel for p in params))
    _LOADS[_key(source)] = entry
    return model


def _dense_config(source: str, trust_remote_code: bool) -> Any:
    """The checkpoint's config without ``quantization_config``: the architecture the weights become."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    del config.quantization_config
    return config


def _check_before_transformers(loader: Any, source: str, trust_remote_code: bool) -> None:
    """A checkpoint missing a tensor makes transformers fail deep in its weight conversion (or
    initialise the tensor at random); check names and shapes against a meta-device skeleton first."""
    import torch

    with torch.device("meta"):
        skeleton = loader.from_config(_dense_config(source, trust_remote_code), trust_remote_code=trust_remote_code)
    files = _checkpoint_files(source)
    _check_against(dict(skeleton.named_parameters()), _headers(files)[1], files[0].parent)


def _load_zero3(loader: Any, source: str, kwargs: dict[str, Any]) -> Any:
    """The dense model built under ``zero.Init`` (transformers' ``from_config`` does so while a
    ZeRO-3 config is active), then filled parameter by parameter from the checkpoint."""
    from transformers import GenerationConfig

    trust = kwargs.get("trust_remote_code", False)
    build = {k: v for k, v in kwargs.items() if k in ("dtype", "attn_implementation", "experts_implementation")}
    model = loader.from_config(_dense_config(source, trust), trust_remote_code=trust, **build)
    _stream_weights(model, _checkpoint_files(source))
    model.config.name_or_path = source  # peft records it as the adapter's base model
    try:
        model.generation_config = GenerationConfig.from_pretrained(source)
    except OSError:
        pass  # no generation_config.json: keep the one from_config derived
    return model.eval()


def _checkpoint_files(source: str) -> list[Path]:
    """The safetensors files of a local directory or a cached hub snapshot (HF_HUB_OFFLINE respected)."""
    path = Path(source)
    if not path.is_dir():
        from huggingface_hub import snapshot_download

        # the top-level weights only (gpt-oss's repository also holds original/ and metal/ copies)
        path = Path(snapshot_download(source, allow_patterns=["model*.safetensors", "model.safetensors.index.json"]))
    index = path / "model.safetensors.index.json"
    if index.is_file():
        return [path / name for name in sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))]
    if (path / "model.safetensors").is_file():
        return [path / "model.safetensors"]
    raise ModelError(f"{path} holds no model.safetensors (or index); an MXFP4 checkpoint is stored as safetensors")


def _stream_weights(model: Any, files: list[Path]) -> None:
    """Copy each parameter in from rank 0 under ``GatheredParameters``; the others keep their part.

    Every rank reads the files' headers (names and shapes, no data) and checks them against the
    model first, so a mismatch stops all ranks with the same error before any collective.
    """
    import deepspeed
    import torch.distributed as dist

    handles, shapes = _headers(files)
    params = dict(model.named_parameters())
    _check_against(params, shapes, files[0].parent)
    rank0 = not dist.is_initialized() or dist.get_rank() == 0
    for name, param in params.items():
        with deepspeed.zero.GatheredParameters([param], modifier_rank=0):
            if rank0:
                param.data.copy_(_read(handles, name, param.dtype))


def _headers(files: list[Path]) -> tuple[dict[str, Path], dict[str, tuple[int, ...]]]:
    """(tensor name -> file, tensor name -> shape), from the safetensors headers alone."""
    from safetensors import safe_open

    handles, shapes = {}, {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                handles[key], shapes[key] = file, tuple(f.get_slice(key).get_shape())
    return handles, shapes


def _check_against(params: dict[str, Any], shapes: dict[str, tuple[int, ...]], where: Path) -> None:
    """Every parameter stored, nothing else stored, every shape right — or one ModelError."""
    wanted = {f"{n}_{part}" for n in params if is_expert_weight(n) for part in ("blocks", "scales")}
    wanted |= {n for n in params if not is_expert_weight(n)}
    missing, unexpected = sorted(wanted - set(shapes)), sorted(set(shapes) - wanted)
    wrong = [] if missing else [n for n, p in params.items() if _stored_shape(n, shapes) != _full_shape(p)]
    if missing or unexpected or wrong:
        raise ModelError(f"the MXFP4 checkpoint in {where} does not match its config's architecture: missing "
                         f"{missing[:5] or 'none'}, unexpected {unexpected[:5] or 'none'}, other shapes "
                         f"{wrong[:5] or 'none'}. Download or convert it again (the tiny one: hsd model tiny "
                         "--format mxfp4)")


def _stored_shape(name: str, shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    if not is_expert_weight(name):
        return shapes[name]
    experts, out, blocks, _ = shapes[f"{name}_blocks"]  # the [experts, in, out] parameter, transposed
    return (experts, blocks * BLOCK, out)


def _full_shape(param: Any) -> tuple[int, ...]:
    return tuple(getattr(param, "ds_shape", param.shape))  # under ZeRO-3 .shape is the empty local view


def _read(handles: dict[str, Path], name: str, dtype: Any) -> Any:
    from safetensors import safe_open

    def tensor(key: str) -> Any:
        with safe_open(str(handles[key]), framework="pt") as f:
            return f.get_tensor(key)

    if is_expert_weight(name):
        return unpack_expert(tensor(f"{name}_blocks"), tensor(f"{name}_scales"), dtype)
    return tensor(name).to(dtype)
