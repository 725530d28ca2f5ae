"""``hsd merge``: the merged model gives the adapter's logits; existing output is never overwritten."""

from __future__ import annotations

import json

import pytest

from hsd.cli import main as hsd
from hsd.config import LoraConfig, ModelConfig

pytestmark = pytest.mark.integration

ADAPTERS = {
    "attention": LoraConfig(r=8, alpha=16, target_modules=("q_proj", "k_proj", "v_proj", "o_proj")),
    "attention+experts+lm_head": LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj"),
                                            target_parameters=("mlp.experts.gate_up_proj", "mlp.experts.down_proj"),
                                            modules_to_save=("lm_head",)),
}


def _write_adapter(tiny_model_dir, lora, out):
    """A saved peft adapter whose weights are non-zero everywhere, as after training
    (a fresh LoRA has B = 0, which would make any merge look right)."""
    import torch

    from hsd.training.lora import apply_lora, load_base

    model = apply_lora(load_base(ModelConfig(name_or_path=str(tiny_model_dir), dtype="float32"), False), lora, seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    model.save_pretrained(str(out), safe_serialization=True)
    return out


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_merged_logits_equal_adapter_logits(tmp_path, tiny_model_dir, kind, capsys):
    import torch
    from transformers import AutoModelForCausalLM

    from hsd.models.loader import load_model_and_tokenizer

    adapter = _write_adapter(tiny_model_dir, ADAPTERS[kind], tmp_path / "adapter")
    assert hsd(["merge", "--adapter", str(adapter), "--out", str(tmp_path / "merged")]) == 0
    assert capsys.readouterr().out.strip().endswith("merged")
    assert (tmp_path / "merged" / "model.safetensors").is_file() and (tmp_path / "merged" / "tokenizer.json").is_file()

    peft_model, tok = load_model_and_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir), adapter=str(adapter),
                                                           device="cpu", dtype="float32"))
    base, _ = load_model_and_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir), device="cpu", dtype="float32"))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32,
                                                  attn_implementation=peft_model.config._attn_implementation).eval()
    batch = tok(["<|start|>user<|message|>they should all go back where they came from<|end|><|start|>assistant",
                 "<|start|>user<|message|>a nice day<|end|><|start|>assistant"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = peft_model(**batch).logits
        got = merged(**batch).logits
        unchanged = base(**batch).logits
    mask = batch["attention_mask"].bool()
    assert torch.allclose(got[mask], expected[mask], atol=1e-5, rtol=0), (got - expected)[mask].abs().max()
    assert (unchanged[mask] - expected[mask]).abs().max() > 1e-2  # the adapter does change the model


def test_merge_never_overwrites_and_names_a_missing_adapter(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    adapter = _write_adapter(tiny_model_dir, ADAPTERS["attention"], tmp_path / "adapter")
    assert hsd(["merge", "--adapter", str(adapter), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"
    assert hsd(["merge", "--adapter", str(tmp_path / "nope"), "--out", str(tmp_path / "m2")]) == 2
    assert "no adapter_config.json" in capsys.readouterr().err and not (tmp_path / "m2").exists()
    json.loads((adapter / "adapter_config.json").read_text())  # still intact
