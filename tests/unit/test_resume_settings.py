"""hsd.recipes.validate.CHECK: which setting changes a resumed validation refuses."""

from __future__ import annotations

import pytest

from hsd.config import load_config, to_dict
from hsd.recipes.validate import CHECK

REFUSED = ["inference.seed=7", "inference.temperature=0.7", "inference.top_p=0.9", "inference.backend=deepspeed",
           "inference.mode=score", "inference.max_new_tokens=9", "inference.threshold=0.3",
           "model.name_or_path=/other", "model.adapter=/a", "model.dtype=float32", "prompt.template=simple",
           "prompt.few_shot_seed=3", "data.max_samples=10", "data.seed=1", "data.subset=canned_50_quick",
           "data.split=val"]
ALLOWED = ["inference.batch_size=2", "inference.cuda_graphs=false", "inference.static_cache=false",
           "inference.prefix_cache=false", "inference.progress=false", "model.experts_implementation=eager",
           "train.lora.r=4", "executor.mem_gb=3", "experiment=x"]


@pytest.mark.parametrize("override", REFUSED)
def test_a_setting_that_changes_results_is_named(override: str) -> None:
    saved, now = to_dict(load_config(None)), to_dict(load_config(None, [override]))
    assert CHECK.changed(saved, now) == [override.split("=")[0]]


@pytest.mark.parametrize("override", ALLOWED)
def test_speed_only_and_non_validation_settings_may_differ(override: str) -> None:
    assert CHECK.changed(to_dict(load_config(None)), to_dict(load_config(None, [override]))) == []
