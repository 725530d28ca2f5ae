"""``backend: deepspeed`` with 2 CPU processes (gloo): ZeRO-3 partitioned, outputs equal one process's.

Five prompts over two ranks (3 and 2, in batches of 2) so one rank finishes first and must keep
joining the other's collectives (``finish``). The reference is the hf backend's plain path in
this process: same attention/experts implementations, dynamic cache, no DeepSpeed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsd.config import from_dict
from hsd.inference import get_backend
from hsd.inference.base import GenerationSettings
from hsd.models.loader import load_tokenizer
from hsd.prompts.prompter import SCORE_SUFFIX

pytestmark = pytest.mark.integration
WORKER = Path(__file__).with_name("_ds_worker.py")
REPO = Path(__file__).resolve().parents[2]


def prompts(tok, score: bool) -> list[str]:
    texts = ["hello world " * (1 + 5 * i) for i in range(5)]
    out = [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
           for t in texts]
    return [p + SCORE_SUFFIX for p in out] if score else out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(model_dir: Path, mode: str, prompt_file: Path) -> list[dict]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO),
               TORCH_EXTENSIONS_DIR=os.environ.get("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions")))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    out = prompt_file.parent
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(WORKER), str(model_dir), mode, str(prompt_file), str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-4000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.parametrize("mode", ["generate", "score"])
def test_two_ranks_equal_the_single_process_reference(tiny_model_dir, tmp_path, mode):
    cfg = from_dict({"model": {"name_or_path": str(tiny_model_dir)}, "inference": {"static_cache": False}})
    tok = load_tokenizer(cfg.model)
    ps = prompts(tok, mode == "score")
    (tmp_path / "prompts.json").write_text(json.dumps(ps))
    ranks = run_ranks(tiny_model_dir, mode, tmp_path / "prompts.json")
    assert [r["world"] for r in ranks] == [2, 2]
    for r in ranks:  # ZeRO-3: each rank holds half of the parameters
        assert 0.45 < r["partition_numel"] / r["full_numel"] < 0.55
    got = {int(i): v for r in ranks for i, v in r["results"].items()}
    assert sorted(got) == list(range(len(ps)))
    assert {int(i) for i in ranks[1]["results"]} == {1, 3}
    ref_backend = get_backend("hf")(cfg, "cpu", 0, tok)
    if mode == "score":
        ref = [o.p_hate for o in ref_backend.score(ps)]
        assert [got[i][1] for i in range(len(ps))] == pytest.approx(ref, abs=1e-5)
    else:
        s = GenerationSettings(max_new_tokens=12, temperature=0.0, top_p=1.0)
        want = [[o.text, o.new_tokens, o.stop_reason] for o in ref_backend.generate(ps, s)]
        assert [[got[i][0], *got[i][2:]] for i in range(len(ps))] == want
        assert all(w[2] == ("stop" if w[0].endswith(("<|return|>", "<|call|>")) else "length") for w in want)
