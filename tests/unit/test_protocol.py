"""The manager ↔ agent messages: every call, reply and report survives the wire as it
was, and what does not fit the protocol is refused with a reason that names the field."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio

from crucible.kernels.service_ports import ServicePort
from crucible.protocol import VERSION, calls, codec, reports, streams
from crucible.protocol import file_calls as files
from crucible.protocol.failures import CallFailure, ErrorKind
from crucible.protocol.framing import (
    HEADER,
    FramedLink,
    LinkLimits,
    decode_message,
    encode_message,
)
from crucible.protocol.stats import KernelStats

K = "0b5a3c1e-0000-4000-8000-000000000001"
STATS = KernelStats(cpu_used=12, mem_max_bytes=3 << 20, mem_cur_bytes=1 << 20)

#: One example of every call, with a reply it may get.
EXCHANGES: list[tuple[calls.AgentCall[Any], object]] = [
    (
        calls.CreateKernel(
            K,
            "crucible/kernel-python:latest",
            0.5,
            256 << 20,
            {"A": "é", "EMPTY": ""},
            (calls.Mount("/srv/f", "/home/work/f", True),),
            "AKIAIOSFODNN7EXAMPLE",
            {"cuda.device": 1.0},
        ),
        calls.KernelCreated("c0ffee", (ServicePort("jupyter", "http", 8080),)),
    ),
    (calls.DestroyKernel(K, "user-requested"), calls.KernelDestroyed(STATS)),
    (calls.DestroyKernel(K, "orphan"), calls.KernelDestroyed(None)),
    (calls.RestartKernel(K), calls.KernelRestarted("c0ffee2")),
    (
        calls.Execute(K, "run-1", "batch", "", {"build": "make", "exec": "./a.out"}, 2.0),
        calls.ExecutionResult(
            "run-1", "finished", 0, [["stdout", "😀\x00"], ["media", ["image/png", "iVBO"]]], None
        ),
    ),
    (
        calls.Execute(K, "run-2", "input", "secret", {}, 0.5),
        calls.ExecutionResult("run-2", "waiting-input", None, [], {"is_password": True}),
    ),
    (calls.CancelRun(K, "run-1"), calls.RunCancelled("interrupting")),
    (calls.Interrupt(K), calls.Done()),
    (calls.Complete(K, "pri", {"row": 0}), calls.Completions(("print", "private"))),
    (calls.GetLogs(K), calls.KernelLogs("line\n")),
    (calls.ListKernels(), calls.KernelList((K,))),
    (
        calls.StartService(K, "jupyter"),
        calls.ServiceStarted(ServicePort("jupyter", "http", 8080), True),
    ),
    (files.UploadBegin(K), files.UploadBegun("u1")),
    (files.UploadFile(K, "u1", "sub/a.txt"), calls.Done()),
    (files.UploadData(K, "u1", "aGk="), calls.Done()),
    (files.UploadCommit(K, "u1"), files.UploadCommitted(("/home/work/sub/a.txt",))),
    (files.UploadAbort(K, "u1"), calls.Done()),
    (
        files.ListFiles(K, "."),
        files.FileListing(
            "/home/work", (files.FileEntry("a.txt", 2, "-rw-r--r--", 1.5, 1.5, 1.5),)
        ),
    ),
    (
        files.DownloadCheck(K, ("a.txt", "/home/work")),
        files.DownloadChecked((files.ArchiveEntry("/a", "a", 2),)),
    ),
    (files.DownloadArchive(K, "a.txt"), files.Archive("/home/work/a.txt", "a.txt", 2, "dGFy")),
    (
        streams.OpenStream(K, 7, "tcp", 0, 0, 8080, 30.0, 262144),
        streams.StreamOpened(262144),
    ),
]


def over_the_wire(message: dict[str, Any]) -> dict[str, Any]:
    """What the peer's framing hands over: the message as JSON bytes and back."""
    return decode_message(encode_message(message))


