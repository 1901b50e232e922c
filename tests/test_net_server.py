"""The UDP server loop over a real socket on 127.0.0.1."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import re
import socket

import pytest
import trio

from keyresolve.protocol.errors import KeyresolveError, StreamAborted
from keyresolve.protocol.message import FrameReader, frame
from keyresolve.net import batchio, server
from keyresolve.net.server import bind_udp, open_tcp_listener, serve_tcp, serve_udp


class Recorder:
    """Answers each datagram with its own bytes reversed; records batches."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.handled = 0
        self.peers: set[tuple] = set()

    def handle(self, data: bytes, peer: tuple, tcp: bool) -> bytes | None:
        self.handled += 1
        self.batches[-1] += 1
        self.peers.add(peer)
        if data == b"raise":
            raise ValueError("a handler bug")
        return None if data == b"silent" else data[::-1]

    @contextlib.contextmanager
    def batch(self):
        self.batches.append(0)
        yield


@pytest.fixture(params=["batched", "one at a time"])
def udp_mode(request, monkeypatch) -> str:
    """Each loop test runs with recvmmsg/sendmmsg batching and without it."""
    if request.param != "batched":
        monkeypatch.setenv(batchio.DISABLE_ENV, "1")
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            if batchio.DatagramBatch.open(probe) is None:
                pytest.skip("no recvmmsg here")
    return request.param


def test_a_flood_is_answered_in_bounded_batches_and_other_tasks_run_between(monkeypatch,
                                                                            udp_mode):
    monkeypatch.setattr(server, "MAX_BATCH", 4)
    sent = [b"q%02d" % i for i in range(10)] + [b"raise", b"silent", b"last"]
    handler = Recorder()
    seen_between: list[int] = []

    async def main() -> list[bytes]:
        sock = bind_udp("127.0.0.1", 0)
        client = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await client.bind(("127.0.0.1", 0))
        for data in sent:  # all queued before the loop reads one
            await client.sendto(data, sock.getsockname())

        async def watcher() -> None:
            while handler.handled < len(sent):
                seen_between.append(handler.handled)
                await trio.sleep(0)

        replies = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_udp, sock, handler)
            nursery.start_soon(watcher)
            with trio.fail_after(10):
                while len(replies) < len(sent) - 2:  # "raise" and "silent" get nothing
                    replies.append((await client.recvfrom(100))[0])
            nursery.cancel_scope.cancel()
        assert handler.peers == {client.getsockname()}
        sock.close()
        client.close()
        return replies

    replies = trio.run(main)
    assert replies == [d[::-1] for d in sent if d not in (b"raise", b"silent")]
    assert all(0 < size <= 4 for size in handler.batches[:-1])
    assert sum(handler.batches) == len(sent) and len(handler.batches) >= 4
    # the watcher ran while datagrams were still waiting: the loop yields
    assert any(0 < count < len(sent) for count in seen_between)


def test_the_loop_goes_on_one_datagram_at_a_time_when_batching_stops(monkeypatch, caplog):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        if batchio.DatagramBatch.open(probe) is None:
            pytest.skip("no recvmmsg here")

    def unexpected(self, limit=batchio.SLOTS):
        raise batchio.BatchUnavailable("a peer address of {3} bytes")

    monkeypatch.setattr(batchio.DatagramBatch, "receive", unexpected)
    handler = Recorder()

    async def main() -> bytes:
        sock = bind_udp("127.0.0.1", 0)
        client = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await client.bind(("127.0.0.1", 0))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_udp, sock, handler)
            await client.sendto(b"still", sock.getsockname())
            with trio.fail_after(10):
                reply = (await client.recvfrom(100))[0]
            nursery.cancel_scope.cancel()
        sock.close()
        client.close()
        return reply

    assert trio.run(main) == b"llits"  # answered by the per-datagram loop
    assert "UDP batching stopped" in caplog.text


