"""End-to-end: a real `keyresolve serve` subprocess over real UDP and TCP sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyresolve.authority import fastpath
from keyresolve.protocol.codes import Opcode, Rcode, RType
from keyresolve.protocol.message import FrameReader, Message, make_query
from keyresolve.registry.messages import make_update
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import KEY, NS
from keyresolve.store.keys import NODE_AREAS, node_prefix
from keyresolve.store.zones import Store

from .conftest import (ask, b64key, compiler_pids, keyresolve_cmd, tcp_read, udp_exchange, udp_no_reply,
                       waiting_for_lmdb_lock, write_serve_config)

#: Keys at one name: enough to overflow a 1232-byte UDP response.
BULK_KEYS = 40

EXAMPLE = f"""$ORIGIN example.com.
$TTL 3600
@            SOA   ns1 hostmaster@example.com. 2026112201 3600 600 604800 300
@            NS    ns1
ns1          ADDR  127.0.0.1:5302
alice@       KEY   x25519 encrypt {b64key(1)}
alice@       KEY   ed25519 sign {b64key(2)}
first.last@  KEY   ed25519 sign {b64key(3)}
www-team@    ALIAS alice@
eng          NS    ns1.eng
ns1.eng      ADDR  127.0.0.1:5303
deep.empty.nonterminal ADDR 127.0.0.1:9
""" + "".join(f"bulk@ KEY x25519 encrypt {b64key(100 + i)}\n" for i in range(BULK_KEYS))


def name(text: str) -> Name:
    return Name.from_text(text)


@pytest.fixture
def server(tmp_path, start_daemon):
    config = write_serve_config(tmp_path, {"example.com": EXAMPLE})
    daemon = start_daemon("serve", "--config", str(config))
    return daemon


def test_logs_zones_with_serial_and_listen_address(server):
    assert "zone example.com. loaded: serial 2026112201" in server.log
    assert server.address[0] == "127.0.0.1" and server.address[1] > 0


def test_key_answer_over_udp_is_authoritative(server):
    reply = ask(server.address, make_query(name("Alice@Example.COM"), RType.KEY))
    assert reply.rcode == Rcode.NOERROR and reply.aa and reply.qr and not reply.tc
    got = sorted((r.rdata.algorithm.name, r.rdata.key_id) for r in reply.answer)
    assert [a for a, _ in got] == ["ED25519", "X25519"]
    assert all(r.name == name("alice@example.com") and r.ttl == 3600 for r in reply.answer)


def test_key_answer_over_tcp(server):
    reply = ask(server.address, make_query(name("first.last@example.com"), RType.KEY), tcp=True)
    assert reply.aa and len(reply.answer) == 1 and isinstance(reply.answer[0].rdata, KEY)


def test_large_answer_truncated_on_udp_then_complete_on_tcp(server):
    query = make_query(name("bulk@example.com"), RType.KEY)
    wire = udp_exchange(server.address, query.to_wire())
    assert len(wire) <= 1232
    udp = Message.from_wire(wire)
    assert udp.tc and udp.answer == [] and udp.question == query.question
    tcp = ask(server.address, query, tcp=True)
    assert not tcp.tc and len(tcp.answer) == BULK_KEYS


def test_small_advertised_size_is_honoured(server):
    query = make_query(name("alice@example.com"), RType.KEY, udp_size=512)
    assert not Message.from_wire(udp_exchange(server.address, query.to_wire())).tc
    query = make_query(name("bulk@example.com"), RType.KEY, udp_size=600)
    wire = udp_exchange(server.address, query.to_wire())
    assert len(wire) <= 600 and Message.from_wire(wire).tc


def test_nodata_vs_nxdomain(server):
    nodata = ask(server.address, make_query(name("alice@example.com"), RType.ADDR))
    assert nodata.rcode == Rcode.NOERROR and nodata.aa and nodata.answer == []
    assert [r.rtype for r in nodata.authority] == [RType.SOA]
    nx = ask(server.address, make_query(name("nobody@example.com"), RType.KEY))
    assert nx.rcode == Rcode.NXDOMAIN and nx.aa and [r.rtype for r in nx.authority] == [RType.SOA]
    assert nx.authority[0].ttl == 300  # RFC 2308: min(SOA TTL, SOA minimum)
    ent = ask(server.address, make_query(name("empty.nonterminal.example.com"), RType.ADDR))
    assert ent.rcode == Rcode.NOERROR and ent.answer == []


def test_referral_with_glue(server):
    reply = ask(server.address, make_query(name("bob@eng.example.com"), RType.KEY))
    assert reply.rcode == Rcode.NOERROR and not reply.aa and reply.answer == []
    assert [(r.name, r.rdata) for r in reply.authority] == [
        (name("eng.example.com"), NS(name("ns1.eng.example.com")))]
    assert [(r.name, r.rdata.to_text()) for r in reply.additional] == [
        (name("ns1.eng.example.com"), "127.0.0.1:5303")]


def test_alias_is_followed_inside_the_zone(server):
    reply = ask(server.address, make_query(name("www-team@example.com"), RType.KEY))
    assert reply.aa and reply.answer[0].rtype == RType.ALIAS
    assert {r.rtype for r in reply.answer[1:]} == {RType.KEY}
    assert all(r.name == name("alice@example.com") for r in reply.answer[1:])


def test_refused_outside_our_zones(server):
    reply = ask(server.address, make_query(name("carol@example.org"), RType.KEY))
    assert reply.rcode == Rcode.REFUSED and not reply.aa and reply.answer == []


def test_garbage_gets_formerr_with_its_id(server):
    reply = Message.from_wire(udp_exchange(server.address, b"\xbe\xef\x00\x00\x01\x00\xc1junk"))
    assert reply.id == 0xBEEF and reply.rcode == Rcode.FORMERR and reply.qr


def test_unknown_version_gets_badvers(server):
    wire = bytearray(make_query(name("alice@example.com"), RType.KEY, msg_id=7).to_wire())
    wire[4] = 9
    reply = Message.from_wire(udp_exchange(server.address, bytes(wire)))
    assert reply.id == 7 and reply.rcode == Rcode.BADVERS


def test_update_outside_a_registration_zone_is_notauth(server):
    # docs/protocol.md 8E.7: a malformed UPDATE is FORMERR, one for a zone
    # that takes no registrations NOTAUTH
    query = make_query(name("alice@example.com"), RType.KEY, opcode=Opcode.UPDATE)
    assert ask(server.address, query).rcode == Rcode.FORMERR
    update = make_update(name("example.com."), b"\x92", 9)
    assert ask(server.address, update).rcode == Rcode.NOTAUTH


def test_unreadable_and_response_packets_are_dropped(server):
    follow = make_query(name("alice@example.com"), RType.KEY, msg_id=4242)
    response_bits = make_query(name("alice@example.com"), RType.KEY, msg_id=1)
    response_bits.qr = True
    for junk in (b"", b"\x01", response_bits.to_wire()):
        reply = Message.from_wire(udp_no_reply(server.address, junk, follow.to_wire()))
        assert reply.id == 4242


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(junk=st.binary(max_size=300))
def test_random_bytes_never_stop_the_server(server, junk):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(server.address)
        sock.send(junk)
    reply = ask(server.address, make_query(name("alice@example.com"), RType.KEY))
    assert reply.rcode == Rcode.NOERROR


def test_many_concurrent_tcp_clients(server):
    # from five loopback addresses: one address may hold 32 (max_tcp_per_address)
    socks = [socket.create_connection(server.address, timeout=5,
                                      source_address=(f"127.0.0.{1 + i % 5}", 0))
             for i in range(50)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(_framed(make_query(name("alice@example.com"), RType.KEY, msg_id=i)))
        for i, sock in enumerate(socks):
            assert Message.from_wire(tcp_read(sock)).id == i
        # several messages on one connection, answered in order (the answers
        # may arrive in one read: one reader keeps what follows the first)
        sock, reader = socks[0], FrameReader()
        sock.sendall(b"".join(_framed(make_query(name("alice@example.com"), RType.KEY,
                                                 msg_id=1000 + j)) for j in range(5)))
        assert [Message.from_wire(tcp_read(sock, reader)).id
                for _ in range(5)] == list(range(1000, 1005))
        assert reader.pending == 0
    finally:
        for sock in socks:
            sock.close()


def _framed(message: Message) -> bytes:
    wire = message.to_wire()
    return len(wire).to_bytes(2, "big") + wire


def test_idle_tcp_connection_is_closed(tmp_path, start_daemon):
    """Closed once idle for tcp_idle_timeout: not before (the server's clock
    starts once it accepted, after our connect began), and not much after."""
    idle = 0.5
    config = write_serve_config(tmp_path, {"example.com": EXAMPLE},
                                extra=f"tcp_idle_timeout = {idle}")
    daemon = start_daemon("serve", "--config", str(config))
    start = time.monotonic()
    with socket.create_connection(daemon.address, timeout=10) as sock:
        sock.sendall(b"\x00")  # half a length prefix, then nothing
        assert sock.recv(10) == b""  # the server closed it
        assert idle <= time.monotonic() - start < idle + 5


def test_sighup_reloads_and_a_broken_file_keeps_the_old_zone(tmp_path, server):
    zone_file = tmp_path / "example.com.zone"
    zone_file.write_text(EXAMPLE.replace("2026112201", "2026112202")
                         + f"zed@ KEY x25519 encrypt {b64key(9)}\n")
    server.signal(signal.SIGHUP)
    server.wait_for("reload done")
    assert "serial 2026112202" in server.log
    assert ask(server.address, make_query(name("zed@example.com"), RType.KEY)).answer

    zone_file.write_text(EXAMPLE + "broken@ KEY x25519 encrypt AAAA\n")
    server.expect_error(r"zone example\.com\. not loaded: .*example\.com\.zone:\d+: bad KEY")
    server.signal(signal.SIGHUP)
    server.wait_for("reload done")
    assert "example.com.zone:" in server.log and "not loaded" in server.log
    reply = ask(server.address, make_query(name("zed@example.com"), RType.KEY))
    assert reply.answer and reply.rcode == Rcode.NOERROR


def test_sigterm_exits_cleanly(server):
    assert server.stop() == 0
    assert "shutting down" in server.log


def test_sigterm_during_a_reload_stops_its_compile(tmp_path, server):
    """The reload's compile child waits for LMDB's write lock, held here:
    SIGTERM must not wait for it."""
    (tmp_path / "example.com.zone").write_text(
        EXAMPLE.replace("2026112201", "2026112202") + f"zed@ KEY x25519 encrypt {b64key(9)}\n")
    with Store(tmp_path / "data") as store:
        txn = store._env.begin(write=True)
        try:
            server.signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while not (pids := compiler_pids(tmp_path / "data")) or not all(
                    waiting_for_lmdb_lock(pid) for pid in pids):
                assert time.monotonic() < deadline, "no compile waiting:\n" + server.log
                time.sleep(0.01)
            # The write lock stays held until after stop(): a server that waited
            # for its compile would not exit, and stop() fails after DAEMON_TIMEOUT.
            # (That the child dies of the SIGTERM: test_compiler.)
            assert server.stop() == 0
            assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)
        finally:
            txn.abort()
        assert store.get_zone_info(name("example.com.")).serial == 2026112201


def test_restart_serves_compiled_data_without_recompiling(tmp_path, start_daemon):
    config = write_serve_config(tmp_path, {"example.com": EXAMPLE})
    first = start_daemon("serve", "--config", str(config))
    assert first.stop() == 0
    second = start_daemon("serve", "--config", str(config))
    assert "zone example.com. unchanged: serial 2026112201" in second.log
    assert ask(second.address, make_query(name("alice@example.com"), RType.KEY)).answer


def test_bad_config_is_a_clear_error(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('listen = ["127.0.0.1"]\ndata_dir = "d"\n')
    out = subprocess.run(keyresolve_cmd("serve", "--config", str(config)), capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0 and "listen" in out.stderr and "Traceback" not in out.stderr


# -- dig against the live server ------------------------------------------------
def run_dig(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(keyresolve_cmd("dig", *args), capture_output=True, text=True,
                          timeout=60)


def _at(address) -> str:
    return f"@{address[0]}:{address[1]}"


def test_dig_json(server):
    out = run_dig("alice@example.com", _at(server.address), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["rcode"] == "NOERROR" and "aa" in doc["flags"] and "qr" in doc["flags"]
    assert doc["question"] == {"name": "alice@example.com.", "type": "KEY"}
    data = {r["data"]["algorithm"]: r["data"] for r in doc["answer"]}
    assert data["x25519"]["usage"] == "encrypt" and data["x25519"]["key"] == b64key(1)
    assert len(data["x25519"]["key_id"]) == 16
    ref = json.loads(run_dig("x@eng.example.com", "KEY", _at(server.address), "--json").stdout)
    assert ref["authority"][0]["data"] == {"target": "ns1.eng.example.com."}
    assert ref["additional"][0]["data"] == {"address": "127.0.0.1:5303"}


def test_dig_text_report_and_tc_fallback(server):
    out = run_dig("bulk@example.com", _at(server.address))
    assert out.returncode == 0, out.stderr
    assert "status: NOERROR" in out.stdout and "flags: qr aa" in out.stdout
    assert f"ANSWER: {BULK_KEYS}" in out.stdout and "(TCP)" in out.stdout
    assert "Query time:" in out.stdout and str(server.address[1]) in out.stdout


def test_dig_nxdomain_still_exits_zero(server):
    out = run_dig("nobody@example.com", _at(server.address), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["rcode"] == "NXDOMAIN"


def test_dig_timeout_and_refused_exit_nonzero():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never answers
        out = run_dig("a@example.com", _at(silent.getsockname()), "--timeout", "0.2",
                      "--retries", "0")
    assert out.returncode == 9 and out.stderr == ""
    assert out.stdout.splitlines()[0] == ";; connection timed out; no servers could be reached"
    assert out.stdout.splitlines()[1].startswith(";; 1 try to ")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    out = run_dig("a@example.com", f"@127.0.0.1:{port}", "--timeout", "2")
    assert out.returncode != 0 and "refused" in out.stderr


def test_dig_bad_arguments_are_usage_errors():
    out = run_dig("not a name!", "@127.0.0.1:1")
    assert out.returncode == 1 and "Traceback" not in out.stderr


# -- the new user's flow: keygen -> zone -> serve -> dig ------------------------
def test_author_zone_from_keygen_then_serve_and_dig(tmp_path, start_daemon):
    keys = tmp_path / "keys"
    keys.mkdir()
    gen = subprocess.run(keyresolve_cmd("keygen", "newbie@example.com", "--out", str(keys)),
                         capture_output=True, text=True, timeout=30)
    assert gen.returncode == 0, gen.stderr
    pem = keys / "newbie@example.com.x25519.pem"
    assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert os.stat(pem).st_mode & 0o777 == 0o600
    again = subprocess.run(keyresolve_cmd("keygen", "newbie@example.com", "--out", str(keys)),
                           capture_output=True, text=True, timeout=30)
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr
    config = write_serve_config(tmp_path, {"example.com": EXAMPLE + gen.stdout})
    check = subprocess.run(keyresolve_cmd("zone", "check", str(tmp_path / "example.com.zone")),
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0 and "serial 2026112201" in check.stdout
    daemon = start_daemon("serve", "--config", str(config))
    out = run_dig("newbie@example.com", _at(daemon.address), "--json")
    served = {record["data"]["key"] for record in json.loads(out.stdout)["answer"]}
    assert served == {line.split()[-1] for line in gen.stdout.splitlines()}  # the pair


def test_zone_check_lists_every_error_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.zone"
    bad.write_text(EXAMPLE.replace("ns1          ADDR  127.0.0.1:5302",
                                   "ns1          ADDR  127.0.0.1")
                   + "x@ KEY x25519 encrypt AAAA\n")
    out = subprocess.run(keyresolve_cmd("zone", "check", str(bad)), capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0
    lines = out.stderr.splitlines()
    assert any(line.startswith(f"{bad}:5:") for line in lines), out.stderr
    last = len(EXAMPLE.splitlines()) + 1
    assert any(line.startswith(f"{bad}:{last}:") for line in lines), out.stderr


# -- in process: the response cache of AuthServer -----------------------------------------
def _handler(tmp_path, zones, config_zones=None):
    from keyresolve.cli.config import ServeConfig, ZoneConfig
    from keyresolve.daemons.serve import AuthServer
    from keyresolve.store.zones import Store

    store = Store(tmp_path / "db", map_size=1 << 26)
    for zone in zones:
        store.replace_zone_reference(zone)
    zone_configs = config_zones or [ZoneConfig(name=z.origin, file=tmp_path / "x") for z in zones]
    config = ServeConfig(path=tmp_path / "serve.toml", listen=[("127.0.0.1", 0)],
                         data_dir=tmp_path / "db", zones=zone_configs)
    return store, AuthServer(store, config)


def _batch(handler, data: bytes) -> bytes:
    with handler.batch():
        return handler.handle(data, ("127.0.0.1", 1), False)


def _with_id(data: bytes, msg_id: int) -> bytes:
    return msg_id.to_bytes(2, "big") + data[2:]


def test_cached_answers_are_the_full_paths_with_the_id_patched(tmp_path):
    from .test_fastpath import ANSWER, DEFER, NXDOMAIN, ZONES

    store, handler = _handler(tmp_path, ZONES)
    with store:
        for _, data in ANSWER + DEFER + NXDOMAIN:
            for msg_id in (0x1234, 0, 0xFFFF, 0xBEEF):  # the first fills the cache
                query = _with_id(data, msg_id)
                # outside a batch there is no snapshot: the full path answers
                assert _batch(handler, query) == handler.handle(query, ("127.0.0.1", 1), False)
        # NXDOMAIN answers (fast too) are not kept: made-up names must not crowd out real ones
        assert len(handler._responder.responses) == len({d[2:] for _, d in ANSWER})
        with handler.batch():
            assert handler._fast_route(name("example.com.").store_key())[1] == fastpath.negative(
                handler._snapshot.get_zone(name("example.com.")))


def test_cached_answers_follow_the_data_version(tmp_path):
    from keyresolve.zonedata.zonefile import parse_zone_text

    from .test_fastpath import EXAMPLE_COM, _b64

    store, handler = _handler(tmp_path, [parse_zone_text(EXAMPLE_COM)])
    with store:
        query = make_query(name("alice@example.com"), RType.KEY).to_wire()
        before = Message.from_wire(_batch(handler, query))
        assert _batch(handler, query) == before.to_wire()
        store.replace_zone_reference(parse_zone_text(EXAMPLE_COM.replace(_b64(1), _b64(99))))
        after = Message.from_wire(_batch(handler, query))
        assert after.answer[0].rdata != before.answer[0].rdata
        assert after.answer[0].rdata.key == __import__("base64").b64decode(_b64(99))


def _transferred_secondary(tmp_path):
    """A handler whose store holds example.com. as a secondary zone just
    transferred, with an expire of 120 s (less than
    fastpath.MAX_RESPONSE_AGE, which must not be what ends cached answers):
    (store, handler, zone config, parsed zone, its SecondaryZone)."""
    import trio

    from keyresolve.cli.config import ZoneConfig
    from keyresolve.daemons.secondary import SecondaryZone
    from keyresolve.zonedata.zonefile import parse_zone_text

    from .test_fastpath import EXAMPLE_COM

    zone = ZoneConfig(name=name("example.com."), primaries=[("127.0.0.1", 9)])
    store, handler = _handler(tmp_path, [], [zone])
    writer = store.zone_writer(zone.name, primary="127.0.0.1:9")
    writer.begin_full()
    parsed = parse_zone_text(EXAMPLE_COM.replace("3600 600 604800 300", "60 60 120 300"))
    for record in parsed.records():
        if record.rtype != RType.SOA:
            writer.add(record)
    writer.commit(parsed.soa)
    secondary = SecondaryZone(zone, store, {}, trio.Lock(), lambda *_: None)
    return store, handler, zone, parsed, secondary


def test_cached_answers_of_a_secondary_zone_end_when_it_expires(tmp_path, monkeypatch):
    store, handler, zone, parsed, secondary = _transferred_secondary(tmp_path)
    with store:
        handler.add_secondary(secondary)
        query = make_query(name("alice@example.com"), RType.KEY).to_wire()
        assert Message.from_wire(_batch(handler, query)).rcode == Rcode.NOERROR
        assert len(handler._responder.responses) == 1
        expires = secondary.expires_at()
        now = expires + 1
        monkeypatch.setattr(time, "time", lambda: now)
        assert Message.from_wire(_batch(handler, query)).rcode == Rcode.SERVFAIL
        # back to life, as SecondaryZone.refresh does it: the store's record
        # first (a new data version), then the timers
        store.mark_checked(zone.name, now)
        assert Message.from_wire(_batch(handler, query)).rcode == Rcode.SERVFAIL
        secondary.state.begin_check()
        secondary.state.check_succeeded(parsed.soa.rdata, now)
        assert Message.from_wire(_batch(handler, query)).rcode == Rcode.NOERROR
        assert len(handler._responder.responses) == 1
        now = secondary.expires_at() + 1
        assert Message.from_wire(_batch(handler, query)).rcode == Rcode.SERVFAIL


def test_cached_answers_end_at_the_timers_expiry_when_it_is_later(tmp_path, monkeypatch):
    """The store records a transfer a moment before the refresh timers hear
    of it: between the stored expiry and the timers' the main process still
    answers NOERROR, and those answers must not outlive the timers' expiry."""
    store, handler, _, parsed, secondary = _transferred_secondary(tmp_path)
    with store:
        stored = secondary.expires_at()
        secondary.state.begin_check()
        secondary.state.check_succeeded(parsed.soa.rdata, stored - 120 + 0.5)  # timers: +0.5 s
        handler.add_secondary(secondary)
        query = make_query(name("alice@example.com"), RType.KEY).to_wire()
        now = stored - 10
        monkeypatch.setattr(time, "time", lambda: now)
        assert Message.from_wire(_batch(handler, query)).rcode == Rcode.NOERROR
        now = stored + 0.25  # past the stored expiry, not the timers'
        assert Message.from_wire(_batch(handler, query)).rcode == Rcode.NOERROR
        assert len(handler._responder.responses) == 1
        now = stored + 0.75  # past both
        assert Message.from_wire(_batch(handler, query)).rcode == Rcode.SERVFAIL


