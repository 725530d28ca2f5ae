"""The reference classifiers' predictions for a run, fitted once and kept beside the records.

``hsd collate`` fits the TF-IDF reference on the train split and writes every reference's
per-sample predictions to ``<run>/reference_predictions.json``; ``hsd report`` reuses them,
so regenerating a report needs only the run directory (no data, no model), and the reference
rows are recomputable per sample like the run's own numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from hsd.data import load_split, resolve_data_dir
from hsd.errors import DataError
from hsd.metrics.references import LOGREG_SETTINGS, REFERENCES, TFIDF_SETTINGS, ReferencePredictions, predict_references
from hsd.reporting.rundata import RunData
from hsd.runs import atomic_write_json

CACHE_NAME = "reference_predictions.json"


def _settings() -> dict[str, Any]:
    return {"references": sorted(REFERENCES), "tfidf": {k: list(v) if isinstance(v, tuple) else v
                                                        for k, v in TFIDF_SETTINGS.items()},
            "logreg": dict(LOGREG_SETTINGS)}


def data_dir_for(run: RunData, override: Optional[str]) -> Path:
    """``--data-dir`` if given, else the run's ``data.dir``, else $HSD_DATA_DIR / ./data."""
    return resolve_data_dir(override if override else (run.cfg.data.dir if run.cfg else None))


def fit(run: RunData, data_dir: Optional[str]) -> tuple[list[ReferencePredictions], dict[str, Any]]:
    """Fit on the train split and predict the run's samples; returns predictions and provenance."""
    root = data_dir_for(run, data_dir)
    try:
        train = load_split(root, "train")
    except DataError as exc:
        raise DataError(f"the TF-IDF reference needs the train split: {exc} (or pass --data-dir DIR)") from None
    text = "".join(f"{s.id}\t{s.label}\t{s.text}\n" for s in train)
    provenance = {"train_dir": str(root), "train_samples": len(train),
                  "train_sha256": hashlib.sha256(text.encode()).hexdigest()}
    return predict_references(run.records, train), provenance


def load_cached(run: RunData) -> Optional[tuple[list[ReferencePredictions], dict[str, Any]]]:
    """The cached predictions if they were made with today's settings for all of the run's samples."""
    path = run.path / CACHE_NAME
    if not path.is_file():
        return None
    obj = json.loads(path.read_text(encoding="utf-8"))
    if obj.get("settings") != _settings():
        return None
    ids = {r.sample_id for r in run.records}
    preds = [ReferencePredictions(name, p["labels"], p.get("p_hate")) for name, p in obj["predictions"].items()]
    if any(not ids <= p.labels.keys() for p in preds):
        return None
    return preds, obj["provenance"]


def save(run: RunData, preds: list[ReferencePredictions], provenance: dict[str, Any]) -> Path:
    path = run.path / CACHE_NAME
    atomic_write_json(path, {"settings": _settings(), "provenance": provenance,
                             "predictions": {p.name: {k: v for k, v in dataclasses.asdict(p).items() if k != "name"}
                                             for p in preds}})
    return path


def references_for(run: RunData, data_dir: Optional[str], use_cache: bool):
    """Cached predictions when allowed and valid, else a fresh fit (which needs the train split)."""
    cached = load_cached(run) if use_cache else None
    return cached if cached is not None else fit(run, data_dir)
