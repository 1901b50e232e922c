"""net.client against an in-process peer on real loopback sockets."""

from __future__ import annotations

import functools
import socket

import pytest
import trio

from keyresolve.protocol import tsig
from keyresolve.protocol.codes import Rcode, RType
from keyresolve.protocol.errors import KeyresolveError, NetworkError, PeerError, QueryTimeout
from keyresolve.protocol.message import FrameReader, Message, frame, make_response
from keyresolve.protocol.names import Name
from keyresolve.net.client import exchange_tcp, read_frame, transfer
from keyresolve.authority.xfr import make_transfer_query

KEY = tsig.SharedKey(Name.from_text("xfer."), "hmac-sha256", bytes(range(32)))


async def _refusing_peer(stream: trio.SocketStream) -> None:
    query = Message.from_wire(await read_frame(stream, FrameReader()))
    await stream.send_all(frame(make_response(query, Rcode.REFUSED).to_wire()))


@pytest.mark.parametrize("key", [KEY, None])
def test_unsigned_error_reply_to_a_transfer(key):
    seen = []
    error = _against(_refusing_peer, lambda port: transfer(
        ("127.0.0.1", port), _axfr(), lambda m, n: seen.append(m.rcode) or True, key=key,
        timeout=5))
    if key is None:  # no key: the caller sees the reply and its rcode
        assert error is None and seen == [Rcode.REFUSED]
    else:  # signed request: the peer's rcode, not a signature complaint
        assert isinstance(error, PeerError) and error.rcode == Rcode.REFUSED and seen == []


async def _silent_peer(stream: trio.SocketStream) -> None:
    await trio.sleep_forever()


async def _closing_peer(stream: trio.SocketStream) -> None:
    await read_frame(stream, FrameReader())
    await stream.aclose()


def _against(handler, call):
    """`call(port)` against a TCP peer running `handler`; the error it raises."""
    async def main():
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                lambda task_status: trio.serve_tcp(handler, 0, host="127.0.0.1",
                                                   task_status=task_status))
            port = listeners[0].socket.getsockname()[1]
            try:
                await call(port)
            except KeyresolveError as exc:
                return exc
            finally:
                nursery.cancel_scope.cancel()

    return trio.run(main)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _axfr():
    return make_transfer_query(Name.from_text("example.com."), RType.AXFR)


def test_tcp_errors_are_ours():
    """trio's and the OS's errors reach callers as QueryTimeout / NetworkError."""
    error = _against(_silent_peer, lambda port: exchange_tcp(("127.0.0.1", port), b"x", 0.2))
    assert isinstance(error, QueryTimeout) and "(TCP)" in str(error)
    error = _against(_silent_peer, lambda port: transfer(("127.0.0.1", port), _axfr(),
                                                         lambda m, n: True, timeout=0.2))
    assert isinstance(error, QueryTimeout) and "stalled for 0.2 s" in str(error)
    error = _against(_closing_peer, lambda port: transfer(("127.0.0.1", port), _axfr(),
                                                          lambda m, n: True, timeout=5))
    assert isinstance(error, NetworkError) and "connection closed" in str(error)
    port = _closed_port()
    for call in (functools.partial(exchange_tcp, ("127.0.0.1", port), b"x", 5),
                 functools.partial(transfer, ("127.0.0.1", port), _axfr(), lambda m, n: True,
                                   timeout=5)):
        with pytest.raises(NetworkError, match=f"127.0.0.1:{port}"):
            trio.run(call)


def test_no_reply_counts_the_tries_and_the_time():
    """Every try timed out: NoReply says how many went, over what, in how long."""
    from keyresolve.protocol.message import make_query
    from keyresolve.net.client import NoReply, query

    ask = make_query(Name.from_text("a@example.com"), RType.KEY)
    connections = []

    async def silent_counting_peer(stream: trio.SocketStream) -> None:
        connections.append(stream)
        await trio.sleep_forever()

    error = _against(silent_counting_peer, lambda port: query(
        ("127.0.0.1", port), ask, timeout=0.2, retries=1, tcp=True))
    assert isinstance(error, NoReply) and error.tries == 2 and error.tcp
    assert len(connections) == 2 and 0.4 <= error.elapsed < 3
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never read
        silent.bind(("127.0.0.1", 0))
        address = silent.getsockname()
        with pytest.raises(NoReply) as info:
            trio.run(lambda: query(address, ask, timeout=0.2, retries=2))
    assert info.value.tries == 3 and not info.value.tcp and 0.6 <= info.value.elapsed < 3
    assert info.value.server == address
