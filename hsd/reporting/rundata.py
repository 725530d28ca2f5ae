"""Find validation runs and read their per-sample records: the only input of every report.

A validation run directory holds ``shards/rank<k>.jsonl`` (written while it runs) and, once
rank 0 has merged them, ``intermediate_results_<ts>.jsonl`` (every sample exactly once; the
seed CSVs are computed from it). Reports read the newest merged file when there is one, so
their numbers and the CSVs' come from the same records, and the shards otherwise.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hsd import textio
from hsd.config import Config, ConfigError, load_config
from hsd.inference import store
from hsd.records import Record
from hsd.runs import RunError

MERGED_GLOB = "intermediate_results_*.jsonl"
# A damaged line of a merged file: rebuilt from the shards where they are, else repaired by hand.
MERGED_FIX = ("keep a copy of the file (cp {path} {path}.bak) and repair or delete line {line}; a run that "
              "still has its shards/ can instead move the file aside and merge again with `hsd collate RUN`")


@dataclass(frozen=True)
class RunData:
    """One validation run: where it is, how it was configured, and its records sorted by id."""

    path: Path
    cfg: Optional[Config]  # None for runs without config.yaml (e.g. imported legacy runs)
    records: list[Record]
    source: Path  # the file (or shards folder) the records were read from
    sha256: str  # of the records as read, so a report names exactly what it was computed from

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def strategy(self) -> str:
        return self.records[0].strategy

    @property
    def role(self) -> str:
        """``fine-tuned`` (an adapter was loaded), ``baseline`` (none) or ``unknown`` (no config)."""
        if self.cfg is None:
            return "unknown"
        return "fine-tuned" if self.cfg.model.adapter else "baseline"

    def info(self) -> dict[str, Any]:
        meta = _seed_meta(self.path)
        cfg = self.cfg
        return {
            "name": self.name, "path": str(self.path), "role": self.role, "strategy": self.strategy,
            "template": cfg.prompt.template if cfg else meta.get("template"),
            "model": cfg.model.name_or_path if cfg else meta.get("model"),
            "adapter": cfg.model.adapter if cfg else None,
            "mode": cfg.inference.mode if cfg else None,
            "data": (f"{cfg.data.subset or cfg.data.split} (max_samples {cfg.data.max_samples}, seed {cfg.data.seed}"
                     f"{_skipped_note(self.path)})" if cfg else meta.get("data")),
            "records_file": str(self.source), "records_sha256": self.sha256, "n_records": len(self.records),
        }

    def training_log(self) -> Optional[Path]:
        """``train_log.jsonl`` of the training run whose adapter this run loaded, if present."""
        if self.cfg is None or not self.cfg.model.adapter:
            return None
        adapter = Path(self.cfg.model.adapter)
        if not adapter.is_absolute():
            adapter = Path.cwd() / adapter
        for candidate in (adapter / "train_log.jsonl", adapter.parent / "train_log.jsonl"):
            if candidate.is_file():
                return candidate
        return None


def is_run(path: Path) -> bool:
    return (path / store.SHARD_DIR).is_dir() or any(path.glob(MERGED_GLOB))


def find_runs(path: Path) -> list[Path]:
    """``path`` itself when it is a validation run, else its validation runs (sorted by name)."""
    if not path.is_dir():
        raise RunError(f"{path} is not a directory: pass a run directory or an experiment directory")
    if is_run(path):
        return [path]
    runs = sorted(p for p in path.iterdir() if p.is_dir() and is_run(p))
    if not runs:
        raise RunError(f"{path} holds no validation run (no shards/ or {MERGED_GLOB} in it or its "
                       "subdirectories): pass a run directory or an experiment directory")
    return runs


def merged_file(path: Path) -> Optional[Path]:
    files = sorted(path.glob(MERGED_GLOB))  # <ts> is YYYYmmdd_HHMMSS: the newest sorts last
    return files[-1] if files else None


def read_config(path: Path) -> Optional[Config]:
    file = path / "config.yaml"
    if not file.is_file():
        return None
    try:
        return load_config(file)
    except ConfigError as exc:
        raise RunError(f"{file} cannot be read with this version of hsd: {exc}") from None


def load_run(path: Path) -> RunData:
    """The run's records (merged file, else all shards), sorted by sample id, checked."""
    path = path.resolve()
    merged = merged_file(path)
    source = merged if merged else path / store.SHARD_DIR
    files = [merged] if merged else store.shard_files(path)
    fix = MERGED_FIX if merged else store.FIX_LINE
    raw = [obj for f in files for _, obj in textio.json_lines(f.read_bytes(), f, error=RunError, fix=fix)]
    if not raw:
        raise RunError(f"{source} holds no records: the run has not evaluated any sample yet")
    records = [_record(obj, source) for obj in raw]
    _check(records, source)
    digest = hashlib.sha256("".join(json.dumps(o, sort_keys=True) + "\n" for o in raw).encode()).hexdigest()
    return RunData(path, read_config(path), sorted(records, key=lambda r: r.sample_id), source, digest)


