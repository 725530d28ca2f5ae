"""Two gloo ranks under torchrun give the same per-sample records as one process."""

from __future__ import annotations

import json

import pytest

from _run_helpers import N_SAMPLES, comparable, launch, merged_records, seed_shard, shard_ids, write_config
from hsd.config import load_config
from hsd.prompt_files import full_prompt
from hsd.recipes.validate import run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def single(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    cfg = write_config(tmp, tiny_model_dir)
    return cfg, merged_records(run(load_config(cfg), tmp / "run"))


def test_two_ranks_equal_one(single, tmp_path):
    cfg, reference = single
    run_dir = tmp_path / "two"
    res = launch("torchrun", cfg, run_dir)
    assert res.stdout.strip().splitlines()[-1] == str(run_dir.resolve())  # printed once, by rank 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and set(manifest["per_rank"]) == {"0", "1"}
    ids0 = shard_ids(run_dir / "shards" / "rank0.jsonl", torn_tail_ok=False)
    ids1 = shard_ids(run_dir / "shards" / "rank1.jsonl", torn_tail_ok=False)
    assert ids0 and ids1 and not set(ids0) & set(ids1), "ranks must evaluate disjoint samples"
    assert sorted(ids0 + ids1) == sorted(reference)
    records = merged_records(run_dir)
    assert {r["rank"] for r in records.values()} == {0, 1}
    assert {k: comparable(v) for k, v in records.items()} == {k: comparable(v) for k, v in reference.items()}
    # both ranks wrote the shared prompt prefix: one whole file, no temp file left, every prompt rebuilt
    (prefix,) = (run_dir / "prompts").iterdir()
    assert prefix.name == f"prefix-{records[ids1[0]]['prompt_prefix_hash']}.txt"
    for rec in records.values():
        full_prompt(run_dir, rec["prompt_prefix_hash"], rec["prompt_tail"], rec["prompt_hash"])


def test_resume_with_another_world_size_reads_every_shard(single, tmp_path):
    """A 1-rank run stopped after 7 samples, resumed on 2 ranks (started by accelerate launch,
    the other supported launcher): nothing redone, nothing lost."""
    cfg, reference = single
    run_dir = tmp_path / "requeued"
    seed_shard(run_dir, reference, 7)
    launch("accelerate", cfg, run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["resumed"] == 7 and manifest["evaluated_this_attempt"] == N_SAMPLES - 7
    assert manifest["world_size"] == 2
    records = merged_records(run_dir)
    assert {k: comparable(v) for k, v in records.items()} == {k: comparable(v) for k, v in reference.items()}
