"""The tiny model written as gpt-oss's release is (MXFP4 experts) loads through every hsd path.

The MXFP4 directory holds the same seed-0 weights as ``tiny_model_dir``; so every check here
compares with the originals: transformers' own dequantization gives them back within MXFP4's
rounding; ``hsd validate`` runs on it and its manifest says who dequantized; the deepspeed
backend loads it partitioned and scores as the hf backend does; ``hsd train``
under ZeRO-3 on 2 gloo ranks loads it partitioned (no rank ever holds it whole) with the same
values as transformers' dequantization; ``hsd merge`` of that adapter gives a dense model with
the trained model's hold-out loss.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from _run_helpers import N_SAMPLES, launch, merged_records, write_config
from hsd.cli import main as hsd
from hsd.models.mxfp4 import pack_expert, unpack_expert
from test_train import REPO, SETTINGS, _env, _finish, _launch, _manifest, holdout_loss, setup  # noqa: F401 - setup: a fixture

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("_mxfp4_worker.py")
STEPS = 4
EXPERT = "model.layers.{}.mlp.experts.{}"


def _dense(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_checkpoint_has_the_released_names_shapes_dtypes_and_config(tiny_mxfp4_dir, tiny_model_dir):
    config = json.loads((tiny_mxfp4_dir / "config.json").read_text())
    assert config["quantization_config"] == {
        "quant_method": "mxfp4",
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
                                   "lm_head"]}
    assert config["dtype"] == "bfloat16" and config["architectures"] == ["GptOssForCausalLM"]
    experts, hidden, inter = config["num_local_experts"], config["hidden_size"], config["intermediate_size"]
    expected = {"gate_up_proj_blocks": (experts, 2 * inter, hidden // 32, 16),
                "gate_up_proj_scales": (experts, 2 * inter, hidden // 32),
                "down_proj_blocks": (experts, hidden, inter // 32, 16),
                "down_proj_scales": (experts, hidden, inter // 32)}
    with safe_open(str(tiny_mxfp4_dir / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        for layer in range(config["num_hidden_layers"]):
            for name, shape in expected.items():
                tensor = f.get_slice(EXPERT.format(layer, name))
                assert (tuple(tensor.get_shape()), tensor.get_dtype()) == (shape, "U8"), name
            assert EXPERT.format(layer, "gate_up_proj") not in keys
        others = [k for k in keys if not k.endswith(("_blocks", "_scales"))]
        assert {f.get_slice(k).get_dtype() for k in others} == {"BF16"}
    dense = set(_dense(tiny_model_dir))
    assert {k.removesuffix("_blocks").removesuffix("_scales") for k in keys} == dense


def test_transformers_dequantizes_it_to_the_originals(tiny_mxfp4_dir, tiny_model_dir):
    """transformers' own loader (no hsd code), on CPU: experts within MXFP4's rounding of the
    originals (exactly hsd's encode-decode of them), everything else the originals in bf16.
    Dequantizing is asked for, as hsd's loader asks: left to itself, transformers fetches MXFP4
    kernels from the Hub wherever triton and the ``kernels`` package are installed, even on CPU."""
    from transformers import AutoModelForCausalLM, Mxfp4Config

    loaded = AutoModelForCausalLM.from_pretrained(tiny_mxfp4_dir, dtype=torch.float32,
                                                  quantization_config=Mxfp4Config(dequantize=True)).state_dict()
    originals = _dense(tiny_model_dir)
    assert set(loaded) == set(originals)
    for name, original in originals.items():
        if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            assert torch.equal(loaded[name], unpack_expert(*pack_expert(original))), name
            scale = original.abs().amax() / 6  # no error exceeds one step of the coarsest block
            assert 0 < (loaded[name] - original).abs().max() <= 2 * scale, name
        else:
            assert torch.equal(loaded[name], original.to(torch.bfloat16).float()), name


MISSING = "model.layers.1.mlp.experts.down_proj_scales"


def _without_a_tensor(model_dir: Path, out: Path) -> Path:
    """A copy of the checkpoint with one expert's scales missing (a truncated download)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(model_dir, out)
    tensors = load_file(str(out / "model.safetensors"))
    del tensors[MISSING]
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def test_a_missing_tensor_is_one_clear_error(tiny_mxfp4_dir, tmp_path):
    """Without hsd's check transformers stops deep in its weight conversion with a RuntimeError."""
    from hsd.config import ModelConfig
    from hsd.errors import ModelError
    from hsd.models.loader import load_model

    broken = _without_a_tensor(tiny_mxfp4_dir, tmp_path / "model")
    with pytest.raises(ModelError, match=f"missing \\['{MISSING}'\\].*hsd model tiny --format mxfp4"):
        load_model(ModelConfig(name_or_path=str(broken)))


def test_validate_records_that_transformers_dequantized(tmp_path, tiny_mxfp4_dir):
    from hsd.config import load_config
    from hsd.recipes.validate import run

    run_dir = run(load_config(write_config(tmp_path, tiny_mxfp4_dir)))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "COMPLETED" and len(merged_records(run_dir)) == N_SAMPLES
    assert manifest["mxfp4_load"] == {"checkpoint_format": "mxfp4", "experts_loaded_as": "float32",
                                      "dequantized_by": "transformers", "reason": "not a CUDA device"}


def test_deepspeed_backend_loads_it_partitioned(tiny_mxfp4_dir, tmp_path):
    """The sharded inference backend (ZeRO-3, 2 ranks) through ``hsd validate`` on the MXFP4
    checkpoint: about half the parameters per rank, and P(hate) equal to the single-process hf
    backend's on transformers' dequantization."""
    from hsd.config import load_config
    from hsd.recipes.validate import run

    cfg = write_config(tmp_path, tiny_mxfp4_dir)
    ref = merged_records(run(load_config(cfg, ["inference.mode=score"]), tmp_path / "ref"))
    res = launch("torchrun", cfg, tmp_path / "ds", "inference.backend=deepspeed", "inference.mode=score")
    for rank in (0, 1):
        held = [line for line in res.stderr.splitlines() if f"rank {rank} holds " in line]
        assert held, res.stderr[-3000:]
        assert 45.0 < float(held[0].rsplit("(", 1)[1].rstrip("%)")) < 60.0, held[0]
    got = merged_records(tmp_path / "ds")
    assert sorted(got) == sorted(ref)
    for k, rec in got.items():
        assert rec["p_hate"] == pytest.approx(ref[k]["p_hate"], abs=1e-5)


@pytest.fixture(scope="module")
def zero3(setup, tiny_mxfp4_dir, tmp_path_factory):
    """Two 2-rank launches at once: the load check (_mxfp4_worker.py) and ``hsd train`` (ZeRO-3)."""
    out = tmp_path_factory.mktemp("mxfp4_ranks")
    broken = _without_a_tensor(tiny_mxfp4_dir, tmp_path_factory.mktemp("broken") / "model")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    worker = subprocess.Popen(launcher + [str(WORKER), str(tiny_mxfp4_dir), str(out), str(broken)], cwd=REPO,
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    train = _launch(setup, "mxfp4_z3", f"model.name_or_path={tiny_mxfp4_dir}", "train.ds_config=zero3",
                    f"train.max_steps={STEPS}", f"train.eval_every={STEPS}")  # auto would pick ZeRO-2 here
    _finish(worker), _finish(train)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)], setup[0] / "mxfp4_z3"


