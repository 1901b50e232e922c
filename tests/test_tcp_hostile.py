"""End-to-end: hostile TCP clients against real `serve` and `resolver` daemons.

Each case misbehaves on one connection (stops reading, stops writing
mid-frame, resets, half-closes, sends odd frames or many queries at once);
throughout it, UDP and a fresh TCP client must be answered, and the daemon
must still be running and answering afterwards. One `serve` (authoritative
for "." and example.com, so it is also the resolver's root) and one
`resolver` are shared by the whole module.
"""

from __future__ import annotations

import base64
import select
import signal
import socket
import struct
import threading
import time

import pytest

from keyresolve.protocol import tsig
from keyresolve.protocol.codes import Opcode, Rcode, RType
from keyresolve.protocol.message import HEADER, VERSION, FrameReader, Message, frame, make_query
from keyresolve.protocol.names import Name

from .conftest import Daemon, b64key, tcp_read, udp_exchange

#: The daemons' timeouts here, small so that the cases take seconds.
SEND_TIMEOUT = 1.0
IDLE_TIMEOUT = 1.0
#: How long a stalled client is held while others are checked: beyond the
#: send timeout, so the daemon must have dealt with it meanwhile.
HOLD = 2.5 * SEND_TIMEOUT
#: Upper bound on anything a case waits for (a reply, a close, a log line).
BOUND = 15.0
#: Queries sent before a client that stops reading may conclude the daemon
#: stopped reading it too: their responses (~3 times their size) are more
#: than the kernel buffers a daemon's writes to such a client (measured: less
#: than one 60 kB response); ~3.9 MB go out before a send blocks.
STALL_BYTES = 256 * 1024
#: Mailboxes in example.com: its transfer (~0.5 MB) is more than the socket
#: buffers between a server and a client that does not read can hold.
MAILBOXES = 5000

SECRET = bytes(range(32))
XFER = tsig.SharedKey(Name.from_text("xfer."), "hmac-sha256", SECRET)

ROOT = """$ORIGIN .
$TTL 3600
@ SOA a.root-servers. hostmaster@root-servers. 1 3600 600 86400 60
@ NS a.root-servers.
a.root-servers. ADDR {self}
"""
EXAMPLE = """$ORIGIN example.com.
$TTL 3600
@ SOA ns1 hostmaster@ 1 3600 600 86400 60
@ NS ns1
ns1 ADDR {self}
""" + "".join(f"user{i}@ KEY x25519 encrypt {b64key(i % 200)}\n" for i in range(MAILBOXES))


class Target:
    """A daemon under test and the query it must keep answering."""

    def __init__(self, daemon: Daemon, rd: bool) -> None:
        self.daemon = daemon
        self.rd = rd

    @property
    def address(self) -> tuple[str, int]:
        return self.daemon.address

    def query(self, msg_id: int | None = None) -> Message:
        return make_query(Name.from_text("user1@example.com"), RType.KEY, msg_id=msg_id,
                          rd=self.rd)

    def check_answering(self) -> None:
        """UDP and a fresh TCP connection get the answer."""
        if self.daemon.proc.poll() is not None:
            code = self.daemon.stop()  # collects its last log lines
            raise AssertionError(f"daemon exited with status {code}:\n{self.daemon.log}")
        for tcp in (False, True):
            query = self.query()
            if tcp:
                with socket.create_connection(self.address, timeout=BOUND) as sock:
                    sock.sendall(frame(query.to_wire()))
                    reply = Message.from_wire(tcp_read(sock))
            else:
                reply = Message.from_wire(udp_exchange(self.address, query.to_wire()))
            assert reply.id == query.id and reply.rcode == Rcode.NOERROR and reply.answer

    def check_answering_for(self, seconds: float) -> int:
        """`check_answering` again and again for `seconds`; how many times."""
        end = time.monotonic() + seconds
        rounds = 0
        while time.monotonic() < end:
            self.check_answering()
            rounds += 1
            time.sleep(0.05)
        return rounds


