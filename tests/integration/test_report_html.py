"""The HTML reports render in headless Chromium: a screenshot, and the key numbers in the page text.

Chromium is Debian's ``chromium`` package; ``tests/run_all.sh`` installs it before pytest, and
this test installs it itself when it is missing and the machine allows (root + apt-get).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from _report_helpers import make_experiment
from hsd import cli
from hsd.reporting.fmt import interval, num

pytestmark = pytest.mark.integration

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
                       check=False, env=env, capture_output=True, timeout=900)
    found = shutil.which("chromium")
    if not found:
        pytest.skip("Debian chromium is not installed and cannot be installed here (needs root + apt-get)")
    return found


class _Text(HTMLParser):
    """Visible text of a page (no <style>/<script>)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("style", "script")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "script")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def render(page: Path, out: Path) -> tuple[str, Path]:
    """(visible text of the DOM Chromium built, screenshot path)."""
    chromium = _chromium()
    profile = out / "profile"
    base = [chromium, *FLAGS, f"--user-data-dir={profile}"]
    shot = out / f"{page.parent.name}.png"
    url = page.resolve().as_uri()
    subprocess.run([*base, "--window-size=1280,6000", f"--screenshot={shot}", url],
                   check=True, capture_output=True, timeout=180)
    dom = subprocess.run([*base, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=180).stdout
    parser = _Text()
    parser.feed(dom)
    return " ".join(" ".join(parser.parts).split()), shot


def _not_blank(png: Path) -> float:
    import matplotlib.image as mpimg

    pixels = mpimg.imread(png)[..., :3]
    return float((pixels.mean(axis=-1) < 0.9).mean())  # share of pixels that are not (near) white


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    exp, _ = make_experiment(tmp_path_factory.mktemp("html"), scored=True)
    assert cli.main(["collate", str(exp)]) == 0
    return exp


def test_run_report_renders_with_its_numbers(experiment, tmp_path):
    run = experiment / "finetuned_simple"
    full = json.loads((run / "metrics_full.json").read_text())
    text, shot = render(run / "report.html", tmp_path)
    m = full["metrics"]
    for key in ("f1", "mcc", "accuracy", "eod"):
        assert interval(m["intervals"][key]) in text, key
    for g in m["groups"]:
        assert f"{num(g['fpr'])} [{num(g['fpr_low'])}, {num(g['fpr_high'])}]" in text
        assert f"{num(g['fnr'])} [{num(g['fnr_low'])}, {num(g['fnr_high'])}]" in text
    tfidf = full["references"]["tfidf_logreg"]["metrics"]["intervals"]
    assert interval(tfidf["f1"]) in text and "reference: always_hate" in text
    assert "most confident" in text  # score mode: errors ranked by P(hate)
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5  # metrics, confusion, group rates, reliability, loss curve
    _bias_auc_shown(text, m)
    assert "Reliability diagram" in text and "only the test split is present" in text
    assert "http://" not in html and "https://" not in html  # self-contained
    assert shot.stat().st_size > 50_000 and _not_blank(shot) > 0.03


def _bias_auc_shown(text: str, m: dict) -> None:
    """Every group's three bias AUCs with intervals, the final score and the ECEs are in the page."""
    b = m["bias_auc"]
    for g in b["groups"]:
        for key in ("subgroup_auc", "bpsn_auc", "bnsp_auc"):
            assert interval(g[key]) in text, (g["group"], key)
    assert interval(b["final_score"]) in text and interval(b["overall_auc"]) in text
    for rel in m["calibration"]["groups"].values():
        assert num(rel["ece"]) in text


def test_comparison_report_renders_with_its_verdict(experiment, tmp_path):
    out = experiment / "comparison"
    comp = json.loads((out / "comparison.json").read_text())
    text, shot = render(out / "report.html", tmp_path)
    verdict = comp["criterion"]["verdicts"][0]
    # the whole sentence: "MET, within noise ..." alone is also inside "NOT MET, within noise ..."
    assert (f"{verdict['candidate']} vs {comp['criterion']['baseline']}: F1 difference "
            f"{interval(verdict['delta'], sign=True)} - {verdict['text']}.") in text
    for run in comp["runs"]:
        assert interval(run["metrics"]["intervals"]["f1"]) in text
        _bias_auc_shown(text, run["metrics"])
    _bias_auc_shown(text, comp["references"]["tfidf_logreg"]["metrics"])
    # the reading in words, from the paired differences (the fine-tuned run is far better here)
    d = comp["bias_auc_deltas"]["finetuned_simple"]["bpsn_auc/lgbtq"]
    assert "BPSN AUC for lgbtq rose from" in text
    assert f"(difference {interval(d, sign=True)}, interval excludes 0)" in text
    assert _not_blank(shot) > 0.03
    shutil.copy(shot, Path(os.environ.get("HSD_SCREENSHOT_DIR", tmp_path)) / "comparison_report.png")


def _manifest(run: Path, command: str, status: str, **fields) -> None:
    (run / "manifest.json").write_text(json.dumps({"command": command, "status": status, "ts": "20261205_101500",
                                                   **fields}))


@pytest.fixture(scope="module")
def results_tree(experiment, tmp_path_factory) -> Path:
    """A complete experiment (the collated one), a failed one, a running one with a torn run directory."""
    results = tmp_path_factory.mktemp("index") / "results"
    complete = results / "complete"
    shutil.copytree(experiment, complete)
    for run in ("baseline_rich", "finetuned_simple"):
        _manifest(complete / run, "validate", "COMPLETED")
    _manifest(complete / "train_simple", "train", "COMPLETED")
    failed = results / "failed" / "train_lora_r8"
    failed.mkdir(parents=True)
    _manifest(failed, "train", "FAILED", error="CUDA out of memory. Tried to allocate 2.00 GiB\nTraceback ...")
    (results / "failed" / "jobs.json").write_text(json.dumps({"command": "pipeline", "submitted": "20261204_090000",
        "jobs": [{"stage": "train", "state": "FAILED", "error": "CUDA out of memory"}]}))
    running = results / "running" / "train_lora_r16"
    running.mkdir(parents=True)
    _manifest(running, "train", "RUNNING", total_steps=20)
    (running / "train_log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 3, 4, 5)))
    broken = results / "running" / "validate_simple_torn"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"command": "validate", "status": "RUNN')
    return results


def test_index_lists_a_complete_a_failed_and_a_running_experiment(results_tree, tmp_path):
    assert cli.main(["report", "index", str(results_tree)]) == 0
    page = results_tree / "index.html"
    text, shot = render(page, tmp_path)
    full = json.loads((results_tree / "complete" / "finetuned_simple" / "metrics_full.json").read_text())
    comp = json.loads((results_tree / "complete" / "comparison" / "comparison.json").read_text())
    verdict = comp["criterion"]["verdicts"][0]["text"].split(":")[0]
    row = (f"complete finetuned_simple validate 2026-12-05 10:15 tiny train_simple/adapter simple "
           f"{interval(full['metrics']['intervals']['f1'])} {interval(full['metrics']['intervals']['mcc'])} "
           f"{100 * (1 - full['metrics']['unknown_rate']):.1f}% {verdict} COMPLETED")
    assert row in text, text[:3000]
    assert "complete baseline_rich validate" in text and "LoRA r=16 alpha=32" not in text.split("complete")[0]
    assert "failed 2026-12-04 09:00 FAILED 1" in text and "train: CUDA out of memory" in text
    assert "train_lora_r8 train 2026-12-05 10:15" in text and "FAILED CUDA out of memory. Tried to allocate 2.00 GiB" in text
    assert "running 2026-12-05 10:15 RUNNING (some failed)" in text  # the torn run counts as a problem
    assert "train_lora_r16 train" in text and "RUNNING step 5/20" in text
    assert "validate_simple_torn ?" in text and "manifest.json is not valid JSON" in text
    html = page.read_text()
    assert 'href="complete/finetuned_simple/report.html"' in html and 'href="complete/comparison/report.html"' in html
    assert "http://" not in html and "https://" not in html  # self-contained
    assert _not_blank(shot) > 0.004  # a short page in a 1280 x 6000 window: ~1% of it is ink
    shutil.copy(shot, Path(os.environ.get("HSD_SCREENSHOT_DIR", tmp_path)) / "index.png")


def test_index_sorts_in_the_browser(results_tree, tmp_path):
    """``#sort=-f1``: the page's own script sorts the runs by F1 estimate, best first, in Chromium."""
    from hsd.reporting.index_html import write_index

    page = write_index(results_tree, tmp_path / "elsewhere" / "index.html")
    prefix = os.path.relpath(results_tree, page.parent)  # links work from wherever the page is written
    assert f'href="{prefix}/complete/finetuned_simple/report.html"' in page.read_text()

    def runs_order(fragment: str) -> list[str]:
        dom = subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                              page.resolve().as_uri() + fragment], check=True, capture_output=True, text=True,
                             timeout=180).stdout
        runs = dom[dom.index('id="runs"'):]
        return sorted(("baseline_rich", "finetuned_simple"), key=runs.index)

    assert runs_order("#sort=-f1") == ["finetuned_simple", "baseline_rich"]  # accuracy 0.85 before 0.70
    assert runs_order("#sort=f1") == ["baseline_rich", "finetuned_simple"]