class Hostile:
    """A TCP handler that misbehaves on request: b"ok" is answered with its
    bytes reversed; other messages name the failure (see `handle`)."""

    def __init__(self) -> None:
        self.big = 0

    def handle(self, data: bytes, peer: tuple, tcp: bool):
        kind, _, arg = data.partition(b":")
        if kind == b"ok":
            return data[::-1]
        if kind == b"raise":  # the handler itself raises
            raise RAISED[arg.decode()]
        if kind == b"later":  # the awaitable it returns raises
            async def later():
                await trio.sleep(0)
                raise RAISED[arg.decode()]
            return later()
        if kind == b"huge":  # more than a frame can carry
            return bytes(70000)
        if kind == b"odd":  # neither bytes nor a stream of them
            return 42
        if kind == b"stream":  # a transfer whose producer raises midway
            def parts():
                yield b"part"
                raise RAISED[arg.decode()]
            return parts()
        if kind == b"unclosable":  # a transfer whose clean-up raises
            return Unclosable(RAISED[arg.decode()])
        if kind == b"big":
            self.big += 1
            return bytes(60000)
        return None

    @contextlib.contextmanager
    def batch(self):
        yield


class Unclosable:
    """A stream of one message whose `close` raises `error`."""

    def __init__(self, error: Exception) -> None:
        self.parts = iter([b"part"])
        self.error = error

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        return next(self.parts)

    def close(self) -> None:
        raise self.error


#: What the hostile handler raises, by name.
RAISED = {
    "ValueError": ValueError("a handler bug"),
    "KeyError": KeyError("x"),
    "TooSlowError": trio.TooSlowError(),
    "BrokenResourceError": trio.BrokenResourceError(),
    "ClosedResourceError": trio.ClosedResourceError(),
    "OSError": OSError(errno.EIO, "I/O error"),
    "KeyresolveError": KeyresolveError("not for this connection"),
    "ExceptionGroup": ExceptionGroup("several", [ValueError(), trio.TooSlowError()]),
}

HOSTILE = ([f"{kind}:{name}".encode() for kind in ("raise", "later", "stream", "unclosable")
            for name in RAISED] + [b"huge", b"odd"])


async def _exchange(address, message: bytes) -> bytes:
    """One framed message over a new connection; the reply."""
    async with await trio.open_tcp_stream(*address) as stream:
        await stream.send_all(frame(message))
        reader = FrameReader()
        with trio.fail_after(5):
            while (reply := reader.next_frame()) is None:
                data = await stream.receive_some(65536)
                assert data, "closed without a reply"
                reader.receive_data(data)
        return reply


async def _until_closed(stream: trio.SocketStream) -> bytes:
    """Everything the server sends before it closes the connection."""
    received = b""
    with trio.fail_after(5):
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:  # reset: it closed with our bytes unread
                return received
            if not data:
                return received
            received += data


def test_a_failing_handler_costs_its_connection_and_the_server_keeps_answering(caplog):
    handler = Hostile()

    async def main() -> list[bytes]:
        listener = await open_tcp_listener("127.0.0.1", 0)
        address = listener.socket.getsockname()[:2]
        seen = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(serve_tcp, listener, handler))
            for message in HOSTILE:
                async with await trio.open_tcp_stream(*address) as stream:
                    await stream.send_all(frame(message) + frame(b"ok:after"))
                    seen.append(await _until_closed(stream))
                assert await _exchange(address, b"ok:fresh") == b"hserf:ko"
            nursery.cancel_scope.cancel()
        return seen

    seen = trio.run(main)
    # streams stop after what was produced; nothing is answered after a failure
    for message, received in zip(HOSTILE, seen):
        assert b"retfa:ko" not in received, message
        if message.startswith((b"stream:", b"unclosable:")):
            assert received == frame(b"part"), message
    # each failure logged once, with its traceback, but those that say the
    # peer went away
    silent = {b"unclosable:BrokenResourceError", b"unclosable:ClosedResourceError"}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == len(HOSTILE) - len(silent) and all(r.exc_info for r in errors)