def _write_config(directory, body: str) -> None:
    (directory / "serve.toml").write_text(body)


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    """{"serve": Target, "resolver": Target}, started once for the module."""
    base = tmp_path_factory.mktemp("hostile")
    sdir, rdir = base / "serve", base / "resolver"
    sdir.mkdir()
    rdir.mkdir()
    for name, text in (("root.zone", ROOT), ("example.zone", EXAMPLE)):
        (sdir / name).write_text(text.replace("{self}", "127.0.0.1:9"))
    (sdir / "serve.toml").write_text(
        f'listen = ["127.0.0.1:0"]\ndata_dir = "data"\n'
        f"tcp_send_timeout = {SEND_TIMEOUT}\ntcp_idle_timeout = {IDLE_TIMEOUT}\n"
        f'[keys.xfer]\nalgorithm = "hmac-sha256"\n'
        f'secret = "{base64.b64encode(SECRET).decode()}"\n'
        f'[[zones]]\nname = "."\nfile = "root.zone"\n'
        f'[[zones]]\nname = "example.com"\nfile = "example.zone"\nallow_transfer = ["xfer"]\n')
    daemons = []
    try:
        serve = Daemon(["serve", "--config", "serve.toml"], sdir)
        daemons.append(serve)
        serve.wait_for(r"\bready\b")
        at = f"{serve.address[0]}:{serve.address[1]}"
        for name, text in (("root.zone", ROOT), ("example.zone", EXAMPLE)):  # serial 2
            (sdir / name).write_text(text.replace("{self}", at).replace(" 1 3600 ", " 2 3600 "))
        serve.signal(signal.SIGHUP)
        serve.wait_for("reload done")
        (rdir / "root.hints").write_text(
            f"$ORIGIN .\n$TTL 3600\n. NS a.root-servers.\na.root-servers. ADDR {at}\n")
        (rdir / "resolver.toml").write_text(
            f'listen = ["127.0.0.1:0"]\nroot_hints = "root.hints"\n'
            f"tcp_send_timeout = {SEND_TIMEOUT}\ntcp_idle_timeout = {IDLE_TIMEOUT}\n")
        resolver = Daemon(["resolver", "--config", "resolver.toml"], rdir)
        daemons.append(resolver)
        resolver.wait_for(r"\bready\b")
        found = {"serve": Target(serve, rd=False), "resolver": Target(resolver, rd=True)}
        for target in found.values():
            target.check_answering()
        yield found
        for target in found.values():
            target.check_answering()
            assert target.daemon.stop() == 0, target.daemon.log
            # a peer's behaviour is never taken for a bug of ours
            assert "Traceback" not in target.daemon.log, target.daemon.log
    finally:
        for daemon in daemons:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait()


def _stalled_socket(address) -> socket.socket:
    """A connection with a small receive buffer that the test never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(BOUND)
    sock.connect(address)
    return sock


def _send_until_blocked(sock: socket.socket, data: bytes) -> int:
    """Send `data` again and again until the peer stops taking it for a
    while (bounded in bytes and in time); the bytes sent. A pause before
    STALL_BYTES could be a busy daemon rather than one that stopped reading."""
    sock.setblocking(False)
    sent, end = 0, time.monotonic() + BOUND
    try:
        while sent < 256 * 2**20 and time.monotonic() < end:
            try:
                sent += sock.send(data)
            except BlockingIOError:
                _, writable, _ = select.select([], [sock], [], 0.3)
                if not writable and sent >= STALL_BYTES:
                    return sent
        raise AssertionError(f"the daemon kept reading a client that does not ({sent} bytes)")
    finally:
        sock.settimeout(BOUND)


def _until_closed(sock: socket.socket) -> bytes:
    """What the daemon still sends, until it closes the connection (or
    resets it: it closed with our bytes unread)."""
    received = b""
    end = time.monotonic() + BOUND
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError("the daemon did not close the connection")


def _messages(data: bytes) -> list[Message]:
    reader = FrameReader()
    reader.receive_data(data)
    out = []
    while (message := reader.next_frame()) is not None:
        out.append(Message.from_wire(message))
    return out


def _reset(sock: socket.socket) -> None:
    """Close with a reset (RST) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _axfr() -> bytes:
    query = make_query(Name.from_text("example.com"), RType.AXFR, opcode=Opcode.TRANSFER)
    return frame(tsig.sign(query, XFER, int(time.time())))


# The cases: each takes a Target, misbehaves on one connection, and checks
# UDP and fresh TCP clients while it does.

def stops_reading(target: Target) -> None:
    sock = _stalled_socket(target.address)
    port = sock.getsockname()[1]
    with sock:
        _send_until_blocked(sock, frame(target.query().to_wire()) * 1024)
        assert target.check_answering_for(HOLD) >= 3
        target.daemon.wait_logged(rf"TCP client 127\.0\.0\.1 port {port} stopped reading "
                                  rf"for 1 s; closing the connection", BOUND)
        _until_closed(sock)