def test_the_comparison_logs_its_deltas_and_verdicts_to_tensorboard(experiment):
    """What TensorBoard shows for a comparison equals comparison.json (collate logged it)."""
    import math

    from _report_helpers import tensorboard_scalars, tensorboard_texts
    from hsd.tracking import installed

    if not installed("tensorboard"):
        pytest.skip("tensorboard is not installed")
    out = experiment / "comparison"
    comp = json.loads((out / "comparison.json").read_text())
    logged = {tag: values[-1][1] for tag, values in tensorboard_scalars(out / "tracker").items()}
    (run, deltas), = comp["deltas"].items()
    for metric, iv in deltas.items():
        for key in ("estimate", "low", "high"):
            if iv.get(key) is not None:
                assert math.isclose(logged[f"delta/{run}/{metric}/{key}"], iv[key], rel_tol=1e-6), (metric, key)
    verdict = comp["criterion"]["verdicts"][0]
    assert logged[f"verdict/{verdict['candidate']}/met"] == float(verdict["met"])
    assert tensorboard_texts(out / "tracker")[f"verdict/{verdict['candidate']}/text"] == verdict["text"]


def test_the_demo_prints_the_index_of_its_results(results_tree, capsys):
    from hsd.commands.demo import print_index

    print_index(results_tree / "complete")
    out = capsys.readouterr().out
    assert f"every experiment under {results_tree}: {(results_tree / 'index.html').resolve()}" in out
    assert f"tensorboard --logdir {results_tree / 'complete'}" in out
    assert "finetuned_simple" in (results_tree / "index.html").read_text()
