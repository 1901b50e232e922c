"""End-to-end HMAC: signed queries to live daemons, every failure, policy."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyresolve.protocol import tsig
from keyresolve.protocol.codes import Opcode, Rcode, RType
from keyresolve.protocol.errors import PeerError
from keyresolve.protocol.message import Message, Signature, make_query
from keyresolve.protocol.names import Name

from .conftest import b64key, keyresolve_cmd, tcp_exchange, udp_exchange, write_serve_config
from .test_resolver_e2e import start_resolver
from .test_serve import EXAMPLE
from .test_xfr_e2e import free_port

SECRET = bytes(range(32))
OTHER = bytes(range(1, 33))
KEYS = f"""
[keys.xfer]
algorithm = "hmac-sha256"
secret = "{base64.b64encode(SECRET).decode()}"

[keys.ops]
algorithm = "hmac-sha512"
secret = "{base64.b64encode(OTHER * 2).decode()}"
"""
XFER = tsig.SharedKey(Name.from_text("xfer."), "hmac-sha256", SECRET)


def name(text):
    return Name.from_text(text)


@pytest.fixture
def signed_server(tmp_path, start_daemon):
    (tmp_path / "private.zone").write_text(EXAMPLE.replace("example.com.", "private.test.")
                                           + f"deep@sub KEY x25519 encrypt {b64key(7)}\n")
    config = write_serve_config(tmp_path, {"example.com": EXAMPLE}, extra=KEYS)
    config.write_text(config.read_text().replace(
        'file = "example.com.zone"',
        'file = "example.com.zone"\nallow_transfer = ["xfer"]\nallow_notify = ["xfer"]')
        + '[[zones]]\nname = "private.test"\nfile = "private.zone"\nrequire_signed = true\n')
    return start_daemon("serve", "--config", str(config))


def signed_exchange(address, message, key=XFER, now=None):
    wire = tsig.sign(message, key, int(time.time()) if now is None else now)
    return Message.from_wire(udp_exchange(address, wire))


def test_signed_query_gets_a_verified_signed_answer(signed_server):
    query = make_query(name("alice@example.com"), RType.KEY)
    reply = signed_exchange(signed_server.address, query)
    assert reply.rcode == Rcode.NOERROR and reply.answer
    tsig.verify_response(reply, XFER, query.signature.mac, int(time.time()))


@pytest.mark.parametrize("key,error", [
    (tsig.SharedKey(Name.from_text("xfer."), "hmac-sha256", OTHER), Rcode.BADSIG),
    (tsig.SharedKey(Name.from_text("nobody."), "hmac-sha256", SECRET), Rcode.BADKEY),
    (tsig.SharedKey(Name.from_text("xfer."), "hmac-sha512", SECRET), Rcode.BADKEY),
])
def test_wrong_or_unknown_key_is_reported_as_rfc_8945_says(signed_server, key, error):
    reply = signed_exchange(signed_server.address, make_query(name("alice@example.com"),
                                                              RType.KEY), key)
    assert reply.rcode == Rcode.NOTAUTH and reply.answer == []
    assert reply.signature is not None and reply.signature.error == error
    assert reply.signature.mac == b""  # BADSIG/BADKEY answers are unsigned
    assert error.name in signed_server.wait_for(error.name).string


@pytest.mark.parametrize("skew", [-400, 400])
def test_clock_skew_and_replay_outside_the_window_get_badtime(signed_server, skew):
    query = make_query(name("alice@example.com"), RType.KEY)
    reply = signed_exchange(signed_server.address, query, now=int(time.time()) + skew)
    assert reply.rcode == Rcode.NOTAUTH and reply.signature.error == Rcode.BADTIME
    assert len(reply.signature.other) == 6  # the server's time
    # The reply is signed and carries the query's time: the skewed client
    # verifies it by its own clock and learns the server's time.
    with pytest.raises(PeerError, match="BADTIME"):
        tsig.verify_response(reply, XFER, query.signature.mac, int(time.time()) + skew)



def test_a_stated_fudge_of_65535_gets_the_servers_300_s_window(signed_server):
    now = int(time.time())
    query = make_query(name("alice@example.com"), RType.KEY)
    old = Message.from_wire(udp_exchange(signed_server.address,
                                         tsig.sign(query, XFER, now - 1000, fudge=65535)))
    assert old.rcode == Rcode.NOTAUTH and old.signature.error == Rcode.BADTIME
    assert old.signature.fudge == 65535  # a BADTIME report echoes the request's time and fudge
    signed_server.wait_for(r"BADTIME from 127\.0\.0\.1: .*outside the 300 s window")
    for stated, used in ((65535, 300), (10, 10)):  # a response states the window it used
        query = make_query(name("alice@example.com"), RType.KEY)
        wire = tsig.sign(query, XFER, int(time.time()), fudge=stated)
        reply = Message.from_wire(udp_exchange(signed_server.address, wire))
        assert reply.rcode == Rcode.NOERROR and reply.signature.fudge == used
        tsig.verify_response(reply, XFER, query.signature.mac, int(time.time()))
    transfer = make_query(name("example.com"), RType.AXFR, opcode=Opcode.TRANSFER)
    wire = tsig.sign(transfer, XFER, int(time.time()), fudge=65535)
    first = Message.from_wire(tcp_exchange(signed_server.address, wire))
    assert first.rcode == Rcode.NOERROR and first.signature.fudge == 300

def test_require_signed_zone_refuses_unsigned_queries(signed_server):
    for mailbox in ("alice@private.test", "deep@sub.private.test"):  # apex, and below it
        query = make_query(name(mailbox), RType.KEY)
        unsigned = Message.from_wire(udp_exchange(signed_server.address, query.to_wire()))
        assert unsigned.rcode == Rcode.REFUSED and unsigned.answer == []
    signed = signed_exchange(signed_server.address, make_query(name("alice@private.test"),
                                                               RType.KEY))
    assert signed.rcode == Rcode.NOERROR and signed.answer


def test_transfer_needs_tcp_and_a_listed_key(signed_server):
    def transfer(key=None, tcp=True):
        query = make_query(name("example.com"), RType.AXFR, opcode=Opcode.TRANSFER)
        wire = query.to_wire() if key is None else tsig.sign(query, key, int(time.time()))
        exchange = tcp_exchange if tcp else udp_exchange
        return Message.from_wire(exchange(signed_server.address, wire))

    assert transfer().rcode == Rcode.REFUSED  # unsigned
    ops = tsig.SharedKey(Name.from_text("ops."), "hmac-sha512", OTHER * 2)
    assert transfer(ops).rcode == Rcode.REFUSED  # a known key the zone does not list
    assert transfer(XFER, tcp=False).rcode == Rcode.REFUSED  # UDP
    ok = transfer(XFER)
    assert ok.rcode == Rcode.NOERROR and ok.answer[0].rtype == RType.SOA


def test_notify_to_a_primary_zone_is_not_accepted(signed_server):
    query = make_query(name("example.com"), RType.SOA, opcode=Opcode.NOTIFY)
    reply = signed_exchange(signed_server.address, query)
    assert reply.rcode in (Rcode.REFUSED, Rcode.NOTAUTH)


def test_dig_with_y_and_k(signed_server, tmp_path):
    at = f"@{signed_server.address[0]}:{signed_server.address[1]}"
    y = f"hmac-sha256:xfer:{base64.b64encode(SECRET).decode()}"
    out = subprocess.run(keyresolve_cmd("dig", "alice@example.com", at, "-y", y, "--json"),
                         capture_output=True, text=True, timeout=60)
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and doc["signed"] is True and doc["verified"] == "ok"
    bad = f"xfer:{base64.b64encode(OTHER).decode()}"
    out = subprocess.run(keyresolve_cmd("dig", "alice@example.com", at, "-y", bad, "--json"),
                         capture_output=True, text=True, timeout=60)
    doc = json.loads(out.stdout)
    assert doc["rcode"] == "NOTAUTH" and doc["verified"] != "ok" and "BADSIG" in doc["verified"]
    keyfile = tmp_path / "xfer.key"
    keyfile.write_text(f'[keys.xfer]\nalgorithm = "hmac-sha256"\n'
                       f'secret = "{base64.b64encode(SECRET).decode()}"\n')
    keyfile.chmod(0o600)
    out = subprocess.run(keyresolve_cmd("dig", "alice@example.com", at, "-k", str(keyfile),
                                        "--json"), capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout)["verified"] == "ok"


def test_tsig_keygen_output_is_a_working_key(signed_server, tmp_path):
    out = subprocess.run(keyresolve_cmd("tsig-keygen", "fresh", "--algorithm", "hmac-sha512"),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "[keys.fresh]" in out.stdout
    secret = base64.b64decode(out.stdout.split('secret = "')[1].split('"')[0])
    assert len(secret) == 64


def test_unsigned_reply_to_a_signed_query_is_rejected_by_dig(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fake:
        fake.bind(("127.0.0.1", 0))
        fake.settimeout(10)
        at = f"@127.0.0.1:{fake.getsockname()[1]}"
        y = f"xfer:{base64.b64encode(SECRET).decode()}"
        proc = subprocess.Popen(keyresolve_cmd("dig", "a@example.com", at, "-y", y, "--json"),
                                stdout=subprocess.PIPE, text=True)
        data, peer = fake.recvfrom(65535)
        reply = Message.from_wire(data)
        reply.qr, reply.signature = True, None
        fake.sendto(reply.to_wire(), peer)
        doc = json.loads(proc.communicate(timeout=30)[0])
    assert doc["signed"] is False and doc["verified"] != "ok"


signatures = st.builds(
    Signature, key_name=st.sampled_from([name("xfer."), name("nobody.")]),
    algorithm=st.sampled_from(["hmac-sha256", "hmac-sha512", "md5", ""]),
    time_signed=st.integers(0, 2**48 - 1), fudge=st.integers(0, 0xFFFF),
    mac=st.binary(max_size=64), original_id=st.integers(0, 0xFFFF),
    error=st.integers(0, 0xFFF), other=st.binary(max_size=64))


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(sig=signatures, junk=st.binary(max_size=20))
def test_mangled_trailers_never_stop_the_server(signed_server, sig, junk):
    query = make_query(name("alice@example.com"), RType.KEY)
    query.signature = sig
    wire = query.to_wire() + junk
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect(signed_server.address)
        sock.send(wire)
        try:
            reply = Message.from_wire(sock.recv(65535))
            assert reply.rcode in (Rcode.NOTAUTH, Rcode.FORMERR)
        except TimeoutError:
            pytest.fail("no reply to a mangled trailer")
    ok = signed_exchange(signed_server.address, make_query(name("alice@example.com"),
                                                           RType.KEY))
    assert ok.rcode == Rcode.NOERROR


def test_resolver_signs_upstream_queries_to_paired_servers(tmp_path, start_daemon):
    # a.root.'s ADDR is the server's own: priming (RFC 8109) replaces the
    # hints with it, and the resolution must still reach the paired server
    port = free_port()
    zone = (f"$ORIGIN .\n$TTL 60\n@ SOA a.root. h@root. 1 60 60 600 60\n@ NS a.root.\n"
            f"a.root. ADDR 127.0.0.1:{port}\nk@example. KEY x25519 encrypt {b64key(5)}\n")
    auth_dir = tmp_path / "auth"
    auth_dir.mkdir()
    config = write_serve_config(auth_dir, {".": zone}, listen=f"127.0.0.1:{port}", extra=KEYS)
    config.write_text(config.read_text().replace('file = "root.zone"',
                                                 'file = "root.zone"\nrequire_signed = true'))
    auth = start_daemon("serve", "--config", str(config), cwd=auth_dir)
    roots = [("a.root.", auth.address)]
    unsigned = start_resolver(start_daemon, tmp_path / "plain", roots)
    reply = Message.from_wire(udp_exchange(unsigned.address, make_query(
        name("k@example"), RType.KEY, rd=True).to_wire(), timeout=10))
    assert reply.rcode == Rcode.SERVFAIL
    pairing = KEYS + (f'\n[[servers]]\naddress = "{auth.address[0]}:{auth.address[1]}"\n'
                      f'key = "xfer"\n')
    signing = start_resolver(start_daemon, tmp_path / "signing", roots, extra=pairing)
    reply = Message.from_wire(udp_exchange(signing.address, make_query(
        name("k@example"), RType.KEY, rd=True).to_wire(), timeout=10))
    assert reply.rcode == Rcode.NOERROR and reply.answer