def test_every_call_has_a_reply_class_and_an_example() -> None:
    assert {type(call) for call, _ in EXCHANGES} == set(calls.CALLS.values())
    for call, reply in EXCHANGES:
        assert calls.CALLS[call.method] is type(call)
        assert isinstance(reply, calls.reply_type(call))


@pytest.mark.parametrize(("call", "reply"), EXCHANGES, ids=lambda x: type(x).__name__)
def test_calls_and_replies_cross_the_wire_unchanged(
    call: calls.AgentCall[Any], reply: object
) -> None:
    incoming = codec.read_call(over_the_wire(codec.call_message(7, call)))
    assert incoming == codec.IncomingCall(7, call)
    answer = codec.read_from_agent(over_the_wire(codec.result_message(7, reply)))
    assert isinstance(answer, codec.IncomingResult) and answer.id == 7
    assert codec.read_result(answer, call) == reply


def test_reports_cross_the_wire_unchanged() -> None:
    heartbeat = reports.Heartbeat(
        reports.AgentInfo(
            "agent-1",
            VERSION,
            {"cpu": 4.0, "mem": 8e9, "cuda.shares": 2.0},
            (reports.ImageEntry("crucible/kernel-c:latest", "sha256:1", {"crucible.lang": "c"}),),
            (
                reports.DeviceReport("cuda", "GPU-1", 80 << 30, 1 << 30, 12.5),
                reports.DeviceReport("mock", "0", 16 << 30, None, None),
            ),
            reports.PoolReport({"crucible/kernel-c:latest": 2}, 1, 3 * 2**29, 5, 1),
        ),
        (reports.KernelReport(K, STATS), reports.KernelReport("k2", None)),
    )
    event = reports.KernelTerminated(K, "out-of-memory")
    failure = CallFailure(ErrorKind.QUEUE_FULL, "the queue is full", None)
    for message, expected in [
        (codec.heartbeat_message(heartbeat), heartbeat),
        (codec.event_message(event), event),
        (codec.error_message(3, failure), codec.IncomingError(3, failure)),
    ]:
        assert codec.read_from_agent(over_the_wire(message)) == expected


def test_the_wire_keeps_the_shapes_the_database_and_clients_read() -> None:
    # kernels.last_stat and agents.images are stored as they travel.
    assert codec.unstructure(STATS) == STATS.as_dict()
    assert codec.unstructure(reports.ImageEntry("r", "i", {"l": "v"})) == {
        "ref": "r",
        "id": "i",
        "labels": {"l": "v"},
    }
    result = calls.ExecutionResult("r", "continued", None, [["stdout", "x"]], None)
    assert result.as_api() == {
        "runId": "r",
        "status": "continued",
        "exitCode": None,
        "console": [["stdout", "x"]],
        "options": None,
        "files": [],
    }


async def test_frames_carry_the_protocol_version() -> None:
    sent: list[bytes] = []

    class Capture:
        async def send_frame(self, frame: bytes) -> None:
            sent.append(frame)

        async def receive_frame(self) -> bytes:
            await trio.sleep_forever()
            raise AssertionError("unreachable")

    link = FramedLink(Capture(), LinkLimits.from_config())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.serve, lambda delivery: None)
        with trio.fail_after(5):
            await link.send(codec.event_message(reports.KernelTerminated(K, "self-terminated")))
        nursery.cancel_scope.cancel()
    assert HEADER.unpack_from(sent[0])[0] == VERSION == 5


def params_of(call: calls.AgentCall[Any], **changes: object) -> dict[str, Any]:
    message = codec.call_message(1, call)
    message["params"] = {**message["params"], **changes}
    return message


