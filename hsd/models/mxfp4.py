"""MXFP4, the format gpt-oss ships its expert weights in: encode, decode, write a checkpoint.

The released ``openai/gpt-oss-20b`` stores every MoE expert matrix as MXFP4 (OCP microscaling):
blocks of 32 values along the input dimension, each value a 4-bit E2M1 float (a nibble, two per
byte) and each block one shared power-of-two scale as an E8M0 byte (exponent + 127). Everything
else is bf16. So that the loading paths the real checkpoint takes are tested, ``hsd model tiny
--format mxfp4`` writes the tiny model the same way, with the same tensor names, shapes, dtypes
and ``quantization_config`` as transformers' conversion script
(``models/gpt_oss/convert_gpt_oss_weights_to_hf.py``):

    model.layers.N.mlp.experts.gate_up_proj_blocks   uint8 [experts, 2*intermediate, hidden/32, 16]
    model.layers.N.mlp.experts.gate_up_proj_scales   uint8 [experts, 2*intermediate, hidden/32]
    model.layers.N.mlp.experts.down_proj_blocks      uint8 [experts, hidden, intermediate/32, 16]
    model.layers.N.mlp.experts.down_proj_scales      uint8 [experts, hidden, intermediate/32]

i.e. the transposed (out, in) matrix of transformers' (in, out) parameter. The encoder is
hsd's own; tests check it round-trips through transformers' own dequantization
(``transformers.integrations.mxfp4``). A block's scale is the smallest power of two that keeps
its largest magnitude within E2M1's ±6 (the rounding-up rule of the triton kernels' encoder,
so no value saturates), and each value rounds to the nearest E2M1 point, ties to even.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hsd.errors import ModelError

BLOCK = 32  # values per shared scale (MX standard)
SCALE_BIAS = 127  # E8M0: scale = 2 ** (byte - 127); byte 255 is NaN
# E2M1 magnitudes for codes 0..7; bit 3 is the sign (codes 8..15 are the negatives).
E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
EXPERT_WEIGHTS = ("gate_up_proj", "down_proj")  # the 3-D expert parameters stored as MXFP4
# As in the released config.json: everything outside the experts stays bf16.
QUANTIZATION_CONFIG = {
    "quant_method": "mxfp4",
    "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
                               "lm_head"],
}


def encode(values: Any) -> tuple[Any, Any]:
    """``values`` [..., n] (n a multiple of 32) -> (blocks uint8 [..., n/32, 16], scales uint8 [..., n/32]).

    Within a byte the even element is the low nibble, as transformers' decoder reads it.
    """
    import torch

    x = values.detach().to(torch.float32)
    if x.shape[-1] % BLOCK:
        raise ModelError(f"MXFP4 needs the last dimension to be a multiple of {BLOCK}; got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ModelError("MXFP4 cannot encode NaN or infinite weights; the model to convert is broken")
    x = x.reshape(*x.shape[:-1], x.shape[-1] // BLOCK, BLOCK)
    amax = x.abs().amax(dim=-1)
    # the smallest power of two with amax / scale <= 6: frexp's estimate, then corrected by
    # exact comparisons (6 * 2**k is exact in fp32; amax / 6 is not)
    exponent = torch.frexp(amax / E2M1[-1])[1]
    exponent = exponent + (amax > _six_times_pow2(exponent)).int() - (amax <= _six_times_pow2(exponent - 1)).int()
    exponent = torch.where(amax == 0, torch.zeros_like(exponent), exponent)
    exponent = exponent.clamp(-SCALE_BIAS, SCALE_BIAS)  # E8M0's range (bytes 0..254)
    codes = _nearest_e2m1(x / torch.ldexp(torch.ones_like(amax), exponent).unsqueeze(-1))
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).to(torch.uint8)
    return blocks, (exponent + SCALE_BIAS).to(torch.uint8)


def _six_times_pow2(exponent: Any) -> Any:
    import torch

    return torch.ldexp(torch.full(exponent.shape, E2M1[-1], device=exponent.device), exponent.to(torch.float32))


def _nearest_e2m1(scaled: Any) -> Any:
    """The 4-bit code of the E2M1 value nearest to each element (|x| <= 6 after scaling); ties
    go to the even code, as IEEE round-to-nearest-even does."""
    import torch

    grid = torch.tensor(E2M1, device=scaled.device)
    mids = (grid[1:] + grid[:-1]) / 2
    mag = scaled.abs().clamp(max=E2M1[-1])
    below = torch.bucketize(mag, mids, right=False)  # a tie stays on the lower code
    above = torch.bucketize(mag, mids, right=True)  # a tie moves to the upper code
    code = torch.where((below != above) & (above % 2 == 0), above, below)
    return (code | (torch.signbit(scaled).to(code.dtype) << 3)).to(torch.int32)


def decode(blocks: Any, scales: Any, dtype: Any = None) -> Any:
    """Inverse of :func:`encode`: [..., n/32, 16] + [..., n/32] -> [..., n] in ``dtype`` (default fp32)."""
    import torch

    signed = torch.tensor(E2M1 + tuple(-v for v in E2M1), device=blocks.device)
    b = blocks.to(torch.int64)
    vals = torch.stack((signed[b & 0x0F], signed[b >> 4]), dim=-1).flatten(-2)
    out = torch.ldexp(vals, (scales.to(torch.int32) - SCALE_BIAS).unsqueeze(-1).to(torch.float32))
    return out.flatten(-2).to(dtype or torch.float32)


def pack_expert(param: Any) -> tuple[Any, Any]:
    """transformers' expert parameter [experts, in, out] -> (blocks, scales) of its [experts, out, in]."""
    return encode(param.transpose(1, 2).contiguous())