# -- a killed server's compile child -------------------------------------------
#: How soon a compile child must end after its server is killed (issue #17).
ORPHAN_DEADLINE = 1.0


def _compile_child_of(server, data) -> list[int]:
    deadline = time.monotonic() + 30
    while not (pids := compiler_pids(data)):
        assert time.monotonic() < deadline, "no compile started:\n" + server.log
        time.sleep(0.01)
    return pids


def _running(pid: int) -> bool:
    """True while `pid` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _gone_within(pids: list[int], seconds: float) -> float:
    """Seconds until every pid in `pids` has ended; fails past `seconds`."""
    start = time.monotonic()
    while any(_running(pid) for pid in pids):
        assert time.monotonic() - start < seconds, f"compile child {pids} outlived its server"
        time.sleep(0.01)
    return time.monotonic() - start


def _assert_zone_whole(store: Store, origin: Name, serials: set[int]) -> int:
    """The stored zone is one whole version: its serial is one of `serials`
    and its node area holds exactly the records its metadata counts."""
    info = store.get_zone_info(origin)
    assert info.serial in serials
    with store.snapshot() as snap:
        records = list(snap.iter_records(origin))
        assert snap.get_zone(origin).soa.rdata.serial == info.serial
    assert len(records) == info.records
    return info.serial


def test_kill_9_during_a_reload_ends_its_compile_which_never_commits(tmp_path, server):
    """The compile child waits for LMDB's write lock, held here, when its
    server is killed: it must end within a second, and not commit once the
    lock is free."""
    data = tmp_path / "data"
    (tmp_path / "example.com.zone").write_text(
        EXAMPLE.replace("2026112201", "2026112202") + f"zed@ KEY x25519 encrypt {b64key(9)}\n")
    with Store(data) as store:
        txn = store._env.begin(write=True)
        try:
            server.signal(signal.SIGHUP)
            pids = _compile_child_of(server, data)
            server.expect_exit = -signal.SIGKILL
            server.proc.kill()
            server.proc.wait()
            _gone_within(pids, ORPHAN_DEADLINE)
        finally:
            txn.abort()
        assert _assert_zone_whole(store, name("example.com."), {2026112201}) == 2026112201


def test_kill_9_mid_compile_leaves_the_store_whole(tmp_path, server):
    """Killed while its child writes a big zone's nodes: the child ends
    within a second, the store holds the old zone whole, and a new server
    compiles the new zone."""
    data = tmp_path / "data"
    origin = name("example.com.")
    big = EXAMPLE.replace("2026112201", "2026112202") + "".join(
        f"user{i}@ KEY x25519 encrypt {b64key(i)}\n" for i in range(150_000))
    (tmp_path / "example.com.zone").write_text(big)
    with Store(data, readonly=True) as store:
        served = store.get_zone_info(origin).area
        unserved = node_prefix(origin, next(a for a in NODE_AREAS if a != served))
        server.signal(signal.SIGHUP)
        pids = _compile_child_of(server, data)
        deadline = time.monotonic() + 60
        while True:  # until the child has written some of the new zone's nodes
            with store._env.begin() as read:
                cursor = read.cursor(db=store._nodes)
                if cursor.set_range(unserved) and cursor.key().startswith(unserved):
                    break
            assert time.monotonic() < deadline and compiler_pids(data), \
                "the compile wrote nothing:\n" + server.log
            time.sleep(0.005)
        server.expect_exit = -signal.SIGKILL
        server.proc.kill()
        server.proc.wait()
        _gone_within(pids, ORPHAN_DEADLINE)
    with Store(data) as store:
        _assert_zone_whole(store, origin, {2026112201, 2026112202})


# -- a zone pointed at another file ----------------------------------------------------
def test_the_file_path_is_part_of_a_zones_identity(tmp_path, start_daemon):
    """Issue #17: pointing a zone at another file was "unchanged: serial 1"
    and the old file stayed served. Now the new file is compiled: with other
    records and the same serial it is refused (a change without a higher
    serial); with the same records it loads; with a higher serial it is served."""
    config = write_serve_config(tmp_path, {"example.com": EXAMPLE})
    first = start_daemon("serve", "--config", str(config))
    assert first.stop() == 0
    other = tmp_path / "other.zone"
    other.write_text(EXAMPLE + f"zed@ KEY x25519 encrypt {b64key(9)}\n")
    config.write_text(config.read_text().replace('"example.com.zone"', '"other.zone"'))
    second = start_daemon("serve", "--config", str(config),
                          expect_errors=[r"not loaded: serial 2026112201 .* not higher"])
    assert "unchanged" not in second.log
    assert "not loaded: serial 2026112201 of the zone file is not higher than the served " \
           "serial 2026112201" in second.log
    assert ask(second.address, make_query(name("zed@example.com"), RType.KEY)).rcode == \
        Rcode.NXDOMAIN
    assert second.stop() == 0

    other.write_text(EXAMPLE.replace("2026112201", "2026112202")
                     + f"zed@ KEY x25519 encrypt {b64key(9)}\n")
    third = start_daemon("serve", "--config", str(config))
    assert "zone example.com. loaded: serial 2026112202" in third.log
    assert ask(third.address, make_query(name("zed@example.com"), RType.KEY)).answer
    assert third.stop() == 0
    fourth = start_daemon("serve", "--config", str(config))
    assert "zone example.com. unchanged: serial 2026112202" in fourth.log


def test_a_same_serial_change_is_refused_on_reload(tmp_path, server):
    server.expect_error(r"not loaded: serial 2026112201 .* not higher")
    (tmp_path / "example.com.zone").write_text(EXAMPLE + f"zed@ KEY x25519 encrypt {b64key(9)}\n")
    server.signal(signal.SIGHUP)
    server.wait_for("reload done")
    assert "ERROR keyresolve.serve: zone example.com. not loaded: serial 2026112201 of the " \
           "zone file is not higher than the served serial 2026112201" in server.log
    assert ask(server.address, make_query(name("zed@example.com"), RType.KEY)).rcode == \
        Rcode.NXDOMAIN
