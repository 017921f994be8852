"""Invariants of the per-key limiter (services/ratelimit.py), on a fake clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmux.registry.config import ApiKey, KeyLimits
from llmux.services.ratelimit import Limiter, RateLimited, duration


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def key(**limits: int) -> ApiKey:
    return ApiKey(name="k", key="k" * 16, limits=KeyLimits(**limits))


steps = st.lists(
    st.tuples(st.floats(0, 30), st.integers(0, 3000), st.integers(0, 3000), st.booleans()), max_size=60
)


@given(rpm=st.integers(1, 100), tpm=st.integers(1, 5000), steps=steps)
@settings(max_examples=300, deadline=None)
def test_admitted_work_never_exceeds_the_limits(rpm: int, tpm: int, steps: list[tuple[float, int, int, bool]]) -> None:
    """Admitted requests stay within the burst plus the refill; a refusal takes nothing (asking
    again at once is refused again); waiting ``Retry-After`` is enough; the headers never report
    more than the limit; a reservation is the estimate, at most a minute's tokens."""
    clock = Clock()
    limiter, k = Limiter(clock), key(requests_per_minute=rpm, tokens_per_minute=tpm)
    admitted = 0
    for dt, wanted, used, finish in steps:
        clock.now += dt
        try:
            reserved, headers = limiter.admit(k, wanted)
        except RateLimited as exc:
            assert exc.retry_after is not None and exc.retry_after > 0
            try:
                limiter.admit(k, wanted)
                raise AssertionError("admitted right after a refusal") from None
            except RateLimited as again:
                assert again.retry_after == exc.retry_after
            clock.now += exc.retry_after * (1 + 1e-9) + 1e-9
            reserved, headers = limiter.admit(k, wanted)
        admitted += 1
        assert admitted <= rpm + clock.now * rpm / 60 + 1e-6
        assert reserved == min(wanted, tpm)
        values = dict(headers)
        assert 0 <= int(values["x-ratelimit-remaining-requests"]) <= rpm
        assert 0 <= int(values["x-ratelimit-remaining-tokens"]) <= tpm
        if finish:
            limiter.settle("k", reserved, used)


@given(limit=st.integers(1, 5), steps=st.lists(st.booleans(), max_size=40))
def test_concurrency_counts_running_requests(limit: int, steps: list[bool]) -> None:
    limiter, k = Limiter(Clock()), key(concurrent_requests=limit)
    running = 0
    for start in steps:
        if start:
            try:
                limiter.admit(k, 0)
                running += 1
            except RateLimited:
                assert running == limit
        elif running:
            limiter.settle("k", 0, 0)
            running -= 1
        assert running <= limit


def test_requests_per_minute_burst_then_rate() -> None:
    clock, k = Clock(), key(requests_per_minute=3)
    limiter = Limiter(clock)
    for _ in range(3):
        limiter.admit(k, 0)
    try:
        limiter.admit(k, 0)
        raise AssertionError("a fourth request in the same instant was admitted")
    except RateLimited as exc:
        assert exc.retry_after is not None and abs(exc.retry_after - 20.0) < 1e-9  # one request per 20 s
        assert dict(exc.headers)["x-ratelimit-remaining-requests"] == "0"
        assert dict(exc.headers)["x-ratelimit-reset-requests"] == "1m0s"
    clock.now = 20.0
    limiter.admit(k, 0)


def test_a_settlement_refunds_or_charges() -> None:
    clock, k = Clock(), key(tokens_per_minute=600)
    limiter = Limiter(clock)
    reserved, _ = limiter.admit(k, 500)
    limiter.settle("k", reserved, 100)  # used less: 400 back
    _, headers = limiter.admit(k, 0)
    assert dict(headers)["x-ratelimit-remaining-tokens"] == "500"
    limiter.settle("k", 0, 0)
    reserved, _ = limiter.admit(k, 10)
    limiter.settle("k", reserved, 1000)  # used more than reserved: a debt the next request waits for
    try:
        limiter.admit(k, 1)
        raise AssertionError("admitted while in debt")
    except RateLimited as exc:
        assert exc.type == "tokens"


def test_reloaded_limits_keep_what_was_used() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    for _ in range(5):
        limiter.admit(key(requests_per_minute=10), 0)
    _, headers = limiter.admit(key(requests_per_minute=20), 0)
    assert dict(headers)["x-ratelimit-remaining-requests"] == "14"


def test_duration_format() -> None:
    assert [duration(s) for s in (0.02, 1.5, 59.9, 60, 361)] == ["20ms", "1.5s", "59.9s", "1m0s", "6m1s"]


# ---- the usage store: nothing lost or counted twice, whenever it flushes ----------------------

records = st.lists(
    st.tuples(
        st.sampled_from(["alice", "bob"]),
        st.sampled_from(["m", "n"]),
        st.integers(0, 10_000),
        st.integers(0, 10_000),
        st.booleans(),  # flush after this one
    ),
    max_size=40,
)


@given(records=records)
@settings(max_examples=100, deadline=None)
def test_usage_sums_are_the_records_sums_whenever_it_flushes(records: list[tuple[str, str, int, int, bool]]) -> None:
    from llmux.services.usage import UsageStore

    store = UsageStore(None)
    try:
        for client, model, prompt, completion, flush in records:
            store.request_done(
                {"client": client, "model": model, "physical": "p", "route": "/v1/chat/completions",
                 "prompt_tokens": prompt, "completion_tokens": completion}
            )
            if flush:
                store.flush()
        rows = {(r["client"], r["model"]): r for r in store.query(group_by=["client", "model"])}
        for (client, model), row in rows.items():
            mine = [r for r in records if r[:2] == (client, model)]
            assert row["requests"] == len(mine)
            assert row["prompt_tokens"] == sum(r[2] for r in mine)
            assert row["completion_tokens"] == sum(r[3] for r in mine)
        assert set(rows) == {r[:2] for r in records}
    finally:
        store.close()
