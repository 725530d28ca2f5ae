"""``python -m benchmarks.bench`` harness on the tiny model (CPU smoke): every case runs through the real
backends, the JSON and the Markdown table are written, bad input gives a clear error."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench import parser, run
from benchmarks.cases import make_prompts
from benchmarks.report import MD_BEGIN, MD_END, write_markdown
from hsd.errors import HsdError


def bench(*argv: str) -> int:
    return run(parser().parse_args(list(argv)))


def test_cpu_smoke_of_every_case(tiny_model_dir, tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text(f"# Benchmarks\n\nintro kept\n\n{MD_BEGIN}\nold table\n{MD_END}\n\nanalysis kept\n")
    out = tmp_path / "b.json"
    bench("--allow-cpu", "--model", str(tiny_model_dir), "--prompt-tokens", "48", "--new-tokens", "4", "2",
          "--batch-size", "2", "--old-batch-size", "2", "--batches", "1", "--out", str(out), "--markdown", str(md),
          "--cases", "old,generate,score,score_rich")
    data = json.loads(out.read_text())
    rows = data["results"]
    assert {(r["case"], r["new_tokens"]) for r in rows} == {
        ("old", 4), ("old", 2), ("generate", 4), ("generate", 2), ("score", None), ("score_rich", None)}
    for r in rows:
        assert "error" not in r and r["samples_per_s"] > 0 and r["ratio_vs_old"] > 0
        if r["new_tokens"]:
            assert r["min_new_tokens_held"] is True
    assert {r["ratio_vs_old"] for r in rows if r["case"] == "old"} == {1.0}
    assert data["environment"]["model"] == str(tiny_model_dir)
    text = md.read_text()
    assert "intro kept" in text and "analysis kept" in text and "old table" not in text
    assert text.count(MD_BEGIN) == 1 and "| score mode, bs 2, no shared prefix |" in text


def test_unknown_case_and_missing_gpu_are_clear_errors(tiny_model_dir, tmp_path):
    with pytest.raises(HsdError, match="unknown nope; valid: old, generate"):
        bench("--allow-cpu", "--model", str(tiny_model_dir), "--cases", "old,nope", "--out", str(tmp_path / "x"))
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(HsdError, match="needs CUDA"):
            bench("--model", str(tiny_model_dir))


def test_prompts_have_the_requested_length_and_shared_prefix(tiny_model_dir):
    from hsd.config import from_dict
    from hsd.models.loader import load_tokenizer

    tok = load_tokenizer(from_dict({"model": {"name_or_path": str(tiny_model_dir)}}).model)
    unique = make_prompts(tok, 4, 400, shared_prefix=False, seed=1, score=False)
    rich = make_prompts(tok, 4, 400, shared_prefix=True, seed=1, score=True)
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in unique + rich]
    assert all(360 <= n <= 480 for n in lengths), lengths
    assert len(set(unique)) == 4 and all(p.endswith('{"classification": "') for p in rich)
    before_user = lambda p: p.split("<|start|>user")[0]  # noqa: E731 - system + developer messages
    assert len({before_user(p) for p in rich}) == 1 and len({before_user(p) for p in unique}) == 4


def test_write_markdown_appends_when_no_markers(tmp_path):
    md = tmp_path / "B.md"
    write_markdown(md, f"{MD_BEGIN}\nT\n{MD_END}")
    write_markdown(md, f"{MD_BEGIN}\nU\n{MD_END}")
    assert md.read_text().count(MD_BEGIN) == 1 and "U" in md.read_text() and "\nT\n" not in md.read_text()


def test_cpu_smoke_of_the_workload_cases(tiny_model_dir, tmp_path):
    """hsd's own simple prompts, recorded lengths (capped): refill and static rows, their ratio."""
    from pathlib import Path

    data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not (data / "unified").is_dir():
        pytest.skip(f"{data} not present")
    out = tmp_path / "b.json"
    bench("--allow-cpu", "--model", str(tiny_model_dir), "--cases", "simple_static,simple", "--workload-samples", "6",
          "--workload-cap", "5", "--slots", "2", "--batch-size", "2", "--data-dir", str(data), "--out", str(out),
          "--markdown", "")
    rows = {r["case"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"simple", "simple_static"} and all("error" not in r for r in rows.values())
    assert rows["simple"]["samples"] == 6 and rows["simple"]["shared_prefix_tokens"] > 32
    assert rows["simple"]["ratio_vs_static"] > 0 and rows["simple_static"]["ratio_vs_static"] == 1.0
    assert rows["simple"]["refill"]["steps"] > 0 and 0 < rows["simple"]["refill"]["slot_use"] <= 1


def test_workload_lengths_come_from_the_recorded_table(tiny_model_dir):
    import types

    from benchmarks.cases import workload_prompts
    from benchmarks.bench_lengths import RESPONSE_TOKENS
    from hsd.config import from_dict
    from hsd.models.loader import load_tokenizer

    data = __import__("pathlib").Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not (data / "unified").is_dir():
        pytest.skip(f"{data} not present")
    cfg = from_dict({"model": {"name_or_path": str(tiny_model_dir)}})
    tok = load_tokenizer(cfg.model)
    args = types.SimpleNamespace(data_dir=str(data), workload_samples=20, seed=0, workload_cap=0)
    prompts, lengths = workload_prompts(cfg, "rich", tok, args)
    sizes = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    assert len(prompts) == 20 and sizes == sorted(sizes, reverse=True)
    assert set(lengths) <= set(RESPONSE_TOKENS) and len(set(lengths)) > 5
    assert all(p.endswith("<|start|>assistant") for p in prompts)
