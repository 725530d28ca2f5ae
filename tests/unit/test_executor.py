"""jobs.executor: the submitit executor built from cfg.executor, and its clear errors."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hsd.config import ConfigError, ExecutorConfig, load_config
from jobs.base import HsdJob
from jobs.executor import LOG_DIR, _slurm_params, check_executor, error_summary, exception_line, make_executor, tasks_per_node

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "gpus, tasks, expected",
    [(0, None, 1), (1, None, 1), (4, None, 4), (4, 2, 2), (0, 3, 3)],
)
def test_tasks_per_node_is_one_per_gpu_at_least_one(gpus: int, tasks: int | None, expected: int) -> None:
    assert tasks_per_node(ExecutorConfig(gpus_per_node=gpus, tasks_per_node=tasks)) == expected


def test_local_executor_logs_under_the_experiment_and_maps_resources(tmp_path: Path) -> None:
    exe = ExecutorConfig(kind="local", gpus_per_node=2, cpus_per_task=3, mem_gb=5, timeout_min=42)
    ex = make_executor(exe, tmp_path, "train")
    assert ex.cluster == "local"
    assert Path(ex.folder) == tmp_path / LOG_DIR
    assert ex._executor.parameters["tasks_per_node"] == 2
    assert ex._executor.parameters["gpus_per_node"] == 2
    assert ex._executor.parameters["timeout_min"] == 42
    cpu_only = make_executor(exe, tmp_path, "collate", gpus=False)
    assert cpu_only._executor.parameters["tasks_per_node"] == 1
    assert cpu_only._executor.parameters["gpus_per_node"] == 0
    # a CPU stage asks for executor.cpu_stage's small resources, not the GPU stages'
    assert {k: cpu_only._executor.parameters[k] for k in ("cpus_per_task", "mem_gb", "timeout_min")} == {
        "cpus_per_task": 2, "mem_gb": 8, "timeout_min": 60}
    assert ex._executor.parameters["mem_gb"] == 5 and ex._executor.parameters["cpus_per_task"] == 3


def test_slurm_parameters_carry_partition_account_qos_and_dependencies() -> None:
    exe = ExecutorConfig(kind="slurm", partition="gpu", account="ml", qos="high", signal_delay_s=90,
                         extra_sbatch={"constraint": "a100", "dependency": "afterany:7"})
    params = _slurm_params(exe, "afterok:12:13")
    assert params["slurm_partition"] == "gpu"
    assert params["slurm_account"] == "ml"
    assert params["slurm_qos"] == "high"
    assert params["slurm_signal_delay_s"] == 90
    extra = params["slurm_additional_parameters"]
    assert extra["constraint"] == "a100"
    assert extra["dependency"] == "afterany:7,afterok:12:13"  # both must hold
    assert extra["kill-on-invalid-dep"] == "yes"  # a failed dependency cancels instead of hanging
    assert "dependency" not in _slurm_params(ExecutorConfig(kind="slurm"), None)["slurm_additional_parameters"]
    assert _slurm_params(exe, None, partition="cpu")["slurm_partition"] == "cpu"  # executor.cpu_stage.partition
    assert params["slurm_srun_args"] == ["--kill-on-bad-exit=1"]  # one failed task ends the step's others


def test_the_sbatch_script_runs_its_tasks_with_kill_on_bad_exit(tmp_path: Path) -> None:
    from submitit.slurm.slurm import _make_sbatch_string

    params = {k.removeprefix("slurm_"): v for k, v in _slurm_params(ExecutorConfig(kind="slurm"), None).items()}
    params.pop("additional_parameters")
    script = _make_sbatch_string(command="python -m x", folder=tmp_path, **params)
    srun = [line for line in script.splitlines() if line.startswith("srun")]
    assert len(srun) == 1 and "--kill-on-bad-exit=1" in srun[0].split()


def test_a_wrong_executor_name_is_one_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="executor.kind.*'slurm' \\| 'local' \\| 'debug'"):
        load_config(None, ["executor.kind=pbs"])


def test_a_wrong_executor_name_on_the_command_line_exits_2_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"results_dir": str(tmp_path / "results")}))
    out = subprocess.run([sys.executable, "-m", "hsd.cli", "submit", "pipeline", "--config", str(cfg),
                          "executor.kind=pbs"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "executor.kind" in lines[0]
    assert not (tmp_path / "results").exists()  # nothing written


def test_slurm_without_sbatch_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no sbatch here
    with pytest.raises(ConfigError, match="sbatch.*not on PATH.*executor.kind=local"):
        check_executor(ExecutorConfig(kind="slurm"))


TRACE = """Job (task=0) failed during processing with trace:
----------------------
Traceback (most recent call last):
  File "/x/submitit/core/submission.py", line 55, in process_job
    result = delayed.result()
hsd.errors.ModelError: model directory /nope not found: build it with hsd model tiny
----------------------
You can check full logs with 'job.stderr(0)' and 'job.stdout(0)'or at paths:
  - /r/submitit/7_0_log.err
