"""Score mode: P(hate) from one forward pass, instead of hundreds of decode steps.

The prompt is rendered up to the assistant's final-channel header and the opening of the
JSON answer (``...<|channel|>final<|message|>{"classification": "``), so the model's next
tokens are the label word. For each label the probability of its whole token sequence is
read (first token from the last position, further tokens teacher-forced), and

    P(hate) = p(hate tokens) / (p(hate tokens) + p(normal tokens))

which is exact whether the labels are one token each (one pass) or several (one extra pass
per distinct teacher-forced continuation). The split point is found by tokenizing the answer
opening + each label and taking the longest common token prefix, so a tokenizer that merges
the opening quote into the label (``"hate``) is handled too.

Only the positions that are read are projected to the vocabulary: the full-vocabulary
logits of a 32 x 1k batch would be 13 GB. Prompts that share a long token prefix (the rich
template's policy and few-shot examples) reuse its KV cache: it is computed once, expanded
along the batch (no copy) and extended with each row's suffix. Rows are right-padded so the
real tokens of every row sit at contiguous cache positions (sliding-window attention counts
positions, so padding in the middle would shift its window).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from hsd.errors import TemplateError

ANSWER_OPENING = '{"classification": "'  # the tail of Prompter.render_score_prefix
LABEL_WORDS = ("hate", "normal")  # index 0 is the positive class
MIN_SHARED_PREFIX = 32  # below this many shared tokens a prefix cache saves nothing worth its copy


@dataclass(frozen=True)
class LabelTokens:
    """How the label words continue the answer opening, in token ids."""

    opening: tuple[int, ...]  # tokens of the opening common to every label
    continuations: tuple[tuple[int, ...], ...]  # per label in LABEL_WORDS order

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, opening: str = ANSWER_OPENING,
                       labels: Sequence[str] = LABEL_WORDS) -> "LabelTokens":
        seqs = [tuple(tokenizer(opening + w, add_special_tokens=False)["input_ids"]) for w in labels]
        n = 0
        while all(len(s) > n for s in seqs) and len({s[n] for s in seqs}) == 1:
            n += 1
        conts = tuple(s[n:] for s in seqs)
        if any(not c for c in conts) or len(set(conts)) != len(conts):
            raise TemplateError(f"label words {list(labels)} do not tokenize to distinct continuations of "
                                f"{opening!r} ({conts}); score mode cannot tell them apart")
        return cls(opening=seqs[0][:n], continuations=conts)


def split_opening(prefix: str, opening: str = ANSWER_OPENING) -> str:
    """The score prefix without its answer opening (which is re-added as token ids)."""
    if not prefix.endswith(opening):
        raise TemplateError(f"a score-mode prompt must end with the answer opening {opening!r} "
                            f"(Prompter.render_score_prefix); got ...{prefix[-60:]!r}")
    return prefix[: len(prefix) - len(opening)]


def decoder_and_head(model: Any) -> tuple[Any, Any]:
    """The decoder stack and the output layer of a plain or peft model (peft injects LoRA in
    place: the adapter still applies through them)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def common_prefix_len(seqs: Sequence[Sequence[int]], keep: int) -> int:
    """Tokens every sequence starts with, leaving at least ``keep`` tokens of each its own.

    The prefix all sequences share is the one the lexicographically smallest and largest share
    (any sequence lies between them, so it agrees with both up to their first difference): two
    comparisons per sequence in C, instead of one Python step per token per sequence (1,009 rich
    prompts sharing 1,724 tokens: 0.34 s on an H100 host's CPU)."""
    ordered = [list(s) for s in seqs]
    lo, hi, n, limit = min(ordered), max(ordered), min(len(s) for s in ordered) - keep, 0
    while limit < n and lo[limit] == hi[limit]:
        limit += 1
    return limit


def p_hate_from_logprobs(logp_hate: float, logp_normal: float) -> float:
    """p_h / (p_h + p_n) from log-probabilities, without underflow."""
    return 1.0 / (1.0 + math.exp(min(700.0, logp_normal - logp_hate)))


