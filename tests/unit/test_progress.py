"""hsd.progress: a line per interval (injected clock: no sleeping), always one at the end."""

from hsd.progress import Progress, duration


def test_a_line_per_interval_and_at_the_end_with_rate_and_eta() -> None:
    now, lines = [100.0], []
    p = Progress("validate rank 1", 10, 30.0, lines.append, clock=lambda: now[0])
    now[0] = 110.0
    assert p.update(2) is None  # 10 s < 30 s: nothing
    now[0] = 140.0
    assert p.update(4) == "validate rank 1: 4/10 samples (40%), 0.1 samples/s, elapsed 40s, eta 1m00s"
    now[0] = 141.0
    assert p.update(5) is None  # the interval counts from the last line
    now[0] = 150.0
    assert p.update(10, "loss 0.5000").endswith("elapsed 50s, eta 0s  loss 0.5000")  # done: always a line
    assert len(lines) == 2


def test_a_resumed_attempt_rates_only_its_own_work() -> None:
    now = [0.0]
    p = Progress("train", 100, 1.0, lambda line: None, unit="steps", start_at=50, clock=lambda: now[0])
    now[0] = 10.0
    assert "60/100 steps (60%), 1 steps/s, elapsed 10s, eta 40s" in p.update(60)


def test_durations() -> None:
    assert [duration(s) for s in (0, 42, 185, 3720)] == ["0s", "42s", "3m05s", "1h02m"]
