"""jobs.pipeline / jobs.sweep: the plans (stages, run directories, dependencies), no scheduler."""

from __future__ import annotations

from pathlib import Path

import pytest

from hsd.config import ConfigError, from_dict, load_config
from hsd.runs import RunError
from jobs.book import JobBook
from jobs.pipeline import _dependency, entries, prepare_experiment, submit_command
from jobs.plans import pipeline_plan
from jobs.resume import remaining
from jobs.sweep import sweep_plan

SWEEP = Path(__file__).resolve().parents[2] / "jobs" / "configs" / "sweep_4xa100.yaml"


def _cfg(tmp_path: Path, *overrides: str):
    return load_config(None, [f"results_dir={tmp_path}", "experiment=e", *overrides])


def test_pipeline_chains_ftdata_train_finetuned_and_collates_both_validations(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    exp = tmp_path / "e"
    steps = {s.name: s for s in pipeline_plan(cfg, exp)}
    assert list(steps) == ["baseline", "ftdata", "train", "finetuned", "collate"]
    assert steps["baseline"].after == ()
    assert steps["train"].after == ("ftdata",)
    assert steps["finetuned"].after == ("train",)
    assert set(steps["collate"].after) == {"baseline", "finetuned"}
    assert not steps["ftdata"].gpus and not steps["collate"].gpus and steps["train"].gpus

    base = steps["baseline"].jobs[0].config
    tuned = steps["finetuned"].jobs[0].config
    assert base["prompt"]["template"] == "rich" and base["model"]["adapter"] is None
    assert tuned["prompt"]["template"] == "simple"
    assert tuned["model"]["adapter"] == str(exp / "train" / "adapter")
    assert steps["train"].jobs[0].paths == {"run_dir": str(exp / "train"), "data_dir": str(exp / "ftdata")}


def test_pipeline_without_baseline_collates_the_finetuned_run_only(tmp_path: Path) -> None:
    steps = pipeline_plan(_cfg(tmp_path, "pipeline.run_baseline=false"), tmp_path / "e")
    assert [s.name for s in steps] == ["ftdata", "train", "finetuned", "collate"]
    assert steps[-1].after == ("finetuned",)


def test_sweep_is_two_arrays_linked_task_by_task(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "sweep.lora=[{r: 4, alpha: 8}, {r: 8, alpha: 16, dropout: 0.0}]")
    steps = {s.name: s for s in sweep_plan(cfg, tmp_path / "e")}
    train, tuned = steps["train"], steps["finetuned"]
    assert [j.config["train"]["lora"]["r"] for j in train.jobs] == [4, 8]
    assert train.jobs[1].config["train"]["lora"]["dropout"] == 0.0
    assert [Path(d).name for d in train.run_dirs] == ["train_00", "train_01"]
    assert tuned.after_each == "train" and tuned.after == ()
    assert [j.config["model"]["adapter"] for j in tuned.jobs] == [
        str(tmp_path / "e" / f"train_0{i}" / "adapter") for i in range(2)]
    assert _dependency(tuned, {"train": "41"}) == "aftercorr:41"
    # collate runs whatever the validations' outcome: it reports what finished and what failed
    assert _dependency(steps["collate"], {"baseline": "40", "finetuned": "42"}) == "afterany:40,afterany:42"


def test_a_bad_sweep_setting_names_its_index_and_key(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "sweep.lora=[{r: 4}, {rank: 8}]")
    with pytest.raises(ConfigError, match=r"sweep.lora\[1\].*unknown key 'train.lora.rank'"):
        sweep_plan(cfg, tmp_path / "e")
    with pytest.raises(ConfigError, match="sweep.lora is empty"):
        sweep_plan(_cfg(tmp_path), tmp_path / "e")


def test_an_experiment_is_never_submitted_twice(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    exp = prepare_experiment(cfg)
    assert (exp / "config.yaml").exists()
    (exp / "jobs.json").write_text("{}")
    with pytest.raises(RunError, match="already holds a submission.*experiment=NAME"):
        prepare_experiment(cfg)
    assert (exp / "jobs.json").read_text() == "{}"


@pytest.mark.parametrize("name, command", [("pipeline_4xa100.yaml", "pipeline"), ("sweep_4xa100.yaml", "sweep")])
def test_the_shipped_4xa100_configs_load_and_plan(tmp_path: Path, name: str, command: str) -> None:
    from jobs.pipeline import PLANS
    import importlib

    path = Path(__file__).resolve().parents[2] / "jobs" / "configs" / name
    assert path.read_text().startswith(f"# hsd submit {command} --config jobs/configs/{name}")
    cfg = load_config(path)
    assert cfg.executor.gpus_per_node == 4 and cfg.model.dtype == "bfloat16"
    module, func = PLANS[command].split(":")
    steps = getattr(importlib.import_module(module), func)(cfg, tmp_path)
    assert steps[-1].name == "collate"


def test_an_impossible_sweep_entry_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    bad = "sweep.lora=[{r: 4}, {r: 8, target_parameters: [mlp.experts.gate_up_proj]}]"  # default dropout 0.05
    cfg = _cfg(tmp_path, bad, "executor.kind=debug")
    with pytest.raises(ConfigError, match=r"^sweep.lora\[1\].target_parameters \(mlp.experts.gate_up_proj\) needs "
                                          r"sweep.lora\[1\].dropout: 0.0.*add dropout: 0.0"):
        submit_command("sweep", cfg)
    assert not (tmp_path / "e").exists()  # no experiment directory, nothing queued


def test_the_shipped_sweep_passes_the_plan_checks(tmp_path: Path) -> None:
    from jobs.preflight import check_training

    steps = {s.name: s for s in sweep_plan(load_config(SWEEP), tmp_path)}
    for i, job in enumerate(steps["train"].jobs):
        check_training(from_dict(job.config),
                       f"train[{i}]")
    assert steps["train"].jobs[3].config["train"]["lora"]["dropout"] == 0.0


def _book(tmp_path: Path, steps, states: dict[str, str]) -> JobBook:
    book = JobBook.new(tmp_path, "sweep", "slurm")
    for step in steps:
        book.add(entries(step))
    for entry in book.data["jobs"]:
        entry["state"] = states.get(entry["stage"], "COMPLETED")
    return book


def test_resume_reruns_only_what_did_not_complete_and_keeps_the_chain(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "sweep.lora=[{r: 4}, {r: 8}, {r: 16}]")
    steps = sweep_plan(cfg, tmp_path / "e")
    book = _book(tmp_path, steps, {"train[1]": "FAILED", "finetuned[1]": "CANCELLED", "collate": "COMPLETED"})
    todo = {s.name: s for s in remaining(steps, book)}
    assert list(todo) == ["train", "finetuned", "collate"]  # baseline and ftdata completed: reused
    assert todo["train"].task_indices == (1,) and todo["finetuned"].task_indices == (1,)
    assert [Path(d).name for d in todo["train"].run_dirs] == ["train_01"]  # the same run directory: resumes
    assert todo["train"].jobs[0].config["train"]["lora"]["r"] == 8
    ids = {"train": "51"}
    assert _dependency(todo["train"], {}) is None  # ftdata completed: nothing to wait for
    assert _dependency(todo["finetuned"], ids, todo) == "aftercorr:51"
    assert _dependency(todo["collate"], {"finetuned": "52"}, todo) == "afterany:52"

    # finetuned[2] failed on its own as well: the two arrays differ, so task-by-task no longer maps
    book = _book(tmp_path, steps, {"train[1]": "FAILED", "finetuned[1]": "CANCELLED", "finetuned[2]": "FAILED"})
    todo = {s.name: s for s in remaining(steps, book)}
    assert todo["finetuned"].task_indices == (1, 2)
    assert _dependency(todo["finetuned"], ids, todo) == "afterok:51"
    assert remaining(steps, _book(tmp_path, steps, {})) == []
