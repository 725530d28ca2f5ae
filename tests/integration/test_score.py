"""Score mode on the tiny model: exact P(hate), prefix reuse, argmax agreement, adapters, thresholds."""

from __future__ import annotations

import math

import pytest
import torch

from hsd.config import from_dict
from hsd.inference import get_backend
from hsd.inference.modes import choose_threshold, resolve_threshold
from hsd.inference.score import ANSWER_OPENING, LabelTokens, Scorer
from hsd.models.loader import load_tokenizer
from hsd.prompts.prompter import SCORE_SUFFIX

pytestmark = pytest.mark.integration

SYSTEM = "You are a content moderator. Decide whether the text attacks a group. " * 4


def peaky(model) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(20)
            elif name.endswith("lm_head.weight"):
                p.mul_(3)
    model.eval()


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    cfg = from_dict({"model": {"name_or_path": str(tiny_model_dir)}, "inference": {"mode": "score", "batch_size": 4}})
    b = get_backend("hf")(cfg, "cpu", 0, load_tokenizer(cfg.model))
    peaky(b.model)
    return b


@pytest.fixture(scope="module")
def prefixes(hf):
    # A shared system prompt longer than the tiny model's sliding window (32): the cached prefix
    # covers sliding and full layers.
    texts = ["hello world", "the text demeans a group " * 5, "normal text here " * 2, "x", "they are all " * 7]
    return [hf.tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": t}],
                                             tokenize=False, add_generation_prompt=True) + SCORE_SUFFIX for t in texts]


def reference_logprobs(model, row: list[int], labels: LabelTokens) -> list[float]:
    """log p(label tokens | row), one full forward per label, no batching, no cache."""
    out = []
    for cont in labels.continuations:
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([row + list(cont)])).logits[0].double(), -1)
        out.append(sum(logp[len(row) - 1 + j, t].item() for j, t in enumerate(cont)))
    return out


def test_label_tokens_split_the_answer_opening(hf):
    labels = LabelTokens.from_tokenizer(hf.tokenizer)
    opening = hf.tokenizer(ANSWER_OPENING, add_special_tokens=False)["input_ids"]
    assert list(labels.opening) == opening[: len(labels.opening)]
    assert len(labels.continuations) == 2 and labels.continuations[0] != labels.continuations[1]


@pytest.mark.parametrize("reuse", [False, True])
def test_p_hate_is_exact_with_and_without_prefix_reuse(hf, prefixes, reuse):
    scorer = Scorer(hf.model, hf.tokenizer, reuse_prefix=reuse)
    p, lengths = scorer.p_hate(prefixes)
    for prob, prefix, n in zip(p, prefixes, lengths):
        row = scorer.encode(prefix)
        lh, ln = reference_logprobs(hf.model, row, scorer.labels)
        assert n == len(row)
        assert prob == pytest.approx(1 / (1 + math.exp(ln - lh)), abs=1e-6)
    if reuse:
        assert scorer._prefix is not None and len(scorer._prefix[0]) > 40  # the cache was used
    assert 0.02 < min(p) and max(p) < 0.98 and max(p) - min(p) > 1e-3  # informative, not saturated


def test_multi_token_labels_are_teacher_forced(hf, prefixes):
    scorer = Scorer(hf.model, hf.tokenizer, reuse_prefix=True)
    scorer.labels = LabelTokens.from_tokenizer(hf.tokenizer, labels=("hatefulness", "normality"))
    assert max(len(c) for c in scorer.labels.continuations) > 1
    rows = [scorer.encode(p) for p in prefixes]
    got = scorer.label_logprobs(rows)
    for row, g in zip(rows, got):
        assert g == pytest.approx(reference_logprobs(hf.model, row, scorer.labels), abs=1e-4)


