"""Progress of long work (imports, rebuilds, verification): done/total with the rate and the
time left, the views' catch-up after an import reported too, on a terminal only."""

from __future__ import annotations

import io
from pathlib import Path

import threadbox
from rich.console import Console
from threadbox import Message
from threadbox.application import transfer
from threadbox.infrastructure.cli.session import Session
from threadbox.infrastructure.cli.views import progress_bars


def test_bars_show_done_of_total_the_rate_and_the_time_left_in_one_display() -> None:
    session = Session(env={})
    session.err = Console(file=io.StringIO(), force_terminal=True, width=160)
    with progress_bars(session, ("reading", "bytes"), ("importing", "events")) as (read, wrote):
        for step in range(1, 4):
            read(step * 1000, 3000)
            wrote(step, 3)
        session.err.print("")  # let the display refresh once more
    shown = session.err.file.getvalue()  # type: ignore[attr-defined]
    assert "reading" in shown and "importing" in shown and "eta" in shown
    assert "3000/3000" in shown and "3/3" in shown


def test_no_bars_in_a_pipe() -> None:
    session = Session(env={})
    session.err = Console(file=io.StringIO(), force_terminal=False)
    with progress_bars(session, ("reading", "bytes")) as (read,):
        read(1, 2)
    assert session.err.file.getvalue() == ""  # type: ignore[attr-defined]


def test_an_import_reports_the_views_catch_up_it_ends_with(tmp_path: Path) -> None:
    with threadbox.open("memory://") as source:
        for n in range(5):
            source.deliver(f"t{n}", [Message.user("hi", id=f"m{n}")])
        lines = list(transfer.export_lines(transfer.archive_of(source.store), []))
    with threadbox.open(f"sqlite:///{tmp_path / 'x.db'}") as target:
        archive = transfer.archive_of(target.store)
        streams = transfer.read_streams(archive, lines, 0)
        caught: list[tuple[int, int]] = []
        written = transfer.import_streams(
            target.store,
            target.views,
            streams,
            catch_up_progress=lambda d, t: caught.append((d, t)),
        )
        assert written == len(lines) == 10
        assert caught and caught[-1] == (10, 10)
