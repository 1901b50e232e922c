"""End-to-end: the bounds on an outbound zone transfer, against a real `serve`.

A transfer reads the zone from one LMDB read snapshot, which keeps LMDB from
reusing pages while it is open; a secondary that stops reading (the idle
bound: `tcp_send_timeout` per message) or reads at a trickle (the overall
bound: `max_transfer_time_out`) must not hold it for long. Each case checks
that the transfer is cut short, its snapshot released, one warning names the
zone, the peer and the bound, and the daemon still answers queries and a
normal transfer afterwards.
"""

from __future__ import annotations

import base64
import socket
import threading
import time

from keyresolve.protocol import tsig
from keyresolve.protocol.codes import Opcode, Rcode, RType
from keyresolve.protocol.message import FrameReader, Message, frame, make_query
from keyresolve.protocol.names import Name
from keyresolve.store.zones import Store

from .conftest import Daemon, ask, b64key, tcp_read

SECRET = bytes(range(32))
XFER = tsig.SharedKey(Name.from_text("xfer."), "hmac-sha256", SECRET)
#: Mailboxes in example.com: its transfer (0.65 MB, 40 messages) is more than
#: the socket buffers between the daemon and a client with a 4 kB receive
#: buffer hold (measured: 2 messages), and takes a trickling client
#: (`TRICKLE` bytes every `TRICKLE_PAUSE`: at most 80 kB/s) over 8 s.
MAILBOXES = 10000
TRICKLE = 4096
TRICKLE_PAUSE = 0.05
#: The bounds set for the tests: small, so the cases take seconds.
SEND_TIMEOUT = 1
TRANSFER_TIME = 2
#: Upper bound on anything a case waits for (a log line, a close).
BOUND = 30.0

ZONE = """$ORIGIN example.com.
$TTL 3600
@ SOA ns1 hostmaster@ 1 3600 600 86400 60
@ NS ns1
ns1 ADDR 127.0.0.1:9
""" + "".join(f"user{i}@ KEY x25519 encrypt {b64key(i % 200)}\n" for i in range(MAILBOXES))


def _start(tmp_path, start_daemon, settings: str) -> Daemon:
    (tmp_path / "example.zone").write_text(ZONE)
    (tmp_path / "serve.toml").write_text(
        f'listen = ["127.0.0.1:0"]\ndata_dir = "data"\n{settings}'
        f'[keys.xfer]\nalgorithm = "hmac-sha256"\n'
        f'secret = "{base64.b64encode(SECRET).decode()}"\n'
        f'[[zones]]\nname = "example.com"\nfile = "example.zone"\nallow_transfer = ["xfer"]\n')
    return start_daemon("serve", "--config", "serve.toml")


def _axfr() -> bytes:
    query = make_query(Name.from_text("example.com"), RType.AXFR, opcode=Opcode.TRANSFER)
    return frame(tsig.sign(query, XFER, int(time.time())))


