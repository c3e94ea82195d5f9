"""What only the adapters do: stream the body, stop reading, survive disconnects, honour the mount."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest

from ingest_mw import ASGIApp, BaselimeAPI, BetterStackAPI, MemorySink, WSGIApp, WSGIMiddleware

TOKEN = "tok"
HEADERS = [(b"authorization", b"Bearer tok"), (b"content-type", b"application/json")]


# --- ASGI, driven message by message -----------------------------------------------
class Peer:
    """An ASGI server stand-in that counts how much of the body the app asked for."""

    def __init__(self, chunks: list[bytes], *, disconnect: bool = False) -> None:
        self.chunks = list(chunks)
        self.disconnect = disconnect
        self.received = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.chunks:
            chunk = self.chunks.pop(0)
            self.received += 1
            return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks) or self.disconnect}
        if self.disconnect:
            return {"type": "http.disconnect"}
        raise AssertionError("the app read past the end of the body")

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


def scope(path: str, headers=HEADERS, method: str = "POST", root_path: str = "/mnt") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": root_path + path,
        "root_path": root_path,
        "headers": list(headers),
        "client": ("10.1.2.3", 1234),
    }


def run(app, scope_, peer):
    asyncio.run(app(scope_, peer.receive, peer.send))


def test_asgi_streamed_body_over_the_limit_stops_reading_at_once():
    sink = MemorySink()
    app = ASGIApp(BetterStackAPI([TOKEN], max_body_bytes=1000), sink=sink)
    peer = Peer([b"[" + b" " * 400] * 10)  # no Content-Length: a chunked body
    run(app, scope("/"), peer)
    assert (peer.status, peer.body) == (413, b"payload reached size limit")
    assert peer.received == 3  # 1203 bytes > 1000: the 4th chunk is never asked for
    assert sink.batches == []


def test_asgi_content_length_over_the_limit_reads_nothing():
    app = ASGIApp(BetterStackAPI([TOKEN], max_body_bytes=1000), sink=MemorySink())
    peer = Peer([b"{}"])
    run(app, scope("/", HEADERS + [(b"content-length", b"1001")]), peer)
    assert peer.status == 413
    assert peer.received == 0


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/", [(b"content-type", b"application/json")], 403),
        ("/", [(b"authorization", b"Bearer nope")], 403),
        ("/", [(b"authorization", b"Bearer tok"), (b"content-type", b"text/csv")], 415),
        ("/", HEADERS + [(b"content-encoding", b"lzma")], 415),
    ],
)
def test_asgi_refusals_come_before_any_body_is_read(path, headers, status):
    app = ASGIApp(BetterStackAPI([TOKEN]), sink=MemorySink())
    peer = Peer([b"{}"])
    run(app, scope(path, headers), peer)
    assert peer.status == status
    assert peer.received == 0


def test_asgi_empty_chunks_with_more_body_are_not_the_end():
    sink = MemorySink()
    app = ASGIApp(BetterStackAPI([TOKEN]), sink=sink)
    peer = Peer([b"", b'{"a"', b"", b":1}"])
    run(app, scope("/"), peer)
    assert peer.status == 202
    assert sink.events[0].data == {"a": 1}


def test_asgi_client_disconnect_mid_body_sends_nothing_and_stores_nothing(caplog):
    sink = MemorySink()
    app = ASGIApp(BetterStackAPI([TOKEN]), sink=sink)
    peer = Peer([b'[{"a":1},'], disconnect=True)
    run(app, scope("/"), peer)
    assert peer.sent == []
    assert sink.batches == []
    assert "Traceback" not in caplog.text


def test_asgi_routes_on_path_minus_root_path():
    sink = MemorySink()
    app = ASGIApp([BetterStackAPI([TOKEN]), BaselimeAPI(["k"])], sink=sink)
    peer = Peer([b'[{"a":1}]'])
    run(app, scope("/v1/web", [(b"x-api-key", b"k"), (b"content-type", b"application/json")], root_path="/a/b"), peer)
    assert peer.status == 202
    assert sink.batches[0].dataset == "web"
    assert sink.batches[0].client == "10.1.2.3"


def test_asgi_repeated_headers_are_joined():
    import gzip

    import brotli

    sink = MemorySink()
    app = ASGIApp(BetterStackAPI([TOKEN]), sink=sink)
    body = brotli.compress(gzip.compress(b'{"a":1}'))
    peer = Peer([body])
    run(app, scope("/", HEADERS + [(b"content-encoding", b"gzip"), (b"content-encoding", b"br")]), peer)
    assert peer.status == 202


def test_asgi_answers_carry_their_own_headers_and_a_content_length():
    app = ASGIApp(BetterStackAPI([TOKEN], rate_limit=None), sink=MemorySink())  # no RateLimit-* headers
    accepted = Peer([b'{"a":1}'])
    run(app, scope("/"), accepted)
    assert accepted.sent[0] == {"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]}
    refused = Peer([b'{"a":1}'])
    run(app, scope("/", [(b"authorization", b"Bearer nope")]), refused)
    start = refused.sent[0]
    assert start["status"] == 403 and refused.body == b"Unauthorized"
    assert start["headers"] == [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"12")]


def test_asgi_header_names_in_any_case_are_read():
    # ASGI asks servers to lower-case header names but does not require it.
    sink = MemorySink()
    app = ASGIApp(BetterStackAPI([TOKEN]), sink=sink)
    peer = Peer([b'{"a":1}'])
    headers = [(b"Authorization", b"Bearer tok"), (b"Content-TYPE", b"application/json"), (b"X-Custom-Thing", b"1")]
    run(app, scope("/", headers), peer)
    assert peer.status == 202
    assert [event.data for event in sink.events] == [{"a": 1}]


def test_asgi_request_headers_reach_the_core_by_lower_case_name():
    from ingest_mw.asgi import scope_headers

    raw = [(b"host", b"h"), (b"X-Trace", b"a"), (b"x-trace", b"b"), (b"Content-Type", b"text/plain; charset=\xe9")]
    assert scope_headers({"headers": raw}) == {
        "host": "h",
        "x-trace": "a, b",
        "content-type": "text/plain; charset=\xe9",
    }


def test_asgi_lifespan_closes_the_sink():
    closed = []

    class ClosingSink(MemorySink):
        def close(self) -> None:
            closed.append(True)

    app = ASGIApp(BetterStackAPI([TOKEN]), sink=ClosingSink())
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert closed == [True]


# --- WSGI, with hand-made environs -------------------------------------------------
class CountingInput(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        return super().read(size)


def call_wsgi(
    app, *, body: bytes, length: bool = True, terminated: bool = False, headers=None, script_name="/mnt", path="/"
):
    stream = CountingInput(body)
    environ = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        "REMOTE_ADDR": "10.0.0.9",
        "wsgi.input": stream,
        "HTTP_AUTHORIZATION": "Bearer tok",
        "CONTENT_TYPE": "application/json",
    }
    if length:
        environ["CONTENT_LENGTH"] = str(len(body))
    environ.update(headers or {})
    if terminated:
        environ["wsgi.input_terminated"] = True
    result: dict[str, Any] = {}

    def start_response(status, response_headers, exc_info=None):
        result["status"] = int(status.split()[0])
        result["headers"] = dict(response_headers)

    result["body"] = b"".join(app(environ, start_response))
    result["reads"] = stream.reads
    result["left"] = len(body) - stream.tell()
    return result


def test_wsgi_chunked_body_over_the_limit_stops_reading():
    app = WSGIApp(BetterStackAPI([TOKEN], max_body_bytes=100 * 1024), sink=MemorySink())
    result = call_wsgi(app, body=b" " * (10 * 1024 * 1024), length=False, terminated=True)
    assert result["status"] == 413
    assert result["left"] > 9 * 1024 * 1024  # it stopped after ~100 KiB


def test_wsgi_chunked_body_within_the_limit():
    sink = MemorySink()
    app = WSGIApp(BetterStackAPI([TOKEN]), sink=sink)
    result = call_wsgi(app, body=b'[{"a":1}]' + b" " * 200_000, length=False, terminated=True)
    assert result["status"] == 202
    assert sink.events[0].data == {"a": 1}


def test_wsgi_never_reads_past_content_length_and_refuses_before_reading():
    app = WSGIApp(BetterStackAPI([TOKEN]), sink=MemorySink())
    result = call_wsgi(app, body=b"{}", headers={"HTTP_AUTHORIZATION": "Bearer bad"})
    assert result["status"] == 403
    assert result["reads"] == 0


def test_wsgi_body_shorter_than_content_length_is_a_disconnect_without_traceback(caplog):
    sink = MemorySink()
    app = WSGIApp(BetterStackAPI([TOKEN]), sink=sink)
    result = call_wsgi(app, body=b'[{"a":1}', headers={"CONTENT_LENGTH": "500"})
    assert result["status"] == 400
    assert sink.batches == []
    assert "Traceback" not in caplog.text


def test_wsgi_routes_on_path_info_below_script_name():
    sink = MemorySink()
    app = WSGIApp([BetterStackAPI([TOKEN]), BaselimeAPI(["k"])], sink=sink)
    result = call_wsgi(app, body=b"[{}]", path="/v1/ds", headers={"HTTP_X_API_KEY": "k"}, script_name="/deep/mount")
    assert result["status"] == 202
    assert sink.batches[0].dataset == "ds"


def test_wsgi_middleware_shifts_script_name():
    seen = {}

    def host(environ, start_response):
        seen["host"] = environ["PATH_INFO"]
        start_response("200 OK", [])
        return [b""]

    sink = MemorySink()
    app = WSGIMiddleware(host, BetterStackAPI([TOKEN]), sink=sink, prefix="logs/")
    call_wsgi(app, body=b"{}", script_name="/site", path="/logs")
    call_wsgi(app, body=b"{}", script_name="/site", path="/logsx")
    assert len(sink.batches) == 1
    assert seen["host"] == "/logsx"


def test_asgi_sync_hook_runs_off_the_event_loop():
    """The sync hook waits for something only the event loop can do: were it run
    on the loop's thread, the wait would time out and the request would fail."""
    import threading

    released = threading.Event()
    loop_thread = threading.get_ident()
    hook_threads = []

    def blocking_hook(batch):
        hook_threads.append(threading.get_ident())
        if not released.wait(timeout=5):
            raise RuntimeError("the event loop was blocked")

    app = ASGIApp(BetterStackAPI([TOKEN]), sink=blocking_hook)

    async def release_soon():
        await asyncio.sleep(0.05)
        released.set()

    async def main():
        peer = Peer([b"{}"])
        await asyncio.gather(app(scope("/"), peer.receive, peer.send), release_soon())
        return peer

    peer = asyncio.run(main())
    assert peer.status == 202
    assert hook_threads and hook_threads[0] != loop_thread


