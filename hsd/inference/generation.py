"""What every backend's ``model.generate`` shares: kwargs, stop tokens, the cut at the stop.

Generation stops at the harmony stop tokens ``<|return|>`` / ``<|call|>``, looked up by name
because the tiny tokenizer's ids differ from gpt-oss's. The new tokens are decoded with special
tokens KEPT: the parser reads the final channel by its markers, and stripping them is what
made the old pipeline lose answers. One copy of these rules, so the ``hf``, ``deepspeed`` and
``tp`` backends cannot drift apart (a backend that cut its answers differently would change
records with the backend, which resume would not notice).
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

from hsd.inference.base import GenerationSettings, Output
from hsd.inference.label_scores import LabelIds, gather, label_score

STOP_TOKENS = ("<|return|>", "<|call|>")
log = logging.getLogger(__name__)


def stop_ids(tokenizer: Any) -> list[int]:
    """Ids of the harmony stop tokens (the eos token when the tokenizer has neither)."""
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


def generate_kwargs(s: GenerationSettings, stops: Sequence[int], pad_token_id: Any,
                    synced_gpus: bool = False) -> dict[str, Any]:
    """``model.generate`` keyword arguments for these settings.

    ``synced_gpus``: every rank keeps stepping until all ranks' rows are done — needed when each
    forward pass is a collective (ZeRO-3's all-gathers, expert parallelism's all-reduces).
    """
    kwargs: dict[str, Any] = {
        "max_new_tokens": s.max_new_tokens,
        "eos_token_id": list(stops),
        "pad_token_id": pad_token_id,
        "do_sample": not s.greedy,
    }
    if synced_gpus:
        kwargs["synced_gpus"] = True
    if s.min_new_tokens is not None:
        kwargs["min_new_tokens"] = s.min_new_tokens
    if s.greedy:  # None clears sampling values a model's generation_config may carry
        kwargs.update(temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(temperature=s.temperature, top_p=s.top_p)
    return kwargs


def to_output(tokenizer: Any, ids: Sequence[int], prompt_tokens: int, stops: Sequence[int],
              label_logits: Optional[Sequence[Sequence[float]]] = None, labels: Optional[LabelIds] = None) -> Output:
    """One row of new tokens, cut after its first stop token (what follows is padding), decoded.

    ``stop_reason`` is ``"stop"`` when a stop token ended the answer, else ``"length"`` (the
    token budget ran out: the answer may be cut off). ``label_logits``: the row's recorded label
    logits per step (:mod:`hsd.inference.label_scores`), from which p_hate is read.
    """
    ids = list(ids)
    reason = "length"
    for i, tok in enumerate(ids):
        if tok in stops:
            ids, reason = ids[: i + 1], "stop"
            break
    text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    p_hate, named = label_score(tokenizer, ids, label_logits, labels)
    return Output(text=text, prompt_tokens=int(prompt_tokens), new_tokens=len(ids), stop_reason=reason,
                  p_hate=p_hate, label_token=named)


class LabelLogitsRecorder:
    """A logits processor that keeps each step's label logits (gathered on the device) and changes
    nothing. transformers runs user processors after its own (min_new_tokens masks only stop
    tokens) and before temperature / top-p, so it sees the model's raw logits."""

    def __init__(self, ids: Any) -> None:
        self.ids, self.steps = ids, []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.steps.append(gather(scores, self.ids))
        return scores

    def per_row(self) -> Any:
        import torch

        return torch.stack(self.steps, dim=1).cpu() if self.steps else None  # (rows, steps, K)


def encode(tokenizer: Any, prompts: Sequence[str], device: Any) -> Any:
    """One left-padded batch of prompts (already rendered: no special tokens added) on ``device``."""
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    return enc.to(device)


def generate_encoded(model: Any, tokenizer: Any, enc: Any, settings: GenerationSettings, stops: Sequence[int],
                     synced_gpus: bool = False, labels: Optional[LabelIds] = None) -> list[Output]:
    """Plain ``model.generate`` over an :func:`encode`-d batch; one :class:`Output` per row
    (with p_hate at the answer's label token when ``labels`` are given)."""
    import torch
    from transformers import LogitsProcessorList

    kwargs = generate_kwargs(settings, stops, tokenizer.pad_token_id, synced_gpus)
    recorder = None if labels is None else LabelLogitsRecorder(torch.tensor(labels.ids, device=enc["input_ids"].device))
    if recorder is not None:
        kwargs["logits_processor"] = LogitsProcessorList([recorder])
    with torch.inference_mode():
        out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **kwargs)
    new = out[:, enc["input_ids"].shape[1]:].tolist()
    lens = enc["attention_mask"].sum(dim=1).tolist()
    rows = recorder.per_row() if recorder else None
    return [to_output(tokenizer, row, n, stops, None if rows is None else rows[i], labels)
            for i, (row, n) in enumerate(zip(new, lens))]


def generate_static(decoder: Any, tokenizer: Any, enc: Any, sampling: Any, rows: int,
                    stops: Sequence[int], labels: Optional[LabelIds] = None) -> list[Output]:
    """An :func:`encode`-d batch through a :class:`hsd.inference.graph_decoder.GraphDecoder`, its rows
    padded to ``rows`` so one static cache (and CUDA graph) serves every batch of a run."""
    import torch

    from hsd.inference.graph_decoder import pad_rows

    ids, mask, n = pad_rows(enc["input_ids"], enc["attention_mask"], rows)
    record = None if labels is None else torch.tensor(labels.ids, device=ids.device)
    new = decoder.generate(ids, mask, sampling, record)[:n].tolist()
    kept = decoder.label_logits[:n].cpu() if record is not None else None
    lens = mask[:n].sum(dim=1).tolist()
    return [to_output(tokenizer, row, k, stops, None if kept is None else kept[i], labels)
            for i, (row, k) in enumerate(zip(new, lens))]


def sampling(s: GenerationSettings, stops: Sequence[int], pad_token_id: int, reserve_new: int = 0) -> Any:
    """The same settings for hsd's own decode loops (:mod:`hsd.inference.graph_decoder`,
    :mod:`hsd.inference.refill`); ``reserve_new`` sizes their caches for at least that many new
    tokens (one shape per run)."""
    from hsd.inference.sampling import Sampling

    return Sampling(max_new_tokens=s.max_new_tokens, min_new_tokens=s.min_new_tokens or 0,
                    temperature=0.0 if s.greedy else s.temperature, top_p=s.top_p,
                    stop_ids=tuple(stops), pad_id=pad_token_id, reserve_new=reserve_new)
