"""Reference classifiers: the TF-IDF baseline reproduces the known numbers on the real test split."""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn import metrics as skm

from hsd.data import load_split
from hsd.metrics.performance import compute_performance
from hsd.metrics.references import as_records, fit_tfidf, predict_references
from hsd.records import Record, Sample

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (SHARED_DATA / "unified" / "unified_train.json").is_file(),
                                reason=f"the prepared dataset is not at {SHARED_DATA}")


def _records(samples: list[Sample]) -> list[Record]:
    return [Record(s.id, s.text, s.label, s.target_group, s.persona_tag, s.source, "x", "h", "", "unknown",
                   None, "no_answer", 0.0) for s in samples]


@needs_data
def test_tfidf_on_the_full_test_split_matches_the_known_numbers():
    train, test = load_split(SHARED_DATA, "train"), load_split(SHARED_DATA, "test")
    refs = {r.name: r for r in predict_references(_records(test), train)}
    perf = compute_performance(as_records(_records(test), refs["tfidf_logreg"]))
    head = perf.headline
    assert (perf.n_samples, perf.unknown_count) == (1009, 0)
    assert head.accuracy == pytest.approx(0.73, abs=0.02)
    assert head.f1_score == pytest.approx(0.68, abs=0.02)
    assert head.mcc == pytest.approx(0.45, abs=0.02)
    always_hate = compute_performance(as_records(_records(test), refs["always_hate"])).headline
    assert always_hate.f1_score == pytest.approx(0.62, abs=0.005) and always_hate.mcc == 0.0


def _sample(i: int, label: str, text: str) -> Sample:
    return Sample(f"id{i}", text, label, "lgbtq", "lgbtq", "synthetic")


def test_references_score_the_runs_own_samples_with_the_same_code():
    train = [_sample(i, "hate" if i % 2 else "normal", ("awful vermin " if i % 2 else "nice day ") + f"w{i % 5}")
             for i in range(60)]
    evaluated = [_sample(100 + i, "hate" if i % 3 else "normal", "awful vermin" if i % 2 else "nice day")
                 for i in range(12)]
    records = _records(evaluated)
    for ref in predict_references(records, train):
        scored = as_records(records, ref)
        assert [r.sample_id for r in scored] == [r.sample_id for r in records]
        assert {r.strategy for r in scored} == {ref.name}
        y_pred = [r.predicted_label for r in scored]
        head = compute_performance(scored).headline
        assert head.accuracy == pytest.approx(skm.accuracy_score([s.label for s in evaluated], y_pred))


def test_an_evaluated_sample_in_the_train_data_is_left_out_of_the_fit():
    """Otherwise the reference would be scored on samples it memorised."""
    train = [_sample(i, "hate" if i % 2 else "normal", f"text {i} {'bad' if i % 2 else 'good'}") for i in range(40)]
    leaked = train[:10]
    records = _records(leaked)
    tfidf = {r.name: r for r in predict_references(records, train)}["tfidf_logreg"]
    clean, leaky = fit_tfidf(train[10:]), fit_tfidf(train)
    texts = [s.text for s in leaked]
    got = [tfidf.p_hate[s.id] for s in leaked]
    assert got == pytest.approx(list(clean.predict_proba(texts)[:, 0]), abs=1e-12)  # classes_: hate, normal
    assert got != pytest.approx(list(leaky.predict_proba(texts)[:, 0]), abs=1e-6)


def test_references_prepared_before_the_run_are_exactly_the_runs(tmp_path):
    """What ``hsd validate`` prepares ahead (hsd.reporting.refcache.Prepared) from the samples alone
    equals what the collation computes from the run's records, and is used only under the same settings."""
    import dataclasses

    from _report_helpers import make_dataset, make_run
    from hsd.config import ReportConfig
    from hsd.metrics.references import stand_in_records
    from hsd.metrics.summary import evaluate
    from hsd.reporting.refcache import Prepared, fit
    from hsd.reporting.rundata import load_run

    data = make_dataset(tmp_path / "data")
    run = load_run(make_run(tmp_path / "exp", "base", data, "rich", 0.8, 0.1, seed=3, merge=True, scored=True))
    report = ReportConfig(bootstrap_resamples=1000)
    prepared = Prepared.of(stand_in_records(load_split(data, "test")), data, report)
    preds, provenance = prepared.predictions_for(run, data)
    assert (preds, provenance) == fit(run, str(data))
    for ref in preds:
        theirs = as_records(run.records, ref)
        assert prepared.metrics_for(ref.name, theirs, report) == evaluate(theirs, report)
        assert prepared.metrics_for(ref.name, theirs, dataclasses.replace(report, top_errors=3)) is not None
        assert prepared.metrics_for(ref.name, theirs, dataclasses.replace(report, bootstrap_seed=1)) is None
        assert prepared.metrics_for(ref.name, theirs[1:], report) is None
    assert prepared.predictions_for(run, tmp_path) is None  # another data directory
    other = dataclasses.replace(run, records=[dataclasses.replace(run.records[0], text="changed")] + run.records[1:])
    assert prepared.predictions_for(other, data) is None