def _slow_socket(address) -> socket.socket:
    """A connection with a small receive buffer, that has asked for the zone."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(BOUND)
    sock.connect(address)
    sock.sendall(_axfr())
    return sock


def _read_snapshots(data_dir, pid: int) -> int:
    """How many LMDB read transactions process `pid` has open in the store
    at `data_dir` (its rows in LMDB's reader table with a transaction id; a
    slot kept for reuse shows "-")."""
    with Store(data_dir, readonly=True) as store:
        rows = [line.split() for line in store._env.readers().splitlines()[1:]]
    return sum(1 for row in rows if len(row) == 3 and int(row[0]) == pid and row[2] != "-")


def _until_closed(sock: socket.socket, pace: threading.Event | None = None) -> bytes:
    """What the daemon sends until it closes the connection (or resets it).
    While `pace` is given and not set, read `TRICKLE` bytes per `TRICKLE_PAUSE`."""
    received = b""
    end = time.monotonic() + BOUND
    while time.monotonic() < end:
        try:
            chunk = sock.recv(TRICKLE if pace is not None and not pace.is_set() else 65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
        if pace is not None and not pace.is_set():
            pace.wait(TRICKLE_PAUSE)  # the pace of a slow reader, not a wait for readiness
    raise AssertionError("the daemon did not close the connection")


def _records(data: bytes) -> list:
    reader = FrameReader()
    reader.receive_data(data)
    found = []
    while (message := reader.next_frame()) is not None:
        found += Message.from_wire(message).answer
    return found


def _still_serving(daemon: Daemon) -> None:
    """A query and a whole transfer, read at full speed, are answered."""
    reply = ask(daemon.address, make_query(Name.from_text("user1@example.com"), RType.KEY))
    assert reply.rcode == Rcode.NOERROR and reply.answer
    with socket.create_connection(daemon.address, timeout=BOUND) as sock:
        sock.sendall(_axfr())
        reader, records = FrameReader(), []
        while not records or len(records) == 1 or records[-1].rtype != RType.SOA:
            records += Message.from_wire(tcp_read(sock, reader)).answer
    assert sum(r.rtype == RType.KEY for r in records) == MAILBOXES
    daemon.wait_for(rf"transfer out example\.com\.? to 127\.0\.0\.1: full, .* {MAILBOXES + 4} "
                    rf"records")


def test_a_secondary_that_stops_reading_is_cut_off_by_the_idle_bound(tmp_path, start_daemon):
    daemon = _start(tmp_path, start_daemon, f"tcp_send_timeout = {SEND_TIMEOUT}\n")
    pid = daemon.proc.pid
    with _slow_socket(daemon.address) as sock:
        port = sock.getsockname()[1]
        first = Message.from_wire(tcp_read(sock))  # begun; from now on nothing is read
        assert first.answer[0].rtype == RType.SOA
        assert _read_snapshots(tmp_path / "data", pid) == 1  # the transfer holds one
        line = daemon.wait_for(
            rf"WARNING .*transfer out example\.com\.? to 127\.0\.0\.1 port {port} cut short: "
            rf"took no whole message in {SEND_TIMEOUT} s \(tcp_send_timeout\); (\d+) messages", BOUND)
        assert _read_snapshots(tmp_path / "data", pid) == 0
        records = [*first.answer, *_records(_until_closed(sock))]
    assert records[0].rtype == RType.SOA
    assert len(records) < MAILBOXES  # cut short: no closing SOA
    assert int(line.group(1)) >= 1
    _still_serving(daemon)


def test_a_secondary_that_reads_at_a_trickle_is_cut_off_by_the_overall_bound(tmp_path,
                                                                           start_daemon):
    daemon = _start(tmp_path, start_daemon, f"max_transfer_time_out = {TRANSFER_TIME}\n")
    pid = daemon.proc.pid
    pace = threading.Event()
    received: list[bytes] = []
    with _slow_socket(daemon.address) as sock:
        port = sock.getsockname()[1]
        reader = threading.Thread(target=lambda: received.append(_until_closed(sock, pace)))
        reader.start()
        try:
            line = daemon.wait_for(
                rf"WARNING .*transfer out example\.com\.? to 127\.0\.0\.1 port {port} cut short: "
                rf"not done after {TRANSFER_TIME} s \(max_transfer_time_out\); (\d+) messages "
                rf"\((\d+) bytes\) sent in ([\d.]+) s", BOUND)
            assert _read_snapshots(tmp_path / "data", pid) == 0
        finally:
            pace.set()  # read the rest at full speed
            reader.join(BOUND)
    assert received, "the reader did not see the connection close"
    records = _records(received[0])
    assert records[0].rtype == RType.SOA
    assert len(records) < MAILBOXES  # cut short: no closing SOA
    # it was taking the zone all along (a trickle, not a stall), for the bound
    assert int(line.group(1)) >= 2 and TRANSFER_TIME <= float(line.group(3)) < BOUND
    _still_serving(daemon)
