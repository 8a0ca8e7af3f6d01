"""API.md §6: ``Mailbox.start_run`` and ``Run``, and the agent loop of docs/embedding.md run as
written, with interrupts committed by another process (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import re
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import threadbox
from threadbox import DeliveryMode, Mailbox, Message, Run
from threadbox.errors import InvalidInput, RunInterrupted, RunNotRunning, ThreadBusy

ROOT = Path(__file__).resolve().parent.parent
LIVENESS = 5.0  # seconds: a generous bound for "the flag is pushed", never a speed claim


def docs_loop() -> dict[str, Any]:
    """The first Python block of docs/embedding.md, run: its functions, by name."""
    page = (ROOT / "docs" / "embedding.md").read_text()
    code = re.findall(r"```python\n(.*?)```", page, re.S)[0]
    namespace: dict[str, Any] = {"__name__": "docs_embedding"}
    exec(compile(code, "docs/embedding.md", "exec"), namespace)
    return namespace


def interrupt_in_process(url: str, thread_id: str, rollback: bool) -> tuple[str, float]:
    """Another OS process: deliver an interrupting message and start the run it triggers;
    that run's id and the wall-clock time the interrupt's write returned."""
    with threadbox.open(url) as mb:
        mb.deliver(thread_id, [Message.user("stop, do this instead")], DeliveryMode.interrupt())
        run = mb.start_run(thread_id, interrupt=True, rollback=rollback)
        committed_at = time.time()
        assert run is not None
        run.close()
        return run.id, committed_at


def wait_until(flag: threading.Event | Any, deadline: float) -> float | None:
    """Poll ``flag()`` every millisecond until it is true (its wall-clock time) or ``deadline``."""
    while time.monotonic() < deadline:
        if flag():
            return time.time()
        time.sleep(0.001)
    return None


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_docs_loop_stops_when_another_process_interrupts_and_the_flag_is_pushed(
    store_url: str,
) -> None:
    loop = docs_loop()
    release = threading.Event()

    def slow_model(context: list[Message]) -> str:
        release.wait(30)  # the model is busy until the test lets it answer
        return "a late answer"

    loop["call_model"] = slow_model
    context = multiprocessing.get_context("spawn")
    latencies: list[float] = []
    with threadbox.open(store_url) as mb, context.Pool(1) as pool:
        for trial in range(5):
            thread_id = f"t{trial}"
            release.clear()
            mb.deliver(thread_id, [Message.user("write an essay", id=f"ask{trial}")])
            run = mb.start_run(thread_id)
            assert run is not None
            driver = threading.Thread(target=loop["drive"], args=(mb, run))
            driver.start()
            by, committed_at = pool.apply(interrupt_in_process, (store_url, thread_id, True))
            seen_at = wait_until(lambda run=run: run.interrupted, time.monotonic() + LIVENESS)
            assert seen_at is not None, "the interrupt never reached the running loop"
            latencies.append(seen_at - committed_at)
            release.set()
            driver.join(30)
            assert not driver.is_alive()
            assert run.by_run_id == by
            runs = {r.run_id: r for r in mb.runs(thread_id)}
            assert (runs[run.id].termination, runs[by].status) == ("interrupted", "running")
            texts = [m.message.text for m in mb.committed(thread_id, include_hidden=True)]
            assert texts == ["write an essay", "stop, do this instead"]  # the reply was dropped
    # the typical latency, for the report (no assert on speed)
    print(
        f"\ninterrupt pushed to the run ({store_url.split(':')[0]}): "
        f"median {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )


def test_the_docs_loop_reads_steering_and_end_of_run_messages(mailbox: Mailbox) -> None:
    loop = docs_loop()
    calls: list[list[str]] = []

    def model(context: list[Message]) -> str:
        calls.append([m.text for m in context])
        if len(calls) == 1:  # users write while the first call is busy
            mailbox.deliver("t", [Message.user("shorter")], DeliveryMode.next_step())
            mailbox.deliver("t", [Message.user("thanks")], DeliveryMode.on_natural_end())
        return f"answer {len(calls)}"

    loop["call_model"] = model
    mailbox.deliver("t", [Message.user("essay")])
    loop["serve"](mailbox, "t", 0.1)
    assert calls == [
        ["essay"],
        ["essay", "answer 1", "shorter"],
        ["essay", "answer 1", "shorter", "answer 2", "thanks"],
    ]
    [only] = mailbox.runs("t")
    assert (only.status, only.termination, only.freeze_count) == ("done", "natural_end", 3)


def test_start_run_returns_a_run_with_its_inputs_or_none(mailbox: Mailbox) -> None:
    assert mailbox.start_run("t") is None  # no thread, no work
    mailbox.deliver("t", [Message.user("later")], DeliveryMode.on_natural_end())
    mailbox.deliver("t", [Message.user("go", id="go")])
    with mailbox.start_run("t") as run:  # type: ignore[union-attr]
        assert isinstance(run, Run)
        assert uuid.UUID(run.id).version == 7
        assert run.thread_id == "t"
        assert [m.message.id for m in run.inputs] == [m.message.id for m in mailbox.committed("t")]
        assert mailbox.thread("t").running_run_id == run.id
        assert not run.interrupted
        assert run.step() == []
        [out] = run.output([Message.assistant("done")])
        assert (out.run_id, out.kind) == (run.id, "output")
        assert run.end() == []  # "later" (on_natural_end) came in with the first freeze
        assert run.finish() == []
    named = mailbox.deliver("t2", [Message.user("x")])
    assert named
    run2 = mailbox.start_run("t2", "my-run")
    assert run2 is not None and run2.id == "my-run"
    run2.close()


def test_start_run_never_takes_a_waiting_run_or_a_busy_thread(mailbox: Mailbox) -> None:
    mailbox.deliver("t", [Message.user("go")])
    run = mailbox.start_run("t", "r1")
    assert run is not None
    mailbox.deliver("t", [Message.user("next")])
    with pytest.raises(ThreadBusy):
        mailbox.start_run("t")
    run.suspend("needs approval")
    with pytest.raises(ThreadBusy):
        mailbox.start_run("t", "r1")
    assert mailbox.thread("t").waiting_run_id == "r1"
    run.close()


def test_start_run_waits_for_work_until_its_timeout(mailbox: Mailbox) -> None:
    started = time.monotonic()
    assert mailbox.start_run("t", wait=True, timeout=0.2) is None
    assert time.monotonic() - started >= 0.2
    timer = threading.Timer(0.2, lambda: mailbox.deliver("t", [Message.user("hi")]))
    timer.start()
    run = mailbox.start_run("t", wait=True, timeout=30)
    timer.join()
    assert run is not None and [m.message.text for m in run.inputs] == ["hi"]
    run.close()


@pytest.mark.parametrize("timeout", ["30", -1, True])
def test_start_run_refuses_a_timeout_that_is_no_number_of_seconds(
    mailbox: Mailbox, timeout: object
) -> None:
    mailbox.deliver("t", [Message.user("hi")])
    with pytest.raises(InvalidInput) as refused:
        mailbox.start_run("t", wait=True, timeout=timeout)  # type: ignore[arg-type]
    assert refused.value.field == "timeout"
    assert mailbox.thread("t").runs == []  # nothing started


def test_an_interrupted_run_raises_run_interrupted_and_knows_by_whom(mailbox: Mailbox) -> None:
    mailbox.deliver("t", [Message.user("go")])
    run = mailbox.start_run("t")
    assert run is not None
    run.output([Message.assistant("half an answer", id="half")])
    mailbox.deliver("t", [Message.user("stop")], DeliveryMode.interrupt())
    other = mailbox.start_run("t", interrupt=True, rollback=True)
    assert other is not None
    assert run.wait_interrupted(LIVENESS)
    assert run.by_run_id == other.id
    for call in (run.step, run.end, lambda: run.output([Message.assistant("late")])):
        with pytest.raises(RunInterrupted) as raised:
            call()
        assert (raised.value.run_id, raised.value.by_run_id) == (run.id, other.id)
        assert isinstance(raised.value, RunNotRunning)
    assert [m.message.id for m in mailbox.committed("t", include_hidden=True) if not m.visible] == [
        "half"
    ]
    other.close()


def test_suspend_and_resume(mailbox: Mailbox) -> None:
    mailbox.deliver("t", [Message.user("go")])
    run = mailbox.start_run("t")
    assert run is not None
    run.suspend("approve the tool call?")
    assert run.resume(0.1) == []
    timer = threading.Timer(
        0.2,
        lambda: mailbox.deliver("t", [Message.user("approved")], DeliveryMode.resume_input(run.id)),
    )
    timer.start()
    resumed = run.resume(30)
    timer.join()
    assert [m.message.text for m in resumed] == ["approved"]
    assert mailbox.thread("t").running_run_id == run.id
    run.finish()
