"""Durable storage: per-topic segmented logs, the store that owns them, and journals.

Knows nothing of sockets, groups or commands; the rest of the broker asks it for
records by offset.
"""

from linemq.broker.storage.journal import Journal
from linemq.broker.storage.log_store import Commit, Footprint, LogStore, LogUpkeep, Store, TopicView
from linemq.broker.storage.memory_store import MemoryStore
from linemq.broker.storage.records import Record, StorageError
from linemq.broker.storage.retention import RetentionResult, SegmentInfo
from linemq.broker.storage.segment import SegmentFormatError
from linemq.broker.storage.store import FileStore
from linemq.broker.storage.ticket import Appended, Ticket
from linemq.broker.storage.topic_log import TopicLog

__all__ = [
    "Appended",
    "Commit",
    "FileStore",
    "Footprint",
    "Journal",
    "LogStore",
    "LogUpkeep",
    "MemoryStore",
    "Record",
    "RetentionResult",
    "SegmentFormatError",
    "SegmentInfo",
    "StorageError",
    "Store",
    "Ticket",
    "TopicLog",
    "TopicView",
]
