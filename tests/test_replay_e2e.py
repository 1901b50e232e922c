"""End-to-end replay protection: a signed NOTIFY or CONTROL message is
accepted once by a live daemon; a byte-for-byte copy gets a signed NOTAUTH."""

from __future__ import annotations

import base64
import re
import socket
import time

from keyresolve.protocol import tsig
from keyresolve.protocol.codes import ControlCommand, Opcode, Rcode
from keyresolve.protocol.message import MAX_MESSAGE, Message, make_query
from keyresolve.protocol.names import Name
from keyresolve.authority.ratelimit import DEFAULT_LOG_BURST
from keyresolve.authority.xfr import make_notify

from .conftest import tcp_exchange, udp_exchange
from .test_resolver_e2e import start_resolver
from .test_workers import SPREAD, handled, spread
from .test_xfr_e2e import KEYS, XFER

ORIGIN = Name.from_text("example.com.")
#: Distinct signed NOTIFYs sent to a live daemon in the flood test.
FLOOD = 300
#: Longest the flood may take (it takes well under a second unloaded).
FLOOD_BOUND = 30.0
OPS_SECRET = bytes(range(100, 132))
OPS = tsig.SharedKey(Name.from_text("ops."), "hmac-sha256", OPS_SECRET)


def start_secondary(tmp_path, start_daemon, *, workers: int = 1):
    """A server with one secondary zone whose NOTIFYs must be signed by xfer
    (its primary, port 9, never answers: NOTIFY handling is what is tested)."""
    config = tmp_path / "serve.toml"
    config.write_text(f'listen = ["127.0.0.1:0"]\ndata_dir = "data"\nworkers = {workers}\n'
                      f'{KEYS}[[zones]]\nname = "example.com"\n'
                      f'primaries = ["127.0.0.1:9"]\nkey = "xfer"\n')
    # its primary is made up: the zone expires meanwhile
    return start_daemon("serve", "--config", str(config),
                        expect_errors=[r"zone example\.com\. expired"])


def signed_notify(msg_id: int) -> tuple[Message, bytes]:
    """A signed NOTIFY; distinct ids make distinct requests within a second
    (random ones would collide: 300 of them share one about half the time)."""
    message = make_notify(ORIGIN, msg_id=msg_id)
    return message, tsig.sign(message, XFER, int(time.time()))


def test_a_replayed_notify_gets_notauth_from_every_process(tmp_path, start_daemon):
    daemon = start_secondary(tmp_path, start_daemon, workers=2)
    message, wire = signed_notify(1)
    first = Message.from_wire(udp_exchange(daemon.address, wire))
    assert first.rcode == Rcode.NOERROR and first.opcode == Opcode.NOTIFY
    tsig.verify_response(first, XFER, message.signature.mac, int(time.time()))
    # Copies from many source ports reach both processes (SO_REUSEPORT);
    # workers forward NOTIFY to the main process, which remembers it.
    copies = spread(daemon.address, [wire] * SPREAD)
    copies.append(Message.from_wire(tcp_exchange(daemon.address, wire)))
    for copy in copies:
        assert copy.rcode == Rcode.NOTAUTH and copy.answer == []
        tsig.verify_response(copy, XFER, message.signature.mac, int(time.time()))  # signed
    # A NOTIFY signed anew (another id) is a new request: accepted.
    again = Message.from_wire(udp_exchange(daemon.address, signed_notify(2)[1]))
    assert again.rcode == Rcode.NOERROR
    daemon.stop()
    assert daemon.log.count("NOTIFY for example.com. (serial") == 2  # first and again
    # every copy is refused and logged, at the fault log's bounded rate
    logged = daemon.log.count("NOTAUTH from 127.0.0.1: key xfer.: replay of a request")
    held = sum(int(n) for n in re.findall(r"(\d+) more replay lines", daemon.log))
    assert logged + held == SPREAD + 1 and logged <= DEFAULT_LOG_BURST
    assert handled(daemon)["worker 1"] > 0  # some copies went through the worker


def test_a_flood_of_distinct_signed_notifies_is_accepted_and_copies_are_not(
        tmp_path, start_daemon):
    daemon = start_secondary(tmp_path, start_daemon)
    wires = [signed_notify(i)[1] for i in range(FLOOD)]
    deadline = time.monotonic() + FLOOD_BOUND
    rcodes = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5.0)
        sock.connect(daemon.address)
        for wire in wires + wires:  # every one, then every one again
            assert time.monotonic() < deadline, "flood took too long"
            sock.send(wire)
            reply = Message.from_wire(sock.recv(MAX_MESSAGE))
            assert reply.id == Message.from_wire(wire).id
            rcodes.append(reply.rcode)
    assert rcodes == [Rcode.NOERROR] * FLOOD + [Rcode.NOTAUTH] * FLOOD


def test_a_replayed_control_flush_is_refused_by_the_resolver(tmp_path, start_daemon):
    keys = (f'max_fudge = 60\ncontrol_keys = ["ops"]\n[keys.ops]\nalgorithm = "hmac-sha256"\n'
            f'secret = "{base64.b64encode(OPS_SECRET).decode()}"\n')
    resolver = start_resolver(start_daemon, tmp_path / "r", [("a.root.", ("127.0.0.1", 9))],
                              extra=keys)
    flush = make_query(Name.from_text("."), ControlCommand.FLUSH_ALL, opcode=Opcode.CONTROL,
                       msg_id=1)
    wire = tsig.sign(flush, OPS, int(time.time()), fudge=300)
    first = Message.from_wire(tcp_exchange(resolver.address, wire))
    assert first.rcode == Rcode.NOERROR
    tsig.verify_response(first, OPS, flush.signature.mac, int(time.time()))
    assert first.signature.fudge == 60  # the window it got: max_fudge, not the stated 300
    resolver.wait_for("cache flushed by 127.0.0.1")
    for exchange in (tcp_exchange, udp_exchange):
        copy = Message.from_wire(exchange(resolver.address, wire))
        assert copy.rcode == Rcode.NOTAUTH
        tsig.verify_response(copy, OPS, flush.signature.mac, int(time.time()))
    # Signed a second time (a new id, a new MAC): a new request, accepted.
    fresh = make_query(Name.from_text("."), ControlCommand.FLUSH_ALL, opcode=Opcode.CONTROL,
                       msg_id=2)
    again = Message.from_wire(tcp_exchange(resolver.address,
                                           tsig.sign(fresh, OPS, int(time.time()))))
    assert again.rcode == Rcode.NOERROR
    resolver.stop()
    assert resolver.log.count("cache flushed by") == 2  # first and fresh
    assert resolver.log.count("NOTAUTH from 127.0.0.1: key ops.: replay of a request") == 2
