"""The pure domain of threadbox: values, the selection rule, the thread's events and decisions.

Nothing here does I/O, reads a clock or generates ids: the application passes time and ids in.
"""