def test_wsgi_async_hook_is_awaited():
    stored = []

    async def async_hook(batch):
        await asyncio.sleep(0)
        stored.append(batch)

    app = WSGIApp(BetterStackAPI([TOKEN]), sink=async_hook)
    assert call_wsgi(app, body=b'{"a":1}')["status"] == 202
    assert stored[0].events[0].data == {"a": 1}


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_a_plain_callable_returning_a_coroutine_is_awaited_before_the_202(kind):
    stored = []

    async def store(batch):
        await asyncio.sleep(0)
        stored.append(batch)

    hook = lambda batch: store(batch)  # noqa: E731 - a sync wrapper around an async hook
    if kind == "wsgi":
        status = call_wsgi(WSGIApp(BetterStackAPI([TOKEN]), sink=hook), body=b"{}")["status"]
    else:
        peer = Peer([b"{}"])
        run(ASGIApp(BetterStackAPI([TOKEN]), sink=hook), scope("/"), peer)
        status = peer.status
    assert status == 202
    assert len(stored) == 1


@pytest.mark.parametrize(
    ("element", "size", "off_the_loop"),
    [
        (b"{x}", 1000, [False, False]),  # a small rescan stays on the loop
        (b"{x}", 200_000, [False, True]),  # the fast try on the loop, the rescan in a thread
        (b"{}", 200_000, [False]),  # a valid batch decodes on the loop, as plain orjson would
        (b"{}", 2_000_000, [True]),  # a very large one in a thread
    ],
)
def test_asgi_keeps_slow_decoding_off_the_event_loop(element, size, off_the_loop):
    """The element-by-element Baselime path costs ~1.5 us a byte: never on the loop
    for more than a few KiB; a fast decode stays on the loop up to 1 MiB."""
    import threading

    from ingest_mw.codecs import Rescan

    api = BaselimeAPI(["k"], max_events=1_000_000)  # bodies of many tiny elements, past the default cap
    codec = api.codecs.negotiate("application/json")
    decode_threads = []
    original = codec.decode

    def recorded(work):
        def run():
            decode_threads.append(threading.get_ident())
            result = work()
            return Rescan(recorded(result.work)) if isinstance(result, Rescan) else result

        return run

    codec.decode = lambda body: recorded(lambda: original(body))()  # type: ignore[method-assign]
    app = ASGIApp(api, sink=MemorySink())
    body = b"[" + b",".join([element] * (size // (len(element) + 1))) + b"]"

    async def main():
        peer = Peer([body])
        await app(
            scope("/v1/ds", [(b"x-api-key", b"k"), (b"content-type", b"application/json")]), peer.receive, peer.send
        )
        return threading.get_ident(), peer

    loop_thread, peer = asyncio.run(main())
    assert peer.status == (400 if element == b"{x}" else 202)
    assert [thread != loop_thread for thread in decode_threads] == off_the_loop


def test_wsgi_answers_carry_no_hop_by_hop_headers():
    """PEP 3333 forbids them, and strict servers (wsgiref) fail the request."""
    from wsgiref.util import is_hop_by_hop

    app = WSGIApp(BetterStackAPI([TOKEN]), sink=MemorySink())
    for body, headers in ((b"{}", {}), (b'[{"a":1}', {"CONTENT_LENGTH": "500"})):  # stored; cut short
        result = call_wsgi(app, body=body, headers=headers)
        assert result["status"] in (202, 400)
        assert not [name for name in result["headers"] if is_hop_by_hop(name)]


def test_a_non_ascii_digit_content_length_is_a_400():
    app = WSGIApp(BetterStackAPI([TOKEN]), sink=MemorySink())
    assert call_wsgi(app, body=b"{}", headers={"CONTENT_LENGTH": "\u00b2"})["status"] == 400


def test_asgi_memory_sink_subclass_overriding_call_runs_in_a_thread():
    """MemorySink's own on-the-loop acall does not carry over to a subclass whose
    __call__ may block: that one gets a worker thread like any sync hook."""
    import threading

    threads = []

    class RecordingSink(MemorySink):
        def __call__(self, batch):
            threads.append(threading.get_ident())
            super().__call__(batch)

    plain, recording = MemorySink(), RecordingSink()
    for sink in (plain, recording):
        app = ASGIApp(BetterStackAPI([TOKEN]), sink=sink)

        async def main():
            peer = Peer([b"{}"])
            await app(scope("/"), peer.receive, peer.send)  # noqa: B023 (run at once)
            return threading.get_ident(), peer

        loop_thread, peer = asyncio.run(main())
        assert peer.status == 202
    assert threads and threads[0] != loop_thread
    assert len(plain.events) == len(recording.events) == 1
