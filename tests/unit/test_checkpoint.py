"""hsd.training.checkpoint: only sealed checkpoints count; SIGUSR2 becomes a flag, then a clean exit."""

from __future__ import annotations

import os
import signal

import pytest

from hsd.training import checkpoint


def _make(run, name, sealed=True):
    path = checkpoint.checkpoints_dir(run) / name
    path.mkdir(parents=True)
    (path / "some_state.pt").write_bytes(b"x")
    if sealed:
        (path / checkpoint.MARKER).write_text("{}")
    return path


def test_newest_complete_checkpoint_wins(tmp_path):
    assert checkpoint.latest(tmp_path) is None
    _make(tmp_path, "step_0000010")
    _make(tmp_path, "step_0000100")
    _make(tmp_path, "step_0000200", sealed=False)  # killed while saving (should not exist, but be safe)
    _make(tmp_path, ".tmp-step_0000300", sealed=False)
    assert checkpoint.latest(tmp_path).name == "step_0000100"  # numeric, not just lexical, order
    removed = checkpoint.remove_partial(tmp_path)
    assert sorted(removed) == [".tmp-step_0000300", "step_0000200"]
    assert [p.name for p in checkpoint.complete_checkpoints(tmp_path)] == ["step_0000010", "step_0000100"]


def test_sigusr2_sets_a_flag_and_hand_over_chains_then_exits(tmp_path):
    seen = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(signum))
    try:
        with checkpoint.PreemptionGuard() as guard:
            assert not guard.requested
            os.kill(os.getpid(), signal.SIGUSR2)
            assert guard.requested and not seen  # the step in progress is not interrupted
            with pytest.raises(checkpoint.Preempted) as info:
                guard.hand_over(step=7)
        assert seen == [signal.SIGUSR2]  # the previous handler (submitit's requeue) ran after the save
        assert info.value.code == checkpoint.PREEMPTED_EXIT_CODE and info.value.step == 7
        assert isinstance(info.value, SystemExit)
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_guard_restores_the_previous_handler():
    def mine(signum, frame):
        return None

    previous = signal.signal(signal.SIGUSR2, mine)
    try:
        with checkpoint.PreemptionGuard():
            assert signal.getsignal(signal.SIGUSR2) is not mine
        assert signal.getsignal(signal.SIGUSR2) is mine
    finally:
        signal.signal(signal.SIGUSR2, previous)
