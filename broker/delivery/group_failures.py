"""What happens to a group's message that does not end in an ack: retries, dead letters, expiry.

A collaborator of ``ConsumerGroup`` (group.py), which hands it what it needs of
the group as callables; each ending is a transition of lifecycle.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Final

import structlog

from linemq.broker.delivery.backoff import RetryPolicy
from linemq.broker.delivery.context import DeliveryContext
from linemq.broker.delivery.dead_letters import encode_letter
from linemq.broker.delivery.lifecycle import GroupState
from linemq.broker.delivery.pending import Pending, Phase
from linemq.broker.delivery.scheduler import ReadyQueue
from linemq.broker.protocol.names import dead_letter_topic
from linemq.broker.storage.records import StorageError

log = structlog.get_logger(__name__)

TERMINATED: Final = "terminated"
"""The failure reason of a ``TERM``: a message marked so is dead-lettered, never delivered."""


Recall = Callable[[Pending, Callable[[Pending], None]], bool]
"""Give a message its record back: True if at hand, else the callable gets it once read."""


class GroupFailures:
    """A group's failure paths, and what every finished message goes through."""

    def __init__(
        self,
        topic: str,
        name: str,
        ctx: DeliveryContext,
        state: GroupState,
        queue: ReadyQueue,
        policy: RetryPolicy,
        *,
        schedule: Callable[[Pending], None],
        recall: Recall,
        pump_soon: Callable[[], None],
        spawn: Callable[[Coroutine[object, object, None]], None],
    ) -> None:
        self.topic = topic
        self.name = name
        self.ctx = ctx
        self.state = state
        self._queue = queue
        self.policy = policy  # the topic's (``--topic-policy``) or the broker-wide one
        self._schedule = schedule
        self._recall = recall
        self._pump_soon = pump_soon
        self._spawn = spawn
        self._compacting = False

    @property
    def failures(self) -> dict[str, int]:
        """Failed attempts by reason (STATS), durable: the journal lines that record them
        count them (lifecycle.py)."""
        return self.state.failures

    def terminate(self, p: Pending, error: str | None) -> None:
        """``TERM``: dead-letter now, whatever attempts are left.

        The decision is journaled first (a retry marked ``terminated``, with the
        consumer's text), so the reply waits for a line that a crash cannot lose:
        if the letter itself is not written yet, the next delivery of the message
        after a restart dead-letters it instead (``ConsumerGroup._deliver``).
        """
        p.reason = TERMINATED
        p.error = error or ""
        p.phase = Phase.WAITING
        p.retry_at = 0.0
        self.state.retry(p, failed=True)
        self.dead_letter(p)

    def fail(
        self, p: Pending, reason: str, *, delay: float | None = None, error: str | None = None
    ) -> None:
        """A failed attempt: retried, or dead-lettered if it was the last; either way the
        line that records it counts it."""
        p.reason = reason
        p.error = error or ""
        if self.out_of_attempts(p):
            self.dead_letter(p, failed=reason)
            return
        self.retry(p, self.policy.delay(p.attempts) if delay is None else delay, failed=True)

    def out_of_attempts(self, p: Pending) -> bool:
        """The next failure dead-letters ``p``: its own ``max_retries=`` (PUT) if it has
        one, else its topic's policy."""
        meta = p.meta
        if meta is not None and meta.max_retries is not None:
            return p.attempts > meta.max_retries
        return self.policy.should_dead_letter(p.attempts)

    def retry(self, p: Pending, delay: float, *, failed: bool = False) -> None:
        p.phase = Phase.WAITING
        p.retry_at = time.time() + delay if delay > 0 else 0.0
        self.state.retry(p, failed)
        self._schedule(p)
        self.ctx.changed()

    def dead_letter(
        self, p: Pending, reason: str | None = None, *, failed: str | None = None
    ) -> None:
        """Publish ``p`` to ``<topic>.dlq`` with why it failed, and finish it.

        One level only: a message of a ``.dlq`` topic is already a dead letter, kept
        in that topic, so it is finished without a letter of the letter. If the
        letter cannot be published (too many topics, a disk error, a topic name of an
        earlier release with no valid ``.dlq``), the message is retried later, never
        lost, and no connection is dropped for it.

        ``failed``: the failed attempt that makes it a dead letter. Whichever line
        records what happens now counts it: the ``x``, or the ``r`` of a retry, or
        (when the record must be read back first) an ``r`` at once, as a TERM
        writes, so the count never waits for a read.
        """
        if p.record is None and not self._recall(p, self.dead_letter):
            if failed is not None:
                p.phase, p.retry_at = Phase.WAITING, 0.0
                self.state.retry(p, failed=True)
            return
        record = p.record
        assert record is not None
        reason = reason or p.reason or "ack_timeout"
        dlq = dead_letter_topic(self.topic)
        fields = {"id": record.id, "offset": record.offset, "attempts": p.attempts}
        if dlq is None and not self.topic.endswith(".dlq"):
            log.error(
                "dead_letter_failed",
                topic=self.topic,
                group=self.name,
                **fields,
                reason=reason,
                error="the topic name has no valid dead-letter topic",
            )
            self.retry(p, self.ctx.config.retry_backoff_max, failed=failed is not None)
            return
        if dlq is not None:
            text = encode_letter(
                self.topic, self.name, record, p, reason, self.ctx.config.max_message_bytes
            )
            try:
                self.ctx.publish(dlq, text, None)
            except (OSError, StorageError, ValueError) as exc:
                log.error(
                    "dead_letter_failed",
                    topic=self.topic,
                    group=self.name,
                    **fields,
                    reason=reason,
                    error=str(exc),
                )
                self.retry(p, self.ctx.config.retry_backoff_max, failed=failed is not None)
                return
        log.warning(
            "dead_lettered" if dlq is not None else "dead_letter_kept",
            topic=self.topic,
            group=self.name,
            **fields,
            reason=reason,
        )
        self.state.dead_letter(p.offset, failed)
        self.done(p)

    def expire(self, p: Pending) -> None:
        if self.ctx.config.dead_letter_expired:
            self.dead_letter(p, "expired")
            return
        self.state.expire(p.offset)
        self.done(p)

    def gone(self, p: Pending) -> None:
        log.warning("pending_message_deleted", topic=self.topic, group=self.name, offset=p.offset)
        self.state.gone(p.offset)
        self.done(p)

    def done(self, p: Pending) -> None:
        """``p`` left the group for good: free its key, compact, deliver more at the tick.

        Acks come in bursts; pumping once per tick for all of them costs less than
        once per ack, and the next deliveries leave in the same tick either way.
        """
        self._queue.release(p)
        self.after_done()

    def after_done(self) -> None:
        if not self._compacting and self.state.needs_compaction():
            self._compacting = True
            self._spawn(self._compact())
        self._pump_soon()

    async def _compact(self) -> None:
        try:
            await self.state.compact()
        except StorageError as e:
            log.error("group_compaction_failed", topic=self.topic, group=self.name, error=str(e))
        finally:
            self._compacting = False
