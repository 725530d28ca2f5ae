"""``model.compile_attention`` / ``model.compile_experts`` auto: the fused kernels are compiled for
training, not for inference (hsd.gptoss.kernels.compile_flag), through the real model builders."""

from __future__ import annotations

import pytest

from hsd.config import ModelConfig
from hsd.gptoss.fusion import ATTENTION, EXPERTS
from hsd.gptoss.kernels import compile_flag


@pytest.mark.parametrize("setting, training, expected", [
    ("auto", True, True), ("auto", False, False), (True, False, True), (False, True, False),
])
def test_compile_flag(setting, training, expected):
    assert compile_flag(setting, training) is expected


def _switches() -> tuple[bool, bool]:
    return ATTENTION.enabled, EXPERTS.enabled


def _fused_norms(model) -> int:
    """How many modules run hsd.gptoss.norm's fused forward (set per instance)."""
    return sum("forward" in vars(m) and "rms" in type(m).__name__.lower() for m in model.modules())


@pytest.mark.parametrize("overrides, inference, training", [
    ({}, (False, False), (True, True)),  # auto
    ({"compile_attention": True, "compile_experts": False}, (True, False), (True, False)),
])
def test_validation_and_training_models_get_their_compile_switches(tiny_model_dir, overrides, inference, training):
    from hsd.models.loader import load_model
    from hsd.training.lora import load_base

    cfg = ModelConfig(name_or_path=str(tiny_model_dir), device="cpu", **overrides)
    try:
        model = load_model(cfg, "cpu")
        assert _switches() == inference
        assert _fused_norms(model) == 0  # CPU inference: transformers' own norms (tested bit for bit)
        model = load_base(cfg, checkpointing=False)
        assert _switches() == training
        assert _fused_norms(model) == 5  # training: torch.rms_norm in each of the 2 x 2 + 1 norms
    finally:
        ATTENTION.enabled = EXPERTS.enabled = True  # the process-wide default other tests expect
