"""Message ids: the seed's shape, unique, also where the counter wraps."""

from __future__ import annotations

import re

from linemq.broker.engine.ids import IdGenerator

ID = re.compile(r"msg_\d+_[0-9a-f]{8}")


def test_ids_made_together_are_unique_and_shaped_like_the_seeds_across_a_wrap() -> None:
    ids = IdGenerator()
    ids._counter = 0xFFFFFFFF - 5  # the next run crosses the wrap
    made = ids.many(10, 1795450420.5) + ids.many(10, 1795450420.5) + [ids.next(1795450420.5)]
    assert all(ID.fullmatch(i) for i in made)
    assert len(set(made)) == len(made)
    assert made[4:6] == ["msg_1795450420500_ffffffff", "msg_1795450420500_00000000"]
    assert ids.many(1, 1795450420.5) == ["msg_1795450420500_00000010"]
