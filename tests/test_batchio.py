"""Batched datagrams (recvmmsg/sendmmsg) over real sockets on loopback."""

from __future__ import annotations

import socket
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyresolve.net import batchio
from keyresolve.net.batchio import DatagramBatch, peer_from_sockaddr

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="recvmmsg is Linux's")


def _pair(family: int = socket.AF_INET, host: str = "127.0.0.1"):
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((host, 0))
    server.setblocking(False)
    client = socket.socket(family, socket.SOCK_DGRAM)
    client.bind((host, 0))
    client.settimeout(5)
    return server, client


def _receive_all(batch: DatagramBatch, count: int, limit: int = batchio.SLOTS) -> list:
    """Everything `count` sent datagrams give, read as the server loop reads."""
    got: list = []
    for _ in range(1000):  # bounded: loopback delivers at once
        got += batch.receive(limit)
        if len(got) >= count:
            return got
    raise AssertionError(f"received {len(got)} of {count}")


def test_receives_each_datagram_with_the_peer_recvfrom_gives_and_answers_it():
    server, client = _pair()
    with server, client:
        batch = DatagramBatch.open(server)
        assert batch is not None
        sent = [b"q%03d" % i + b"x" * i for i in range(batchio.SLOTS + 5)]
        for data in sent:
            client.sendto(data, server.getsockname())
        first = _receive_all(batch, batchio.SLOTS)
        assert [d for d, _ in first] == sent[:batchio.SLOTS]  # one call takes SLOTS at most
        assert {peer for _, peer in first} == {client.getsockname()}
        batch.send([data[::-1] for data, _ in first])
        rest = _receive_all(batch, 5)
        assert [d for d, _ in rest] == sent[batchio.SLOTS:]
        batch.send([data[::-1] for data, _ in rest])
        answers = [client.recvfrom(4096) for _ in sent]
        assert [a for a, _ in answers] == [d[::-1] for d in sent]
        assert {peer for _, peer in answers} == {server.getsockname()}


def test_ipv6_peers_are_tuples_of_four_as_recvfrom_gives():
    try:
        server, client = _pair(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server, client:
        batch = DatagramBatch.open(server)
        client.sendto(b"six", server.getsockname())
        [(data, peer)] = _receive_all(batch, 1)
        assert data == b"six" and peer == client.getsockname()
        batch.send([b"xis"])
        assert client.recvfrom(100) == (b"xis", server.getsockname())


def test_each_peer_gets_its_own_reply_and_none_or_oversized_replies_are_skipped():
    server, one = _pair()
    two = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    two.bind(("127.0.0.1", 0))
    two.settimeout(5)
    with server, one, two:
        batch = DatagramBatch.open(server)
        for i, client in enumerate((one, two, one, two, one)):
            client.sendto(b"m%d" % i, server.getsockname())
        got = _receive_all(batch, 5)
        assert [p for _, p in got] == [one.getsockname(), two.getsockname()] * 2 + [
            one.getsockname()]
        too_big = b"z" * (batchio.SEND_SLOT + 1)
        batch.send([b"r0", None, too_big, b"r3", b"r4"])
        assert one.recvfrom(100)[0] == b"r0"
        assert one.recvfrom(100)[0] == b"r4"  # r2 was too big for any datagram
        assert two.recvfrom(100)[0] == b"r3"  # r1 was None
        with pytest.raises(ValueError):
            batch.send([b"a"] * 6)  # more replies than datagrams


def test_a_limit_reads_no_more_and_nothing_ready_is_an_empty_list():
    server, client = _pair()
    with server, client:
        batch = DatagramBatch.open(server)
        assert batch.receive() == []
        for i in range(5):
            client.sendto(b"%d" % i, server.getsockname())
        got = _receive_all(batch, 2, limit=2)
        assert [d for d, _ in got][:2] == [b"0", b"1"] and len(batch.receive(2)) <= 2


def test_an_error_reported_instead_of_datagrams_is_passed_over():
    # Linux reports ICMP errors on unconnected UDP sockets only with
    # IP_RECVERR, so the call failing with one is simulated: the first call
    # fails as recvmmsg does (-1 and errno), the next reads the socket.
    import ctypes
    import errno

    server, client = _pair()
    with server, client:
        batch = DatagramBatch.open(server)
        real, calls = batch._recvmmsg, []

        def failing_once(*args):
            calls.append(args)
            if len(calls) == 1:
                ctypes.set_errno(errno.ECONNREFUSED)
                return -1
            return real(*args)

        batch._recvmmsg = failing_once
        client.sendto(b"after", server.getsockname())  # queued on return: loopback
        assert [d for d, _ in batch.receive()] == [b"after"]  # one call passes the error
        assert len(calls) == 2


def test_errors_without_end_give_nothing_after_a_bounded_number_of_calls():
    import ctypes
    import errno

    server, client = _pair()
    with server, client:
        batch = DatagramBatch.open(server)
        calls = []

        def failing(*args):
            calls.append(args)
            ctypes.set_errno(errno.ECONNREFUSED)
            return -1

        batch._recvmmsg = failing
        assert batch.receive() == []
        assert len(calls) == batchio.MAX_RECEIVE_TRIES


def test_a_closed_socket_raises_instead_of_reading_another_file():
    server, client = _pair()
    client.close()
    batch = DatagramBatch.open(server)
    server.close()
    with pytest.raises(OSError):
        batch.receive()


def test_unavailable_where_turned_off_or_not_udp(monkeypatch):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        assert DatagramBatch.open(tcp) is None
    monkeypatch.setenv(batchio.DISABLE_ENV, "1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert DatagramBatch.open(udp) is None


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"),
                                          (socket.AF_INET6, "::1")])
def test_peer_from_sockaddr_matches_the_socket_module(family, host):
    import ctypes

    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((host, 0))
    except OSError:
        pytest.skip("no such loopback here")
    with sock:
        libc = ctypes.CDLL(None, use_errno=True)
        raw = ctypes.create_string_buffer(128)
        size = ctypes.c_uint32(128)
        assert libc.getsockname(sock.fileno(), raw, ctypes.byref(size)) == 0
        assert peer_from_sockaddr(raw.raw[:size.value]) == sock.getsockname()


@given(st.binary(max_size=64))
def test_peer_from_sockaddr_takes_any_bytes_without_crashing(raw):
    try:
        peer = peer_from_sockaddr(raw)
    except ValueError:
        return
    assert isinstance(peer[0], str) and 0 <= peer[1] < 65536
