"""A synthetic project for tests that feed hsd bad input or break it: data, config, an earlier run.

The data is generated here (never a copy of the real dataset): these tests check the machinery
(errors, resume, locks), not the model, so a few rows of made-up text are enough.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

GROUPS = ("lgbtq", "mexican", "middle_east")
LABELS = ("hate", "normal")
_WORDS = ("people", "from", "the", "city", "always", "never", "say", "they", "are", "good", "bad",
          "friends", "neighbours", "and", "work", "hard", "should", "leave", "stay", "here", "today")


def synthetic_rows(n: int, seed: int = 0, prefix: str = "s") -> list[dict[str, Any]]:
    """``n`` valid unified-schema rows, balanced over label x target group, of varied length."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label, group = LABELS[i % 2], GROUPS[(i // 2) % 3]
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 18))]
        rows.append({
            "text": f"{group} {' '.join(words)} #{i}",
            "label_binary": label,
            "label_multiclass": None,
            "target_group_norm": group,
            "persona_tag": group,
            "source_dataset": "synthetic",
            "rationale_text": None,
            "original_id": f"{prefix}_{i:04d}",
        })
    return rows


def write_data_dir(root: Path, n_test: int = 6, n_train: int = 48, n_val: int = 6) -> Path:
    """``root/unified/unified_{train,val,test}.json`` with disjoint ids and texts."""
    unified = root / "unified"
    unified.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("val", n_val, 2), ("test", n_test, 3)):
        rows = synthetic_rows(n, seed, prefix=f"{split}")
        (unified / f"unified_{split}.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return root


def record_line(row: dict[str, Any], strategy: str = "simple") -> str:
    """A shard line for ``row`` as hsd writes it (the earlier run's content)."""
    from hsd.records import Record

    rec = Record(sample_id=row["original_id"], text=row["text"], true_label=row["label_binary"],
                 target_group=row["target_group_norm"], persona_tag=row["persona_tag"],
                 source=row["source_dataset"], strategy=strategy, prompt_hash="0" * 16,
                 raw_response='<|channel|>final<|message|>{"classification": "normal"}<|return|>',
                 predicted_label="normal", rationale=None, parse_status="ok_harmony_final", latency_s=0.1)
    return json.dumps(rec.to_json()) + "\n"


@dataclass
class Scenario:
    """A temporary project: data, a config, a results directory with one earlier run."""

    root: Path
    model_dir: Path
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, model_dir: Path) -> "Scenario":
        sc = cls(root, model_dir)
        write_data_dir(sc.data_dir)
        sc.config = {
            "experiment": "exp",
            "results_dir": str(sc.results_dir),
            "data": {"dir": str(sc.data_dir), "split": "test"},
            "prompt": {"template": "simple"},
            "model": {"name_or_path": str(model_dir)},
            "inference": {"batch_size": 8, "max_new_tokens": 4, "temperature": 0.0, "progress": False},
        }
        sc._write_earlier_run()
        return sc

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def earlier_run(self) -> Path:
        return self.results_dir / "exp" / "earlier"

    def split_file(self, split: str = "test") -> Path:
        return self.data_dir / "unified" / f"unified_{split}.json"

    def rows(self, split: str = "test") -> list[dict[str, Any]]:
        return json.loads(self.split_file(split).read_text(encoding="utf-8"))

    def set_rows(self, rows: list[Any], split: str = "test") -> None:
        self.split_file(split).write_text(json.dumps(rows, indent=1), encoding="utf-8")

    def config_path(self) -> Path:
        path = self.root / "config.yaml"
        path.write_text(yaml.safe_dump(self.config, sort_keys=False), encoding="utf-8")
        return path

    def validate(self, *extra: str) -> list[str]:
        return ["validate", "--config", str(self.config_path()), *extra]

    def _write_earlier_run(self) -> None:
        """An interrupted earlier run of this very config: 3 of 6 samples recorded."""
        from hsd.config import dump_config, from_dict

        run = self.earlier_run
        (run / "shards").mkdir(parents=True)
        (run / "config.yaml").write_text(dump_config(from_dict(self.config)), encoding="utf-8")
        (run / "manifest.json").write_text(json.dumps({"status": "running", "attempt": 1, "ts": "20250101_000000"}))
        rows = sorted(self.rows(), key=lambda r: r["original_id"])[:3]
        (run / "shards" / "rank0.jsonl").write_text("".join(record_line(r) for r in rows), encoding="utf-8")
        (run / "performance_metrics_20250101_000000.csv").write_text("strategy,accuracy\nsimple,0.5\n")

    def ftdata_dir(self, train_lines: list[str]) -> Path:
        """A ``hsd ftdata``-shaped directory whose simple/train.jsonl holds ``train_lines``."""
        out = self.root / "ftdata" / "simple"
        out.mkdir(parents=True, exist_ok=True)
        (out / "train.jsonl").write_text("".join(line + "\n" for line in train_lines), encoding="utf-8")
        good = {"prompt": "<|start|>user<|message|>Text: hi<|end|><|start|>assistant",
                "completion": '<|channel|>final<|message|>{"classification": "normal"}<|return|>'}
        (out / "eval.jsonl").write_text(json.dumps(good) + "\n", encoding="utf-8")
        return out.parent

    def train(self, data: Path) -> list[str]:
        run = self.results_dir / "exp" / "train_new"
        return ["train", "--config", str(self.config_path()), "--data", str(data), "--run-dir", str(run)]
