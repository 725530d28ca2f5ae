"""A job of ``hsd.distributed`` alone, for the fault tests: ``python _dist_worker.py MODE VICTIM PEER_TIMEOUT_S``.

Every rank joins the group, then (by MODE) one rank raises, is SIGKILLed or stopped, or rank 0's
``main_only`` step fails; the survivors then wait in a barrier, where without the watchdog
they would stay for the group's two-hour timeout.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from hsd import distributed


def job(mode: str, victim: int, peer_timeout_s: float) -> str:
    with distributed.session("cpu", peer_timeout_s=peer_timeout_s) as env:  # the bootstrap validate runs in
        distributed.barrier()  # everyone is up and watching
        if mode == "raise" and env.rank == victim:
            raise ValueError(f"boom on rank {env.rank}")  # not an HsdError: any exception counts
        if mode in ("kill", "hang") and env.rank == victim:  # hang: alive, sockets open, silent (as NCCL sees a dead peer)
            os.kill(os.getpid(), signal.SIGKILL if mode == "kill" else signal.SIGSTOP)
        if mode == "main_only":
            distributed.main_only(lambda: {}["no such key"])
        if mode == "ok":
            assert distributed.main_only(lambda: f"made by rank {env.rank}") == "made by rank 0"
            if env.rank == 1:
                time.sleep(4)  # a slow but live peer is no failure
        distributed.barrier()
    return f"rank {env.rank} done"


def submitit_job(mode: str, victim: int, peer_timeout_s: float) -> str:
    """The same under submitit: the job's tasks get their rank variables as hsd's jobs do."""
    from jobs.base import distributed_environment

    with distributed_environment():
        return job(mode, victim, peer_timeout_s)


if __name__ == "__main__":
    print(job(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])), flush=True)
