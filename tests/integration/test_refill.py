"""Generate with a shared prefix and continuous refill equals the plain path (tiny model, CPU).

Plain = transformers' generate with eager attention and experts, static batches (the old setting).
Refill = hsd's default generate path: the prompts' shared token prefix computed once and read by
every row without a copy (hsd.inference.slotcache), slots refilled as rows stop
(hsd.inference.refill). The model is made peaky (tests/integration/test_fastgen.make_peaky) so
greedy outputs depend on the attention details and rows stop at different steps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hsd.config import load_config
from hsd.data import select_samples
from hsd.inference.base import GenerationSettings
from hsd.inference.fastgen import ATTN_NAME, Sampling, register_attention, resolve_experts_implementation
from hsd.inference.refill import Job, RefillDecoder, shared_prefix
from hsd.prompts import Prompter

from test_fastgen import PLAIN, PLAIN_MODEL, backend, make_peaky

pytestmark = pytest.mark.integration

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"
NEW = 32


def render(tokenizer, template: str, n: int) -> list[str]:
    if not (SHARED_DATA / "unified").is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    cfg = load_config(None, [f"data.dir={SHARED_DATA}", "data.subset=canned_50_quick", f"prompt.template={template}"])
    samples = select_samples(cfg.data)[:n]
    prompter = Prompter.from_config(cfg, tokenizer, {s.id for s in samples})
    return [prompter.render(s) for s in samples]


@pytest.fixture(scope="module")
def fast(tiny_model_dir):
    return backend(tiny_model_dir, {}, batch_size=3)  # 6 prompts through 3 slots: refills happen


@pytest.fixture(scope="module")
def plain(tiny_model_dir):
    return backend(tiny_model_dir, PLAIN_MODEL, **PLAIN)


@pytest.mark.parametrize("template", ["rich", "simple"])
def test_refill_with_shared_prefix_equals_plain_generate(fast, plain, template):
    prompts = render(fast.tokenizer, template, 6)
    s = GenerationSettings(max_new_tokens=NEW, temperature=0.0, top_p=1.0)
    ref = plain.generate(prompts, s)
    got: dict[int, object] = {}
    order = []
    for group in fast.generate_stream(prompts, s, [[0, 1, 2, 3], [4, 5]]):
        for i, out in group:
            assert i not in got, "a sample was handed back twice"
            got[i] = out
            order.append(i)
    assert sorted(got) == list(range(6))
    assert [(got[i].text, got[i].new_tokens) for i in range(6)] == [(o.text, o.new_tokens) for o in ref]
    assert order != sorted(order), "samples came back in submission order: refill was not exercised"
    for o in got.values():
        assert o.stop_reason == ("stop" if o.text.endswith("<|return|>") else "length")
        assert (o.new_tokens < NEW) == (o.stop_reason == "stop")
    assert len({o.new_tokens for o in got.values()}) > 2, "rows did not stop at different steps"
    # The prefix was shared and is longer than the sliding window: both layer kinds read it.
    prefix = fast.refill.prefix_ids
    assert len(prefix) > fast.model.config.sliding_window
    assert fast.refill.cache.shape.prefix == len(prefix)
    assert fast.refill.stats["shrinks"] > 0, "the drain never shrank the decode step"


def test_refill_without_prefix_reuse_and_with_min_new_tokens(tiny_model_dir, plain):
    b = backend(tiny_model_dir, {}, batch_size=2, prefix_cache=False)
    prompts = render(b.tokenizer, "simple", 5)
    s = GenerationSettings(max_new_tokens=24, temperature=0.0, top_p=1.0, min_new_tokens=10)
    got = dict(pair for group in b.generate_stream(prompts, s, [list(range(5))]) for pair in group)
    assert b.refill.cache.shape.prefix == 0
    assert [(got[i].text, got[i].new_tokens) for i in range(5)] == [(o.text, o.new_tokens) for o in plain.generate(prompts, s)]
    assert all(o.new_tokens >= 10 for o in got.values())


def test_forced_lengths_end_each_row_at_its_own_length(fast):
    prompts = render(fast.tokenizer, "simple", 5)
    s = GenerationSettings(max_new_tokens=64, temperature=0.0, top_p=1.0)
    lengths = [3, 17, 1, 9, 30]
    got = dict(pair for group in fast.generate_stream(prompts, s, [list(range(5))], forced_new_tokens=lengths)
               for pair in group)
    assert [got[i].new_tokens for i in range(5)] == lengths
    assert all(o.stop_reason == "length" for o in got.values())


# ---------------------------------------------------------------- sliding windows vs the prefix


def greedy_reference(model, ids: list[int], new: int, stops: set[int]) -> list[int]:
    """No cache, no batch: one full forward per new token."""
    out: list[int] = []
    with torch.no_grad():
        for _ in range(new):
            tok = int(model(torch.tensor([ids + out])).logits[0, -1].argmax())
            out.append(tok)
            if tok in stops:
                break
    return out


@pytest.mark.parametrize("window", [4, 64])  # smaller than the 40-token prefix, and larger
def test_sliding_window_around_the_prefix_is_exact(tiny_model_dir, window):
    from transformers import AutoConfig, GptOssForCausalLM

    from hsd.models.loader import load_tokenizer
    from hsd.config import ModelConfig

    tok = load_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)))
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.sliding_window = window
    config.layer_types = ["sliding_attention", "full_attention", "sliding_attention"]
    config.num_hidden_layers = 3
    torch.manual_seed(0)
    model = GptOssForCausalLM._from_config(config, attn_implementation=register_attention(),
                                           experts_implementation=resolve_experts_implementation(None)).eval()
    make_peaky(model, tok)
    gen = torch.Generator().manual_seed(5)
    prefix = torch.randint(10, 2000, (40,), generator=gen).tolist()
    jobs = [Job(i, tuple(prefix + torch.randint(10, 2000, (n,), generator=gen).tolist()), max_new=12)
            for i, n in enumerate([1, 7, 3, 12, 5])]
    assert len(shared_prefix(jobs)) == 40
    stops = (tok.convert_tokens_to_ids("<|return|>"),)
    s = Sampling(max_new_tokens=12, min_new_tokens=0, temperature=0.0, top_p=1.0, stop_ids=stops,
                 pad_id=tok.pad_token_id)
    dec = RefillDecoder(model, cuda_graphs=False)
    got = {f.index: f.tokens for group in dec.run(jobs, s, rows=4) for f in group}
    assert dec.sizes() == [4, 2, 1] and dec.stats["shrinks"] > 0
    assert model.config._attn_implementation == ATTN_NAME and dec.cache.shape.prefix == 40
    for j in jobs:
        assert got[j.index] == greedy_reference(model, list(j.ids), 12, set(stops)), f"job {j.index}"
