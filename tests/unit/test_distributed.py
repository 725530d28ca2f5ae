"""hsd.distributed without a process group: device choice, rank-0 helper, failure messages."""

from __future__ import annotations

import pytest

from hsd import distributed
from hsd.errors import HsdError


@pytest.mark.parametrize("local_rank, visible, expected", [
    (0, 4, 0), (3, 4, 3),  # a node-wide launcher: every task sees all GPUs, rank k takes cuda:k
    (1, 1, 0), (3, 1, 0),  # --gpus-per-task / a CUDA_VISIBLE_DEVICES per task: its one GPU is cuda:0
    (5, 4, 1),  # more local ranks than visible GPUs: wrap around rather than ask for a device that is not there
    (2, 2, 0),
])
def test_device_index_is_the_local_rank_among_the_visible_devices(local_rank, visible, expected):
    assert distributed.device_index(local_rank, visible) == expected


def test_device_index_refuses_what_cannot_be_bound():
    with pytest.raises(HsdError, match="no CUDA device is visible.*model.device=cpu"):
        distributed.device_index(0, 0)
    with pytest.raises(HsdError, match="LOCAL_RANK=-1"):
        distributed.device_index(-1, 2)


def test_bind_device_on_cpu_touches_nothing(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.bind_device("cpu") == "cpu"
    assert distributed.LAUNCHER_LOCAL_RANK not in __import__("os").environ


def test_single_process_runs_main_only_in_place_and_raises_its_error():
    assert distributed.main_only(lambda: 42) == 42
    with pytest.raises(KeyError) as info:
        distributed.main_only(lambda: {}["missing"])
    assert info.value.hsd_all_ranks  # every rank raised it: nobody needs telling
    assert distributed.announce_failure(info.value) is info.value
    stop = SystemExit(75)  # the preemption exit every rank takes together: no failure to announce
    assert distributed.announce_failure(stop) is stop


def test_an_unpicklable_error_crosses_ranks_as_an_hsd_error():
    class Local(Exception):  # a class defined in a function cannot be pickled
        pass

    portable = distributed.portable_error(Local("bad thing"))
    assert isinstance(portable, HsdError) and str(portable) == "rank 0: Local: bad thing"
    same = ValueError("fine")
    assert distributed.portable_error(same) is same


def test_peer_timeout_is_a_checked_config_key():
    from hsd.config import ConfigError, load_config

    assert load_config(None).distributed.peer_timeout_s == distributed.PEER_TIMEOUT_S == 30.0
    assert load_config(None, ["distributed.peer_timeout_s=12.5"]).distributed.peer_timeout_s == 12.5
    with pytest.raises(ConfigError, match="'distributed.peer_timeout_s' must be float, got 'soon'"):
        load_config(None, ["distributed.peer_timeout_s=soon"])
    with pytest.raises(ConfigError, match="'distributed.peer_timeout_s' must be > 0, got 0"):
        load_config(None, ["distributed.peer_timeout_s=0"])
