"""The tiny model is the real architecture, loads through hsd's loader and batches correctly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from hsd.config import ModelConfig
from hsd.errors import ModelError
from hsd.models import load_model_and_tokenizer
from hsd.models.tiny import HARMONY_TOKENS, TINY_VERSION

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model_and_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)))


def test_architecture_and_files(tiny_model_dir, loaded):
    model, tok = loaded
    assert type(model).__name__ == "GptOssForCausalLM"
    cfg = model.config
    assert cfg.layer_types == ["sliding_attention", "full_attention"]
    assert cfg.vocab_size == len(tok) == 201_088 and model.get_input_embeddings().weight.shape[0] == 201_088
    assert (cfg.num_local_experts, cfg.num_experts_per_tok) == (4, 2)
    assert model.dtype == torch.float32 and not model.training
    assert json.loads((tiny_model_dir / "hsd_tiny.json").read_text())["tiny_version"] == TINY_VERSION
    assert tok.padding_side == "left" and tok.pad_token == "<|endoftext|>"
    gen = model.generation_config
    assert set(gen.eos_token_id) == {tok.convert_tokens_to_ids("<|return|>"), tok.convert_tokens_to_ids("<|call|>")}
    assert gen.pad_token_id == tok.pad_token_id


def test_harmony_tokens_are_single_and_kept_in_decoding(loaded):
    _, tok = loaded
    for t in HARMONY_TOKENS:
        assert tok(t, add_special_tokens=False).input_ids == [tok.convert_tokens_to_ids(t)], t
    answer = '<|channel|>analysis<|message|>think<|end|><|start|>assistant<|channel|>final<|message|>{"classification": "hate"}<|return|>'
    ids = tok(answer, add_special_tokens=False).input_ids
    assert tok.decode(ids, skip_special_tokens=False) == answer
    # Stripped, it reads like the real model's stripped output.
    assert tok.decode(ids, skip_special_tokens=True) == 'analysisthinkassistantfinal{"classification": "hate"}'


def test_its_tokenizer_is_gpt_oss_s(loaded, monkeypatch):
    """The saved tokenizer is hsd.models.o200k's (checked against openai-harmony in
    tests/unit/test_harmony_oracle.py), and encodes as openai-harmony does."""
    import openai_harmony as oh

    from hsd.models import o200k

    _, tok = loaded
    built = o200k.load_tokenizer()
    assert tok.backend_tokenizer.to_str() == built.backend_tokenizer.to_str()
    assert tok.chat_template == built.chat_template
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", str(o200k.ensure_built()))
    enc = oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)
    text = '<|start|>user<|message|>¿Qué? 😀 they\'re "all" the same<|end|><|start|>assistant'
    assert tok(text, add_special_tokens=False).input_ids == enc.encode(text, allowed_special="all")


def test_chat_template_is_harmony(loaded):
    _, tok = loaded
    msgs = [{"role": "system", "content": "Classify."}, {"role": "user", "content": "Text: hi"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, reasoning_effort="high")
    assert text.startswith("<|start|>system<|message|>")
    assert "Reasoning: high" in text
    assert text.endswith("<|start|>user<|message|>Text: hi<|end|><|start|>assistant")


def test_batched_left_padded_greedy_equals_unpadded(loaded):
    model, tok = loaded
    prompts = ["the people over there are", "a much longer prompt about neighbours, food and the weather in spring", "hi"]
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert (batch.attention_mask[:, 0] == 0).any(), "expected left padding in this batch"
    kw = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        batched = model.generate(**batch, **kw)[:, batch.input_ids.shape[1]:]
        for i, p in enumerate(prompts):
            one = tok(p, return_tensors="pt", add_special_tokens=False)
            alone = model.generate(**one, **kw)[0, one.input_ids.shape[1]:]
            assert batched[i].tolist() == alone.tolist(), p


def test_cli_builds_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "tiny"
    cmd = [sys.executable, "-m", "hsd.cli", "model", "tiny", "--out", str(out), "--seed", "3"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == str(out.resolve())
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--force" in again.stderr
    first = {name: (out / name).read_bytes() for name in ("model.safetensors", "tokenizer.json")}
    forced = subprocess.run(cmd + ["--force"], capture_output=True, text=True, timeout=300)
    assert forced.returncode == 0, forced.stderr
    # Deterministic: the same seed (and data) gives the same bytes, so test caches stay valid.
    assert {name: (out / name).read_bytes() for name in first} == first


@pytest.mark.parametrize("bad", ["does/not/exist/model", "./missing-model"])
def test_missing_model_is_a_model_error(bad):
    with pytest.raises(ModelError, match="not found"):
        load_model_and_tokenizer(ModelConfig(name_or_path=bad))


def test_missing_adapter_is_a_model_error(tiny_model_dir, tmp_path):
    with pytest.raises(ModelError, match="adapter_config.json"):
        load_model_and_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir), adapter=str(tmp_path)))


def test_a_directory_without_config_is_not_a_model(tmp_path):
    (tmp_path / "weights.bin").write_text("x")
    with pytest.raises(ModelError, match="not a model directory"):
        load_model_and_tokenizer(ModelConfig(name_or_path=str(tmp_path)))


def test_lora_adapter_loads_through_the_loader(tiny_model_dir, loaded, tmp_path):
    from peft import LoraConfig, get_peft_model

    base, tok = loaded
    torch.manual_seed(0)
    fresh, _ = load_model_and_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)))
    peft_model = get_peft_model(fresh, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    adapted, _ = load_model_and_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir), adapter=str(tmp_path / "adapter")))
    assert type(adapted).__name__ == "PeftModel" and not adapted.training
    ids = tok("some text to score", return_tensors="pt").input_ids
    with torch.no_grad():
        want = peft_model.eval()(ids).logits
        got = adapted(ids).logits
        plain = base(ids).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3), "the adapter changed nothing"
