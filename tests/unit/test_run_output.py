"""Output accounting of runs: caps per execute call in bytes, and the agent's memory
for output nobody has collected, per session and in total."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crucible.agent.execution.output import (
    DISCARDED_NOTE,
    Handover,
    OutputCaps,
    OutputLedger,
    Run,
    SessionOutput,
    utf8_prefix,
)
from crucible.config import AgentConfig, ClusterConfig, worst_case_result_bytes
from crucible.protocol import codec
from crucible.protocol.calls import ExecutionResult
from crucible.protocol.framing import encode_message

MiB = 1024 * 1024


def ledger(
    stream: int = 1000, rich: int = 5000, session: int = 100_000, total: int = 1_000_000
) -> OutputLedger:
    return OutputLedger(OutputCaps(stream, rich), session_bytes=session, total_bytes=total)


def new_run(share: SessionOutput, run_id: str = "r") -> Run:
    return Run(run_id, "query", "", {}, share)


def texts(result: ExecutionResult, kind: str) -> str:
    return "".join(str(data) for item_kind, data in result.console if item_kind == kind)


def utf8(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


async def test_streams_are_capped_in_bytes_not_characters() -> None:
    run = new_run(ledger(stream=1000).session())
    for _ in range(10):
        run.add_console(["stdout", "😀" * 100])  # 400 bytes each
        run.add_console(["stderr", "é" * 300])  # 600 bytes each
    run.hand_over(Handover("finished", 0))
    result = await run.collect(0)
    stdout, stderr = texts(result, "stdout"), texts(result, "stderr")
    note_out, note_err = "stdout exceeded 1000 bytes", "stderr exceeded 1000 bytes"
    assert stdout.count(note_out) == 1 and stderr.count(note_err) == 1
    assert utf8(stdout.split("\n[output truncated")[0]) == 1000  # 250 emoji, none split
    assert utf8(stderr.split("\n[output truncated")[0]) == 1000
    assert result.status == "finished"


async def test_the_caps_start_afresh_with_each_call() -> None:
    share = ledger(stream=1000).session()
    run = new_run(share)
    run.add_console(["stdout", "a" * 1500])
    first = await run.collect(0)
    run.add_console(["stdout", "b" * 800])
    second = await run.collect(0)
    assert first.status == second.status == "continued"
    assert texts(first, "stdout").startswith("a" * 1000 + "\n[output truncated")
    assert texts(second, "stdout") == "b" * 800
    assert share.used == 0 and share.ledger.used == 0  # collected output is released


async def test_rich_items_are_capped_per_call_with_a_note() -> None:
    run = new_run(ledger(rich=5000).session())
    for index in range(10):
        run.add_console(["html", f"<p>{index}</p>" + "x" * 1000])
    run.add_console(["media", ["image/png", "data:image/png;base64," + "A" * 10_000]])
    run.hand_over(Handover("finished", 0))
    result = await run.collect(0)
    html = [data for kind, data in result.console if kind == "html"]
    assert len(html) == 4 and html[0].startswith("<p>0</p>")
    assert not any(kind == "media" for kind, _ in result.console)
    assert texts(result, "stderr").count("html/media/log items beyond 5000 bytes") == 1


async def test_output_after_a_handover_counts_for_the_next_result() -> None:
    run = Run("b", "batch", "", {}, ledger(stream=1000).session())
    run.add_console(["stdout", "c" * 900])
    run.hand_over(Handover("clean-finished", 0))
    run.add_console(["stdout", "d" * 900])
    run.add_console(["stdout", "e" * 900])
    first = await run.collect(0)
    second = await run.collect(0)
    assert texts(first, "stdout") == "c" * 900
    assert texts(second, "stdout").startswith("d" * 900 + "e" * 100 + "\n[output truncated")


async def test_a_session_at_its_limit_discards_finished_runs_first() -> None:
    share = ledger(stream=10_000, session=20_000).session()
    old, older = new_run(share, "old"), new_run(share, "older")
    older.add_console(["stdout", "o" * 9000])
    older.hand_over(Handover("finished", 0))
    old.add_console(["stdout", "p" * 9000])
    old.hand_over(Handover("finished", 0))
    live = new_run(share, "live")
    live.add_console(["stdout", "q" * 5000])  # needs room: the older run goes first
    assert share.used == 9000 + 5000
    discarded = await older.collect(0)
    assert discarded.console == [["stderr", DISCARDED_NOTE]]
    assert discarded.status == "finished"
    result = await old.collect(0)
    assert texts(result, "stdout") == "p" * 9000 and result.status == "finished"


async def test_a_discarded_run_still_reports_how_it_ended() -> None:
    share = ledger(stream=10_000, session=12_000).session()
    done = new_run(share, "done")
    done.add_console(["stdout", "x" * 9000])
    done.hand_over(Handover("finished", 3))
    new_run(share, "live").add_console(["stdout", "y" * 9000])
    result = await done.collect(0)
    assert result.status == "finished" and result.exit_code == 3
    assert result.console == [["stderr", DISCARDED_NOTE]]


async def test_when_only_live_output_is_held_new_output_is_dropped_with_a_note() -> None:
    book = ledger(stream=10_000, rich=10_000, session=100_000, total=15_000)
    first, second = new_run(book.session(), "1"), new_run(book.session(), "2")
    first.add_console(["stdout", "f" * 9000])
    second.add_console(["stdout", "g" * 9000])  # does not fit the total: dropped
    second.add_console(["html", "<b>" + "z" * 7000 + "</b>"])  # nor does this
    assert book.used == 9000
    result = await second.collect(0)
    held = OutputCaps(1, 1).note("held")
    assert texts(result, "stdout") + texts(result, "stderr") == held  # one note per result
    assert not any(kind == "html" for kind, _ in result.console)
    # Collecting the first frees the memory for everyone.
    await first.collect(0)
    second.add_console(["stdout", "h" * 9000])
    assert texts(await second.collect(0), "stdout") == "h" * 9000
    assert book.used == 0


async def test_the_total_limit_discards_other_sessions_finished_runs() -> None:
    book = ledger(stream=10_000, session=100_000, total=15_000)
    idle = new_run(book.session(), "idle")
    idle.add_console(["stdout", "i" * 9000])
    idle.hand_over(Handover("finished", 0))
    busy = new_run(book.session(), "busy")
    busy.add_console(["stdout", "j" * 9000])
    assert texts(await busy.collect(0), "stdout") == "j" * 9000
    assert (await idle.collect(0)).console == [["stderr", DISCARDED_NOTE]]


async def test_forgotten_runs_and_closed_sessions_release_their_memory() -> None:
    book = ledger(stream=10_000)
    share = book.session()
    run = new_run(share)
    run.add_console(["stdout", "k" * 5000])
    run.hand_over(Handover("finished", 0))
    run.forget()
    assert book.used == share.used == 0
    other = new_run(share)
    other.add_console(["stdout", "l" * 5000])
    assert book.used == 5000
    share.close()
    assert book.used == 0
    other.add_console(["stdout", "more"])  # a closed share takes nothing
    assert book.used == 0


async def test_a_result_under_the_default_caps_always_fits_the_link() -> None:
    # Control characters are the worst case for JSON: one byte becomes six.
    agent = AgentConfig()
    run = new_run(OutputLedger.from_config(agent).session())
    for _ in range(40):
        run.add_console(["stdout", "\x01" * 65536])
        run.add_console(["stderr", "\x02" * 65536])
        run.add_console(["html", "<i>" + "x" * 65536 + "</i>"])
        run.add_console(["log", ["info", "2024-01-01T00:00:00", "x", "y" * 1000]])
    run.hand_over(Handover("finished", 0))
    result = await run.collect(0)
    size = len(encode_message(codec.result_message(1, result)))
    assert size <= worst_case_result_bytes(agent) <= ClusterConfig().link_max_message_bytes
    assert size > 12 * agent.stream_output_bytes  # the streams really were full


@given(st.text(), st.integers(min_value=0, max_value=64))
def test_utf8_prefix_is_the_longest_that_fits(text: str, room: int) -> None:
    piece, size = utf8_prefix(text, room)
    assert text.startswith(piece)
    assert size == utf8(piece) <= max(room, 0)
    if piece != text:
        assert utf8(text[: len(piece) + 1]) > room
