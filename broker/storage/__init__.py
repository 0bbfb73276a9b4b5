"""Durable storage: per-topic segmented logs, the store that owns them, and journals.

Knows nothing of sockets, groups or commands; the rest of the broker asks it for
records by offset.
"""

from linemq.broker.storage.journal import Journal
from linemq.broker.storage.records import Record, StorageError
from linemq.broker.storage.retention import RetentionResult, SegmentInfo
from linemq.broker.storage.segment import SegmentFormatError
from linemq.broker.storage.store import FileStore, Store
from linemq.broker.storage.topic_log import TopicLog

__all__ = [
    "FileStore",
    "Journal",
    "Record",
    "RetentionResult",
    "SegmentFormatError",
    "SegmentInfo",
    "StorageError",
    "Store",
    "TopicLog",
]
