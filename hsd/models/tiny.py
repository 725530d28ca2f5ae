"""A tiny gpt-oss for tests and the demo: ``hsd model tiny --out DIR``.

No machine here can download ``openai/gpt-oss-20b``, yet every code path (loader, chat
template, batched generate, harmony parsing, LoRA, DeepSpeed) must run against the real
architecture. So this builds ``GptOssForCausalLM`` from a small ``GptOssConfig`` (one
sliding-window and one full-attention layer, attention sinks, a 4-expert MoE) with random
weights, plus a byte-level BPE tokenizer trained here with the ``tokenizers`` library on the
train split and harmony-style text. The tokenizer carries the harmony special tokens and the
real gpt-oss chat template, so prompts render exactly as for the 20B model.

The result is deterministic for a given seed and corpus, and loads with
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` offline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

from hsd.errors import ModelError
from hsd.runs import publish_dir

# Bump when the architecture, tokenizer recipe or corpus changes: test caches key on it.
TINY_VERSION = "2"  # 2: hsd's own harmony chat template

# The harmony special tokens (names as in the real tokenizer_config.json). Their ids differ
# from the real model's (200002, ...) — code must look ids up by name, never hard-code them.
BOS, PAD = "<|startoftext|>", "<|endoftext|>"
RETURN, CALL = "<|return|>", "<|call|>"
HARMONY_TOKENS = (
    BOS, PAD, RETURN, "<|constrain|>", "<|channel|>", "<|start|>", "<|end|>", "<|message|>",
    CALL, "<|endofprompt|>",
)

FORMATS = ("safetensors", "mxfp4")  # save_pretrained's dense weights | gpt-oss's release layout
VOCAB_SIZE = 3000  # large enough that words are mostly one or two tokens; small model
_TEMPLATE = Path(__file__).with_name("harmony_chat_template.jinja")

# Text of the kinds the tokenizer will see at run time besides the dataset: prompt
# boilerplate, harmony headers and the JSON answers the parser reads.
_BUILTIN_CORPUS = (
    "You are ChatGPT, a large language model trained by OpenAI.",
    "Knowledge cutoff: 2024-06\nCurrent date: 2025-08-05\n\nReasoning: low\n\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every message.",
    "# Instructions\n\nYou are a content moderator. Classify the text as hate or normal.",
    "Hate speech attacks or demeans people because of a protected characteristic such as "
    "sexual orientation, gender identity, ethnicity, national origin or religion.",
    "Target groups: lgbtq, mexican, middle_east. Respond only with JSON.",
    'Text: "example"\nAnswer with {"classification": "hate" or "normal", "rationale": "..."}',
    '{"classification": "hate", "rationale": "The text demeans a group."}',
    '{"classification": "normal", "rationale": "The text does not attack a group."}',
    "<|start|>assistant<|channel|>analysis<|message|>We need to classify the text.<|end|>"
    '<|start|>assistant<|channel|>final<|message|>{"classification": "normal"}<|return|>',
    "analysis We need to decide whether the statement is hateful. assistantfinal",
    "assistantcommentary to=final json",
)


def _train_texts() -> list[str]:
    """Train-split texts from the data directory (hsd.data: data.dir / $HSD_DATA_DIR / ./data),
    else from ../shared/data beside the repository, else none: the built-in corpus suffices."""
    from hsd.data import load_split, resolve_data_dir
    from hsd.errors import DataError

    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    for root in (resolve_data_dir(None), shared):
        try:
            return [s.text for s in load_split(root, "train", drop_empty_text=True)]
        except DataError:
            continue
    return []


def _corpus(texts: list[str]) -> Iterator[str]:
    # The built-in lines are repeated so their words earn merges even next to 3.6k dataset rows.
    for _ in range(20):
        yield from _BUILTIN_CORPUS
    yield from texts


def build_tokenizer(texts: list[str]) -> Any:
    """A byte-level BPE (any text round-trips) with the harmony specials and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=list(HARMONY_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(texts), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=RETURN,
        pad_token=PAD,
        additional_special_tokens=[t for t in HARMONY_TOKENS if t not in (BOS, RETURN, PAD)],
        clean_up_tokenization_spaces=False,
        model_max_length=131072,
    )
    fast.chat_template = _TEMPLATE.read_text(encoding="utf-8")
    return fast


def build_config(tokenizer: Any) -> Any:
    """gpt-oss-20b's shape in miniature (the GptOssConfig defaults are the 120b model)."""
    from transformers import GptOssConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in HARMONY_TOKENS}
    return GptOssConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=32,  # short, so test prompts actually cross the window
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=131072,
        bos_token_id=ids[BOS],
        pad_token_id=ids[PAD],
        eos_token_id=[ids[RETURN], ids[CALL]],
        tie_word_embeddings=False,
    )


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

    out.parent.mkdir(parents=True, exist_ok=True)
    texts = _train_texts()
    tokenizer = build_tokenizer(texts)
    config = build_config(tokenizer)
    torch.manual_seed(seed)
    model = GptOssForCausalLM(config).to(torch.float32).eval()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in HARMONY_TOKENS}
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BOS],
        pad_token_id=ids[PAD],
        # As the real gpt-oss: stop at <|return|> (answer done) or <|call|> (tool call).
        eos_token_id=[ids[RETURN], ids[CALL]],
        do_sample=False,
    )
    with publish_dir(out) as tmp:
        if fmt == "mxfp4":
            from hsd.models.mxfp4 import save_mxfp4

            save_mxfp4(model, tmp)
        else:
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        stamp = {"tiny_version": TINY_VERSION, "seed": seed, "format": fmt, "train_texts": len(texts),
                 "parameters": sum(p.numel() for p in model.parameters())}
        (tmp / "hsd_tiny.json").write_text(json.dumps(stamp, indent=2) + "\n")
    return out


def main(args: Any) -> int:
    """``hsd model tiny --out DIR [--seed N] [--format safetensors|mxfp4] [--force]``; prints the directory."""
    out = Path(args.out)
    if out.exists() and args.force:
        if not (out / "hsd_tiny.json").exists() and any(out.iterdir()):
            raise ModelError(f"--force refuses to delete {out}: it is not a tiny model built by hsd")
        shutil.rmtree(out)
    path = build_tiny(out, seed=args.seed, fmt=args.format)
    print(path)
    return 0
