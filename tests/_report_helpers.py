"""Synthetic datasets and validation runs for the collate / compare / report tests.

The dataset is small and word-based so TF-IDF learns it; the runs are real run directories
(config.yaml, per-rank shards, optionally merged) written through hsd's own config and record
types, with predictions drawn from known error rates, so every number can be recomputed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Optional

from hsd.config import dump_config, from_dict
from hsd.records import Record, Sample

GROUPS = {"lgbtq": (40, 60), "mexican": (34, 22), "middle_east": (35, 39)}  # test (hate, normal): mexican < 30 normal
HATE_WORDS = ["vermin", "disgusting", "subhuman", "invaders", "filth", "go back", "hate them"]
NEUTRAL = ["the", "people", "today", "community", "news", "weekend", "family", "food", "city", "music"]
GROUP_WORDS = {"lgbtq": ["gay", "lesbian", "trans"], "mexican": ["mexican", "latino", "border"],
               "middle_east": ["muslim", "arab", "iranian"]}


def _text(rng: random.Random, group: str, label: str) -> str:
    words = rng.sample(NEUTRAL, 4) + [rng.choice(GROUP_WORDS[group])]
    if label == "hate" or rng.random() < 0.15:  # some normal texts share hate words: TF-IDF is not perfect
        words += rng.sample(HATE_WORDS, 2)
    rng.shuffle(words)
    return " ".join(words)


def _rows(split: str, scale: int, seed: int) -> list[dict]:
    rng = random.Random(f"{seed}:{split}")
    rows = []
    for group, (pos, neg) in GROUPS.items():
        for label, n in (("hate", pos * scale), ("normal", neg * scale)):
            for _ in range(n):
                rows.append({"text": _text(rng, group, label), "label_binary": label, "label_multiclass": None,
                             "target_group_norm": group, "persona_tag": group, "source_dataset": "synthetic",
                             "rationale_text": None, "original_id": f"{split}_{len(rows):04d}", "split": split})
    rng.shuffle(rows)
    return rows


def make_dataset(root: Path, seed: int = 0) -> Path:
    """``root/unified/unified_{train,val,test}.json``; train is 3x the test split."""
    (root / "unified").mkdir(parents=True, exist_ok=True)
    for split, scale in (("train", 3), ("val", 1), ("test", 1)):
        (root / "unified" / f"unified_{split}.json").write_text(json.dumps(_rows(split, scale, seed)))
    return root


def predict(samples: list[Sample], accuracy: float, unknown: float, seed: int,
            scored: bool = False) -> list[tuple[str, str, Optional[float]]]:
    """(predicted label, parse status, p_hate) per sample with the given error and unknown rates."""
    rng = random.Random(seed)
    out = []
    for s in samples:
        if rng.random() < unknown:
            out.append(("unknown", "no_final_answer_truncated", None))
            continue
        right = rng.random() < accuracy
        label = s.label if right else ("normal" if s.label == "hate" else "hate")
        p = None
        if scored:
            conf = 0.5 + 0.5 * rng.random()
            p = conf if label == "hate" else 1 - conf
        out.append((label, "ok_final_channel", p))
    return out


def make_run(exp: Path, name: str, data_dir: Path, template: str, accuracy: float, unknown: float, seed: int,
             adapter: Optional[str] = None, world_size: int = 2, merge: bool = False, scored: bool = False,
             split: str = "test") -> Path:
    """A validation run directory: config.yaml + shards/rank<k>.jsonl (+ merged seed files if ``merge``)."""
    from hsd.data import load_split

    run = exp / name
    (run / "shards").mkdir(parents=True)
    cfg = from_dict({"experiment": exp.name, "run_name": name, "results_dir": str(exp.parent),
                     "data": {"dir": str(data_dir), "split": split}, "prompt": {"template": template},
                     "model": {"name_or_path": "tiny", "adapter": adapter}})
    (run / "config.yaml").write_text(dump_config(cfg))
    samples = load_split(data_dir, split)
    records = [Record(s.id, s.text, s.label, s.target_group, s.persona_tag, s.source, f"{template}_strategy",
                      "0" * 16, f"<|channel|>final<|message|>{{\"classification\": \"{label}\"}}" if label != "unknown"
                      else "<|channel|>analysis<|message|>We need to think about this for a long", label,
                      None, status, 0.5, rank=i % world_size, p_hate=p)
               for i, (s, (label, status, p)) in enumerate(zip(samples, predict(samples, accuracy, unknown, seed, scored)))]
    for k in range(world_size):
        lines = [json.dumps(r.to_json()) + "\n" for r in records if r.rank == k]
        (run / "shards" / f"rank{k}.jsonl").write_text("".join(lines))
    if merge:
        from hsd.reporting.seed_files import write_run_outputs

        write_run_outputs(run, sorted(records, key=lambda r: r.sample_id), records[0].strategy, "20250101_000000", {})
    return run


def make_train_run(exp: Path, name: str = "train_simple") -> Path:
    """A training run with an adapter folder and a train_log.jsonl; returns the adapter path."""
    run = exp / name
    (run / "adapter").mkdir(parents=True)
    lines = [{"step": s, "loss": 2.5 / (1 + 0.1 * s)} for s in range(1, 41)]
    lines += [{"step": s, "eval_loss": 2.6 / (1 + 0.08 * s)} for s in (10, 20, 30, 40)]
    (run / "train_log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run / "adapter"


def make_experiment(root: Path, scored: bool = False) -> tuple[Path, Path]:
    """(experiment dir, data dir): a rich-prompt baseline and a fine-tuned simple-prompt run, unmerged."""
    data = make_dataset(root / "data")
    exp = root / "results" / "exp"
    exp.mkdir(parents=True)
    adapter = make_train_run(exp)
    make_run(exp, "baseline_rich", data, "rich", accuracy=0.70, unknown=0.04, seed=1, scored=scored)
    make_run(exp, "finetuned_simple", data, "simple", accuracy=0.85, unknown=0.01, seed=2, adapter=str(adapter),
             scored=scored)
    return exp, data


def tensorboard_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a TensorBoard run directory, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def tensorboard_texts(logdir: Path) -> dict[str, str]:
    """The last text of each text tag (TensorBoard stores them as string tensors)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    acc.Reload()
    return {tag.removesuffix("/text_summary"): acc.Tensors(tag)[-1].tensor_proto.string_val[0].decode()
            for tag in acc.Tags()["tensors"]}