CREATE = EXCHANGES[0][0]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (params_of(CREATE, surprise=1), "$: unknown field(s): surprise"),
        (params_of(CREATE, cpu="1"), "$.cpu: expected a number, got a string"),
        (params_of(CREATE, mem=True), "$.mem: expected an integer, got a boolean"),
        (params_of(CREATE, mem=1.5), "$.mem: expected an integer, got a number"),
        (params_of(CREATE, cpu=float("nan")), "$.cpu: expected a finite number"),
        (params_of(CREATE, environ={"A": 1}), "$.environ['A']: expected a string, got an integer"),
        (params_of(CREATE, environ=[["A", "b"]]), "$.environ: expected an object, got a list"),
        (params_of(CREATE, mounts="/srv"), "$.mounts: expected a list, got a string"),
        (params_of(CREATE, mounts=[{"source": "/s"}]), "$.mounts[0].target: required field"),
        (
            params_of(calls.Execute(K, "r", "query", "", {}, 1.0), mode="q"),
            "$.mode: expected one of",
        ),
        ({**codec.call_message(1, calls.Interrupt(K)), "params": "odd"}, "$: expected an object"),
        ({**codec.call_message(1, calls.Interrupt(K)), "method": "nope"}, "unknown method 'nope'"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_a_call_that_does_not_fit_is_refused_naming_the_field(
    message: dict[str, Any], reason: str
) -> None:
    with pytest.raises(codec.ProtocolError) as caught:
        codec.read_call(over_the_wire(message))
    assert reason in str(caught.value)
    assert caught.value.call_id == 1  # the agent answers that call, the link goes on


def test_messages_without_a_call_to_fail_are_dropped() -> None:
    messages: list[dict[str, Any]] = [
        {"type": "nonsense"},
        {"type": "call", "id": "one", "method": "logs", "params": {}},
        {"type": "heartbeat", "agent": "not an object", "kernels": 5},
        {"type": "event", "name": "kernel_terminated", "kernel_id": 5, "reason": "x"},
        {"type": "event", "name": "no_such_event"},
        {"type": "result", "id": True, "result": {}},
    ]
    for message in messages:
        with pytest.raises(codec.ProtocolError) as caught:
            try:
                codec.read_call(message)
            except codec.ProtocolError:
                codec.read_from_agent(message)
        assert caught.value.call_id is None


def test_a_reply_that_does_not_fit_fails_its_call() -> None:
    with pytest.raises(codec.ProtocolError) as caught:
        codec.read_from_agent({"type": "error", "id": 4, "error": {"kind": "odd", "title": "t"}})
    assert caught.value.call_id == 4 and "'odd' is not a valid ErrorKind" in str(caught.value)
    with pytest.raises(codec.ProtocolError) as caught:
        codec.read_from_agent({"type": "result", "id": 4, "result": {}, "extra": 1})
    assert caught.value.call_id == 4
    answer = codec.read_from_agent({"type": "result", "id": 4, "result": {"logs": ["x"]}})
    assert isinstance(answer, codec.IncomingResult)
    with pytest.raises(codec.ProtocolError, match=r"the reply to logs: \$.logs: expected a string"):
        codec.read_result(answer, calls.GetLogs(K))


def test_a_reason_stays_short_whatever_the_message_held() -> None:
    message = params_of(CREATE, environ={f"K{i}": i for i in range(10_000)})
    with pytest.raises(codec.ProtocolError) as caught:
        codec.read_call(message)
    assert str(caught.value).endswith("(and 9995 more)") and len(str(caught.value)) <= 500


def test_stored_stats_are_read_leniently() -> None:
    # Rows from any version, or written by hand: the CLI needs every key as a number.
    assert KernelStats.from_stored(None) is None
    assert KernelStats.from_stored("odd") is None
    assert KernelStats.from_stored({}) == KernelStats()
    odd = {"cpu_used": 1.9, "mem_cur_bytes": None, "net_rx_bytes": True, "extra": 5}
    assert KernelStats.from_stored(odd) == KernelStats(cpu_used=1)
    assert attrs.asdict(KernelStats()) == KernelStats().as_dict()


def test_a_bad_service_port_in_a_reply_is_refused_with_the_reason() -> None:
    call = calls.StartService(K, "jupyter")
    result = {"service": {"name": "jupyter", "protocol": "http", "port": 2001}, "started": True}
    with pytest.raises(codec.ProtocolError, match="reserved"):
        codec.read_result(codec.IncomingResult(1, result), call)
