"""``hsd status [EXPERIMENT_DIR]``: where each job of a submitted experiment stands.

Reads ``<exp>/jobs.json`` (written by ``hsd submit``, attempts added by ``hsd submit resume``) and asks the scheduler for each job's
state: ``sacct`` (accounting, also for finished jobs) and ``squeue`` (why a job is pending),
each word read as a :class:`hsd.runs.Status`. Local/debug experiments record their states in
``jobs.json`` as they go; a job recorded RUNNING whose process group is gone is LOST, and one
still PENDING after its ``hsd submit`` ended never started (CANCELLED). For a running
validation it counts the lines of each rank's shard file against the rank's share of the
samples; for a running training the newest step in ``train_log.jsonl``; for a failed job, the
line of its logs that says what went wrong. A job on several nodes names each rank's node (from
submitit's first log line of each task), and the node a failure came from.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hsd.errors import HsdError
from hsd.runs import Status, iter_jsonl
from jobs import local
from jobs.book import JOBS_FILE, load_book, run_path
from jobs.executor import LOG_DIR, exception_line


def newest_experiment(results_dir: Path) -> Path:
    # results/<experiment>/jobs.json, or one level deeper (the demo's results/demo/<experiment>)
    found = [*results_dir.glob(f"*/{JOBS_FILE}"), *results_dir.glob(f"*/*/{JOBS_FILE}")]
    books = sorted(found, key=lambda p: p.stat().st_mtime)
    if not books:
        raise HsdError(f"no submitted experiment under {results_dir}/ (no */{JOBS_FILE}); "
                       "pass the experiment directory: hsd status results/NAME")
    return books[-1].parent


def _run(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return out.stdout if out.returncode == 0 else ""


def slurm_states(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """job id (array tasks as ``A_i``) -> (state, pending reason); pending arrays as ``A_[0-1]``."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    bases = sorted({j.split("_")[0] for j in job_ids})
    states: dict[str, tuple[str, str]] = {}
    for line in _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(bases)]).splitlines():
        jid, state = line.split("|")[:2]
        states[jid] = (state.split()[0], "")  # "CANCELLED by 0" -> CANCELLED
    for line in _run(["squeue", "-h", "-o", "%i|%T|%r", "-j", ",".join(bases)]).splitlines():
        jid, state, reason = line.split("|")
        states[jid] = (state, "" if reason == "None" else reason)
    return states


def _lookup(states: dict[str, tuple[str, str]], job_id: str) -> tuple[str, str]:
    if job_id in states:
        return states[job_id]
    base, _, task = job_id.partition("_")
    for jid, value in states.items():  # a pending array: "12_[0-3]" or "12_[1,3]"
        if task and jid.startswith(f"{base}_[") and _in_range(int(task), jid[len(base) + 2:-1]):
            return value
    return ("UNKNOWN", "not in sacct/squeue (accounting purged?)")


def _in_range(task: int, spec: str) -> bool:
    for part in spec.split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        if int(lo) <= task <= int(hi or lo):
            return True
    return False


# submitit's first log line of each task: which node and rank it is
_TASK_LINE = re.compile(r"JobEnvironment\(job_id=[^,]*, hostname=([^,]+),.*global_rank=(\d+)\(")
# srun's own report of a task that died or failed: "srun: error: hsdn2: task 1: Killed"
_SRUN_TASK = re.compile(r"^srun: error: ([^:\s]+): tasks? ([\d,\-]+): (.+)$", re.M)


def task_nodes(exp: Path, job_id: str) -> dict[int, str]:
    """rank -> hostname of a Slurm job's tasks, from the first lines of their submitit logs."""
    nodes = {}
    for path in (exp / LOG_DIR).glob(f"{job_id}_*_log.out"):
        with open(path, errors="replace") as handle:
            head = handle.read(4096)
        match = _TASK_LINE.search(head)
        if match:
            nodes[int(match.group(2))] = match.group(1)
    return nodes


