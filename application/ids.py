"""Time-ordered unique ids (UUIDv7 form, RFC 9562) for messages delivered without one."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last = 0


def uuid7() -> str:
    """A UUIDv7 string; strictly increasing within this process, random across processes."""
    global _last
    with _lock:
        ms = time.time_ns() // 1_000_000
        # 48 bits of milliseconds, then 12 bits of sequence: bump past the last value issued.
        stamp = max(ms << 12, _last + 1)
        _last = stamp
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = ((stamp >> 12) << 80) | (0x7 << 76) | ((stamp & 0xFFF) << 64) | (0b10 << 62) | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
