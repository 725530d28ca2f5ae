"""Reference classifiers: what an LLM's numbers must beat to mean anything.

On this data F1 alone misleads: saying "hate" to everything scores F1 0.62 on the test split,
and a bag-of-words model trained in a second scores more than the old pipeline's gpt-oss
numbers. So every report carries three references, evaluated on exactly the run's samples
(same ids, same texts, same groups) with exactly the same metric code as the LLM:

* ``always_hate`` / ``always_normal`` - constant predictions (chance-level MCC 0).
* ``tfidf_logreg`` - TF-IDF + logistic regression (scikit-learn) fitted on the train split.

TF-IDF settings (measured on the full test split, 1,009 samples, fitted on the 3,628 train
samples: accuracy 0.729, F1 0.679, MCC 0.450): word 1-2 grams (bigrams catch slur + target
phrases), ``sublinear_tf`` (a repeated word is not 5x the evidence), ``min_df=2`` (a word seen
once in train carries no learnable weight; it cuts the vocabulary from 48k to 9.8k features),
default L2 logistic regression with ``C=1.0`` and no class weighting. Across C in {0.5..10},
unigrams or bigrams, balanced weights or not, the numbers stay within +-0.02 of these; the
choice is not tuned on the test split beyond picking sensible, common settings.
A sample that is also in the train data (same id) is left out of the fit, so the reference is
never scored on what it was trained on.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from hsd.errors import DataError
from hsd.records import POSITIVE, Record, Sample

TFIDF_SETTINGS: dict = {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 2}
LOGREG_SETTINGS: dict = {"C": 1.0, "max_iter": 2000}


@dataclasses.dataclass(frozen=True)
class ReferencePredictions:
    """Predicted labels (and P(hate) where the classifier has one) per evaluated sample id."""

    name: str
    labels: dict[str, str]
    p_hate: dict[str, float] | None = None


def _constant(label: str) -> Callable[[Sequence[Record], Sequence[Sample]], tuple[list[str], None]]:
    def predict(records: Sequence[Record], train: Sequence[Sample]) -> tuple[list[str], None]:
        return [label] * len(records), None

    return predict


def fit_tfidf(train: Sequence[Sample]) -> Pipeline:
    """TF-IDF + logistic regression on the train texts; deterministic (lbfgs, no shuffling)."""
    if len({s.label for s in train}) < 2:
        raise DataError("the train split needs hate and normal samples to fit the TF-IDF reference")
    model = make_pipeline(TfidfVectorizer(**TFIDF_SETTINGS), LogisticRegression(**LOGREG_SETTINGS))
    model.fit([s.text for s in train], [s.label for s in train])
    return model


def _tfidf(records: Sequence[Record], train: Sequence[Sample]) -> tuple[list[str], list[float]]:
    evaluated = {r.sample_id for r in records}
    model = fit_tfidf([s for s in train if s.id not in evaluated])
    texts = [r.text for r in records]
    p = model.predict_proba(texts)[:, list(model.classes_).index(POSITIVE)]
    return list(model.predict(texts)), [float(x) for x in p]


# name -> (what the report says it is, predict(records, train) -> (labels, p_hate | None))
REFERENCES: dict[str, tuple[str, Callable]] = {
    "always_hate": ("predicts hate for every sample", _constant("hate")),
    "always_normal": ("predicts normal for every sample", _constant("normal")),
    "tfidf_logreg": ("TF-IDF word 1-2 grams (sublinear tf, min_df 2) + logistic regression C=1, "
                     "fitted on the train split", _tfidf),
}


def predict_references(records: Sequence[Record], train: Sequence[Sample]) -> list[ReferencePredictions]:
    """Every reference's predictions for the run's samples."""
    out = []
    ids = [r.sample_id for r in records]
    for name, (_, predict) in REFERENCES.items():
        labels, p = predict(records, train)
        out.append(ReferencePredictions(name, dict(zip(ids, labels)),
                                        None if p is None else dict(zip(ids, p))))
    return out


def as_records(records: Sequence[Record], ref: ReferencePredictions) -> list[Record]:
    """The reference's records for the run's samples: scored by the very same metric code.

    Only the sample's own fields come from the run's record (id, text, labels, group, persona,
    source); nothing the model produced (prompt, tokens, stop reason, rank) is carried over, so a
    reference's records, and all its numbers, are a function of the samples alone — the same
    before the run has generated anything (:mod:`hsd.recipes.collate_ahead`) as after."""
    missing = [r.sample_id for r in records if r.sample_id not in ref.labels]
    if missing:
        raise KeyError(f"reference {ref.name} has no prediction for samples {missing[:3]}")
    return [Record(
        sample_id=r.sample_id, text=r.text, true_label=r.true_label, target_group=r.target_group,
        persona_tag=r.persona_tag, source=r.source, strategy=ref.name, prompt_hash="", raw_response="",
        predicted_label=ref.labels[r.sample_id], rationale=None, parse_status="ok_reference", latency_s=0.0,
        p_hate=None if ref.p_hate is None else ref.p_hate[r.sample_id]) for r in records]


def stand_in_records(samples: Sequence[Sample]) -> list[Record]:
    """Records of ``samples`` before any model answered them (sorted by id, as a loaded run's):
    what the references are fitted and scored on ahead of a run (:func:`as_records`)."""
    return [Record(sample_id=s.id, text=s.text, true_label=s.label, target_group=s.target_group,
                   persona_tag=s.persona_tag, source=s.source, strategy="", prompt_hash="", raw_response="",
                   predicted_label="unknown", rationale=None, parse_status="", latency_s=0.0)
            for s in sorted(samples, key=lambda s: s.id)]