def log_error(exp: Path, job_id: str) -> str:
    """What went wrong, in one line, and where: the last exception line of each task's stderr; on
    several nodes prefixed ``rank R on NODE:``. A rank whose error only echoes another's
    (``PeerFailedError``) yields to that one; a task killed by a signal leaves no exception, and
    srun's ``srun: error: NODE: task R: Killed`` names it."""
    logs = sorted((exp / LOG_DIR).glob(f"{job_id}_*_log.err"), key=lambda p: _task_of(p, job_id))
    if not logs:
        return f"(no log at {exp / LOG_DIR / f'{job_id}_0_log.err'})"
    nodes = task_nodes(exp, job_id)
    where = (lambda rank: f"rank {rank} on {nodes[rank]}: ") if len(set(nodes.values())) > 1 else (lambda rank: "")
    found: list[tuple[int, str]] = []
    for path in logs:
        text = path.read_text(errors="replace")
        line = exception_line(text)
        if line:
            found.append((_task_of(path, job_id), line))
        for match in _SRUN_TASK.finditer(text):
            if "exit code" not in match.group(3):  # a signal: this task left no exception of its own
                return f"task {match.group(2)} on {match.group(1)}: {match.group(3).strip()}"[:400]
    causes = [f for f in found if "PeerFailedError" not in f[1]] or found
    if causes:
        rank, line = causes[0]
        return (where(rank) + line)[:400]
    lines = [l.strip() for l in logs[0].read_text(errors="replace").splitlines() if l.strip()]
    return (lines or ["(empty log)"])[-1][:400]


def _task_of(path: Path, job_id: str) -> int:
    middle = path.name[len(job_id) + 1:].split("_")[0]
    return int(middle) if middle.isdigit() else 0


def node_list(nodes: dict[int, str]) -> str:
    """`` on hsdn1 (rank 0), hsdn2 (rank 1)`` for a job on several nodes, else ''."""
    if len(set(nodes.values())) < 2:
        return ""
    by_node: dict[str, list[int]] = {}
    for rank, node in sorted(nodes.items()):
        by_node.setdefault(node, []).append(rank)
    return " on " + ", ".join(f"{n} (rank {','.join(map(str, r))})" for n, r in by_node.items())


def validation_progress(run: Path, nodes: dict[int, str] | None = None) -> str:
    """``rank0 12/25 rank1 11/25`` from the shard files and the run's sample selection; on several
    nodes each rank names its node (``rank1@hsdn2 11/25``)."""
    shards = sorted((run / "shards").glob("rank*.jsonl"), key=lambda p: (len(p.name), p.name))
    done = {int(p.stem[4:]): sum(1 for _ in iter_jsonl(p)) for p in shards}
    total = _sample_count(run)
    manifest = _json(run / "manifest.json")
    world = int(manifest.get("world_size") or max(len(done), 1))
    nodes = nodes if nodes and len(set(nodes.values())) > 1 else {}
    name = lambda r: f"rank{r}@{nodes[r]}" if r in nodes else f"rank{r}"  # noqa: E731
    if total is None:
        return " ".join(f"{name(r)} {n}/?" for r, n in sorted(done.items())) or "starting"
    parts = [f"{name(r)} {done.get(r, 0)}/{len(range(r, total, world))}" for r in range(world)]
    return f"{' '.join(parts)} ({sum(done.values())}/{total} samples)"


def _sample_count(run: Path) -> int | None:
    from hsd.config import load_config
    from hsd.data import select_samples

    if not (run / "config.yaml").exists():
        return None
    try:
        return len(select_samples(load_config(run / "config.yaml").data))
    except HsdError:
        return None


def training_progress(run: Path, nodes: dict[int, str] | None = None) -> str:
    """``step 3/10``; every rank takes each step together, so the nodes are only named."""
    steps = [e["step"] for e in iter_jsonl(run / "train_log.jsonl") if "step" in e]
    total = _json(run / "manifest.json").get("total_steps", "?")
    return f"step {steps[-1] if steps else 0}/{total}{node_list(nodes or {})}"


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


PROGRESS = {"validate": validation_progress, "train": training_progress}


