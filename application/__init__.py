"""The application layer: the ``Mailbox`` and what it orchestrates.

Commands go through the service (``service.py``: check the input, decide on the thread's
latest state, save through the repository, return the result), reads through the queries
(``queries.py``); storage is reached through the ports (``ports.py``) that
``threadbox.infrastructure`` implements.
"""
