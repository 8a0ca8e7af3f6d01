"""What a mailbox can be tuned by: input limits, retries, snapshots and its cache."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """Limits and tuning of a mailbox: the largest message (encoded bytes), the most entries
    a thread's pending zone may hold, attempts and backoff on write conflicts, how often
    threads are snapshotted, how many folded threads a process keeps."""

    max_message_bytes: int = 1024 * 1024
    max_pending: int = 10_000  # a delivery past it is pending_full (docs/semantics.md §4)
    max_attempts: int = 30
    backoff_base: float = 0.002
    backoff_cap: float = 0.05
    snapshot_interval: int = 8  # versions between snapshots, at least; see _snapshot_every
    snapshot_interval_max: int = 500
    cache_size: int = 1024