def test_score_label_equals_argmax_of_the_generate_paths_first_answer_token(tiny_model_dir, hf, prefixes):
    gen = get_backend("hf")(from_dict({"model": {"name_or_path": str(tiny_model_dir)}}), "cpu", 0, hf.tokenizer)
    peaky(gen.model)
    labels = LabelTokens.from_tokenizer(hf.tokenizer)
    assert all(len(c) == 1 for c in labels.continuations)  # so the first answer token decides
    first = [c[0] for c in labels.continuations]
    scores = hf.score(prefixes)
    enc = hf.tokenizer([p[: -len(ANSWER_OPENING)] for p in prefixes], add_special_tokens=False)["input_ids"]
    for out, head in zip(scores, enc):
        ids = torch.tensor([head + list(labels.opening)])
        step = gen.model.generate(ids, max_new_tokens=1, do_sample=False, output_logits=True,
                                  return_dict_in_generate=True, pad_token_id=hf.tokenizer.pad_token_id)
        logits = step.logits[0][0]
        argmax = "hate" if logits[first[0]] > logits[first[1]] else "normal"
        assert ("hate" if out.p_hate >= 0.5 else "normal") == argmax


def test_score_works_with_a_lora_adapter(tiny_model_dir, hf, prefixes, tmp_path):
    from peft import LoraConfig, get_peft_model

    from hsd.models.loader import load_model

    base = load_model(from_dict({"model": {"name_or_path": str(tiny_model_dir)}}).model, "cpu")
    torch.manual_seed(0)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    cfg = from_dict({"model": {"name_or_path": str(tiny_model_dir), "adapter": str(tmp_path / "adapter")},
                     "inference": {"mode": "score"}})
    with_adapter = get_backend("hf")(cfg, "cpu", 0, hf.tokenizer)
    scorer = with_adapter.scorer
    p, _ = scorer.p_hate(prefixes[:2])
    for prob, prefix in zip(p, prefixes):
        lh, ln = reference_logprobs(with_adapter.model, scorer.encode(prefix), scorer.labels)
        assert prob == pytest.approx(1 / (1 + math.exp(ln - lh)), abs=1e-6)
    plain, _ = Scorer(load_model(from_dict({"model": {"name_or_path": str(tiny_model_dir)}}).model, "cpu"),
                      hf.tokenizer).p_hate(prefixes[:2])
    assert max(abs(a - b) for a, b in zip(p, plain)) > 1e-6  # the adapter changed the answer


def test_a_prompt_without_the_answer_opening_is_refused(hf):
    from hsd.errors import TemplateError

    with pytest.raises(TemplateError, match="answer opening"):
        hf.score(["<|start|>user<|message|>hi<|end|><|start|>assistant"])


# ------------------------------------------------------------------ thresholds


def metric_at(y, p, cut, metric):
    pred = [x >= cut for x in p]
    tp = sum(a and b for a, b in zip(pred, y))
    fp = sum(a and not b for a, b in zip(pred, y))
    fn = sum(not a and b for a, b in zip(pred, y))
    tn = len(y) - tp - fp - fn
    return 2 * tp / (2 * tp + fp + fn) if metric == "f1" else tp / (tp + fn) - fp / (fp + tn)


@pytest.mark.parametrize("metric", ["f1", "youden"])
def test_choose_threshold_maximises_the_metric(metric):
    import random

    rng = random.Random(5)
    y = [rng.random() < 0.4 for _ in range(200)]
    p = [min(1.0, max(0.0, rng.gauss(0.62 if t else 0.4, 0.15))) for t in y]
    cut = choose_threshold(y, p, metric)
    best = max(metric_at(y, p, t, metric) for t in set(p))  # every observed value tried as the cut
    assert metric_at(y, p, cut, metric) == pytest.approx(best, abs=1e-12)


