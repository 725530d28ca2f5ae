"""Generate with a shared prefix and continuous refill equals the plain path (tiny model, CPU).

Plain = transformers' generate with eager attention and experts, static batches (the old setting).
Refill = hsd's default generate path: the prompts' shared token prefix computed once and read by
every row without a copy (hsd.gptoss.slotcache), slots refilled as rows stop
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
from hsd.gptoss.attention import ATTN_NAME, register_attention
from hsd.gptoss.kernels import resolve_experts_implementation
from hsd.inference.refill import Job, RefillDecoder, shared_prefix
from hsd.inference.sampling import Sampling
from hsd.prompts import Prompter

from test_fastgen import PLAIN, PLAIN_MODEL, assert_same_label_logits, backend, captured_label_logits, make_peaky

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


def test_refill_label_logits_equal_the_plain_path(fast, plain, monkeypatch):
    """The label logits generate mode reads P(hate) from, kept per slot across refills and shrinks."""
    prompts = render(fast.tokenizer, "simple", 6)
    _, ref = captured_label_logits(plain, prompts, monkeypatch)
    outs, got = captured_label_logits(fast, prompts, monkeypatch, stream=True)
    by_tokens = {tuple(ids): logits for ids, logits in got}  # refill hands samples back as they finish
    assert_same_label_logits([(ids, by_tokens[tuple(ids)]) for ids, _ in ref], ref)
    assert fast.refill.stats["shrinks"] > 0 and fast.refill.stats["admits"] > 1


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


def sliding_model(tiny_model_dir, window: int):
    """The tiny model with 3 layers (sliding, full, sliding) of the given window, made peaky."""
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
    return model, tok


def prefixed_jobs(tails: list[int], new: int) -> list[Job]:
    gen = torch.Generator().manual_seed(5)
    prefix = torch.randint(10, 2000, (40,), generator=gen).tolist()
    return [Job(i, tuple(prefix + torch.randint(10, 2000, (n,), generator=gen).tolist()), max_new=new)
            for i, n in enumerate(tails)]


def greedy_settings(tok, new: int) -> Sampling:
    return Sampling(max_new_tokens=new, min_new_tokens=0, temperature=0.0, top_p=1.0,
                    stop_ids=(tok.convert_tokens_to_ids("<|return|>"),), pad_id=tok.pad_token_id)


@pytest.mark.parametrize("window", [4, 64])  # smaller than the 40-token prefix, and larger
def test_sliding_window_around_the_prefix_is_exact(tiny_model_dir, window):
    model, tok = sliding_model(tiny_model_dir, window)
    jobs = prefixed_jobs([1, 7, 3, 12, 5], 12)
    assert len(shared_prefix(jobs)) == 40
    s = greedy_settings(tok, 12)
    dec = RefillDecoder(model, cuda_graphs=False)
    got = {f.index: f.tokens for group in dec.run(jobs, s, rows=4) for f in group}
    assert dec.sizes() == [4, 2, 1] and dec.stats["shrinks"] > 0
    assert model.config._attn_implementation == ATTN_NAME and dec.cache.shape.prefix == 40
    for j in jobs:
        assert got[j.index] == greedy_reference(model, list(j.ids), 12, set(s.stop_ids)), f"job {j.index}"


def reference_logits(model, ids: list[int], tokens: list[int]) -> torch.Tensor:
    """Each step's next-token logits, one full forward (no cache, no batch) over prompt + tokens."""
    with torch.no_grad():
        logits = model(torch.tensor([ids + tokens])).logits[0].float()
    return logits[len(ids) - 1 : len(ids) - 1 + len(tokens)]


