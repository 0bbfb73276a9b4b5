"""Holdings keep exactly the rows a plain list of in-flight messages would, whatever the order
of acks, unpacks and timeouts, and across the copies that drop acked rows."""

from __future__ import annotations

from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from linemq.broker.delivery import holdings as holdings_module
from linemq.broker.delivery.holdings import Holdings

Row = tuple[int, str, float, float]  # offset, id, sent, deadline


def make_id(counter: int) -> str:
    return f"msg_1764776036123_{counter:08x}"


def rows_of(h: Holdings) -> list[Row]:
    return [(h.offsets[r], h.id_at(r), h.sent_at(r), h.deadline_at(r)) for r in h.rows()]


step = st.one_of(
    st.tuples(st.just("add"), st.integers(1, 12)),
    st.tuples(st.just("ack"), st.integers(0, 1000)),
    st.tuples(st.just("ack_next"), st.integers(0, 1000), st.integers(1, 6)),
    st.tuples(st.just("take"), st.lists(st.integers(0, 1000), max_size=4)),
    st.tuples(st.just("expire"), st.integers(0, 40)),
    st.tuples(st.just("unknown"), st.integers(0, 1000)),
    st.tuples(st.just("touch"), st.integers(0, 1000)),
)


@given(st.lists(step, max_size=60))
def test_holdings_match_a_list_of_held_rows(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    with mock.patch.object(holdings_module, "SQUEEZE_MIN", 3):
        h = Holdings()
        model: list[Row] = []
        counter = offset = 0
        for clock, (op, *args) in enumerate(steps):
            if op == "add":
                rows = [
                    (offset + i + 1, make_id(counter + i), float(clock), clock + 10.0)
                    for i in range(args[0])
                ]
                counter, offset = counter + args[0] + 1, offset + args[0] + 2
                h.add([r[1] for r in rows], [r[0] for r in rows], clock, clock + 10.0)
                model += rows
            elif op == "ack" and model:
                row = model.pop(args[0] % len(model))
                assert h.ack(row[1].encode()) == row[0]
                assert h.ack(row[1].encode()) == -1  # a second ack finds nothing
            elif op == "ack_next" and model:
                start = args[0] % len(model)
                chosen = model[start : start + args[1]]
                got = h.ack_next([r[1] for r in chosen])
                if got is not None:  # only ever the right rows; otherwise nothing changes
                    assert got == [r[0] for r in chosen]
                    del model[start : start + len(chosen)]
            elif op == "take" and model:
                picked = sorted({i % len(model) for i in args[0]})
                held = list(h.rows())
                assert h.take([held[i] for i in picked]) == [model[i] for i in picked]
                model = [r for i, r in enumerate(model) if i not in picked]
            elif op == "expire":
                due = [r for r in model if r[3] <= args[0]]
                assert h.take(h.expired(args[0])) == due
                model = model[len(due) :]
            elif op == "touch" and model:
                i = args[0] % len(model)
                touched = (*model.pop(i)[:3], clock + 10.0)  # due the latest: last in order
                h.touch(list(h.rows())[i], clock + 10.0)
                model.append(touched)
            elif op == "unknown":
                assert h.ack(make_id(10**6 + args[0]).encode()) == -1
                if model:
                    assert h.ack(model[0][1][:-1].encode()) == -1  # a prefix is not the id
            assert rows_of(h) == model
            assert len(h) == len(model)
            assert h.lowest_offset() == min((r[0] for r in model), default=None)
            if model:
                assert h.first_deadline() == model[0][3]


def test_acks_in_delivery_order_are_taken_a_run_at_a_time() -> None:
    h = Holdings()
    ids = [make_id(i) for i in range(10)]
    h.add(ids, list(range(1, 11)), 1.0, 5.0)
    assert h.ack(ids[0].encode()) == 1
    assert h.ack_next(ids[1:4]) == [2, 3, 4]
    assert h.ack_next(ids[5:7]) is None  # not the next rows: nothing changes
    assert h.ack_next([*ids[4:6], make_id(99)]) is None
    joined = ids[4] + ids[5]  # the same bytes, cut in another place: not these ids
    assert h.ack_next([joined[:20], joined[20:]]) is None
    assert len(h) == 6
    assert h.ack_next(ids[4:]) == [5, 6, 7, 8, 9, 10]
    assert len(h) == 0 and h.lowest_offset() is None


def test_ids_of_another_shape_are_held_too() -> None:
    """Ids of other lengths (messages of an earlier release) and non-ASCII ids are held,
    found and acked like the others; a shorter id is never found as a prefix."""
    h = Holdings()
    h.add(["legacy-7"], [1], 1.0, 5.0)
    h.add([make_id(2), "legacy-8", "msg_1764776036123_0000000\xe9"], [2, 3, 4], 1.0, 5.0)
    assert [h.id_at(r) for r in h.rows()] == [
        "legacy-7",
        make_id(2),
        "legacy-8",
        "msg_1764776036123_0000000\xe9",
    ]
    assert h.ack(b"legacy") == -1
    assert h.ack(b"legacy-8") == 3
    assert h.ack("msg_1764776036123_0000000\xe9".encode()) == 4
    assert h.ack(make_id(2).encode()) == 2
    assert h.ack(b"legacy-7") == 1
    assert len(h) == 0
