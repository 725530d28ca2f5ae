"""The plain Hugging Face backend: ``model.generate`` on one device per rank.

Batches arrive left-padded-ready (sorted by length by the caller); decoding is greedy when the
temperature is 0, else sampling with temperature/top_p from a per-rank seed. Generation stops
at the harmony stop tokens ``<|return|>`` / ``<|call|>`` and the new tokens are decoded with
special tokens kept: both rules live in :mod:`hsd.inference.generation`, shared by every backend.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from hsd.config import Config
from hsd.inference.base import Backend, GenerationSettings, Output
from hsd.inference.batching import OomBackoff
from hsd.inference.fastgen import GraphDecoder, Sampling, pad_rows
from hsd.inference.generation import generate_kwargs, stop_ids, to_output
from hsd.inference.score import Scorer, score_outputs

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
                kwargs = generate_kwargs(settings, self.stop_ids, self.tokenizer.pad_token_id)
                out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
                new = out[:n, ids.shape[1] :].tolist()
        prompt_lens = mask[:n].sum(dim=1).tolist()
        return [to_output(self.tokenizer, ids, n, self.stop_ids) for ids, n in zip(new, prompt_lens)]

    def _sampling(self, s: GenerationSettings) -> Sampling:
        return Sampling(max_new_tokens=s.max_new_tokens, min_new_tokens=s.min_new_tokens or 0,
                        temperature=0.0 if s.greedy else s.temperature, top_p=s.top_p,
                        stop_ids=tuple(self.stop_ids), pad_id=self.tokenizer.pad_token_id)


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