class Scorer:
    """Reads P(hate) for batches of score prefixes with one model (plain, peft or ZeRO-3)."""

    def __init__(self, model: Any, tokenizer: Any, reuse_prefix: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.labels = LabelTokens.from_tokenizer(tokenizer)
        self.reuse_prefix = reuse_prefix
        self.decoder, self.lm_head = decoder_and_head(model)
        self._prefix: Optional[tuple[tuple[int, ...], Any]] = None  # (token ids, batch-1 KV cache)

    def encode(self, prefix: str) -> list[int]:
        head = self.tokenizer(split_opening(prefix), add_special_tokens=False)["input_ids"]
        return list(head) + list(self.labels.opening)

    def p_hate(self, prefixes: Sequence[str]) -> tuple[list[float], list[int]]:
        """P(hate) and the prompt length in tokens for each prefix, in order."""
        rows = [self.encode(p) for p in prefixes]
        logp = self.label_logprobs(rows)
        return [p_hate_from_logprobs(lp[0], lp[1]) for lp in logp], [len(r) for r in rows]

    def label_logprobs(self, rows: list[list[int]]) -> list[list[float]]:
        """log p(label tokens | row) for every row and label (LABEL_WORDS order)."""
        conts = self.labels.continuations
        out = [[0.0] * len(conts) for _ in rows]
        forced_groups: dict[tuple[int, ...], list[int]] = {}
        for li, cont in enumerate(conts):  # labels whose teacher-forced tokens agree share a pass
            forced_groups.setdefault(cont[:-1], []).append(li)
        for forced, label_ids in forced_groups.items():
            targets = [conts[li] for li in label_ids]
            values = self._sequence_logprobs([r + list(forced) for r in rows], len(forced) + 1, targets)
            for j, li in enumerate(label_ids):
                for i in range(len(rows)):
                    out[i][li] = values[i][j]
        return out

    def _sequence_logprobs(self, seqs: list[list[int]], k: int, targets: list[tuple[int, ...]]) -> list[list[float]]:
        """Sum over the last ``k`` positions of log p(target token), per row and target."""
        import torch

        with torch.inference_mode():
            hidden = self._last_hidden(seqs, k)  # (b, k, hidden)
            logp = torch.log_softmax(self.lm_head(hidden).float(), dim=-1)  # (b, k, vocab)
            cols = []
            for tgt in targets:  # tgt has k tokens: position j predicts tgt[j]
                idx = torch.tensor(tgt, device=logp.device).view(1, k, 1).expand(logp.shape[0], -1, -1)
                cols.append(logp.gather(-1, idx).squeeze(-1).sum(-1))
            return torch.stack(cols, dim=1).double().cpu().tolist()

    def _last_hidden(self, seqs: list[list[int]], k: int) -> Any:
        """Final hidden states at each row's last ``k`` positions (right-padded batch)."""
        import torch

        device = self.lm_head.weight.device
        shared = self._shared_prefix(seqs, k)
        cache = self._batch_cache(shared, len(seqs)) if shared else None
        p = len(shared)
        lens = [len(s) - p for s in seqs]
        width = max(lens)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), p + width), dtype=torch.long)
        mask[:, :p] = 1
        for i, (s, n) in enumerate(zip(seqs, lens)):
            ids[i, :n] = torch.tensor(s[p:], dtype=torch.long)
            mask[i, p : p + n] = 1
        pos = (torch.arange(width) + p).unsqueeze(0).expand(len(seqs), -1)
        out = self.decoder(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                           past_key_values=cache, use_cache=cache is not None)
        h = out.last_hidden_state
        rows = torch.arange(len(seqs), device=h.device).unsqueeze(1)
        cols = torch.tensor([[n - k + j for j in range(k)] for n in lens], device=h.device)
        return h[rows, cols]

    def _shared_prefix(self, seqs: list[list[int]], k: int) -> tuple[int, ...]:
        """The longest token prefix of every row (leaving >= k tokens per row), if worth caching."""
        if not self.reuse_prefix:
            return ()
        first, limit = seqs[0], common_prefix_len(seqs, k)
        if self._prefix is not None:  # a cached prefix that still fits is reused as is
            cached = self._prefix[0]
            if len(cached) <= limit and tuple(first[: len(cached)]) == cached:
                return cached
        return tuple(first[:limit]) if limit >= MIN_SHARED_PREFIX else ()

    def _batch_cache(self, shared: tuple[int, ...], batch: int) -> Any:
        """A per-batch view of the prefix KV: expanded (not copied) to ``batch`` rows."""
        import torch

        if self._prefix is None or self._prefix[0] != shared:
            device = self.lm_head.weight.device
            with torch.inference_mode():
                out = self.decoder(input_ids=torch.tensor([shared], device=device), use_cache=True)
            self._prefix = (shared, out.past_key_values)
        cache = copy.copy(self._prefix[1])
        layers = []
        for layer in cache.layers:  # the forward replaces keys/values; the shared prefix stays intact
            view = copy.copy(layer)
            view.keys = layer.keys.expand(batch, -1, -1, -1)
            view.values = layer.values.expand(batch, -1, -1, -1)
            layers.append(view)
        cache.layers = layers
        return cache


def score_outputs(scorer: Scorer, prompts: Sequence[str]) -> list[Any]:
    """A backend's ``score``: one :class:`~hsd.inference.base.Output` per score prefix."""
    from hsd.inference.base import Output

    p_hate, lengths = scorer.p_hate(prompts)
    return [Output(text="", prompt_tokens=n, new_tokens=0, p_hate=p) for p, n in zip(p_hate, lengths)]