@pytest.mark.parametrize("window", [4, 64])
def test_every_steps_logits_equal_a_full_forward(tiny_model_dir, window):
    """Not only the greedy choice: the logits of each admit (several tail tokens per row over the
    shared prefix) and of each decode step equal a cache-free forward's, over the whole vocabulary."""
    model, tok = sliding_model(tiny_model_dir, window)
    jobs = prefixed_jobs([1, 7, 3, 12, 5, 9], 6)
    s = greedy_settings(tok, 6)
    dec = RefillDecoder(model, cuda_graphs=False, admit_every=2)
    every = torch.arange(model.config.vocab_size)
    done = {f.index: f for group in dec.run(jobs, s, rows=3, record=every) for f in group}
    assert dec.cache.shape.prefix == 40 and dec.stats["admits"] > 1
    for j in jobs:
        want = reference_logits(model, list(j.ids), done[j.index].tokens)
        assert torch.allclose(done[j.index].label_logits, want, rtol=1e-4, atol=1e-3), f"job {j.index}"


def test_admits_in_chunks_of_rounded_shapes_are_exact(tiny_model_dir, monkeypatch):
    """Admit prefills split into chunks, row counts rounded, tails padded to a width multiple:
    every sample still gets exactly its greedy continuation."""
    from hsd.inference import refill

    monkeypatch.setattr(refill, "ADMIT_CHUNK", 2)
    monkeypatch.setattr(refill, "ADMIT_ROUND", 2)
    monkeypatch.setattr(refill, "WIDTH_ROUND", 8)
    model, tok = sliding_model(tiny_model_dir, 4)
    jobs = prefixed_jobs([1, 7, 3, 12, 5, 2, 9, 4, 6], 10)
    s = greedy_settings(tok, 10)
    dec = RefillDecoder(model, cuda_graphs=False, admit_every=3)  # 2 of 6 slots free -> admit
    widths: list[int] = []
    spy = dec.admit_logits
    dec.admit_logits = lambda slots, tails: widths.append((len(slots), max(map(len, tails)))) or spy(slots, tails)
    got = {f.index: f.tokens for group in dec.run(jobs, s, rows=6) for f in group}
    assert sorted(got) == list(range(9))
    assert widths[:3] == [(2, 7), (2, 12), (2, 5)], widths  # the first admit of 6 rows: three chunks of 2
    assert all(rows <= 2 for rows, _ in widths) and dec.stats["admits"] > 1
    for j in jobs:
        assert got[j.index] == greedy_reference(model, list(j.ids), 10, set(s.stop_ids)), f"job {j.index}"


def test_out_of_memory_halves_the_slots_and_finishes_every_sample(fast, monkeypatch):
    """A CUDA OOM while the slots are built: retried with half the rows, same outputs, no sample
    lost or handed back twice."""
    prompts = render(fast.tokenizer, "simple", 5)
    s = GenerationSettings(max_new_tokens=12, temperature=0.0, top_p=1.0)
    want = dict(pair for group in fast.generate_stream(prompts, s, [list(range(5))]) for pair in group)
    real, seen = fast.refill._prepare, []

    def prepare(shape, prefix):
        seen.append(shape.rows)
        if shape.rows > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real(shape, prefix)

    monkeypatch.setattr(fast.refill, "_prepare", prepare)
    got: dict[int, object] = {}
    for group in fast.generate_stream(prompts, s, [list(range(5))]):
        for i, out in group:
            assert i not in got
            got[i] = out
    assert seen == [3, 1]
    assert [(got[i].text, got[i].new_tokens) for i in range(5)] == [(want[i].text, want[i].new_tokens) for i in range(5)]


def test_bytes_per_slot_is_what_a_slot_allocates(tiny_model_dir):
    """The memory sizing of inference.slots (unset) counts exactly the KV a slot holds."""
    from hsd.gptoss.slotcache import SlotCache, SlotShape

    model, _ = sliding_model(tiny_model_dir, 4)
    for prefix in (0, 40):
        cache = SlotCache(model.config, SlotShape(rows=3, length=256, prefix=prefix), torch.bfloat16, "cpu")
        held = sum(t.numel() * t.element_size() for t in cache.keys + cache.values)
        assert held == 3 * SlotCache.bytes_per_slot(model.config, 256, prefix, torch.bfloat16)