def test_threshold_from_a_score_run(tmp_path):
    from hsd.config import ConfigError
    from hsd.inference import store
    from hsd.records import Record

    recs = [Record(sample_id=str(i), text="t", true_label="hate" if i % 2 else "normal", target_group="lgbtq",
                   persona_tag="x", source="s", strategy="simple", prompt_hash="h", raw_response="",
                   predicted_label="normal", rationale=None, parse_status="ok_score", latency_s=0.0,
                   p_hate=0.3 + 0.05 * (i % 2) + 0.001 * i) for i in range(40)]
    with store.ShardWriter(tmp_path, 0) as writer:
        writer.append(recs)
    inf = from_dict({"inference": {"threshold_from": str(tmp_path)}}).inference
    cut, source = resolve_threshold(inf)
    assert cut == choose_threshold([r.true_label == "hate" for r in recs], [r.p_hate for r in recs], "f1")
    assert "f1-optimal" in source and str(tmp_path) in source
    assert resolve_threshold(from_dict({}).inference) == (0.5, "inference.threshold")
    with pytest.raises(ConfigError, match="not a run directory"):
        resolve_threshold(from_dict({"inference": {"threshold_from": str(tmp_path / "nope")}}).inference)


# ------------------------------------------------------------------ through hsd validate


def test_validate_in_score_mode_writes_probabilities_and_applies_the_threshold(tiny_model_dir, tmp_path):
    import json

    from _run_helpers import write_config
    from hsd.config import load_config
    from hsd.inference import store
    from hsd.recipes.validate import run

    cfg = load_config(write_config(tmp_path, tiny_model_dir, inference={"mode": "score", "threshold": 0.3}))
    run_dir = run(cfg)
    records = store.read_records(run_dir)
    assert len(records) == 20
    for r in records:
        assert r.parse_status == "ok_score" and r.raw_response == "" and 0.0 < r.p_hate < 1.0
        assert r.predicted_label == ("hate" if r.p_hate >= 0.3 else "normal")
        assert r.new_tokens == 0 and r.prompt_tokens > 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["threshold"] == 0.3 and manifest["threshold_source"] == "inference.threshold"
    _bias_auc_in_the_reports(run_dir, records)
    # a second run on the same samples takes its threshold from the first one's records
    cfg2 = load_config(write_config(tmp_path, tiny_model_dir, name="c2.yaml",
                                    inference={"mode": "score", "threshold_from": str(run_dir)}), ["run_name=from-val"])
    manifest2 = json.loads((run(cfg2) / "manifest.json").read_text())
    assert manifest2["threshold_source"].startswith("f1-optimal on") and 0.0 < manifest2["threshold"] < 1.0


def _bias_auc_in_the_reports(run_dir, records) -> None:
    """A score-mode run's text report, bias_auc CSV and report.html carry the bias AUCs and calibration."""
    import json

    import pandas as pd

    from hsd import cli
    from hsd.metrics import bias_auc

    text = next(run_dir.glob("evaluation_report_*.txt")).read_text()
    assert "THRESHOLD-FREE BIAS METRICS" in text and "Expected calibration error (10 equal-width bins)" in text
    table = pd.read_csv(next(run_dir.glob("bias_auc_*.csv")))
    want = bias_auc.sklearn_values(bias_auc.scored(records))
    for row in table[table.target_group != "generalized_mean"].itertuples():
        got = row.subgroup_auc
        assert (pd.isna(got) and want[f"subgroup_auc/{row.target_group}"] != want[f"subgroup_auc/{row.target_group}"]) \
            or got == pytest.approx(want[f"subgroup_auc/{row.target_group}"], abs=1e-12)
    assert cli.main(["collate", str(run_dir)]) == 0
    html = (run_dir / "report.html").read_text()
    assert "Subgroup AUC" in html and "BPSN AUC" in html and "Reliability diagram" in html
    assert (run_dir / "plots" / "reliability.png").stat().st_size > 10_000
    full = json.loads((run_dir / "metrics_full.json").read_text())
    assert full["metrics"]["bias_auc"]["n_scored"] == len(records)