def unpack_expert(blocks: Any, scales: Any, dtype: Any = None) -> Any:
    """(blocks, scales) -> transformers' expert parameter [experts, in, out]."""
    return decode(blocks, scales, dtype).transpose(1, 2).contiguous()


def is_expert_weight(name: str) -> bool:
    return name.rpartition(".")[2] in EXPERT_WEIGHTS and ".mlp.experts." in name


def quantized_state_dict(model: Any) -> dict[str, Any]:
    """The checkpoint's tensors: experts as ``*_blocks`` / ``*_scales``, everything else bf16."""
    import torch

    state: dict[str, Any] = {}
    for name, tensor in model.state_dict().items():
        if is_expert_weight(name):
            blocks, scales = pack_expert(tensor)
            state[f"{name}_blocks"], state[f"{name}_scales"] = blocks.cpu(), scales.cpu()
        else:
            state[name] = tensor.detach().to(torch.bfloat16).cpu().contiguous()
    return state


def save_mxfp4(model: Any, out_dir: Path) -> None:
    """Write ``model`` as gpt-oss's release is written: MXFP4 experts, bf16 rest, its config.json.

    Not ``model.save_pretrained``: that writes the model's own (dense) tensors. The config is
    the model's plus ``quantization_config`` and ``dtype: bfloat16``, saved as the conversion
    script saves it.
    """
    import copy

    import torch
    from safetensors.torch import save_file

    save_file(quantized_state_dict(model), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = copy.deepcopy(model.config)
    config.quantization_config = copy.deepcopy(QUANTIZATION_CONFIG)
    config.dtype = torch.bfloat16
    config.architectures = [type(model).__name__]
    config.save_pretrained(str(out_dir))
    model.generation_config.save_pretrained(str(out_dir))


def is_mxfp4_config(config: Any) -> bool:
    """True when a model config (object or dict) says its checkpoint is MXFP4."""
    quant = config.get("quantization_config") if isinstance(config, dict) else getattr(config, "quantization_config",
                                                                                         None)
    if quant is not None and not isinstance(quant, dict):
        quant = quant.to_dict()
    return bool(quant) and quant.get("quant_method") == "mxfp4"
