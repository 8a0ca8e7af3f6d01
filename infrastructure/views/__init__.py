"""Where view rows live: in process memory, or in SQL tables beside the events (SQLite,
PostgreSQL); and how a process learns of new events (PostgreSQL LISTEN)."""
