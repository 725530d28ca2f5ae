"""The plain Hugging Face backend: ``model.generate`` on one device per rank.

Batches arrive left-padded-ready (sorted by length by the caller); decoding is greedy when the
temperature is 0, else sampling with temperature/top_p from a per-rank seed. Generation stops
at the harmony stop tokens ``<|return|>`` / ``<|call|>``, looked up by name because the tiny
tokenizer's ids differ from gpt-oss's. The new tokens are decoded with special tokens KEPT:
the parser reads the final channel by its markers, and stripping them is what made the old
pipeline lose answers.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from hsd.config import Config
from hsd.inference.base import Backend, GenerationSettings, Output
from hsd.inference.batching import OomBackoff
from hsd.inference.fastgen import GraphDecoder, Sampling, pad_rows
from hsd.inference.score import Scorer, score_outputs

STOP_TOKENS = ("<|return|>", "<|call|>")
log = logging.getLogger(__name__)


class HFBackend(Backend):
    """``transformers`` generate, data parallel across ranks by the caller's sharding."""

    def __init__(self, cfg: Config, device: str, rank: int, tokenizer: Any) -> None:
        import torch

        from hsd.models.loader import load_model

        super().__init__(cfg, device, rank, tokenizer)
        self.model = load_model(cfg.model, device)
        self.stop_ids = stop_ids(tokenizer)
        self.backoff = OomBackoff(cfg.inference.batch_size, on_oom=_empty_cuda_cache)
        inf = cfg.inference  # the fast path (hsd.inference.fastgen) and score mode (hsd.inference.score)
        self.decoder = GraphDecoder(self.model, cuda_graphs=inf.cuda_graphs) if inf.static_cache else None
        self.scorer = Scorer(self.model, tokenizer, reuse_prefix=inf.prefix_cache)
        # Each rank samples from its own stream; greedy runs do not depend on it.
        self.generator_seed = cfg.inference.seed + rank
        torch.manual_seed(self.generator_seed)

    def generate(self, prompts: list[str], settings: GenerationSettings) -> list[Output]:
        return self.backoff(prompts, lambda chunk: self._generate(chunk, settings))

    def score(self, prompts: list[str]) -> list[Output]:
        return self.backoff(prompts, lambda chunk: score_outputs(self.scorer, chunk))

    def _generate(self, prompts: Sequence[str], settings: GenerationSettings) -> list[Output]:
        import torch

        enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(self.model.device)
        ids, mask, n = enc["input_ids"], enc["attention_mask"], len(prompts)
        with torch.inference_mode():
            if self.decoder is not None:  # fast path: rows padded to a fixed count, static cache, CUDA graph
                ids, mask, n = pad_rows(ids, mask, self.backoff.size)
                new = self.decoder.generate(ids, mask, self._sampling(settings))[:n].tolist()
            else:
                out = self.model.generate(input_ids=ids, attention_mask=mask, **self._generate_kwargs(settings))
                new = out[:n, ids.shape[1] :].tolist()
        prompt_lens = mask[:n].sum(dim=1).tolist()
        return [self._output(ids, n) for ids, n in zip(new, prompt_lens)]

    def _generate_kwargs(self, s: GenerationSettings) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": s.max_new_tokens,
            "eos_token_id": self.stop_ids,
            "pad_token_id": self.tokenizer.pad_token_id,
            "do_sample": not s.greedy,
        }
        if s.min_new_tokens is not None:
            kwargs["min_new_tokens"] = s.min_new_tokens
        if s.greedy:  # None clears sampling values a model's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(temperature=s.temperature, top_p=s.top_p)
        return kwargs

    def _sampling(self, s: GenerationSettings) -> Sampling:
        return Sampling(max_new_tokens=s.max_new_tokens, min_new_tokens=s.min_new_tokens or 0,
                        temperature=0.0 if s.greedy else s.temperature, top_p=s.top_p,
                        stop_ids=tuple(self.stop_ids), pad_id=self.tokenizer.pad_token_id)

    def _output(self, ids: list[int], prompt_tokens: int) -> Output:
        # Up to and including the first stop token; what follows is padding added after it.
        for i, tok in enumerate(ids):
            if tok in self.stop_ids:
                ids = ids[: i + 1]
                break
        text = self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return Output(text=text, prompt_tokens=int(prompt_tokens), new_tokens=len(ids))


def stop_ids(tokenizer: Any) -> list[int]:
    ids = []
    for token in STOP_TOKENS:
        tid = tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == tokenizer.unk_token_id:
            log.warning("tokenizer has no %s token; generation stops at eos/max_new_tokens only", token)
            continue
        ids.append(tid)
    if not ids and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
