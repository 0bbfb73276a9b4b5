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


def encode_purge_dlq(topic: str) -> bytes:
    """``PURGE <topic>.dlq``: only dead-letter topics can be purged, so take the base topic."""
    return f"PURGE {check_name(topic + DLQ_SUFFIX)}\n".encode()


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
