"""The ready queue's order: priority first, then offset, whichever lane a message took."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker.delivery.group_state import Pending
from broker.delivery.scheduler import ReadyQueue
from broker.storage.records import NORMAL_PRIORITY, Meta


def pending(offset: int, priority: int | None) -> Pending:
    p = Pending(offset)
    p.meta = None if priority is None else Meta(priority=priority)
    return p


# (offset, priority or None for a plain PUB); pops happen between pushes.
step = st.one_of(
    st.tuples(st.integers(1, 60), st.one_of(st.none(), st.integers(0, 3))),
    st.just("pop"),
)


@given(st.lists(step, max_size=60))
def test_pops_follow_priority_then_offset(steps: list[tuple[int, int | None] | str]) -> None:
    queue = ReadyQueue()
    model: dict[int, int] = {}  # offset -> priority, what is queued now
    for s in steps:
        if s == "pop":
            p = queue.pop()
            if not model:
                assert p is None
                continue
            assert p is not None
            best = min(model, key=lambda o: (-model[o], o))
            assert p.offset == best
            del model[best]
        else:
            offset, priority = s
            if offset in model:  # a message is queued at most once
                continue
            queue.push(pending(offset, priority))
            model[offset] = NORMAL_PRIORITY if priority is None else priority
        assert queue.ready == len(model)


def test_a_retry_behind_newer_plain_messages_still_goes_first() -> None:
    queue = ReadyQueue()
    for offset in (5, 6, 7):
        queue.push(pending(offset, None))
    queue.push(pending(2, None))  # a retry of an older message
    assert [queue.pop().offset for _ in range(4)] == [2, 5, 6, 7]  # type: ignore[union-attr]
