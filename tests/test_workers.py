"""End-to-end: `keyresolve serve --workers 2`, real processes sharing one port."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import time

import msgpack
import pytest
import trio

from keyresolve.protocol import tsig
from keyresolve.protocol.codes import Opcode, Rcode, RType
from keyresolve.daemons.workers import WorkerPool
from keyresolve.protocol.message import MAX_MESSAGE, Message, make_query
from keyresolve.protocol.names import Name
from keyresolve.authority.xfr import make_notify
from keyresolve.zonedata.zonefile import parse_zone_text

from .conftest import b64key, write_serve_config
from .test_xfr_e2e import XFER, Pair, wait_until

#: Datagrams sent from distinct source ports: the kernel spreads the 4-tuples
#: over both processes, so all landing on one has odds of 2 ** -(SPREAD - 1).
SPREAD = 48

ZONE = """$ORIGIN example.com.
$TTL 60
@ SOA ns1 hostmaster@ {serial} 3600 600 604800 30
@ NS ns1
ns1 ADDR 127.0.0.1:9
alice@ KEY x25519 encrypt {key}
"""


def spread(address, wires: list[bytes]) -> list[Message]:
    """Send each datagram from its own socket (its own source port); the replies."""
    socks = []
    try:
        for data in wires:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.settimeout(5.0)
            sock.connect(address)
            sock.send(data)
        return [Message.from_wire(sock.recv(MAX_MESSAGE)) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def key_query(mailbox: str = "alice@example.com") -> bytes:
    return make_query(Name.from_text(mailbox), RType.KEY).to_wire()


def handled(daemon) -> dict[str, int]:
    """Messages each process handled, from the lines they log at exit."""
    counts = {}
    for line in daemon.lines:
        if m := re.search(r"(worker \d+: |serve: )(\d+) messages handled", line):
            counts["main" if m.group(1) == "serve: " else m.group(1)[:-2]] = int(m.group(2))
    return counts


def worker_pid(daemon, index: int = 1, *, new: bool = False) -> int:
    """The pid worker `index` logged at its start (`new`: at a start still to come)."""
    pattern = rf"worker {index} started \(pid (\d+)\)"
    logged = [] if new else re.findall(pattern, daemon.log)
    return int(logged[-1] if logged else daemon.wait_for(pattern).group(1))


def gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie not yet reaped counts)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def workers(tmp_path, start_daemon):
    config = write_serve_config(tmp_path, {"example.com": ZONE.format(serial=1, key=b64key(1))})
    return start_daemon("serve", "--config", str(config), "--workers", "2")


def test_both_processes_answer_and_sigterm_stops_them_all(workers):
    pid = worker_pid(workers)
    assert "all 2 processes answering" in workers.log
    replies = spread(workers.address, [key_query() for _ in range(SPREAD)])
    assert all(r.rcode == Rcode.NOERROR and r.aa and len(r.answer) == 1 for r in replies)
    assert workers.stop() == 0
    counts = handled(workers)
    assert set(counts) == {"main", "worker 1"}, workers.log
    assert counts["main"] > 0 and counts["worker 1"] > 0
    assert sum(counts.values()) == SPREAD
    assert gone(pid)


def test_reload_by_sighup_to_the_main_process_reaches_the_workers(tmp_path, workers):
    worker_pid(workers)
    before = spread(workers.address, [key_query() for _ in range(SPREAD)])
    assert {r.answer[0].rdata.key for r in before} == {base64.b64decode(b64key(1))}
    (tmp_path / "example.com.zone").write_text(ZONE.format(serial=2, key=b64key(2)))
    workers.signal(signal.SIGHUP)
    workers.wait_for("reload done")
    after = spread(workers.address, [key_query() for _ in range(SPREAD)])
    assert {r.answer[0].rdata.key for r in after} == {base64.b64decode(b64key(2))}
    workers.stop()
    assert all(count > 0 for count in handled(workers).values())


def test_a_killed_worker_is_logged_and_restarted(workers):
    pid = worker_pid(workers)
    workers.expect_error(r"worker 1 exited \(status -9\); restarting it")
    os.kill(pid, signal.SIGKILL)
    workers.wait_for(r"worker 1 exited \(status -9\); restarting it")
    new_pid = worker_pid(workers, new=True)
    assert new_pid != pid
    replies = spread(workers.address, [key_query() for _ in range(SPREAD)])
    assert all(r.rcode == Rcode.NOERROR for r in replies)
    workers.stop()
    assert gone(new_pid)


def test_a_worker_restarted_after_a_config_edit_refuses_to_start(tmp_path, workers):
    """Answering from another config than the main process's would split the
    server in two; the main process answers alone until the file is back."""
    pid = worker_pid(workers)
    config = tmp_path / "serve.toml"
    original = config.read_text()
    config.write_text("tcp_idle_timeout = 9\n" + original)  # a worker could run with it
    workers.expect_error(r"worker 1 exited \(status .*\); restarting it")
    workers.expect_error(r"ERROR keyresolve\.serve: worker 1 did not start "
                         r"\(pid \d+, status (?:1|None)\)")
    os.kill(pid, signal.SIGKILL)
    workers.wait_for("changed since the server started")
    replies = spread(workers.address, [key_query() for _ in range(SPREAD)])
    assert all(r.rcode == Rcode.NOERROR for r in replies)
    config.write_text(original)  # a later restart of the worker takes
    new_pid = worker_pid(workers, new=True)
    assert new_pid != pid
    workers.stop()
    assert gone(new_pid)


def test_workers_exit_when_the_main_process_dies(workers):
    pid = worker_pid(workers)
    workers.expect_exit = -signal.SIGKILL
    workers.signal(signal.SIGKILL)
    workers.wait_for("the main process closed the channel: worker exiting")
    wait_until(lambda: gone(pid))


def test_workers_option_in_the_config(tmp_path, start_daemon):
    config = write_serve_config(tmp_path, {"example.com": ZONE.format(serial=1, key=b64key(1))},
                                extra="workers = 2")
    daemon = start_daemon("serve", "--config", str(config))
    pid = worker_pid(daemon)
    daemon.stop()
    assert gone(pid)


def secondary_with_workers(pair: Pair):
    pair.secondary = pair.start_daemon("serve", "--config", str(pair.sdir / "serve.toml"),
                                       "--workers", "2", cwd=pair.sdir)
    if not re.search(r"transfer in example\.com\. .*full", pair.secondary.log):
        pair.secondary.wait_for(r"transfer in example\.com\. .*full")
    return pair.secondary


def test_notify_to_the_shared_port_is_answered_and_leads_to_a_transfer(tmp_path, start_daemon):
    pair = Pair(tmp_path, start_daemon)
    pair.start_primary()
    secondary = secondary_with_workers(pair)
    pair.write_zone(2, ["alice", "bob", "carol"])
    # the primary's own NOTIFY goes to the secondary's port too; ours are extra
    pair.primary.signal(signal.SIGHUP)
    pair.primary.wait_for("reload done")
    soa = parse_zone_text((pair.pdir / "example.com.zone").read_text()).soa
    notifies = []
    for i in range(SPREAD):  # distinct ids: a copy of a signed NOTIFY is refused
        message = make_notify(Name.from_text("example.com."), soa, msg_id=i)
        notifies.append(tsig.sign(message, XFER, int(time.time())))
    acks = spread(("127.0.0.1", pair.sport), notifies)
    assert all(a.qr and a.opcode == Opcode.NOTIFY and a.rcode == Rcode.NOERROR for a in acks)
    secondary.wait_for(r"transfer in example\.com\. .*serial 1 -> 2")
    wait_until(lambda: all(r.answer for r in spread(("127.0.0.1", pair.sport), [
        key_query("carol@example.com") for _ in range(SPREAD)])))
    secondary.stop()
    counts = handled(secondary)
    assert counts["worker 1"] > 0 and counts["main"] > SPREAD // 2  # forwarded ones count twice


def test_workers_answer_servfail_once_a_secondary_zone_expires(tmp_path, start_daemon):
    pair = Pair(tmp_path, start_daemon, refresh=1, retry=1, expire=3)
    pair.start_primary()
    secondary = secondary_with_workers(pair)
    replies = spread(("127.0.0.1", pair.sport), [key_query() for _ in range(SPREAD)])
    assert all(r.rcode == Rcode.NOERROR for r in replies)
    pair.primary.stop()
    secondary.expect_error(r"zone example\.com\. expired")
    secondary.wait_for(r"zone example\.com\. expired")
    replies = spread(("127.0.0.1", pair.sport), [key_query() for _ in range(SPREAD)])
    assert all(r.rcode == Rcode.SERVFAIL for r in replies)
    secondary.stop()
    assert all(count > 0 for count in handled(secondary).values())


def test_workers_serve_zone_transfers_from_the_shared_store(tmp_path, start_daemon):
    from keyresolve.authority.xfr import make_transfer_query

    from .conftest import tcp_exchange

    pair = Pair(tmp_path, start_daemon)
    primary = pair.start_daemon("serve", "--config", str(pair.pdir / "serve.toml"),
                                "--workers", "2", cwd=pair.pdir)
    origin = Name.from_text("example.com.")
    for _ in range(SPREAD // 2):  # each a new connection, from its own port
        request = tsig.sign(make_transfer_query(origin, RType.AXFR, None), XFER, int(time.time()))
        reply = Message.from_wire(tcp_exchange(("127.0.0.1", pair.pport), request))
        assert reply.rcode == Rcode.NOERROR
        assert reply.answer[0].rtype == RType.SOA == reply.answer[-1].rtype
    primary.stop()
    served = re.findall(r"(\[worker 1\])?: transfer out example\.com\.", primary.log)
    assert len(served) == SPREAD // 2 and set(served) == {"", "[worker 1]"}


class _Failing:
    """A handler with a bug."""

    def handle(self, data, peer, tcp):
        raise ValueError("a handler bug")


def test_a_worker_channel_that_fails_or_a_failing_handler_never_stops_the_main_process(caplog):
    pool = WorkerPool(None, [], _Failing())
    forward = msgpack.packb(["forward", 7, "127.0.0.1", 5300, False, b"notify"])
    assert msgpack.unpackb(pool._answer(forward)) == ["reply", 7, None]
    assert "a handler bug" in caplog.text

    async def main() -> bool:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs.send(forward)
        theirs.close()  # the worker died before the reply: sending it fails
        with trio.socket.from_stdlib_socket(ours) as channel:
            with trio.fail_after(5):
                return await pool._relay(1, channel)

    assert trio.run(main) is False
    assert "worker 1: its channel failed" in caplog.text