"""


def test_the_failure_line_is_the_exception_not_the_log_paths() -> None:
    from submitit.core.utils import FailedJobError

    expected = "hsd.errors.ModelError: model directory /nope not found: build it with hsd model tiny"
    assert exception_line(TRACE) == expected
    assert error_summary(FailedJobError(TRACE)) == expected
    assert error_summary(ValueError("bad")) == "ValueError: bad"
    assert error_summary(None) is None
    assert exception_line("submitit ERROR (x) - Submitted job triggered an exception\nall good") is None
    # a rank's traceback under torch.distributed: every line prefixed "[rank0]: " (a real training log)
    ranked = ("[rank0]:     os.mkdir(self, mode)\n[rank0]: FileExistsError: [Errno 17] File exists: '/r/train'\n"
              "srun: error: vm: task 0: Exited with exit code 1\n")
    assert exception_line(ranked) == "FileExistsError: [Errno 17] File exists: '/r/train'"


def test_jobs_pickle_and_checkpoint_to_a_fresh_instance_on_the_same_paths() -> None:
    from jobs.train_job import TrainJob

    job = TrainJob({"experiment": "x"}, run_dir="/r/train", data_dir="/r/ftdata")
    again = pickle.loads(pickle.dumps(job))
    assert again.config == job.config and again.paths == job.paths
    delayed = job.checkpoint()
    fresh = delayed.function
    assert isinstance(fresh, TrainJob) and fresh is not job
    assert fresh.paths == {"run_dir": "/r/train", "data_dir": "/r/ftdata"} and fresh.config == job.config


class _SleepJob(HsdJob):
    """A job that says it started, then waits far longer than any test."""

    def run(self, cfg, marker: str) -> Path:
        import time

        Path(marker).write_text("started")
        time.sleep(120)
        return Path(marker)


def test_a_local_job_is_a_process_group_of_its_own_and_sigterm_ends_it_as_ctrl_c_does(tmp_path: Path) -> None:
    """The group is what hsd submit's Ctrl-C and hsd cancel stop; submitit's job process would log
    "Bypassing signal SIGTERM" and run on until SIGKILL."""
    import cloudpickle

    from hsd.config import to_dict
    from jobs import local

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the job process cannot import this test module
    ex = make_executor(ExecutorConfig(kind="local", timeout_min=5), tmp_path, "sleep", gpus=False)
    marker = tmp_path / "started"
    job = ex.submit(_SleepJob(to_dict(load_config(None, [])), marker=str(marker)))
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert job._process.poll() is None and time.monotonic() < deadline, job.paths.stderr.read_text()
        time.sleep(0.02)
    pid = job._process.pid
    assert os.getpgid(pid) == pid != os.getpgrp()  # a terminal's Ctrl-C reaches hsd submit only
    started = time.monotonic()
    assert local.stop_job(local.job_process(job), reap=job._process.poll) == "stopped"  # no SIGKILL needed
    assert time.monotonic() - started < local.STOP_GRACE_S
    assert "KeyboardInterrupt: SIGTERM" in job.paths.stderr.read_text()


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stop_signals_raise_interrupted_but_wait_out_a_held_block_and_stop_once_quiet(signum: int, code: int) -> None:
    from jobs.interrupt import Interrupted, StopSignals

    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as guard:
        with pytest.raises(Interrupted) as raised:
            os.kill(os.getpid(), signum)
            time.sleep(5)
        assert raised.value.exit_code == code and raised.value.message == f"interrupted: {signal.Signals(signum).name}"
        steps = []
        with pytest.raises(Interrupted):
            with guard.held():
                os.kill(os.getpid(), signum)
                time.sleep(0.05)
                steps.append("the held block ran to its end")
        assert steps == ["the held block ran to its end"]
        guard.quiet()
        os.kill(os.getpid(), signum)
        time.sleep(0.05)  # ignored: the jobs are being stopped
    assert signal.getsignal(signal.SIGTERM) == before


def test_nodes_go_to_the_gpu_stages_only_and_need_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="executor.nodes=2 needs executor.kind=slurm.*executor.nodes=1"):
        make_executor(ExecutorConfig(kind="local", nodes=2), tmp_path, "train")
    _fake_sinfo(tmp_path, monkeypatch, "8|64000|(null)|2|idle")
    exe = ExecutorConfig(kind="slurm", nodes=2, gpus_per_node=4)
    gpu = make_executor(exe, tmp_path, "train")._executor
    script = gpu._make_submission_file_text("python -m x", "1")
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=4" in script
    cpu = make_executor(exe, tmp_path, "collate", gpus=False)._executor
    script = cpu._make_submission_file_text("python -m x", "1")
    assert "#SBATCH --nodes=1" in script and "#SBATCH --ntasks-per-node=1" in script


def _fake_sinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: str) -> None:
    """A `sinfo` on PATH that prints ``rows`` for ``-o %c|%m|%G|%D|%t`` and a default partition."""
    script = tmp_path / "sinfo"
    script.write_text("#!/bin/sh\ncase \"$*\" in *%P*) echo 'debug*';; *) printf '%s\\n' " +
                      " ".join(f"'{r}'" for r in rows.split()) + ";; esac\n")
    script.chmod(0o755)
    (tmp_path / "sbatch").symlink_to("/bin/true")
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")


def test_preflight_says_when_the_partition_has_too_few_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.preflight import check_resources

    _fake_sinfo(tmp_path, monkeypatch, "8|64000|(null)|1|idle 8|64000|(null)|1|mix~ 8|64000|(null)|1|idle*")
    check_resources(ExecutorConfig(kind="slurm", nodes=2, mem_gb=1))  # two of three are up: fits
    with pytest.raises(ConfigError, match="executor.nodes=3 but only 2 of the 3 nodes of the default partition are up"):
        check_resources(ExecutorConfig(kind="slurm", nodes=3, mem_gb=1))
    with pytest.raises(ConfigError, match="executor.nodes=4 but the default partition has 3 node"):
        check_resources(ExecutorConfig(kind="slurm", nodes=4, mem_gb=1))


def test_a_non_positive_node_count_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="executor.nodes"):
        load_config(None, ["executor.nodes=0"])
