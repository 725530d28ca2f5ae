"""The small interface every inference backend implements.

A backend turns rendered prompt strings into :class:`Output` objects, one per prompt, in the
same order. It owns the model (how it is loaded and placed: plain HF, DeepSpeed ZeRO-3, ...)
but nothing else: data, prompts, parsing, shard files and resume live in
:mod:`hsd.recipes.validate`, so a new backend is one class of two methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

from hsd.config import Config


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings after the template's parameters and config overrides are merged."""

    max_new_tokens: int
    temperature: float  # 0 -> greedy
    top_p: float
    min_new_tokens: Optional[int] = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Output:
    """What a backend produced for one prompt."""

    text: str  # generate: the new tokens decoded with special tokens kept; score: ""
    prompt_tokens: int
    new_tokens: int
    p_hate: Optional[float] = None  # score mode; generate: at the answer's label token (inference.label_scores)
    stop_reason: Optional[str] = None  # "stop" | "length" (generate mode)
    label_token: Optional[str] = None  # generate mode: the label named at the step p_hate was read from


class Backend(ABC):
    """Loads a model for one rank and answers batches of prompts.

    ``tokenizer`` is passed in because prompts were already rendered (and sorted by token
    length) with it; the backend must use the same one.
    """

    # True when every rank must build the backend and make the same calls, even a rank with
    # no samples left (ZeRO-3: each forward pass is a collective); validate then calls finish().
    collective: bool = False

    def __init__(self, cfg: Config, device: str, rank: int, tokenizer: Any) -> None:
        self.cfg = cfg
        self.device = device
        self.rank = rank
        self.tokenizer = tokenizer

    @abstractmethod
    def generate(self, prompts: list[str], settings: GenerationSettings) -> list[Output]:
        """Reasoning + answer for each prompt (raw text with harmony markers kept)."""

    def generate_stream(self, prompts: list[str], settings: GenerationSettings, batches: list[list[int]], *,
                        prompt_ids: Optional[Sequence[Sequence[int]]] = None) -> Iterator[list[tuple[int, Output]]]:
        """``(prompt index, output)`` pairs as they finish. Here: one group per batch of indices;
        a backend that refills rows as they finish (hf) yields each step's finished samples.

        ``prompt_ids``: each prompt's token ids as ``tokenizer(prompt, add_special_tokens=False)``
        gives them (validate has them already, :mod:`hsd.inference.prompt_ids`), so a backend that
        runs on ids need not tokenize again; None: it tokenizes. A backend that feeds the model
        strings (this default, which batches ``generate``) ignores them."""
        for idx in batches:
            yield list(zip(idx, self.generate([prompts[i] for i in idx], settings)))

    def score(self, prompts: list[str]) -> list[Output]:
        """P(hate) from one forward pass over each score prefix (prompt + answer opening)."""
        from hsd.errors import HsdError

        raise HsdError(f"inference.mode=score is not available with the {type(self).__name__} backend: "
                       "use inference.backend=hf (it also runs adapters) or inference.mode=generate")

    def finish(self) -> None:
        """Called once after this rank's last batch (collective backends wait for the others here)."""

    # What a benchmark (benchmarks/bench.py) may ask of a backend, besides the calls validate makes.

    def reserve(self, new_tokens: int) -> None:
        """Size KV caches for at least ``new_tokens`` new tokens from now on, whatever a call asks
        for: a warm-up then builds the cache shape (and captures the CUDA graphs) the timed run
        reuses. A backend without static caches has nothing to size."""

    def refill_report(self) -> Optional[RefillReport]:
        """How the last generate run used its refill slots; None when this backend does not refill."""
        return None


@dataclass(frozen=True)
class RefillReport:
    """Of one refill run (hsd.inference.refill): its slots, its shared prefix, where its time went."""

    slots: int
    shared_prefix_tokens: int
    stats: dict[str, float]  # decode steps, busy / all row-steps, shrinks, admits, admitted rows, admit seconds
