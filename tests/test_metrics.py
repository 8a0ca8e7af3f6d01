"""Prometheus metrics (API.md §9): scraped over HTTP and from the library's registry, parsed with
``prometheus_client.parser``; each figure compared with what the test itself did."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import threadbox
import threadbox.metrics
from httpx_sse import connect_sse
from live_server import live_server
from prometheus_client.parser import text_string_to_metric_families
from threadbox import Mailbox, Message
from threadbox.errors import PendingNotFound
from threadbox.infrastructure.http import create_app

TOKEN = "metrics-token"


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def commands(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    """``threadbox_commands_total`` as ``{"command/outcome": count}``."""
    found = {}
    for (name, labels), value in samples.items():
        if name == "threadbox_commands_total":
            label = dict(labels)
            found[f"{label['command']}/{label['outcome']}"] = value
    return found


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    with threadbox.open(f"sqlite:///{tmp_path / 'm.db'}") as mb:
        yield mb


def test_commands_are_counted_by_outcome_and_timed(mailbox: Mailbox) -> None:
    mailbox.deliver("t1", [Message.user("a", id="m1"), Message.user("b", id="m2")])
    mailbox.deliver("t1", [Message.user("a", id="m1")])  # the very same delivery: a no-op
    mailbox.edit("t1", "m1", Message.user("a2", id="m1"))
    with pytest.raises(PendingNotFound):
        mailbox.retract("t1", "nope")
    mailbox.freeze("t1", "new_run", "r1")
    body, content_type = threadbox.metrics.exposition(mailbox)
    assert content_type.startswith("text/plain")
    samples = scrape(body.decode())
    assert commands(samples) == {
        "deliver/ok": 1,
        "deliver/unchanged": 1,
        "edit/ok": 1,
        "retract/pending_not_found": 1,
        "freeze/ok": 1,
    }
    assert samples[("threadbox_command_seconds_count", (("command", "deliver"),))] == 2
    assert samples[("threadbox_command_seconds_sum", (("command", "deliver"),))] > 0
    assert samples[("threadbox_store_up", ())] == 1


def test_a_lost_race_is_a_retried_conflict(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    with threadbox.open(url) as first, threadbox.open(url) as second:
        first.deliver("t1", [Message.user("a", id="a")])  # ``first`` now holds t1 in its cache
        second.deliver("t1", [Message.user("b", id="b")])  # ... which this write makes stale
        first.deliver("t1", [Message.user("c", id="c")])  # first try conflicts, the retry wins
        samples = scrape(threadbox.metrics.exposition(first)[0].decode())
        assert samples[("threadbox_conflicts_retried_total", ())] == 1
        assert commands(samples) == {"deliver/ok": 2}


def test_view_lag_counts_the_events_not_applied_yet(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lag.db'}"
    with threadbox.open(url) as writer, threadbox.open(url) as reader:
        reader.views.catch_up()
        writer.deliver("t1", [Message.user("a", id="a")])  # ThreadOpened + MessagesDelivered
        writer.deliver("t1", [Message.user("b", id="b")])
        lagging = scrape(threadbox.metrics.exposition(reader)[0].decode())
        assert lagging[("threadbox_view_lag_events", ())] == 3
        reader.views.catch_up()
        caught_up = scrape(threadbox.metrics.exposition(reader)[0].decode())
        assert caught_up[("threadbox_view_lag_events", ())] == 0


def test_metrics_over_http_need_the_token_and_count_open_streams(mailbox: Mailbox) -> None:
    mailbox.deliver("t1", [Message.user("a", id="m1")])
    app = create_app(mailbox, token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with live_server(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/metrics").status_code == 401
        idle = http.get("/metrics", headers=auth)
        assert idle.status_code == 200
        assert idle.headers["content-type"].startswith("text/plain")
        assert scrape(idle.text)[("threadbox_open_streams", ())] == 0
        opened = threading.Event()
        done = threading.Event()

        def hold_a_stream() -> None:
            with (
                httpx.Client(base_url=url, timeout=10) as other,
                connect_sse(other, "GET", "/v1/threads/t1/events/stream", headers=auth) as source,
            ):
                for _ in source.iter_sse():
                    opened.set()
                    if done.wait(0.05):
                        return

        holder = threading.Thread(target=hold_a_stream, daemon=True)
        holder.start()
        assert opened.wait(10)
        assert scrape(http.get("/metrics", headers=auth).text)[("threadbox_open_streams", ())] == 1
        done.set()
        holder.join(10)
        deadline = time.monotonic() + 10
        while scrape(http.get("/metrics", headers=auth).text)[("threadbox_open_streams", ())]:
            assert time.monotonic() < deadline, "the stream was never counted as closed"
            time.sleep(0.05)


def test_a_mailbox_built_by_hand_has_no_registry_to_give(mailbox: Mailbox) -> None:
    bare = Mailbox(mailbox.store, mailbox.views)
    with pytest.raises(TypeError, match="no Prometheus metrics"):
        threadbox.metrics.registry(bare)