def stops_writing_mid_frame(target: Target) -> None:
    wire = target.query().to_wire()
    with socket.create_connection(target.address, timeout=BOUND) as sock:
        sock.sendall(frame(wire)[:len(wire) // 2])
        start = time.monotonic()
        target.check_answering()
        assert _until_closed(sock) == b""  # closed at the idle timeout, nothing sent
        assert time.monotonic() - start < IDLE_TIMEOUT + BOUND / 2


def resets_mid_frame(target: Target) -> None:
    wire = target.query().to_wire()
    sock = socket.create_connection(target.address, timeout=BOUND)
    sock.sendall(frame(wire) + frame(wire)[:5])  # one whole query, then part of one
    target.check_answering()
    _reset(sock)
    target.check_answering()
    # with replies pending: many queries, none of the replies read
    sock = socket.create_connection(target.address, timeout=BOUND)
    sock.sendall(frame(wire) * 500 + frame(wire)[:5])
    _reset(sock)
    target.check_answering()


def half_closes(target: Target) -> None:
    queries = [target.query(msg_id=i) for i in range(10)]
    with socket.create_connection(target.address, timeout=BOUND) as sock:
        sock.sendall(b"".join(frame(q.to_wire()) for q in queries))
        sock.shutdown(socket.SHUT_WR)
        target.check_answering()
        replies = _messages(_until_closed(sock))
    assert sorted(r.id for r in replies) == list(range(10))
    assert all(r.rcode == Rcode.NOERROR and r.answer for r in replies)


def zero_length_frame(target: Target) -> None:
    query = target.query()
    with socket.create_connection(target.address, timeout=BOUND) as sock:
        sock.sendall(b"\x00\x00" + frame(query.to_wire()))
        reply = Message.from_wire(tcp_read(sock))  # the empty message got nothing
        assert reply.id == query.id and reply.answer
        target.check_answering()


def largest_frame_of_junk(target: Target) -> None:
    # A 2-byte prefix cannot exceed the 65535-byte limit: the largest one,
    # with junk after a readable id, is answered FORMERR.
    query = target.query()
    junk = HEADER.pack(0x1234, 0, VERSION, 0)  # a query's header, then no valid body
    junk += b"\xff" * (0xFFFF - len(junk))
    with socket.create_connection(target.address, timeout=BOUND) as sock:
        sock.sendall(b"\xff\xff" + junk + frame(query.to_wire()))
        reader = FrameReader()
        first = Message.from_wire(tcp_read(sock, reader))
        second = Message.from_wire(tcp_read(sock, reader))
        assert (first.id, first.rcode) == (0x1234, Rcode.FORMERR)
        assert second.id == query.id and second.answer
        target.check_answering()


def pipelines_1000(target: Target) -> None:
    queries = [target.query(msg_id=i) for i in range(1000)]
    with socket.create_connection(target.address, timeout=BOUND) as sock:
        sender = threading.Thread(
            target=sock.sendall, args=(b"".join(frame(q.to_wire()) for q in queries),))
        sender.start()  # sent while the replies are read: neither side waits on the other
        reader = FrameReader()
        try:
            replies = [Message.from_wire(tcp_read(sock, reader)) for _ in queries]
        finally:
            sender.join(BOUND)
        target.check_answering()
    assert sorted(r.id for r in replies) == list(range(1000))
    assert all(r.rcode == Rcode.NOERROR and r.answer for r in replies)


def transfer_stops_reading(target: Target) -> None:
    sock = _stalled_socket(target.address)
    port = sock.getsockname()[1]
    with sock:
        sock.sendall(_axfr())
        assert target.check_answering_for(HOLD) >= 3
        target.daemon.wait_logged(rf"transfer out example\.com\.? to 127\.0\.0\.1 port {port} "
                                  rf"cut short: took no whole message in 1 s", BOUND)
        messages = _messages(_until_closed(sock))
    records = [r for m in messages for r in m.answer]
    assert records[0].rtype == RType.SOA
    assert len(records) < MAILBOXES  # cut short: no closing SOA


def transfer_resets(target: Target) -> None:
    sock = _stalled_socket(target.address)
    sock.sendall(_axfr())
    first = Message.from_wire(tcp_read(sock))  # the transfer has begun; reset it midway
    assert first.rcode == Rcode.NOERROR and first.answer[0].rtype == RType.SOA
    target.check_answering()
    _reset(sock)
    target.check_answering()


def transfer_half_closes(target: Target) -> None:
    with socket.create_connection(target.address, timeout=BOUND) as sock:
        sock.sendall(_axfr())
        sock.shutdown(socket.SHUT_WR)
        target.check_answering()
        records = [r for m in _messages(_until_closed(sock)) for r in m.answer]
    assert records[0].rtype == RType.SOA and records[-1].rtype == RType.SOA
    assert sum(r.rtype == RType.KEY for r in records) == MAILBOXES


QUERY_CASES = [stops_reading, stops_writing_mid_frame, resets_mid_frame, half_closes,
               zero_length_frame, largest_frame_of_junk, pipelines_1000]
TRANSFER_CASES = [transfer_stops_reading, transfer_resets, transfer_half_closes]


@pytest.mark.parametrize("which,case", [
    *((which, case) for which in ("serve", "resolver") for case in QUERY_CASES),
    *(("serve", case) for case in TRANSFER_CASES),
], ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_a_hostile_tcp_client_costs_its_connection_only(targets, which, case):
    target = targets[which]
    case(target)
    target.check_answering()
