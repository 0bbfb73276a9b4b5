"""The ready queue's order: priority first, then offset, whichever lane a message took."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from linemq.broker.delivery.lifecycle import Pending
from linemq.broker.delivery.scheduler import ReadyQueue, priority_of
from linemq.broker.storage.records import NORMAL_PRIORITY, Meta


def pending(offset: int, priority: int | None) -> Pending:
    p = Pending(offset)
    p.meta = None if priority is None else Meta(priority=priority)
    return p


# (offset, priority or None for a plain PUB); pops happen between pushes; a list
# is a run of records taken from the log together (push_plain, else one by one).
priorities = st.one_of(st.none(), st.integers(0, 3))
step = st.one_of(
    st.tuples(st.integers(1, 60), priorities),
    st.just("pop"),
    st.integers(1, 60).flatmap(
        lambda first: st.lists(priorities, min_size=1, max_size=8).map(
            lambda prios: [(first + i, prio) for i, prio in enumerate(prios)]
        )
    ),
)
Step = tuple[int, int | None] | str | list[tuple[int, int | None]]


@given(st.lists(step, max_size=60))
def test_pops_follow_priority_then_offset(steps: list[Step]) -> None:
    queue = ReadyQueue()
    model: dict[int, int] = {}  # offset -> priority, what is queued now
    for s in steps:
        if isinstance(s, list):
            run = [pending(offset, prio) for offset, prio in s if offset not in model]
            if run and not queue.push_plain(run):
                for p in run:
                    queue.push(p)
            for p in run:
                model[p.offset] = priority_of(p)
        elif s == "pop":
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


def test_a_run_older_than_the_plain_lane_goes_through_the_heap() -> None:
    queue = ReadyQueue()
    queue.push(pending(10, None))
    run = [pending(5, None), pending(6, None)]  # e.g. read back after a SEEK
    if not queue.push_plain(run):
        for p in run:
            queue.push(p)
    assert [queue.pop().offset for _ in range(3)] == [5, 6, 10]  # type: ignore[union-attr]


def test_a_fifo_queue_lets_one_message_out_at_a_time_in_offset_order() -> None:
    """``ordering=fifo``: every message waits for the one before it to be done, whatever
    its priority or key, and an ack of the head (``release_fifo``) lets the next go."""
    q = ReadyQueue(fifo=True)
    assert not q.push_plain([pending(o, None) for o in (1, 2)])
    for o, prio in ((1, None), (2, 3), (3, None)):
        q.push(pending(o, prio))
    assert q.ready == 1 and q.parked == 2
    head = q.pop()
    assert head is not None and head.offset == 1 and q.pop() is None
    q.push(head)  # a retry: it is still the head
    assert q.pop() is head
    q.release_fifo([7, 1])
    nxt = q.pop()
    assert nxt is not None and nxt.offset == 2 and q.pop() is None
    q.release(nxt)  # dead-lettered or expired, as an ack
    last = q.pop()
    assert last is not None and last.offset == 3
