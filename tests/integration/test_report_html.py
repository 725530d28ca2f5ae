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
