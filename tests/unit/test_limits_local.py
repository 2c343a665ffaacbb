"""LocalLimiter on a fake clock: grants, retry times, giving back, rate changes."""

from __future__ import annotations

import pytest

from tidings.engine.limits import Grant, LocalLimiter, RateLimiter, RedisLimiter, make_limiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def assert_grant(g: Grant, granted: int, retry_in_s: float) -> None:
    assert g.granted == granted
    assert g.retry_in_s == pytest.approx(retry_in_s)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> LocalLimiter:
    return LocalLimiter(clock=clock)


async def test_a_new_destination_starts_with_one_token(limiter: LocalLimiter) -> None:
    assert_grant(await limiter.acquire("d", 100, 50), 1, 0.01)


async def test_grants_up_to_the_burst_after_refill(limiter: LocalLimiter, clock: FakeClock) -> None:
    await limiter.acquire("d", 100, 1)  # burst = 10
    clock.now += 5.0
    assert_grant(await limiter.acquire("d", 100, 50), 10, 0.01)
    assert (await limiter.acquire("d", 100, 1)).granted == 0


async def test_grant_everything_wanted_answers_no_retry(
    limiter: LocalLimiter, clock: FakeClock
) -> None:
    await limiter.acquire("d", 100, 1)
    clock.now += 1.0
    assert await limiter.acquire("d", 100, 4) == Grant(4, 0.0)
    assert await limiter.acquire("d", 100, 0) == Grant(0, 0.0)


async def test_retry_in_is_the_time_until_the_next_whole_token(
    limiter: LocalLimiter, clock: FakeClock
) -> None:
    assert (await limiter.acquire("d", 4, 1)).granted == 1  # burst 1
    g = await limiter.acquire("d", 4, 1)
    assert_grant(g, 0, 0.25)
    clock.now += 0.1
    g = await limiter.acquire("d", 4, 3)
    assert_grant(g, 0, 0.15)
    clock.now += g.retry_in_s
    assert_grant(await limiter.acquire("d", 4, 3), 1, 0.25)


async def test_retry_in_is_never_zero_when_short(limiter: LocalLimiter, clock: FakeClock) -> None:
    await limiter.acquire("d", 1000, 1)
    clock.now += 1.0
    g = await limiter.acquire("d", 1000, 500)
    assert g.granted == 100
    assert g.retry_in_s > 0


async def test_long_run_rate(limiter: LocalLimiter, clock: FakeClock) -> None:
    total = 0
    for _ in range(1000):  # 10 s in steps of 10 ms
        total += (await limiter.acquire("d", 20, 5)).granted
        clock.now += 0.01
    assert 199 <= total <= 201


async def test_give_back_is_capped_by_the_burst(limiter: LocalLimiter, clock: FakeClock) -> None:
    await limiter.acquire("d", 30, 1)  # burst 3
    clock.now += 10.0
    assert (await limiter.acquire("d", 30, 3)).granted == 3
    await limiter.give_back("d", 30, 1)
    assert (await limiter.acquire("d", 30, 10)).granted == 1
    await limiter.give_back("d", 30, 100)
    assert (await limiter.acquire("d", 30, 10)).granted == 3


async def test_give_back_to_an_unknown_destination_or_old_rate_is_ignored(
    limiter: LocalLimiter,
) -> None:
    await limiter.give_back("nobody", 10, 5)
    assert (await limiter.acquire("nobody", 10, 5)).granted == 1
    await limiter.give_back("nobody", 20, 5)  # tokens of another rate's bucket
    assert (await limiter.acquire("nobody", 10, 5)).granted == 0


async def test_rate_change_rebuilds_the_bucket_with_at_most_one_token(
    limiter: LocalLimiter, clock: FakeClock
) -> None:
    await limiter.acquire("d", 100, 1)
    clock.now += 10.0  # full: 10 tokens
    g = await limiter.acquire("d", 200, 100)  # new burst 20, but no burst on reconfigure
    assert_grant(g, 1, 1 / 200)
    clock.now += 10.0
    assert (await limiter.acquire("d", 200, 100)).granted == 20
    g = await limiter.acquire("d", 5, 1)  # slower: a fresh bucket with one token
    assert g == Grant(1, 0.0)
    assert_grant(await limiter.acquire("d", 5, 1), 0, 0.2)


async def test_destinations_are_independent(limiter: LocalLimiter) -> None:
    assert (await limiter.acquire("a", 1, 1)).granted == 1
    assert (await limiter.acquire("a", 1, 1)).granted == 0
    assert (await limiter.acquire("b", 1, 1)).granted == 1


async def test_forget_drops_the_bucket(limiter: LocalLimiter, clock: FakeClock) -> None:
    await limiter.acquire("d", 1, 1)
    limiter.forget("d")
    assert (await limiter.acquire("d", 1, 1)).granted == 1


@pytest.mark.parametrize(
    ("rate", "n"), [(0, 1), (-1, 1), (float("inf"), 1), (float("nan"), 1), (1, -1)]
)
async def test_bad_arguments(limiter: LocalLimiter, rate: float, n: int) -> None:
    with pytest.raises(ValueError):
        await limiter.acquire("d", rate, n)
    with pytest.raises(ValueError):
        await limiter.give_back("d", rate, n)


async def test_make_limiter() -> None:
    local: RateLimiter = make_limiter(None)
    assert isinstance(local, LocalLimiter)
    await local.close()
    remote = make_limiter("redis://127.0.0.1:1")  # no I/O until used
    assert isinstance(remote, RedisLimiter)
    await remote.close()
