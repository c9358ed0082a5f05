"""chargelift_runtime.retry: the delays keep their semantics (initial, factor, maximum,
jitter) now that tenacity computes them, and the retry loop retries only what it may."""

from __future__ import annotations

import itertools

import pytest

from chargelift_runtime.retry import Backoff


def test_without_jitter_the_delays_grow_by_factor_up_to_maximum() -> None:
    backoff = Backoff(initial=0.5, maximum=5.0, factor=3.0, jitter=0.0)
    assert list(itertools.islice(backoff.delays(), 5)) == [0.5, 1.5, 4.5, 5.0, 5.0]
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 5.0, 5.0]
    assert backoff.delay(10_000) == 5.0  # no overflow


def test_jitter_moves_each_delay_by_at_most_its_fraction_and_never_above_maximum() -> None:
    backoff = Backoff(initial=1.0, maximum=4.0, factor=2.0, jitter=0.2)
    for _ in range(200):
        first, second, third, fourth = itertools.islice(backoff.delays(), 4)
        assert 0.8 <= first <= 1.2
        assert 1.6 <= second <= 2.4
        assert 3.2 <= third <= 4.0
        assert 3.2 <= fourth <= 4.0
    assert len({next(backoff.delays()) for _ in range(20)}) > 1


async def test_retrying_retries_until_success_and_reraises_what_it_may_not_retry() -> None:
    backoff = Backoff(initial=0.001, maximum=0.002)
    calls: list[int] = []
    seen: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("down")
        return "ok"

    retrying = backoff.retrying(
        lambda exc: isinstance(exc, OSError), before_sleep=lambda s: seen.append(s.attempt_number)
    )
    assert await retrying(flaky) == "ok"
    assert seen == [1, 2]

    async def refused() -> str:
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"):
        await backoff.retrying(lambda exc: isinstance(exc, OSError))(refused)
