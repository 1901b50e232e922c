"""Fair share against a live `serve`: TCP connections per address, response
rate limiting over UDP, and per-packet faults logged at a bounded rate.

Every address of 127.0.0.0/8 is loopback on Linux: 127.0.0.2 is another
client address, and 127.0.1.1 another /24 (the rate limiter's IPv4 prefix).
"""

from __future__ import annotations

import base64
import logging
import re
import socket
import time

from keyresolve.protocol import tsig
from keyresolve.protocol.codes import Rcode, RType
from keyresolve.protocol.message import FrameReader, Message, frame, make_query
from keyresolve.protocol.names import Name
from keyresolve.net.faultlog import FaultLog
from keyresolve.authority.ratelimit import DEFAULT_LOG_BURST, LogLimiter

from .conftest import tcp_exchange, tcp_read, write_serve_config
from .test_serve import EXAMPLE

ALICE_KEY = make_query(Name.from_text("alice@example.com."), RType.KEY, msg_id=1)


def connect_from(source: str, address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=5, source_address=(source, 0))


def answered_over(sock: socket.socket) -> bool:
    """True if a query on this connection is answered; False if the server
    closed it."""
    try:
        sock.sendall(frame(ALICE_KEY.to_wire()))
        return Message.from_wire(tcp_read(sock, FrameReader())).rcode == Rcode.NOERROR
    except (ConnectionError, OSError):
        return False


def test_one_address_cannot_hold_more_than_its_tcp_share(tmp_path, start_daemon):
    config = write_serve_config(tmp_path, {"example.com": EXAMPLE},
                                extra="max_tcp_per_address = 4")
    daemon = start_daemon("serve", "--config", str(config))
    held = [connect_from("127.0.0.1", daemon.address) for _ in range(4)]
    try:
        assert all(answered_over(sock) for sock in held)
        with connect_from("127.0.0.1", daemon.address) as extra:
            assert not answered_over(extra)  # the fifth from this address is closed
        with connect_from("127.0.0.2", daemon.address) as other:
            assert answered_over(other)  # another address still gets in
        daemon.wait_logged(r"too many TCP connections from 127\.0\.0\.1 \(4\)")
        held.pop().close()  # a slot frees up once the server sees it closed
        deadline = time.monotonic() + 5
        while True:
            with connect_from("127.0.0.1", daemon.address) as again:
                if answered_over(again):
                    break
            assert time.monotonic() < deadline, "the freed slot was never reused"
    finally:
        for sock in held:
            sock.close()


