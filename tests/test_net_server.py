"""The UDP server loop over a real socket on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket

import pytest
import trio

from keyresolve.net import batchio, server
from keyresolve.net.server import bind_udp, serve_udp


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