def test_zero3_partitions_it_as_it_loads_with_transformers_values(zero3):
    ranks, _ = zero3
    for report in ranks:
        assert report["world"] == 2 and report["names_match"]
        assert report["held_whole"] == []  # every parameter is a ZeRO-3 partition, none whole on any rank
        assert report["differ"] == []  # gathered, each equals transformers' dequantization exactly
        record = report["record"]
        assert record["dequantized_by"] == "hsd" and record["experts_loaded_as"] == "float32"
        assert record["elements_on_this_rank"] <= record["elements_in_model"] // 2 + 1000  # half (+ padding)
        assert MISSING in report["broken_error"]  # the same clear error on both ranks, no hang
    assert sum(r["record"]["elements_on_this_rank"] for r in ranks) >= ranks[0]["record"]["elements_in_model"]


def test_train_under_zero3_and_merge(zero3, tmp_path, capsys):
    """``hsd train`` on the MXFP4 base, then ``hsd merge`` of its adapter (base found from the
    adapter, dequantized by transformers on CPU): the merged dense model's hold-out loss is the
    loss the ZeRO-3 run measured on its partitioned, hsd-dequantized model."""
    from transformers import AutoModelForCausalLM

    _, run = zero3
    manifest = _manifest(run)
    assert manifest["status"] == "COMPLETED" and manifest["zero_stage"] == 3 and manifest["world_size"] == 2
    loads = manifest["mxfp4_load_per_rank"]
    assert [r["dequantized_by"] for r in loads] == ["hsd", "hsd"]
    assert all(r["elements_on_this_rank"] < r["elements_in_model"] for r in loads)

    assert hsd(["merge", "--adapter", str(run / "adapter"), "--out", str(tmp_path / "merged")]) == 0
    capsys.readouterr()
    merged_dir = tmp_path / "merged"
    assert "quantization_config" not in json.loads((merged_dir / "config.json").read_text())  # dense now
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    assert _holdout_loss(merged, merged_dir, run) == pytest.approx(manifest["final_eval_loss"], abs=1e-5)


def _holdout_loss(model, tokenizer_dir: Path, run: Path) -> float:
    from transformers import AutoTokenizer

    from hsd.training.dataset import read_chat_jsonl, tokenize_rows

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    path = Path(_manifest(run)["data_dir"]) / "simple" / "eval.jsonl"
    rows = tokenize_rows(read_chat_jsonl(path), tok, SETTINGS["max_length"], "truncate", path).examples
    return holdout_loss(model, tok, rows)