def _record(obj: dict[str, Any], source: Path) -> Record:
    try:
        return Record.from_json(obj)
    except (TypeError, AttributeError):  # AttributeError: a line that is JSON but no object
        what = f"fields {sorted(obj)[:6]}..." if isinstance(obj, dict) else f"a JSON {type(obj).__name__}"
        raise RunError(f"{source}: lines are not hsd records ({what}). An old "
                       "pipeline run? Convert it with `hsd import-legacy OLD_RUN_DIR --out DIR`") from None


def _check(records: list[Record], source: Path) -> None:
    dupes = [i for i, n in Counter(r.sample_id for r in records).items() if n > 1]
    if dupes:
        raise RunError(f"{source}: {len(dupes)} sample ids are recorded more than once (e.g. {dupes[:3]}); "
                       "every sample must appear exactly once")
    strategies = sorted({r.strategy for r in records})
    if len(strategies) > 1:
        raise RunError(f"{source}: records of several strategies {strategies}; hsd reports one strategy "
                       "per run: split the records into one run directory per strategy")


def _skipped_note(path: Path) -> str:
    """``; N rows with empty text skipped`` when the run's manifest counts any (data.empty_text: skip)."""
    try:
        manifest = json.loads(textio.read_text(path / "manifest.json"))
    except (OSError, ValueError, textio.TextError):  # no manifest (a legacy import) or an unreadable one: nothing to say
        return ""
    skipped = manifest.get("empty_text_skipped") if isinstance(manifest, dict) else None
    return f"; {len(skipped)} rows with empty text skipped" if isinstance(skipped, list) and skipped else ""


def _seed_meta(path: Path) -> dict[str, Any]:
    """The header the seed files recorded (model, template, data), for runs without config.yaml."""
    file = path / "metrics.json"
    if not file.is_file():
        return {}
    try:
        return dict(json.loads(textio.read_text(file)).get("meta") or {})
    except (textio.TextError, json.JSONDecodeError, AttributeError):  # a header only: the report goes on
        return {}


def _identity(cfg: Config) -> tuple:
    """What must match for a validation-split run's threshold to apply to a test-split run."""
    return (cfg.model.name_or_path, cfg.model.adapter, cfg.prompt.template, cfg.prompt.strategy, cfg.inference.mode)


def validation_partner(run: RunData) -> Optional[Path]:
    """The newest run beside ``run`` of the validation split (``data.split=val``, no subset) with the
    same model, adapter, template, strategy and mode; None when there is none or ``run`` is not a
    test-split run."""
    cfg = run.cfg
    if cfg is None or cfg.data.subset or cfg.data.split != "test":
        return None
    found = []
    for path in sorted(p for p in run.path.parent.iterdir() if p.is_dir() and p != run.path and is_run(p)):
        try:
            other = read_config(path)
        except RunError:  # a sibling written by another hsd version: not this run's partner
            continue
        if other and other.data.split == "val" and not other.data.subset and _identity(other) == _identity(cfg):
            found.append(path)
    return found[-1] if found else None


def threshold_transfer(run: RunData) -> dict[str, Any]:
    """The test metrics at the threshold the validation-split partner picks, or why there are none."""
    from hsd.metrics.calibration import transfer

    split = run.cfg.data.split if run.cfg and not run.cfg.data.subset else None
    if split == "val":
        return {"validation_run": None, "note": "this run is of the validation split: the threshold it picks "
                                                "(above) is the one applied to test-split runs"}
    partner = validation_partner(run)
    if partner is None:
        return {"validation_run": None, "note": f"only the {split or 'unknown'} split is present: no run of the "
                "validation split (data.split=val) with the same model, adapter, template and mode beside this "
                "run, so no validation-picked threshold is applied"}
    result = transfer(load_run(partner).records, run.records, run.cfg.inference.threshold_metric)
    if result is None:
        return {"validation_run": partner.name, "note": "the validation run or this run has no scores "
                "(or no hate samples): no threshold can be picked"}
    return {"validation_run": partner.name, **result}
