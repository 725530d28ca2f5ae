"""tools/agreement.py: the fast path vs transformers' generate, at toy scale on CPU so the tool cannot rot.

The GPU run (a fine-tuned model, bf16, the whole test split) is the lead's; here the comparison's
arithmetic is checked on made-up answers, the fine-tuning config on the config loader, and the whole
tool end to end on the session's tiny model (no training: seconds), where fp32 CPU decoding must give
identical responses on both paths.
"""

from __future__ import annotations

import json

import pytest

from tests._run_helpers import require_data
from tools import agreement
from tools.agreement import Answer


class CharTokenizer:
    """One id per character: first divergence positions are character positions."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [ord(c) for c in text]}


def _answer(label: str, text: str = "") -> Answer:
    return Answer(text or f'{{"classification": "{label}"}}', label, "ok_final_channel", "stop")


def test_compare_counts_agreement_and_lists_every_label_difference():
    fast = {"a": _answer("hate"), "b": _answer("normal"), "c": _answer("hate", "abcX"), "d": _answer("normal", "xyz")}
    ref = {"a": _answer("hate"), "b": _answer("hate"), "c": _answer("hate", "abcY"), "d": _answer("normal", "xy")}
    truth = {"a": "hate", "b": "normal", "c": "normal", "d": "normal"}
    c = agreement.compare(fast, ref, truth, CharTokenizer(), bar=0.99)
    assert (c["samples"], c["labels_agree"], c["label_agreement"], c["meets_bar"]) == (4, 3, 0.75, False)
    assert [d["sample_id"] for d in c["label_differences"]] == ["b"]
    assert c["label_differences"][0]["fast"]["label"] == "normal" and c["label_differences"][0]["reference"]["label"] == "hate"
    assert c["texts_identical"] == 1
    assert c["first_divergence"]["positions"] == {2: 1, 3: 1, 20: 1}  # d: a prefix; c: at "X"; b: at the label
    assert c["text_differences_same_label"] == [{"sample_id": "c", "first_divergence": 3},
                                                {"sample_id": "d", "first_divergence": 2}]
    assert c["fast"]["labels"] == {"hate": 2, "normal": 2} and c["reference"]["accuracy_of_answered"] == 0.5


def test_compare_refuses_paths_that_answered_different_samples():
    with pytest.raises(agreement.HsdError, match="different samples"):
        agreement.compare({"a": _answer("hate")}, {"b": _answer("hate")}, {}, CharTokenizer(), 0.99)


def test_verdict_fails_a_model_that_did_not_learn_and_a_missed_bar():
    c = agreement.compare({i: _answer("hate") for i in "abc"}, {i: _answer("hate") for i in "abc"}, {}, CharTokenizer(), 0.99)
    assert agreement.verdict({"comparison": c}, 1.0) == []
    assert "did not learn" in agreement.verdict({"comparison": c}, 0.95)[0]
    c = agreement.compare({"a": _answer("hate"), "b": _answer("normal")}, {"a": _answer("hate"), "b": _answer("hate")},
                          {}, CharTokenizer(), 0.99)
    assert agreement.verdict({"comparison": c}, 1.0) == ["labels agree on 50.00% of samples, below the bar of 99%"]


def test_the_fine_tuning_config_loads():
    """Every override the tool gives hsd train / validate is a valid config key and value."""
    cfg = agreement.base_config(agreement.parse_args(["--out", "x", "--train-steps", "7"]), "some/model")
    assert (cfg.train.max_steps, cfg.train.format, cfg.prompt.template) == (7, "simple", "simple")
    assert cfg.train.lora.modules_to_save == ("embed_tokens", "lm_head") and cfg.data.max_samples == "all"


def test_toy_run_on_cpu_gives_identical_responses(tiny_model_dir, tmp_path, monkeypatch):
    data = require_data()
    monkeypatch.setenv("HSD_DATA_DIR", str(data))
    out = tmp_path / "agree"
    rc = agreement.main(["--out", str(out), "--device", "cpu", "--model", str(tiny_model_dir), "--max-samples", "4",
                         "--max-new-tokens", "4", "--batch-size", "2", "--reference-batch-size", "2",
                         "--max-label-share", "1.0"])
    summary = json.loads((out / "agreement.json").read_text())
    c = summary["comparison"]
    assert rc == 0 and c["samples"] == 4 and c["meets_bar"]
    assert c["texts_identical"] == 4, c  # fp32 on CPU: the fast path is exact
    assert summary["reference_setup"]["attn_implementation"] == "eager"
    assert "Labels agree on 4 of 4 samples" in (out / "agreement.md").read_text()
    assert agreement.main(["--out", str(out), "--device", "cpu"]) == 2  # a used --out is refused
