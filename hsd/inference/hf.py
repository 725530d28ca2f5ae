"""The plain Hugging Face backend: ``model.generate`` on one device per rank.

Batches arrive left-padded-ready (sorted by length by the caller); decoding is greedy when the
temperature is 0, else sampling with temperature/top_p from a per-rank seed. Generation stops
at the harmony stop tokens ``<|return|>`` / ``<|call|>`` and the new tokens are decoded with
special tokens kept: both rules live in :mod:`hsd.inference.generation`, shared by every backend.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

from hsd.config import Config
from hsd.gptoss.attention import ATTN_NAME
from hsd.inference.base import Backend, GenerationSettings, Output, RefillReport
from hsd.inference.batching import OomBackoff, OomHalving, empty_cuda_cache
from hsd.inference.generation import encode, generate_encoded, generate_static, sampling, stop_ids, to_output
from hsd.inference.graph_decoder import GraphDecoder
from hsd.inference.label_scores import LabelIds
from hsd.inference.refill import Finished, Job, RefillDecoder
from hsd.inference.sampling import Sampling
from hsd.inference.score import Scorer, score_outputs


class HFBackend(Backend):
    """``transformers`` generate, data parallel across ranks by the caller's sharding."""

    def __init__(self, cfg: Config, device: str, rank: int, tokenizer: Any) -> None:
        import torch

        from hsd.models.loader import load_model

        super().__init__(cfg, device, rank, tokenizer)
        self.model = load_model(cfg.model, device)
        self.stop_ids = stop_ids(tokenizer)
        self.backoff = OomBackoff(cfg.inference.batch_size, on_oom=empty_cuda_cache)
        inf = cfg.inference  # the fast path (hsd.inference.graph_decoder) and score mode (hsd.inference.score)
        self.decoder = GraphDecoder(self.model, cuda_graphs=inf.cuda_graphs) if inf.static_cache else None
        # Slots refilled as samples finish, the shared prompt prefix once (hsd.inference.refill); it
        # reads the prefix inside hsd's own attention kernel, so it needs that kernel.
        use_refill = inf.refill and inf.static_cache and self.model.config._attn_implementation == ATTN_NAME
        self.refill = RefillDecoder(self.model, inf.cuda_graphs, inf.prefix_cache) if use_refill else None
        # Refill rows: inference.slots, else sized by free memory on CUDA; off CUDA (tests) batch_size.
        self.slots = inf.slots or (None if str(device).startswith("cuda") else inf.batch_size)
        self.scorer = Scorer(self.model, tokenizer, reuse_prefix=inf.prefix_cache)
        # generate mode's p_hate: the label words' logits kept per step (hsd.inference.label_scores)
        self.labels = LabelIds.from_tokenizer(tokenizer)
        self.label_ids = None if self.labels is None else torch.tensor(self.labels.ids, device=self.model.device)
        self._reserve_new = 0  # reserve(): size caches for this many new tokens up front
        # Each rank samples from its own stream; greedy runs do not depend on it.
        self.generator_seed = cfg.inference.seed + rank
        torch.manual_seed(self.generator_seed)

    def generate(self, prompts: list[str], settings: GenerationSettings) -> list[Output]:
        return self.backoff(prompts, lambda chunk: self._generate(chunk, settings))

    def generate_stream(self, prompts: list[str], settings: GenerationSettings, batches: list[list[int]],
                        forced_new_tokens: Optional[Sequence[int]] = None, *,
                        prompt_ids: Optional[Sequence[Sequence[int]]] = None) -> Iterator[list[tuple[int, Output]]]:
        """Samples as they finish. With refill: in the order of ``batches`` (flattened), at most
        ``inference.batch_size`` rows at once, run on ``prompt_ids`` when given (else the prompts
        are tokenized here); the static-batch path tokenizes its padded batches itself.
        ``forced_new_tokens`` (benchmarks): per-prompt exact output lengths, emulating a stop
        token at a drawn length."""
        if self.refill is None:
            yield from super().generate_stream(prompts, settings, batches)
            return
        order = [i for idx in batches for i in idx]
        if prompt_ids is None:
            ids = self.tokenizer([prompts[i] for i in order], add_special_tokens=False)["input_ids"]
        elif len(prompt_ids) != len(prompts):
            raise ValueError(f"prompt_ids holds {len(prompt_ids)} rows for {len(prompts)} prompts")
        else:
            ids = [prompt_ids[i] for i in order]
        jobs = [Job(i, tuple(t), *_limits(settings, forced_new_tokens, i)) for i, t in zip(order, ids)]
        prompt_tokens = {j.index: len(j.ids) for j in jobs}
        for group in self._refill_with_backoff(jobs, self._sampling(settings)):
            yield [(f.index, to_output(self.tokenizer, f.tokens, prompt_tokens[f.index], self.stop_ids,
                                       f.label_logits, self.labels)) for f in group]

    def _refill_with_backoff(self, jobs: list[Job], sampling: Sampling) -> Iterator[list[Finished]]:
        """Run the refill decoder (``inference.slots`` rows, or as many as fit); on CUDA OOM halve
        the rows it ran with and go on with the unfinished jobs."""
        halving = OomHalving(self.slots, on_oom=self._after_refill_oom,
                             message="out of memory with {at} refill slots; retrying with {size}")
        while jobs:
            finished: set[int] = set()
            try:
                for group in self.refill.run(jobs, sampling, halving.size, self.label_ids):
                    finished.update(f.index for f in group)
                    yield group
                return
            except Exception as exc:  # noqa: BLE001 - re-raised unless it is an OOM we can shrink
                if not halving.retry(exc, self.refill.rows):
                    raise
                jobs = [j for j in jobs if j.index not in finished]

    def _after_refill_oom(self) -> None:
        self.refill.release()
        empty_cuda_cache()

    def reserve(self, new_tokens: int) -> None:
        self._reserve_new = new_tokens
        if self.refill is not None:  # the warm-up captures every decode size the timed run may use
            self.refill.capture_all = True

    def refill_report(self) -> Optional[RefillReport]:
        if self.refill is None or self.refill.cache is None:
            return None
        return RefillReport(slots=self.refill.rows, shared_prefix_tokens=self.refill.cache.shape.prefix,
                            stats=dict(self.refill.stats))

    def score(self, prompts: list[str]) -> list[Output]:
        return self.backoff(prompts, lambda chunk: score_outputs(self.scorer, chunk))

    def _generate(self, prompts: Sequence[str], settings: GenerationSettings) -> list[Output]:
        enc = encode(self.tokenizer, prompts, self.model.device)
        if self.decoder is None:
            return generate_encoded(self.model, self.tokenizer, enc, settings, self.stop_ids, labels=self.labels)
        # the fast path: rows padded to a fixed count, static cache, CUDA graph
        return generate_static(self.decoder, self.tokenizer, enc, self._sampling(settings), self.backoff.size,
                               self.stop_ids, self.labels)

    def _sampling(self, s: GenerationSettings) -> Sampling:
        return sampling(s, self.stop_ids, self.tokenizer.pad_token_id, reserve_new=self._reserve_new)


def _limits(s: GenerationSettings, forced: Optional[Sequence[int]], i: int) -> tuple[int, int]:
    """(max_new, min_new) of prompt ``i``: the settings', or exactly ``forced[i]``."""
    if forced is not None:
        return int(forced[i]), int(forced[i])
    return s.max_new_tokens, s.min_new_tokens or 0
