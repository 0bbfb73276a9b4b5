"""Lines of the operator verbs ``PAUSE``, ``RESUME``, ``PURGE`` and ``DELETE``: pure encoders
and parsers.

Kept apart from ``clients/protocol.py`` so the commands that run a broker (rather
than move messages) stay together; ``Client.pause``/``resume``/``purge_dlq``/``delete_group``
send them.
"""

from __future__ import annotations

from linemq.clients.protocol import ProtocolError, check_name, check_topic_or_pattern

DLQ_SUFFIX = ".dlq"


def encode_pause(topic: str, group: str) -> bytes:
    return f"PAUSE {check_name(topic)} {check_name(group, 'group')}\n".encode()


def encode_resume(topic: str, group: str) -> bytes:
    return f"RESUME {check_name(topic)} {check_name(group, 'group')}\n".encode()


def encode_purge_dlq(topic: str, letter: str | None = None) -> bytes:
    """``PURGE <topic>.dlq [letter]``: only dead-letter topics can be purged, so take the base
    topic; ``letter`` (a dlq offset, dlq id or message id) removes just that letter."""
    if letter is not None and (not letter or any(c.isspace() for c in letter)):
        raise ValueError("a dead letter id must be non-empty and without whitespace")
    tail = f" {letter}" if letter is not None else ""
    return f"PURGE {check_name(topic + DLQ_SUFFIX)}{tail}\n".encode()


def encode_clean(topic: str, older: float | None = None, keep: int | None = None) -> bytes:
    """``CLEAN <topic> [older=<seconds>s] [keep=<n>]`` (at least one)."""
    if older is None and keep is None:
        raise ValueError("give older, keep, or both")
    words = ["CLEAN", check_name(topic)]
    if older is not None:
        if older < 0:
            raise ValueError("older must not be negative")
        words.append(f"older={older:g}s")
    if keep is not None:
        if isinstance(keep, bool) or keep < 0:
            raise ValueError("keep must be a non-negative integer")
        words.append(f"keep={keep}")
    return (" ".join(words) + "\n").encode()


def parse_cleaned(ok_text: str) -> int:
    """The count out of ``OK cleaned <count>``."""
    word, _, count = ok_text.partition(" ")
    if word != "cleaned" or not count.isdigit():
        raise ProtocolError(f"unexpected reply to CLEAN: OK {ok_text!r}")
    return int(count)


def parse_purged(ok_text: str) -> int:
    """The count out of ``OK purged <count>``."""
    word, _, count = ok_text.partition(" ")
    if word != "purged" or not count.isdigit():
        raise ProtocolError(f"unexpected reply to PURGE: OK {ok_text!r}")
    return int(count)


def encode_delete_topic(topic: str, *, force: bool = False) -> bytes:
    """``DELETE <topic> [force=true]``: a topic, its dead letters and their groups."""
    return f"DELETE {check_name(topic)}{' force=true' if force else ''}\n".encode()


def parse_topic_deleted(ok_text: str, topic: str) -> None:
    if ok_text != f"deleted {topic}":
        raise ProtocolError(f"unexpected reply to DELETE: OK {ok_text!r}")


def encode_delete_group(topic: str, group: str, *, force: bool = False) -> bytes:
    """``DELETE <topic> <group> [force]``; ``topic`` may be a pattern (a wildcard group)."""
    words = ["DELETE", check_topic_or_pattern(topic), check_name(group, "group")]
    if force:
        words.append("force")
    return (" ".join(words) + "\n").encode()
