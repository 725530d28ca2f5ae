"""The local executor's jobs as process groups, and the processes ``jobs.json`` names.

submitit runs a local job as a controller process that starts one process per task. hsd starts
the controller in a session of its own, so the controller and its tasks are one process group
whose id is the job id. Three things follow:

* a terminal's Ctrl-C reaches ``hsd submit`` only; it stops its job itself and records it
  (:mod:`jobs.interrupt`), instead of every process getting the signal in its own way;
* ``hsd submit``'s SIGINT/SIGTERM handler and ``hsd cancel`` stop a job whole with
  :func:`stop_group`: SIGTERM to the group (each task ends as on Ctrl-C, :mod:`jobs.base`),
  SIGKILL to whatever is left after :data:`STOP_GRACE_S`;
* ``hsd status`` tells a running job from a lost one by its group.

A process is named by its pid and its start time (``/proc/<pid>/stat``), so a recycled pid is
never taken for a job or for the ``hsd submit`` that ran the experiment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from submitit.local.local import LocalExecutor, LocalJob

STOP_GRACE_S = 10.0  # SIGTERM -> SIGKILL: a task ends on SIGTERM at its next Python bytecode
POLL_S = 0.05


def _stat(pid: int) -> Optional[list[str]]:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces): state,
    ppid, pgrp, ... (None where there is no such process, or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def start_time(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (None where /proc cannot tell)."""
    fields = _stat(pid)
    return fields[19] if fields else None  # field 22 of stat


def _group_members(pgid: int) -> Optional[int]:
    """Processes of group ``pgid`` that are not zombies (a zombie waits for its parent, it does not
    run); None without /proc."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    found = 0
    for name in names:
        fields = _stat(int(name)) if name.isdigit() else None
        if fields and fields[0] != "Z" and fields[2] == str(pgid):
            found += 1
    return found


def this_process() -> dict[str, Any]:
    """How ``jobs.json`` names the running ``hsd submit`` (its ``driver``)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "start_time": start_time(os.getpid())}


def driver_alive(driver: dict[str, Any]) -> bool:
    return alive(int(driver["pid"]), driver.get("start_time"))


def on_this_host(proc: dict[str, Any]) -> bool:
    return proc.get("host") in (None, socket.gethostname())


def alive(pid: int, started: Optional[str]) -> bool:
    """The process ``pid`` exists and is the one that started at ``started``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat(pid)
    if fields is None:  # no /proc: the pid is all there is to go by
        return True
    return fields[0] != "Z" and (started is None or fields[19] == started)


def group_alive(pgid: int, started: Optional[str]) -> bool:
    """Some process of the job's group is left. A group id is not reused while a member lives, so
    only a new process with the leader's pid (a different start time) can be mistaken for it."""
    now = start_time(pgid)
    if started is not None and now is not None and now != started:
        return False  # the pid now names another process
    members = _group_members(pgid)
    if members is not None:
        return members > 0
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int, started: Optional[str], grace: Optional[float] = None,
               reap: Callable[[], Any] = lambda: None) -> str:
    """SIGTERM to the job's process group, SIGKILL to what is left after ``grace`` seconds.
    ``reap`` polls the controller when it is this process's child (a zombie stays in the group).
    Returns how it ended: ``not running``, ``stopped``, ``killed`` or ``still running`` (a process
    stuck in the kernel outlives SIGKILL for a while)."""
    if not group_alive(pgid, started):
        return "not running"
    grace = STOP_GRACE_S if grace is None else grace
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return "stopped"
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            reap()
            if not group_alive(pgid, started):
                return "stopped" if sig == signal.SIGTERM else "killed"
            time.sleep(POLL_S)
    return "still running"


def job_process(job: Any) -> Optional[dict[str, Any]]:
    """How ``jobs.json`` names a local job just submitted (its ``process``); None for the debug
    executor's, which runs inside ``hsd submit``."""
    process = getattr(job, "_process", None)
    if process is None:
        return None
    return {"pgid": process.pid, "start_time": start_time(process.pid)}


def job_alive(process: dict[str, Any]) -> bool:
    return group_alive(int(process["pgid"]), process.get("start_time"))


def stop_job(process: dict[str, Any], reap: Callable[[], Any] = lambda: None) -> str:
    return stop_group(int(process["pgid"]), process.get("start_time"), reap=reap)


class GroupLocalExecutor(LocalExecutor):
    """submitit's local executor, its controller started in a new session (a process group of its
    own: see the module docstring). :func:`jobs.executor.make_executor` puts it in place of the
    ``LocalExecutor`` that ``AutoExecutor(cluster="local")`` builds."""

    def _submit_command(self, command: str) -> LocalJob:
        ntasks = self.parameters.get("tasks_per_node", 1)
        n_gpus = self.parameters.get("gpus_per_node", 0)
        visible = self.parameters.get("visible_gpus", ())
        gpus = range(n_gpus) if visible == () else visible[:n_gpus]
        if self.parameters.get("setup"):
            raise ValueError("hsd's local executor does not take submitit's 'setup' commands")
        # as submitit 1.5's local.start_controller, plus start_new_session
        env = dict(os.environ, SUBMITIT_LOCAL_NTASKS=str(ntasks), SUBMITIT_LOCAL_COMMAND=command,
                   SUBMITIT_LOCAL_TIMEOUT_S=str(int(60 * self.parameters.get("timeout_min", 2.0))),
                   SUBMITIT_LOCAL_SIGNAL_DELAY_S=str(int(self.parameters.get("signal_delay_s", 30))),
                   SUBMITIT_LOCAL_NODEID="0", SUBMITIT_LOCAL_JOB_NUM_NODES="1",
                   SUBMITIT_STDERR_TO_STDOUT="1" if self.parameters.get("stderr_to_stdout") else "",
                   SUBMITIT_EXECUTOR="local", CUDA_VISIBLE_DEVICES=",".join(str(k) for k in gpus),
                   SUBMITIT_LOCAL_WITH_SHELL="")
        process = subprocess.Popen([sys.executable, "-m", "submitit.local._local", str(self.folder)],
                                   env=env, start_new_session=True)
        return LocalJob(folder=self.folder, job_id=str(process.pid), process=process, tasks=list(range(ntasks)))
