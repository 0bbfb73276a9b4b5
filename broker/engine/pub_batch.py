"""The PUBs of one read, grouped by topic: appended as one batch, answered by one reply slot."""

from __future__ import annotations


class PubBatch:
    """Messages by topic in arrival order, and each message's topic (``order``).

    ``order`` is what lets a failed topic's publishes be answered ``ERR`` in place
    while the others in the same read are answered ``OK``.
    """

    __slots__ = ("by_topic", "order")

    def __init__(self) -> None:
        self.by_topic: dict[str, list[str]] = {}
        self.order: list[str] = []

    @classmethod
    def of(cls, topic: str, msg: str) -> PubBatch:
        batch = cls()
        batch.by_topic[topic] = [msg]
        batch.order.append(topic)
        return batch

    def __len__(self) -> int:
        return len(self.order)

    def add(self, topic: str, msg: str) -> None:
        msgs = self.by_topic.get(topic)
        if msgs is None:
            self.by_topic[topic] = [msg]
        else:
            msgs.append(msg)
        self.order.append(topic)

    def add_run(self, topic: str, msgs: list[str]) -> None:
        """Messages to one topic, in order (a read that publishes to one topic only)."""
        have = self.by_topic.get(topic)
        if have is None:
            self.by_topic[topic] = msgs
        else:
            have += msgs
        self.order += [topic] * len(msgs)