def burst(source: str, address: tuple[str, int], query: Message, count: int) -> list[Message]:
    """Send `count` datagrams at once from `source`; the replies that come
    (until none has come for half a second)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(0.5)
        wire = query.to_wire()
        for _ in range(count):
            sock.sendto(wire, address)
        replies = []
        deadline = time.monotonic() + 10
        while len(replies) < count and time.monotonic() < deadline:
            try:
                replies.append(Message.from_wire(sock.recv(65535)))
            except socket.timeout:
                break
        return replies


def test_rate_limit_answers_a_burst_up_to_the_rate_and_slips_some(tmp_path, start_daemon):
    config = write_serve_config(tmp_path, {"example.com": EXAMPLE},
                                extra="rate_limit = 10\nslip = 2")
    daemon = start_daemon("serve", "--config", str(config))
    replies = burst("127.0.0.1", daemon.address, ALICE_KEY, 200)
    full = [r for r in replies if not r.tc]
    slipped = [r for r in replies if r.tc]
    # 10 a second: the burst may straddle one second boundary (or two, on a
    # very slow machine), never more.
    assert 10 <= len(full) <= 30, len(full)
    assert all(r.answer and r.rcode == Rcode.NOERROR for r in full)
    # every other limited answer is a truncated stand-in: question, no records
    limited = 200 - len(full)
    assert limited // 2 - 3 <= len(slipped) <= limited // 2 + 3, (len(full), len(slipped))
    for r in slipped:
        assert r.question == ALICE_KEY.question and r.id == ALICE_KEY.id and r.aa
        assert not (r.answer or r.authority or r.additional)
    # what a real client does with TC: TCP, which is not limited
    assert Message.from_wire(tcp_exchange(daemon.address, ALICE_KEY.to_wire())).answer
    # another /24 has its own budget
    other = burst("127.0.1.1", daemon.address, ALICE_KEY, 1)
    assert len(other) == 1 and other[0].answer and not other[0].tc
    # and so has another answer class (NXDOMAIN) from the limited prefix
    nobody = make_query(Name.from_text("nobody@example.com."), RType.KEY, msg_id=2)
    missing = burst("127.0.0.1", daemon.address, nobody, 1)
    assert len(missing) == 1 and missing[0].rcode == Rcode.NXDOMAIN and not missing[0].tc
    daemon.wait_logged(r"rate-limiting positive answers to 127\.0\.0\.1")
    daemon.stop()
    assert re.search(r"rate limiting dropped or slipped \d+ positive answers", daemon.log)


def test_without_rate_limit_every_answer_goes_out(tmp_path, start_daemon):
    config = write_serve_config(tmp_path, {"example.com": EXAMPLE})
    daemon = start_daemon("serve", "--config", str(config))
    replies = burst("127.0.0.1", daemon.address, ALICE_KEY, 50)
    assert len(replies) == 50 and all(r.answer and not r.tc for r in replies)


WRONG = tsig.SharedKey(Name.from_text("xfer."), "hmac-sha256", bytes(range(1, 33)))
KEYS = f"""
[keys.xfer]
algorithm = "hmac-sha256"
secret = "{base64.b64encode(bytes(range(32))).decode()}"
"""


def test_a_flood_of_bad_packets_logs_a_bounded_number_of_lines_and_counts(
        tmp_path, start_daemon):
    config = write_serve_config(tmp_path, {"example.com": EXAMPLE}, extra=KEYS)
    daemon = start_daemon("serve", "--config", str(config))
    flood = 300
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect(daemon.address)
        for i in range(flood):  # one at a time: none is lost, so the counts are exact
            signed = tsig.sign(make_query(Name.from_text("alice@example.com."), RType.KEY,
                                          msg_id=i), WRONG, int(time.time()))
            sock.send(signed)
            assert Message.from_wire(sock.recv(65535)).rcode == Rcode.NOTAUTH
            sock.send(b"\x00\x07\x00\x00\x01\x00\xc1")  # a body msgpack cannot read
            assert Message.from_wire(sock.recv(65535)).rcode == Rcode.FORMERR
    daemon.stop()
    bad_signatures = [line for line in daemon.lines if "BADSIG from" in line]
    malformed = [line for line in daemon.lines if "FORMERR from" in line]
    assert len(bad_signatures) == DEFAULT_LOG_BURST
    assert len(malformed) == DEFAULT_LOG_BURST
    assert re.search(rf"{flood - DEFAULT_LOG_BURST} more bad signature lines in the last \d+ s",
                     daemon.log)
    assert re.search(rf"{flood - DEFAULT_LOG_BURST} more malformed message lines in the last",
                     daemon.log)


def test_fault_log_counts_at_the_level_of_the_lines_it_held_back(caplog):
    faults = FaultLog(logging.getLogger("keyresolve.test"), LogLimiter(burst=2, period=3600))
    with caplog.at_level(logging.INFO, logger="keyresolve.test"):
        for i in range(5):
            faults.info("refused", "refused %d", i)
        faults.warning("bad signature", "BADSIG %d", 0)
        faults.flush(final=True)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "refused 0"), (logging.INFO, "refused 1"),
        (logging.WARNING, "BADSIG 0"),
        (logging.INFO, "3 more refused lines in the last 0 s were not logged")]