def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout(caplog):
    """It pipelines queries with large replies and never reads: the server
    stops reading it (its sends block), answers everyone else meanwhile,
    and closes it after the send timeout, without stopping."""
    caplog.set_level(logging.INFO, "keyresolve.net")
    handler = Hostile()
    send_timeout = 0.5

    async def main() -> tuple[int, int, int]:
        listener = await open_tcp_listener("127.0.0.1", 0)
        address = listener.socket.getsockname()[:2]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(serve_tcp, listener, handler,
                                                 send_timeout=send_timeout))
            stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.setblocking(False)
            stalled.connect_ex(address)
            await trio.lowlevel.wait_writable(stalled)
            sent = 0
            chunk = frame(b"big") * 4096
            with trio.move_on_after(5):  # bounded in time, and in count below
                while sent < 1000 * len(chunk):
                    await trio.sleep(0)  # the server's turn
                    try:
                        sent += stalled.send(chunk)  # never blocks (non-blocking socket)
                    except BlockingIOError:
                        with trio.move_on_after(0.3) as waiting:
                            await trio.lowlevel.wait_writable(stalled)
                        if waiting.cancelled_caught:
                            break  # the server has stopped reading us
            sent //= len(frame(b"big"))
            assert sent < 1000 * 4096, "the server kept reading a client that does not"
            answered_then = handler.big
            # meanwhile, and for longer than the send timeout, others are answered
            end = trio.current_time() + 3 * send_timeout
            fresh = 0
            while trio.current_time() < end:
                assert await _exchange(address, b"ok:fresh") == b"hserf:ko"
                fresh += 1
                await trio.sleep(0.05)
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(stalled))
            await _until_closed(stream)  # the server has closed it
            await stream.aclose()
            assert await _exchange(address, b"ok:still") == b"llits:ko"
            nursery.cancel_scope.cancel()
        return sent, answered_then, fresh

    sent, answered, fresh = trio.run(main)
    assert answered < sent  # replies were not piled up: reading stopped
    assert answered <= 8  # a few 60 kB replies fill the buffers, then nothing more
    assert fresh >= 5
    assert re.search(r"TCP client 127\.0\.0\.1 port \d+ stopped reading for 0\.5 s; "
                     "closing the connection", caplog.text)


class Streams:
    """Answers ``catching``, ``uncaught`` or ``plain`` with a long stream of
    60 kB messages: a generator that catches `StreamAborted` (recording why),
    one that does not, and an iterator that is no generator; ``ok:...`` as
    `Hostile` does."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.closed: list[str] = []

    def _parts(self, kind: str, catch: bool):
        try:
            for _ in range(10000):  # bounded: the client reads none of it
                yield bytes(60000)
        except StreamAborted as exc:
            if not catch:
                raise
            self.reasons.append(str(exc))
        finally:
            self.closed.append(kind)

    def handle(self, data: bytes, peer: tuple, tcp: bool):
        if data.startswith(b"ok:"):
            return data[::-1]
        if data == b"plain":
            return iter([bytes(60000)] * 10000)
        return self._parts(data.decode(), data == b"catching")

    @contextlib.contextmanager
    def batch(self):
        yield


@pytest.mark.parametrize("bound", ["send_timeout", "stream_timeout"])
def test_a_stream_its_peer_takes_too_slowly_is_told_why_and_ended(caplog, bound):
    """A client asks for a stream and reads none of it: whichever bound is
    the shorter ends it; a generator is told why (it logs), else the loop
    logs; each generator is closed (its snapshot released)."""
    caplog.set_level(logging.INFO, "keyresolve.net")
    handler = Streams()
    short, long = 0.3, 30.0
    timeouts = ({"send_timeout": short, "stream_timeout": long} if bound == "send_timeout"
                else {"send_timeout": long, "stream_timeout": short})

    async def main() -> None:
        listener = await open_tcp_listener("127.0.0.1", 0)
        address = listener.socket.getsockname()[:2]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(serve_tcp, listener, handler, **timeouts))
            for kind in (b"catching", b"uncaught", b"plain"):
                stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(stalled))
                await stream.socket.connect(address)
                await stream.send_all(frame(kind))
                with trio.fail_after(10):
                    while not (caplog.text.count("closing the connection") == 2
                               if kind == b"plain" else kind.decode() in handler.closed):
                        await trio.sleep(0.01)  # polled: the server ends it in its task
                received = await _until_closed(stream)
                await stream.aclose()
                assert len(received) < 10000 * 60000
                assert await _exchange(address, b"ok:after") == b"retfa:ko"
            nursery.cancel_scope.cancel()

    trio.run(main)
    why = ("took no whole message in 0.3 s (tcp_send_timeout)" if bound == "send_timeout"
           else "not done after 0.3 s (max_transfer_time_out)")
    assert handler.reasons == [why]
    assert handler.closed == ["catching", "uncaught"]
    logged = re.findall(r"TCP client 127\.0\.0\.1 port \d+: (.*); closing the connection",
                        caplog.text)
    assert logged == [why, why]  # the uncaught one's and the plain one's
