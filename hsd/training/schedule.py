"""The learning rate as a pure function of the step: nothing to save, nothing to drift on resume."""

from __future__ import annotations

import math

from hsd.config import TrainConfig


def warmup_steps(train: TrainConfig, total_steps: int) -> int:
    return math.ceil(train.warmup_ratio * total_steps)


def lr_at(train: TrainConfig, step: int, total_steps: int) -> float:
    """LR of optimizer step ``step`` (0-based): linear warmup, then cosine/linear decay to 0 or constant."""
    warm = warmup_steps(train, total_steps)
    if step < warm:
        return train.learning_rate * (step + 1) / warm
    progress = (step - warm) / max(1, total_steps - warm)
    decay = {
        "cosine": 0.5 * (1.0 + math.cos(math.pi * progress)),
        "linear": 1.0 - progress,
        "constant": 1.0,
    }[train.scheduler]
    return train.learning_rate * decay
