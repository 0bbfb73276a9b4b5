"""Topic and group names: the only client input that ever reaches a file path."""

import re
from typing import Final

MAX_NAME_LENGTH: Final = 200
DLQ_SUFFIX: Final = ".dlq"
NO_DEAD_LETTER_TOPIC: Final = (
    "invalid topic name: it must not end in '.' and may be 196 characters at most,"
    " so that <topic>.dlq is valid"
)
_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]{1,200}")


def is_valid_name(name: str) -> bool:
    """``[A-Za-z0-9_.-]``, 1-200 chars, no leading dot, no ``..``: safe as a file name."""
    return _NAME.fullmatch(name) is not None and not name.startswith(".") and ".." not in name


def is_valid_topic(name: str) -> bool:
    """A topic a client may create: a valid name whose dead-letter topic is valid too.

    ``<topic>.dlq`` is the topic's dead letters, so a topic may not end in ``.``
    (``t..dlq``) nor be longer than 196 characters. A ``.dlq`` topic needs no room:
    its messages are never dead-lettered again.
    """
    if not is_valid_name(name):
        return False
    if name.endswith(DLQ_SUFFIX):
        return True
    return len(name) <= MAX_NAME_LENGTH - len(DLQ_SUFFIX) and not name.endswith(".")


def dead_letter_topic(topic: str) -> str | None:
    """Where ``topic``'s dead letters go; None for a ``.dlq`` topic (one level only) or
    a name from an earlier release that has no valid one."""
    if topic.endswith(DLQ_SUFFIX):
        return None
    dlq = topic + DLQ_SUFFIX
    return dlq if is_valid_name(dlq) else None


def topic_matches(pattern: str, topic: str) -> bool:
    """NATS-style: ``*`` matches one dot-separated token, a trailing ``>`` one or more."""
    want = pattern.split(".")
    have = topic.split(".")
    for i, token in enumerate(want):
        if token == ">" and i == len(want) - 1:
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(have) == len(want)


def is_valid_pattern(pattern: str) -> bool:
    """A topic name whose dot-separated tokens may also be ``*``, or ``>`` as the last one."""
    if not pattern or len(pattern) > MAX_NAME_LENGTH or pattern.startswith("."):
        return False
    tokens = pattern.split(".")
    for i, token in enumerate(tokens):
        if token == "*" or (token == ">" and i == len(tokens) - 1):
            continue
        if not token or not _NAME.fullmatch(token):
            return False
    return True


def is_pattern(name: str) -> bool:
    return "*" in name or ">" in name


def pattern_covers(allow: str, pattern: str) -> bool:
    """Whether every topic ``pattern`` can match is also matched by ``allow``."""
    want = allow.split(".")
    have = pattern.split(".")
    for i, token in enumerate(want):
        if token == ">" and i == len(want) - 1:
            return len(have) > i
        if i >= len(have) or have[i] == ">":
            return False
        if token != "*" and token != have[i]:
            return False
    return len(have) == len(want)


DEAD_LETTER_SUFFIX: Final = ".dlq"


def is_dead_letter_topic(name: str) -> bool:
    """``<topic>.dlq``: written by the broker only, read and managed as its source topic."""
    return name.endswith(DEAD_LETTER_SUFFIX)


def source_topic(name: str) -> str:
    """The topic whose failures ``name`` holds (``orders`` for ``orders.dlq.dlq``), else ``name``.

    Works on patterns too: ``orders.*.dlq`` gives ``orders.*``.
    """
    while name.endswith(DEAD_LETTER_SUFFIX) and len(name) > len(DEAD_LETTER_SUFFIX):
        name = name[: -len(DEAD_LETTER_SUFFIX)]
    return name
