"""A downstream consumer: every event of the store's log into a table of its own, exactly once.

    python examples/consumer.py STORE_URL CONSUMER_DB [--idle SECONDS] [--slow SECONDS]

It follows the log (``AsyncMailbox.follow``) and writes each event and the position it was at
in ONE transaction of its own database, so that the row and the position are both there or
neither is. Killed at any moment and started again, it goes on from the last position it
committed: every event lands once. (A consumer on PostgreSQL does the same with its own table
and transaction; the position is an opaque string, compared by nobody but threadbox.)
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor

import threadbox.aio
from threadbox import LogItem

SCHEMA = """
CREATE TABLE IF NOT EXISTS consumed (
    position TEXT PRIMARY KEY,          -- a second copy of an event would fail here
    thread_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS consumer_position (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    position TEXT NOT NULL
);
"""


class Table:
    """The consumer's own SQLite database, used from one thread (off the event loop)."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.executescript(SCHEMA)

    def position(self) -> str:
        """Where the last committed transaction left off ("": before the first event)."""
        row = self.db.execute("SELECT position FROM consumer_position WHERE id = 1").fetchone()
        return str(row[0]) if row else ""

    def take(self, item: LogItem) -> None:
        """The event and its position, in one transaction."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(
                "INSERT INTO consumed VALUES (?, ?, ?, ?)",
                (item.position, item.thread_id, item.event.version, item.event.type),
            )
            self.db.execute(
                "INSERT INTO consumer_position VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET position = excluded.position",
                (item.position,),
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise


async def consume(url: str, path: str, idle: float, slow: float = 0.0) -> int:
    """Follow the log from where ``path`` left off until nothing new comes for ``idle``
    seconds; the number of events taken."""
    own = ThreadPoolExecutor(1, thread_name_prefix="consumer-db")  # its database's one thread
    loop = asyncio.get_running_loop()
    table = await loop.run_in_executor(own, Table, path)
    taken = 0
    try:
        async with threadbox.aio.open(url) as amb:
            after = await loop.run_in_executor(own, table.position)
            async for item in amb.follow(after, timeout=idle):
                await loop.run_in_executor(own, table.take, item)
                taken += 1
                if slow:
                    await asyncio.sleep(slow)
    finally:
        await loop.run_in_executor(own, table.db.close)
        own.shutdown()
    return taken


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the threadbox store to follow")
    parser.add_argument("db", help="the consumer's own SQLite database")
    parser.add_argument("--idle", type=float, default=2.0, help="stop after this quiet time")
    parser.add_argument("--slow", type=float, default=0.0, help="pause after each event")
    args = parser.parse_args(argv)
    taken = asyncio.run(consume(args.url, args.db, args.idle, args.slow))
    print(f"took {taken} events")


if __name__ == "__main__":
    main(sys.argv[1:])
