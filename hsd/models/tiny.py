"""A tiny gpt-oss for tests and the demo: ``hsd model tiny --out DIR``.

No machine here can download ``openai/gpt-oss-20b``, yet every code path (loader, chat
template, batched generate, harmony parsing, LoRA, DeepSpeed) must run against the real
architecture. So this builds ``GptOssForCausalLM`` from a small ``GptOssConfig`` (one
sliding-window and one full-attention layer, attention sinks, a 4-expert MoE) with random
weights, paired with gpt-oss's real tokenizer (:mod:`hsd.models.o200k`: o200k_harmony, rebuilt
offline, 201,088 entries): prompt lengths, truncation, special-token ids and score mode's label
tokens are the real model's. The vocabulary makes the embedding and the output layer most of
the model's ~26M parameters; the hidden size stays 64 so the test suite stays fast.

The result is deterministic for a given seed and loads with
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hsd.errors import ModelError
from hsd.models import o200k
from hsd.runs import publish_dir

# Bump when the architecture or tokenizer changes: test caches and the demo key on it.
TINY_VERSION = "3"  # 2: hsd's own harmony chat template; 3: gpt-oss's real tokenizer

# The harmony special tokens (names as in the real tokenizer_config.json), looked up by name.
BOS, PAD = o200k.BOS, o200k.PAD
RETURN, CALL = o200k.EOS, o200k.CALL
HARMONY_TOKENS = (
    BOS, PAD, RETURN, "<|constrain|>", "<|channel|>", "<|start|>", "<|end|>", "<|message|>",
    CALL, "<|endofprompt|>",
)

FORMATS = ("safetensors", "mxfp4")  # save_pretrained's dense weights | gpt-oss's release layout

def build_config(tokenizer: Any) -> Any:
    """gpt-oss-20b's shape in miniature (``random:gpt-oss-tiny``'s; the GptOssConfig defaults are
    the 120b model), its special token ids from ``tokenizer``."""
    from hsd.models.fullsize import architecture_config

    return architecture_config("gpt-oss-tiny", tokenizer)


def build_tiny(out_dir: str | Path, seed: int = 0, fmt: str = "safetensors") -> Path:
    """Build the tiny model + tokenizer into ``out_dir`` (written to a temp dir, then renamed).

    ``fmt="mxfp4"`` writes the same weights the way gpt-oss's release is written (hsd.models.mxfp4).
    """
    if fmt not in FORMATS:
        raise ModelError(f"unknown tiny model format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    out = Path(out_dir).resolve()
    if out.exists() and any(out.iterdir()):
        raise ModelError(f"{out} exists and is not empty; choose another --out or pass --force")
    import torch
    from transformers import GenerationConfig, GptOssForCausalLM

    from hsd.models.fullsize import harmony_tokenizer

    out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = harmony_tokenizer()
    config = build_config(tokenizer)
    torch.manual_seed(seed)
    model = GptOssForCausalLM(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(  # as the real gpt-oss: stop at <|return|> or <|call|>
        bos_token_id=config.bos_token_id, pad_token_id=config.pad_token_id, eos_token_id=config.eos_token_id,
        do_sample=False)
    with publish_dir(out) as tmp:
        if fmt == "mxfp4":
            from hsd.models.mxfp4 import save_mxfp4

            save_mxfp4(model, tmp)
        else:
            model.save_pretrained(tmp)
        o200k.save_tokenizer(tokenizer, tmp)
        stamp = {"tiny_version": TINY_VERSION, "seed": seed, "format": fmt,
                 "tokenizer": f"o200k_harmony-v{o200k.RECIPE_VERSION}",
                 "parameters": sum(p.numel() for p in model.parameters())}
        (tmp / "hsd_tiny.json").write_text(json.dumps(stamp, indent=2) + "\n")
    return out


def is_current(path: Path) -> bool:
    """A tiny model of this ``TINY_VERSION`` is at ``path`` (an older one has another tokenizer)."""
    try:
        return json.loads((path / "hsd_tiny.json").read_text(encoding="utf-8"))["tiny_version"] == TINY_VERSION
    except (OSError, ValueError, KeyError):
        return False
