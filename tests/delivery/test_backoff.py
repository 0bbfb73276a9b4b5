"""Retry policy is pure: tested without sleeping."""

from linemq.broker.delivery.backoff import ExponentialBackoff, RetryPolicy


def test_backoff_doubles_from_base_up_to_the_cap() -> None:
    backoff = ExponentialBackoff(base=1.0, cap=60.0)
    assert [backoff.compute(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.compute(0) == 0
    assert backoff.compute(10_000) == 60


def test_max_retries_means_that_many_retries_after_the_first_delivery() -> None:
    policy = RetryPolicy(max_retries=3, backoff=ExponentialBackoff(1, 60))
    assert [policy.should_dead_letter(failures) for failures in range(1, 6)] == [
        False,
        False,
        False,
        True,
        True,
    ]
    assert RetryPolicy(0, ExponentialBackoff(1, 60)).should_dead_letter(1)
