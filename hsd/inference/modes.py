"""Decoding modes (``inference.mode``): how validation renders, runs and judges each sample.

``generate`` asks for reasoning and an answer and parses it; ``score`` reads P(hate) in one
forward pass and applies a threshold. Validation looks the mode up in :data:`MODES` and
calls the same three methods for either, so adding a mode adds a class, not branches.

The score-mode threshold is 0.5 (``inference.threshold``) unless ``inference.threshold_from``
names a finished score-mode run on *another* split (normally ``val``): the threshold is then
chosen on that run's records — the one maximising F1 of the hate class (default) or Youden's
J = TPR - FPR (``inference.threshold_metric: youden``) — and applied unchanged here, so the
test split never tunes its own threshold. The chosen value and where it came from go into
the run's manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from hsd.config import ConfigError, InferenceConfig
from hsd.records import POSITIVE


@dataclass(frozen=True)
class Judgement:
    """The record fields a mode decides."""

    predicted_label: str
    rationale: Optional[str]
    parse_status: str
    raw_response: str
    p_hate: Optional[float] = None


class GenerateMode:
    """Reasoning + answer; the label is parsed from the final channel."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def render(self, prompter: Any, sample: Any) -> str:
        return prompter.render(sample)

    def stream(self, backend: Any, prompts: list[str], settings: Any, batches: list[list[int]],
               prompt_ids: Optional[Sequence[Sequence[int]]] = None) -> Any:
        """``(index, output)`` groups as samples finish (validate writes each group at once);
        ``prompt_ids``: the prompts' token ids, if known (:meth:`Backend.generate_stream`)."""
        return backend.generate_stream(prompts, settings, batches, prompt_ids=prompt_ids)

    def judge(self, out: Any) -> Judgement:
        from hsd.parsing import parse_response

        parsed = parse_response(out.text, stop_reason=out.stop_reason)
        # the label token's probability counts only where it named the label the answer reader read
        p_hate = out.p_hate if out.label_token is not None and out.label_token == parsed.label else None
        return Judgement(parsed.label, parsed.rationale, parsed.status, out.text, p_hate)

    def manifest(self) -> dict[str, Any]:
        return {}


class ScoreMode(GenerateMode):
    """P(hate) from the label words' probabilities; hate iff P(hate) >= threshold."""

    STATUS = "ok_score"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.threshold, self.source = resolve_threshold(cfg.inference)

    def render(self, prompter: Any, sample: Any) -> str:
        return prompter.render_score_prefix(sample)

    def stream(self, backend: Any, prompts: list[str], settings: Any, batches: list[list[int]],
               prompt_ids: Optional[Sequence[Sequence[int]]] = None) -> Any:
        """One group per batch. ``prompt_ids`` are not used: the scorer feeds the prompt without its
        answer opening, tokenized, + the opening's fixed label-split ids (hsd.inference.score),
        which are not the whole score prefix's ids; it tokenizes each prompt once itself."""
        for idx in batches:
            yield list(zip(idx, backend.score([prompts[i] for i in idx])))

    def judge(self, out: Any) -> Judgement:
        label = POSITIVE if out.p_hate >= self.threshold else "normal"
        return Judgement(label, None, self.STATUS, "", out.p_hate)

    def manifest(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "threshold_source": self.source}


MODES: dict[str, type[GenerateMode]] = {"generate": GenerateMode, "score": ScoreMode}


def get_mode(cfg: Any) -> GenerateMode:
    try:
        return MODES[cfg.inference.mode](cfg)
    except KeyError:
        raise ConfigError(f"unknown inference.mode {cfg.inference.mode!r}; valid: {', '.join(MODES)}") from None


# --------------------------------------------------------------------------------------
# Threshold
# --------------------------------------------------------------------------------------


def choose_threshold(y_true: list[bool], p_hate: list[float], metric: str) -> float:
    """The P(hate) cut (predict hate iff p >= cut) maximising ``metric`` on these samples
    (:func:`hsd.metrics.calibration.best_threshold`, which reports use too)."""
    from hsd.metrics.calibration import THRESHOLD_METRICS, best_threshold

    if metric not in THRESHOLD_METRICS:
        raise ConfigError(f"inference.threshold_metric must be f1 or youden, got {metric!r}")
    cut = best_threshold(y_true, p_hate, metric)
    if cut is None:
        raise ConfigError("threshold_from: the run's records hold one class only; a threshold cannot be chosen")
    return cut


def resolve_threshold(inference: InferenceConfig) -> tuple[float, str]:
    """(threshold, where it came from) for a score-mode run."""
    if inference.threshold_from is None:
        return inference.threshold, "inference.threshold"
    from hsd.inference import store

    run = Path(inference.threshold_from).expanduser()
    if not run.is_dir():
        raise ConfigError(f"inference.threshold_from: {run} is not a run directory")
    records = [r for r in store.read_records(run) if r.p_hate is not None]
    if not records:
        raise ConfigError(f"inference.threshold_from: {run} has no score-mode records (p_hate); "
                          "point it at a finished `inference.mode=score` run on the validation split")
    cut = choose_threshold([r.true_label == POSITIVE for r in records], [r.p_hate for r in records],
                           inference.threshold_metric)
    return cut, f"{inference.threshold_metric}-optimal on {run} ({len(records)} samples)"