def detail(exp: Path, entry: dict[str, Any], state: Status, reason: str, book: dict[str, Any]) -> str:
    """What a user wants to know next to a state."""
    if state is Status.FAILED:
        return entry.get("error") or (f"{reason}: " if reason else "") + log_error(exp, entry["job_id"])
    if state is Status.RUNNING and entry["kind"] in PROGRESS:
        nodes = task_nodes(exp, entry["job_id"]) if book["executor"] == "slurm" else {}
        return PROGRESS[entry["kind"]](run_path(exp, entry), nodes)
    if state is Status.PENDING and reason:
        return f"waiting: {reason}" + (" (never: a stage it needs failed)" if "NeverSatisfied" in reason else "")
    if state is Status.CANCELLED:
        failed = [e["stage"] for e in book["jobs"] if e["step"] in entry["after"] and e["state"] != Status.COMPLETED]
        if entry.get("error") or reason:
            return entry.get("error") or reason
        return f"never ran: {', '.join(failed)} did not complete" if failed else "cancelled"
    if state is Status.COMPLETED:
        return entry["run_dir"] if entry["run_dir"] != "." else "reports written"
    return reason


def _local_state(entry: dict[str, Any], book: dict[str, Any], driver_gone: bool) -> tuple[Status, str]:
    """A job recorded RUNNING whose process group is gone was LOST (its ``hsd submit`` was killed);
    one still PENDING when no ``hsd submit`` runs the experiment any more never started."""
    state = Status.parse(entry["state"])
    if state is Status.RUNNING and not _job_alive(entry, book):
        return Status.LOST, "its processes are gone (hsd submit was killed?): hsd submit resume runs it again"
    if state is Status.PENDING and driver_gone:
        return Status.CANCELLED, "never started: the hsd submit that was to run it ended first"
    return state, ""


def _job_alive(entry: dict[str, Any], book: dict[str, Any]) -> bool:
    if entry.get("process"):
        return local.job_alive(entry["process"])
    if book["executor"] == "debug":  # the job runs inside hsd submit
        return isinstance(book.get("driver"), dict) and local.driver_alive(book["driver"])
    # written before jobs were process groups of their own: the controller's pid
    return entry["job_id"].isdigit() and local.alive(int(entry["job_id"]), None)


def driver_gone(book: dict[str, Any]) -> bool:
    """No ``hsd submit`` runs this local experiment any more."""
    driver = book.get("driver")
    if not isinstance(driver, dict):  # written before the driver was recorded: only its jobs tell
        return not any(_job_alive(e, book) for e in book["jobs"] if Status.parse(e["state"]) is Status.RUNNING)
    return not local.driver_alive(driver)


def collect(exp: Path) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    """(jobs.json contents, rows of stage, job id, state, detail), states refreshed as
    :class:`Status` words; the reason for a state in each entry's ``reason``."""
    book = load_book(exp)
    slurm = book["executor"] == "slurm"
    states = slurm_states([e["job_id"] for e in book["jobs"]]) if slurm else {}
    driver = book.get("driver") if isinstance(book.get("driver"), dict) else {}
    elsewhere = not slurm and not local.on_this_host(driver)
    gone = not slurm and not elsewhere and driver_gone(book)
    for entry in book["jobs"]:
        if elsewhere:  # processes this host cannot see
            state, reason = Status.parse(entry["state"]), f"run from host {driver['host']}: hsd status there sees them"
        elif not slurm:
            state, reason = _local_state(entry, book, gone)
        elif entry["job_id"] == "-":  # never submitted
            state, reason = Status.parse(entry["state"]), ""
        else:
            word, reason = _lookup(states, entry["job_id"])
            state = Status.parse(word)
            if word.split(" ")[0] != state.value:  # TIMEOUT, OUT_OF_MEMORY, REQUEUED ...: Slurm's own word
                reason = f"slurm: {word}" + (f" ({reason})" if reason else "")
        entry["state"], entry["reason"] = state.value, reason
    rows = [(e["stage"], e["job_id"], e["state"], detail(exp, e, Status(e["state"]), e["reason"], book))
            for e in book["jobs"]]
    return book, rows


def attempts(entry: dict[str, Any]) -> str:
    """``2 (1: 41 FAILED)``: this is the entry's 2nd attempt; earlier job ids and how they ended."""
    earlier = entry.get("attempts", [])
    if not earlier:
        return "1"
    parts = [f"{i + 1}: {a['job_id']} {a['state']}" for i, a in enumerate(earlier)]
    return f"{len(earlier) + 1} ({', '.join(parts)})"
