"""The one place a ``submitit.AutoExecutor`` is built from ``cfg.executor``.

``executor.kind`` picks the submitit cluster (``slurm`` on a cluster, ``local`` for N processes
on this machine, ``debug`` in-process for tests); every other key maps to one submitit or
sbatch parameter. Checks that would otherwise surface as a pending-forever job or a raw sbatch
traceback (no Slurm on PATH, a partition the cluster does not have) are done here, before
anything is submitted, and raise one :class:`~hsd.errors.HsdError` that says how to fix it.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
import subprocess
from pathlib import Path
from typing import Any, Sequence

import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError

from hsd.config import ConfigError, ExecutorConfig
from hsd.errors import HsdError

# executor.kind -> submitit cluster name (a registry, so a new kind is one line)
CLUSTERS = {"slurm": "slurm", "local": "local", "debug": "debug"}
LOG_DIR = "submitit"  # under the experiment directory: logs live with the results, never in /tmp


class SubmitError(HsdError):
    """The scheduler refused a job, or a job failed; the message names the job and its log."""


def tasks_per_node(exe: ExecutorConfig) -> int:
    """One task per GPU (ranks set up inside the job), at least one."""
    if exe.tasks_per_node is not None:
        return exe.tasks_per_node
    return max(1, exe.gpus_per_node)


def check_executor(exe: ExecutorConfig) -> None:
    """Fail before submitting anything: unknown kind, no Slurm here, unknown partition."""
    if exe.kind not in CLUSTERS:
        raise ConfigError(f"executor.kind '{exe.kind}' is unknown; valid: {', '.join(CLUSTERS)}")
    if exe.kind != "slurm":
        if exe.nodes > 1:
            raise ConfigError(f"executor.nodes={exe.nodes} needs executor.kind=slurm: the {exe.kind} executor runs "
                              "on this machine only; set executor.nodes=1 or submit to a Slurm cluster")
        return
    if shutil.which("sbatch") is None:
        raise ConfigError("executor.kind=slurm but 'sbatch' is not on PATH: run on a Slurm login node, "
                          "or use executor.kind=local on a single machine")
    partitions = slurm_partitions()
    names = [p.rstrip("*") for p in partitions]
    for key, value in (("executor.partition", exe.partition), ("executor.cpu_stage.partition", exe.cpu_stage.partition)):
        if value is not None and value not in names:
            raise ConfigError(f"{key} '{value}' does not exist on this cluster; available: "
                              f"{', '.join(partitions)} (* = default). Set {key}=NAME")
    if exe.partition is None and not any(p.endswith("*") for p in partitions):
        raise ConfigError(f"executor.partition is not set and this cluster has no default partition; "
                          f"set executor.partition to one of: {', '.join(names)}")


def slurm_partitions() -> list[str]:
    """Partition names as ``sinfo`` prints them (the default one ends with '*')."""
    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise SubmitError(f"sinfo failed ({out.stderr.strip()}): is slurmctld reachable?")
    return sorted(set(out.stdout.split()))


@dataclass(frozen=True)
class NodeLimits:
    """The largest node of a partition, and how many nodes it has, as ``sinfo`` reports them."""

    cpus: int
    mem_mb: int
    gpus: int
    nodes: int = 1  # every node of the partition, whatever its state
    usable: int = 1  # those not down, drained or failing (they can run a job now or soon)


def node_limits(partition: str | None) -> NodeLimits:
    """CPUs, memory and GPUs (``gpu:N`` in GRES) of the partition's largest node (None: the default)."""
    if partition is None:
        partition = next(p.rstrip("*") for p in slurm_partitions() if p.endswith("*"))
    # one row per (node shape, state) group; %D counts its nodes, %t is its state
    out = subprocess.run(["sinfo", "-h", "-p", partition, "-o", "%c|%m|%G|%D|%t"], capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0:
        raise SubmitError(f"sinfo failed ({out.stderr.strip()}): is slurmctld reachable?")
    rows = [line.split("|") for line in out.stdout.split()]
    gpus = [int(m.group(1)) for row in rows for m in [re.search(r"gpu(?::[\w-]+)?:(\d+)", row[2])] if m]
    return NodeLimits(cpus=max(int(row[0].rstrip("+")) for row in rows),
                      mem_mb=max(int(row[1].rstrip("+")) for row in rows), gpus=max(gpus, default=0),
                      nodes=sum(int(row[3]) for row in rows),
                      usable=sum(int(row[3]) for row in rows if _usable(row[4])))


# sinfo %t states of nodes that cannot take a job
UNUSABLE = {"down", "drain", "drng", "fail", "failg", "maint", "boot", "unk", "futr", "inval", "plnd"}


def _usable(state: str) -> bool:
    """A trailing ``*`` is a node that does not respond; ``~ # ! % $ @ ^ -`` (power saving, reboot,
    reservations) leave a node that will take a job."""
    return not state.endswith("*") and state.rstrip("~#!%$@^-") not in UNUSABLE


def make_executor(
    exe: ExecutorConfig, exp_dir: Path, name: str, gpus: bool = True, dependency: str | None = None
) -> submitit.AutoExecutor:
    """An executor for one stage. ``gpus=False`` for CPU-only stages (ftdata, collate): they
    take one task on one node and no GPU. A GPU stage takes ``executor.nodes`` nodes of
    :func:`tasks_per_node` tasks each: submitit's srun starts every task, and
    :func:`jobs.base.distributed_environment` gives each its rank, LOCAL_RANK and the first node as
    MASTER_ADDR. ``dependency`` is an sbatch dependency (``afterok:12:13``)."""
    check_executor(exe)
    # requeues a job may use up on timeouts (preemptions do not count)
    limits = {"slurm_max_num_timeout": exe.max_num_timeout} if exe.kind == "slurm" else {}
    executor = submitit.AutoExecutor(folder=exp_dir / LOG_DIR, cluster=CLUSTERS[exe.kind], **limits)
    if exe.kind == "local":  # the same executor, its jobs started as process groups of their own
        from jobs.local import GroupLocalExecutor

        executor._executor.__class__ = GroupLocalExecutor
    res = exe if gpus else exe.cpu_stage  # a CPU stage asks for its own, small resources
    params: dict[str, Any] = {
        "name": f"hsd-{name}",
        "timeout_min": res.timeout_min,
        "mem_gb": res.mem_gb,
        "cpus_per_task": res.cpus_per_task,
        "nodes": exe.nodes if gpus else 1,
        "gpus_per_node": exe.gpus_per_node if gpus else 0,
        "tasks_per_node": tasks_per_node(exe) if gpus else 1,
    }
    if exe.kind == "slurm":
        params.update(_slurm_params(exe, dependency, None if gpus else exe.cpu_stage.partition))
    executor.update_parameters(**params)
    return executor


def _slurm_params(exe: ExecutorConfig, dependency: str | None, partition: str | None = None) -> dict[str, Any]:
    extra = dict(exe.extra_sbatch)
    if dependency:
        # A job whose dependency failed is cancelled at once (reason DependencyNeverSatisfied)
        # instead of pending forever.
        extra["dependency"] = ",".join(d for d in (extra.get("dependency"), dependency) if d)
        extra.setdefault("kill-on-invalid-dep", "yes")
    params: dict[str, Any] = {
        "slurm_signal_delay_s": exe.signal_delay_s,
        "slurm_additional_parameters": extra,
        # A task that exits non-zero ends its step's other tasks at once (submitit's srun line has
        # no such flag, and Slurm's default KillOnBadExit=0 leaves them waiting in a collective).
        "slurm_srun_args": ["--kill-on-bad-exit=1"],
    }
    for key, value in (("partition", partition or exe.partition), ("account", exe.account), ("qos", exe.qos)):
        if value is not None:
            params[f"slurm_{key}"] = value
    return params


def submit(executor: submitit.AutoExecutor, fns: Sequence[Any], what: str) -> list[submitit.Job]:
    """Submit ``fns`` (one job, or a job array: a single sbatch on Slurm), with the scheduler's
    refusal turned into one clear error naming ``what``."""
    try:
        if len(fns) == 1:
            return [executor.submit(fns[0])]
        with executor.batch():
            return [executor.submit(fn) for fn in fns]
    except FailedJobError as exc:
        raise SubmitError(f"the scheduler refused stage '{what}': {str(exc).strip() or exc!r}") from None


_RANK_PREFIX = re.compile(r"^\[rank\d+\]:\s*")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b(:.*)?$")


def exception_line(text: str) -> str | None:
    """The last ``SomeError: message`` line of a traceback or log: what went wrong, in one line."""
    # torch.distributed prefixes each line of a rank's traceback with "[rank0]: "
    lines = [_RANK_PREFIX.sub("", l.strip()) for l in text.splitlines()]
    found = [l for l in lines if _EXCEPTION_LINE.match(l) and not l.startswith("submitit")]
    return found[-1][:400] if found else None


def error_summary(exc: BaseException | None) -> str | None:
    """One line for a job's failure; submitit wraps the job's traceback in its own error."""
    if exc is None:
        return None
    if isinstance(exc, UncompletedJobError):
        return exception_line(str(exc)) or str(exc).strip().splitlines()[0][:400]
    return f"{type(exc).__name__}: {exc}"[:400]  # the debug executor raises the job's own error


def cancel(job_ids: Sequence[str], strict: bool = False) -> None:
    """``scancel`` of ``job_ids``: best effort for the jobs already queued when a later submission
    failed; ``strict`` (``hsd cancel``) makes a missing or failing scancel an error. A job that
    ended meanwhile is no failure."""
    if not job_ids:
        return
    if shutil.which("scancel") is None:
        if strict:
            raise SubmitError("the experiment runs on Slurm but 'scancel' is not on PATH: run this on a login "
                              "node of its cluster")
        return
    out = subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=60)
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower() and "already complet" not in line]
    if strict and out.returncode != 0 and errors:
        raise SubmitError(f"scancel {' '.join(job_ids)} failed: {errors[0].strip()}")
