"""Prompts rendered through the tiny model's own tokenizer, as the validation run renders them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hsd.config import ModelConfig, load_config
from hsd.data import select_samples
from hsd.models import load_model_and_tokenizer
from hsd.prompts import SCORE_SUFFIX, Prompter, prompt_hash

pytestmark = pytest.mark.integration

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model_and_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)))


@pytest.mark.skipif(not (SHARED_DATA / "unified").is_dir(), reason=f"{SHARED_DATA} not present")
@pytest.mark.parametrize("template", ["rich", "simple"])
def test_render_and_score_prefix_through_tiny_tokenizer(loaded, template):
    model, tok = loaded
    cfg = load_config(None, [f"data.dir={SHARED_DATA}", "data.subset=canned_50_quick", f"prompt.template={template}"])
    samples = select_samples(cfg.data)
    prompter = Prompter.from_config(cfg, tok, {s.id for s in samples})
    assert not {e.id for e in prompter.examples} & {s.id for s in samples}
    texts = [prompter.render(s) for s in samples[:3]]
    assert len({prompt_hash(t) for t in texts}) == 3
    assert all("Current date: 2025-08-05" in t and t.endswith("<|start|>assistant") for t in texts)
    if template == "rich":
        assert len(prompter.examples) == 12 and texts[0].count("<|channel|>final<|message|>") == 12

    prefix = prompter.render_score_prefix(samples[0])
    ids = tok(prefix, add_special_tokens=False)["input_ids"]
    tail = tok.convert_ids_to_tokens(tok(SCORE_SUFFIX, add_special_tokens=False)["input_ids"])
    assert tail[0] == "<|channel|>" and "<|message|>" in tail  # harmony markers stay single tokens
    assert tok.decode(ids, skip_special_tokens=False) == prefix  # nothing lost in the round trip
    with torch.no_grad():
        logits = model(torch.tensor([ids]), logits_to_keep=1).logits
    assert logits.shape[-1] == model.config.vocab_size and torch.isfinite(logits).all()
