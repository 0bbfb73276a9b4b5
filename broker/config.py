"""One frozen ``Config`` the CLI builds from flags and ``LINEMQ_*`` env; nothing else reads env."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

FsyncPolicy = Literal["always", "interval", "never"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8888
    data_dir: Path = Path("data")
    fsync: FsyncPolicy = "interval"
    fsync_interval_ms: int = 1000
    segment_bytes: int = 64 * MiB
    max_line_bytes: int = 1 * MiB
    max_pending_bytes: int = 16 * MiB
    max_message_bytes: int = 1_000_000
    max_connections: int = 20_000
    max_topics: int = 10_000
    max_subscriptions: int = 1_000
    max_inflight: int = 5
    ack_timeout: float = 30.0
    heartbeat_timeout: float = 30.0
    retry_backoff_base: float = 1.0
    retry_backoff_max: float = 60.0
    max_retries: int = 3
    auth_file: Path | None = None
    auth_timeout: float = 10.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    log_level: str = "info"
    log_format: Literal["json", "console"] = "console"
