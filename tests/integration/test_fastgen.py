"""The fast generate path equals the plain one on the tiny model (CPU).

Plain = transformers' generate with eager attention and eager experts (the old setting);
fast = hsd's defaults: sink-aware SDPA attention, fused grouped-GEMM experts, one static cache
and the GraphDecoder loop (CUDA graphs on GPU, the same steps eagerly here). The tiny model is
made "peaky" (sharp attention, strong sinks, large logits) and its stop token likely, so the
comparison is not between two streams of near-uniform noise and rows stop at different steps.
"""

from __future__ import annotations

import types

import pytest
import torch

from hsd.config import from_dict
from hsd.inference import get_backend
from hsd.inference.base import GenerationSettings
from hsd.gptoss.attention import sinks_attention_forward
from hsd.inference.graph_decoder import pad_rows
from hsd.models.loader import load_tokenizer

pytestmark = pytest.mark.integration

PLAIN = {"static_cache": False}
PLAIN_MODEL = {"attn_implementation": "eager", "experts_implementation": "eager"}


def make_peaky(model, tokenizer) -> None:
    """Deterministic weight changes that make greedy outputs depend on the attention details."""
    gen = torch.Generator().manual_seed(3)
    ret = tokenizer.convert_tokens_to_ids("<|return|>")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(20)
            elif name.endswith("sinks"):
                p.copy_(torch.randn(p.shape, generator=gen) * 2)
            elif name.endswith("lm_head.weight"):
                p.mul_(5)
                p[ret] = p[ret] * 0.2 + p[: 64].mean(0) * 40  # <|return|> wins now and then
    model.eval()


def backend(model_dir, model: dict, **inference):
    cfg = from_dict({"model": {"name_or_path": str(model_dir), **model},
                     "inference": {"seed": 7, "batch_size": 4, **inference}})
    b = get_backend("hf")(cfg, "cpu", 0, load_tokenizer(cfg.model))
    make_peaky(b.model, b.tokenizer)
    return b


@pytest.fixture(scope="module")
def prompts(tiny_model_dir):
    tok = load_tokenizer(from_dict({"model": {"name_or_path": str(tiny_model_dir)}}).model)
    texts = ["the neighbours are kind", "a longer text about the new people on our street " * 4, "ok",
             "people from that group are " * 9, "we had a nice evening"]
    return [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
            for t in texts]


@pytest.fixture(scope="module")
def plain(tiny_model_dir):
    return backend(tiny_model_dir, PLAIN_MODEL, **PLAIN)


@pytest.fixture(scope="module")
def fast(tiny_model_dir):
    return backend(tiny_model_dir, {})


def outputs(b, prompts, **settings):
    s = GenerationSettings(**{"max_new_tokens": 40, "temperature": 0.0, "top_p": 1.0, **settings})
    return [(o.text, o.new_tokens) for o in b.generate(prompts, s)]


def test_fast_path_uses_the_fast_pieces(fast, plain):
    assert fast.model.config._attn_implementation == "hsd_sinks"
    assert fast.model.config._experts_implementation == "hsd_grouped"
    assert fast.decoder is not None and plain.decoder is None
    assert plain.model.config._attn_implementation == "eager"


def test_greedy_outputs_equal_the_plain_path(fast, plain, prompts):
    ref = outputs(plain, prompts)
    assert outputs(fast, prompts) == ref
    lengths = {n for _, n in ref}
    assert len(lengths) > 1 and min(lengths) < 40, f"no row stopped early {lengths}: the stop path is untested"
    assert all(text.endswith("<|return|>") for text, n in ref if n < 40)


def test_min_new_tokens_and_a_padded_last_batch_match(fast, plain, prompts):
    # 5 prompts at batch 4: the second batch has one real row padded to four (one graph shape).
    assert outputs(fast, prompts, min_new_tokens=12) == outputs(plain, prompts, min_new_tokens=12)
    assert all(n >= 12 for _, n in outputs(fast, prompts, min_new_tokens=12))


def test_cache_is_reused_across_batches_of_one_shape(fast, prompts):
    outputs(fast, prompts[:4])
    cache = fast.decoder.cache
    outputs(fast, prompts[1:4])  # shorter, padded to 4 rows: same cache object
    assert fast.decoder.cache is cache


