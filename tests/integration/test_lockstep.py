"""The lock-step protocol (hsd.inference.lockstep) on two real gloo ranks, without a model.

Every scenario checks what a deadlock or a desynchronised rank would break: both ranks make the
same number of collective ``run`` calls, an out-of-memory error on one rank halves both ranks'
chunk size, and an error anywhere ends every rank. One pair of processes runs all scenarios
(starting processes is what costs time here).
"""

from __future__ import annotations

import os
import socket

import pytest
import torch.multiprocessing as mp

pytestmark = [pytest.mark.integration, pytest.mark.faults]

# scenario -> HSD_INJECT_FAULT while it runs
SCENARIOS = {"oom_injected": "oom:1:1", "error": "", "oom_at_size_1": ""}


def _scenario(rank: int, scenario: str) -> tuple:
    """One scenario on this rank: (outcome, outputs or message, chunk sizes run, final size)."""
    import torch
    import torch.distributed as dist

    from hsd.inference.lockstep import Agreement, LockstepBackoff

    os.environ["HSD_INJECT_FAULT"] = SCENARIOS[scenario]
    calls: list[int] = []  # the sizes of this rank's chunks, one per collective run

    def run(chunk):
        calls.append(len(chunk))
        dist.all_reduce(torch.ones(1))  # the model's collective: a missed call on one rank would hang
        if scenario == "error" and rank == 0 and len(calls) == 2:
            raise ValueError("broken on rank 0")
        if scenario == "oom_at_size_1" and rank == 1:
            raise torch.OutOfMemoryError("too big on rank 1")
        return [x * 10 for x in chunk]

    items = list(range(9 if rank == 0 else 4))  # uneven: rank 1 runs out first and joins in finish()
    steps = LockstepBackoff(4, rank, Agreement(timeout_min=1))
    try:
        out = steps(items, list, run)
        steps.finish(list, run)
        return ("ok", out, calls, steps.size)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return (type(exc).__name__, str(exc), calls, steps.size)


def _rank_main(rank: int, port: int, queue) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        queue.put((rank, {name: _scenario(rank, name) for name in SCENARIOS}))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def results() -> dict[str, dict[int, tuple]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank_main, args=(r, port, queue)) for r in (0, 1)]
    for p in procs:
        p.start()
    by_rank = dict(queue.get(timeout=180) for _ in procs)
    for p in procs:
        p.join(30)
    return {name: {r: by_rank[r][name] for r in (0, 1)} for name in SCENARIOS}


def test_oom_injected_on_one_rank_halves_both_and_completes(results):
    res = results["oom_injected"]
    assert res[0][0] == "ok" and res[1][0] == "ok", res
    assert res[0][1] == [x * 10 for x in range(9)] and res[1][1] == [x * 10 for x in range(4)]
    assert res[0][3] == res[1][3] == 2, "both ranks halve the chunk size from 4 to 2"
    # rank 1's first attempt failed before any collective, so nobody ran it; then 2-sized chunks,
    # rank 1 joining rank 0's last three with empty ones
    assert res[0][2] == [2, 2, 2, 2, 1] and res[1][2] == [2, 2, 0, 0, 0]


def test_an_error_on_one_rank_ends_every_rank(results):
    res = results["error"]
    assert res[0][0] == "ValueError" and "broken on rank 0" in res[0][1]
    assert res[1][0] == "HsdError" and "another rank failed" in res[1][1]
    assert len(res[0][2]) == len(res[1][2]) == 2


def test_out_of_memory_at_batch_size_one_ends_every_rank(results):
    res = results["oom_at_size_1"]
    assert res[1][0] == "OutOfMemoryError"
    assert res[0][0] == "HsdError" and "out of memory at batch size 1" in res[0][1]
    assert res[0][3] == res[1][3] == 1  # 4 -> 2 -> 1, then both stop
    assert len(res[0][2]) == len(res[1][2]) == 3
