from __future__ import annotations

import pytest

from workerfleet.worker.retry import backoff_seconds, exponential_seconds


def test_exponential_doubles_from_base_up_to_cap() -> None:
    assert [exponential_seconds(n, 1.0, 10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert exponential_seconds(0, 1.0, 10.0) == 1.0
    assert exponential_seconds(10_000, 1.0, 600.0) == 600.0  # no overflow


def test_without_jitter_the_delay_is_the_exponential() -> None:
    assert backoff_seconds(3, 1.0, 600.0, "none") == 4.0


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.999])
def test_equal_jitter_keeps_at_least_half_the_step(fraction: float) -> None:
    delay = backoff_seconds(4, 1.0, 600.0, "equal", rng=lambda: fraction)
    assert delay == pytest.approx(4.0 + fraction * 4.0)


def test_full_jitter_spreads_over_the_whole_step_but_not_below_base() -> None:
    assert backoff_seconds(4, 1.0, 600.0, "full", rng=lambda: 0.5) == 4.0
    assert backoff_seconds(4, 1.0, 600.0, "full", rng=lambda: 0.0) == 1.0


@pytest.mark.parametrize("jitter", ["none", "equal", "full"])
@pytest.mark.parametrize("attempt", [1, 2, 5, 20, 200])
@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.999])
def test_delay_always_between_base_and_cap(jitter: str, attempt: int, fraction: float) -> None:
    delay = backoff_seconds(attempt, 2.0, 300.0, jitter, rng=lambda: fraction)  # type: ignore[arg-type]
    assert 2.0 <= delay <= 300.0


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="negative"):
        backoff_seconds(1, -1.0, 10.0)
    with pytest.raises(ValueError, match="jitter"):
        backoff_seconds(1, 1.0, 10.0, "wild")  # type: ignore[arg-type]