def test_sampling_runs_and_is_seeded(tiny_model_dir, prompts):
    a = backend(tiny_model_dir, {})
    torch.manual_seed(11)
    first = outputs(a, prompts[:2], temperature=0.8, top_p=0.9)
    torch.manual_seed(11)
    assert outputs(a, prompts[:2], temperature=0.8, top_p=0.9) == first


def test_sinks_attention_equals_eager_prefill_and_decode():
    from transformers.models.gpt_oss.modeling_gpt_oss import eager_attention_forward

    gen = torch.Generator().manual_seed(0)
    b, h, kv, q, k, d = 2, 8, 2, 6, 11, 16
    mod = types.SimpleNamespace(num_key_value_groups=h // kv, sinks=torch.randn(h, generator=gen) * 2, training=False)
    Q, K, V = (torch.randn(b, n, L, d, generator=gen) * s for n, L, s in ((h, q, 3), (kv, k, 3), (kv, k, 1)))
    mask = torch.ones(b, 1, q, k, dtype=torch.bool).tril(k - q)
    mask[0, :, :, :4] = False  # left padding of row 0 (its first query rows see nothing but the sink)
    additive = torch.zeros(b, 1, q, k).masked_fill(~mask, torch.finfo(torch.float32).min)
    ref = eager_attention_forward(mod, Q, K, V, additive, scaling=d ** -0.5)[0]
    got = sinks_attention_forward(mod, Q, K, V, mask, scaling=d ** -0.5)[0]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    ref1 = eager_attention_forward(mod, Q[:, :, -1:], K, V, additive[:, :, -1:], scaling=d ** -0.5)[0]
    got1 = sinks_attention_forward(mod, Q[:, :, -1:], K, V, mask[:, :, -1:], scaling=d ** -0.5)[0]
    torch.testing.assert_close(got1, ref1, rtol=1e-5, atol=1e-6)


def test_pad_rows_repeats_a_real_row():
    ids, mask = torch.tensor([[0, 5, 6]]), torch.tensor([[0, 1, 1]])
    pids, pmask, n = pad_rows(ids, mask, 3)
    assert n == 1 and pids.tolist() == [[0, 5, 6]] * 3 and pmask.tolist() == [[0, 1, 1]] * 3


def captured_label_logits(b, prompts, monkeypatch, stream: bool = False, **settings):
    """Per prompt (new token ids, the label logits recorded at each of them), as to_output got them."""
    from hsd.inference import generation

    seen = []
    def capture(tok, ids, logits, labels):
        seen.append((list(ids), None if logits is None else torch.as_tensor(logits)[: len(ids)].tolist()))
        return None, None

    monkeypatch.setattr(generation, "label_score", capture)
    s = GenerationSettings(max_new_tokens=24, temperature=0.0, top_p=1.0, **settings)
    if stream:
        got = dict(pair for group in b.generate_stream(prompts, s, [list(range(len(prompts)))]) for pair in group)
        return [got[i] for i in range(len(prompts))], seen
    return b.generate(prompts, s), seen


def assert_same_label_logits(a, b):
    """The same tokens, and at every step the same recorded logits (fp32 on CPU: to rounding)."""
    assert [ids for ids, _ in a] == [ids for ids, _ in b]
    for (ids, la), (_, lb) in zip(a, b):
        assert la is not None and lb is not None and len(la) == len(lb) == len(ids)
        assert torch.allclose(torch.tensor(la), torch.tensor(lb), rtol=1e-5, atol=1e-4), (la[:2], lb[:2])


def test_label_logits_of_the_fast_path_equal_the_plain_path(fast, plain, prompts, monkeypatch):
    """Generate mode's P(hate) is read from logits both paths record per step (hsd.inference.label_scores)."""
    assert fast.labels is not None and len(fast.labels.ids) >= 4
    _, ref = captured_label_logits(plain, prompts, monkeypatch)
    _, got = captured_label_logits(fast, prompts, monkeypatch)
    assert_same_label_logits(got, ref)
