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
from typing import Any, Optional, Sequence

from hsd.config import ReportConfig
from hsd.data import load_split, resolve_data_dir
from hsd.errors import DataError
from hsd.metrics.references import (LOGREG_SETTINGS, REFERENCES, TFIDF_SETTINGS, ReferencePredictions, as_records,
                                    predict_references)
from hsd.metrics.summary import evaluate, settings  # settings: all of a ReportConfig evaluate() reads
from hsd.records import Record
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
    return fit_records(run.records, data_dir_for(run, data_dir))


def fit_records(records: Sequence[Record], root: Path) -> tuple[list[ReferencePredictions], dict[str, Any]]:
    """:func:`fit` for ``records`` with the train split of data directory ``root``."""
    try:
        train = load_split(root, "train")
    except DataError as exc:
        raise DataError(f"the TF-IDF reference needs the train split: {exc} (or pass --data-dir DIR)") from None
    text = "".join(f"{s.id}\t{s.label}\t{s.text}\n" for s in train)
    provenance = {"train_dir": str(root), "train_samples": len(train),
                  "train_sha256": hashlib.sha256(text.encode()).hexdigest()}
    return predict_references(records, train), provenance


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


@dataclasses.dataclass(frozen=True)
class Prepared:
    """The references fitted and scored before a run's records exist (:mod:`hsd.recipes.collate_ahead`),
    for the samples of ``records`` (:func:`hsd.metrics.references.stand_in_records`). Used only where
    they are exactly a run's: same data directory, same sample ids and texts; same report settings."""

    root: Path
    records: list[Record]
    predictions: list[ReferencePredictions]
    provenance: dict[str, Any]
    settings: dict[str, Any]  # summary.settings() of the report config the metrics were computed under
    metrics: dict[str, tuple[list[Record], dict[str, Any]]]  # name -> (the reference's records, evaluate())

    @classmethod
    def of(cls, records: list[Record], root: Path, report: ReportConfig) -> "Prepared":
        preds, provenance = fit_records(records, root)
        metrics = {}
        for ref in preds:
            ref_records = as_records(records, ref)
            metrics[ref.name] = (ref_records, evaluate(ref_records, report))
        return cls(root, records, preds, provenance, settings(report), metrics)

    def predictions_for(self, run: RunData, root: Path) -> Optional[tuple[list[ReferencePredictions], dict[str, Any]]]:
        same = root == self.root and _samples(run.records) == _samples(self.records)
        return (self.predictions, self.provenance) if same else None

    def metrics_for(self, name: str, ref_records: list[Record], report: ReportConfig) -> Optional[dict[str, Any]]:
        """evaluate(ref_records, report) when it was computed ahead for exactly these records."""
        ahead = self.metrics.get(name)
        same = ahead is not None and settings(report) == self.settings and ahead[0] == ref_records
        return ahead[1] if same else None


def _samples(records: Sequence[Record]) -> list[tuple[str, str]]:
    return [(r.sample_id, r.text) for r in records]  # what the predictions depend on (ids: the fit's exclusions)


def references_for(run: RunData, data_dir: Optional[str], use_cache: bool, prepared: Optional[Prepared] = None):
    """Cached predictions when allowed and valid, else those prepared ahead for exactly the run's
    samples, else a fresh fit (which needs the train split)."""
    cached = load_cached(run) if use_cache else None
    if cached is None and prepared is not None:
        cached = prepared.predictions_for(run, data_dir_for(run, data_dir))
    return cached if cached is not None else fit(run, data_dir)


def reference_metrics(ref_records: list[Record], name: str, report: ReportConfig,
                      prepared: Optional[Prepared] = None) -> dict[str, Any]:
    """evaluate() of a reference's records, or its result computed ahead for the same records."""
    ahead = prepared.metrics_for(name, ref_records, report) if prepared is not None else None
    return ahead if ahead is not None else evaluate(ref_records, report)
