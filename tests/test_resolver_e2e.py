"""End-to-end: the resolver daemon against real authoritative daemons and
scripted misbehaving upstreams (tests/ans.py)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from keyresolve.protocol.codes import ControlCommand, Opcode, Rcode, RType
from keyresolve.protocol.message import Message, make_query
from keyresolve.protocol.records import ALIAS, KEY, KeyAlgorithm, KeyUsage, Record

from .ans import ScriptedServer, answer, name, referral
from .conftest import ask, b64key, udp_exchange

#: The resolver bounds a resolution to 5 s (resolution.RESOLUTION_TIMEOUT);
#: a client must get its SERVFAIL within that plus process slack.
RESOLUTION_BOUND = 8.0


def endpoint(address) -> str:
    return f"{address[0]}:{address[1]}"


def write_hints(path: Path, roots: list[tuple[str, tuple]]) -> Path:
    lines = ["$ORIGIN .", "$TTL 3600"]
    lines += [f". NS {ns}" for ns, _ in roots]
    lines += [f"{ns} ADDR {endpoint(addr)}" for ns, addr in roots]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_resolver(start_daemon, directory: Path, roots, *, cache_size=100000, extra=""):
    directory.mkdir(exist_ok=True)
    write_hints(directory / "root.hints", roots)
    config = directory / "resolver.toml"
    config.write_text(f'listen = ["127.0.0.1:0"]\nroot_hints = "root.hints"\n'
                      f"cache_size = {cache_size}\nmax_ttl = 86400\n{extra}\n")
    return start_daemon("resolver", "--config", str(config), cwd=directory)


def start_auth(start_daemon, directory: Path, zone: str, body: str):
    """An authoritative daemon for `zone`; {self} in `body` becomes its own address."""
    directory.mkdir()
    zone_file = directory / "zone"
    zone_file.write_text(body.replace("{self}", "127.0.0.1:9"))
    config = directory / "serve.toml"
    config.write_text(f'listen = ["127.0.0.1:0"]\ndata_dir = "data"\n'
                      f'[[zones]]\nname = "{zone}"\nfile = "zone"\n'
                      'serial_policy = "increment"\n')  # the rewrite below keeps serial 1
    daemon = start_daemon("serve", "--config", str(config), cwd=directory)
    zone_file.write_text(body.replace("{self}", endpoint(daemon.address)))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(r"zone \S+ loaded: serial 2")
    return daemon


EXAMPLE = f"""$ORIGIN example.com.
$TTL 3600
@ SOA ns1 hostmaster@ 1 3600 600 86400 60
@ NS ns1
ns1 ADDR {{self}}
alice@ KEY x25519 encrypt {b64key(1)}
short@ 2 KEY x25519 encrypt {b64key(2)}
team@ ALIAS alice@
""" + "".join(f"user{i}@ KEY x25519 encrypt {b64key(10 + i)}\n" for i in range(12))


@pytest.fixture
def hierarchy(tmp_path, start_daemon):
    """root -> com -> example.com as three real daemons, and a resolver."""
    return build_hierarchy(tmp_path, start_daemon)


def build_hierarchy(tmp_path, start_daemon):
    """The `hierarchy` fixture's daemons (other test modules build theirs)."""
    example = start_auth(start_daemon, tmp_path / "example", "example.com", EXAMPLE)
    com = start_auth(start_daemon, tmp_path / "com", "com", f"""$ORIGIN com.
$TTL 3600
@ SOA ns1.nic hostmaster@nic 1 3600 600 86400 60
@ NS ns1.nic
ns1.nic ADDR {{self}}
example NS ns1.example
ns1.example ADDR {endpoint(example.address)}
""")
    root = start_auth(start_daemon, tmp_path / "root", ".", f"""$ORIGIN .
$TTL 3600
@ SOA a.root-servers. hostmaster@root-servers. 1 3600 600 86400 60
@ NS a.root-servers.
a.root-servers. ADDR {{self}}
com. NS ns1.nic.com.
ns1.nic.com. ADDR {endpoint(com.address)}
""")

    class H:
        pass

    h = H()
    h.example, h.com, h.root = example, com, root
    h.resolver = start_resolver(start_daemon, tmp_path / "resolver",
                                [("a.root-servers.", root.address)])
    return h


def resolve(resolver, text: str, rtype=RType.KEY, tcp=False) -> Message:
    return ask(resolver.address, make_query(name(text), rtype, rd=True), tcp=tcp)


def test_three_level_resolution(hierarchy):
    reply = resolve(hierarchy.resolver, "alice@example.com")
    assert reply.rcode == Rcode.NOERROR and reply.ra and reply.rd and not reply.aa
    assert [r.rdata.key for r in reply.answer] == [bytes.fromhex(_hex(b64key(1)))]
    tcp = resolve(hierarchy.resolver, "alice@example.com", tcp=True)
    assert tcp.answer == reply.answer or [r.rdata for r in tcp.answer] == [
        r.rdata for r in reply.answer]


def _hex(b64: str) -> str:
    import base64

    return base64.b64decode(b64).hex()


def test_alias_is_followed(hierarchy):
    reply = resolve(hierarchy.resolver, "team@example.com")
    assert reply.rcode == Rcode.NOERROR
    assert [r.rtype for r in reply.answer] == [RType.ALIAS, RType.KEY]


def test_cache_serves_after_the_server_stops_until_the_ttl_runs_out(hierarchy):
    first = resolve(hierarchy.resolver, "short@example.com")
    assert first.answer and first.answer[0].ttl == 2
    kept = resolve(hierarchy.resolver, "alice@example.com")
    assert hierarchy.example.stop() == 0
    cached = resolve(hierarchy.resolver, "short@example.com")
    assert cached.rcode == Rcode.NOERROR and cached.answer[0].ttl <= 2
    deadline = time.monotonic() + 10
    while True:  # the TTL runs out: then the resolver must go upstream and fail
        reply = resolve(hierarchy.resolver, "short@example.com")
        if reply.rcode == Rcode.SERVFAIL:
            break
        assert reply.answer[0].ttl <= 2 and time.monotonic() < deadline
        time.sleep(0.2)
    later = resolve(hierarchy.resolver, "alice@example.com")  # TTL 3600: still cached
    assert later.rcode == Rcode.NOERROR and later.answer[0].ttl <= kept.answer[0].ttl


def test_negative_answers_are_cached(hierarchy):
    nx = resolve(hierarchy.resolver, "nobody@example.com")
    assert nx.rcode == Rcode.NXDOMAIN and nx.authority[0].rtype == RType.SOA
    nodata = resolve(hierarchy.resolver, "alice@example.com", RType.ADDR)
    assert nodata.rcode == Rcode.NOERROR and nodata.answer == []
    hierarchy.example.stop()
    assert resolve(hierarchy.resolver, "nobody@example.com").rcode == Rcode.NXDOMAIN
    again = resolve(hierarchy.resolver, "alice@example.com", RType.ADDR)
    assert again.rcode == Rcode.NOERROR and again.answer == []
    assert resolve(hierarchy.resolver, "other@example.com").rcode == Rcode.SERVFAIL


def test_cache_flush_by_control_message(hierarchy):
    assert resolve(hierarchy.resolver, "alice@example.com").answer
    hierarchy.example.stop()
    flush = make_query(name("alice@example.com"), ControlCommand.FLUSH_NAME,
                       opcode=Opcode.CONTROL)
    assert ask(hierarchy.resolver.address, flush).rcode == Rcode.NOERROR
    assert resolve(hierarchy.resolver, "alice@example.com").rcode == Rcode.SERVFAIL


def _without_ttls(reply: bytes) -> Message:
    message = Message.from_wire(reply)
    message.id = 0
    for section in (message.answer, message.authority):
        section[:] = [Record(r.name, r.rtype, 0, r.rdata) for r in section]
    return message


@pytest.mark.parametrize("owner, rcode", [("team@example.com", Rcode.NOERROR),
                                          ("nobody@example.com", Rcode.NXDOMAIN)])
def test_repeated_queries_get_the_same_answer_until_flushed(hierarchy, owner, rcode):
    """The first answer comes from upstream, the second from the record cache,
    the later ones from the wire answer cache: the same but for id and TTLs."""
    address = hierarchy.resolver.address
    replies = [udp_exchange(address, make_query(name(owner), RType.KEY, msg_id=i, rd=True,
                                                ).to_wire()) for i in range(1, 5)]
    assert [int.from_bytes(r[:2], "big") for r in replies] == [1, 2, 3, 4]
    assert all(_without_ttls(r) == _without_ttls(replies[0]) for r in replies)
    assert _without_ttls(replies[0]).rcode == rcode
    ttls = [[r.ttl for r in m.answer + m.authority] for m in map(Message.from_wire, replies)]
    assert all(a >= b for a, b in zip(ttls, ttls[1:]))
    hierarchy.example.stop()
    flush = make_query(name(owner), ControlCommand.FLUSH_NAME, opcode=Opcode.CONTROL)
    assert ask(address, flush).rcode == Rcode.NOERROR
    assert resolve(hierarchy.resolver, owner).rcode == Rcode.SERVFAIL


def test_lru_bound_evicts_the_oldest(tmp_path, start_daemon, hierarchy):
    small = start_resolver(start_daemon, tmp_path / "small",
                           [("a.root-servers.", hierarchy.root.address)], cache_size=6)
    for i in range(12):
        assert resolve(small, f"user{i}@example.com").rcode == Rcode.NOERROR
    hierarchy.example.stop()
    assert resolve(small, "user11@example.com").rcode == Rcode.NOERROR
    assert resolve(small, "user0@example.com").rcode == Rcode.SERVFAIL


def test_root_failover(tmp_path, start_daemon, hierarchy):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # a root that never answers
        for order, roots in enumerate([
                [("b.root-servers.", silent.getsockname()), ("a.root-servers.",
                                                             hierarchy.root.address)],
                [("a.root-servers.", hierarchy.root.address), ("b.root-servers.",
                                                               silent.getsockname())]]):
            resolver = start_resolver(start_daemon, tmp_path / f"failover{order}", roots)
            for i in range(3):
                assert resolve(resolver, f"user{i}@example.com").rcode == Rcode.NOERROR


def test_concurrent_identical_queries_share_one_resolution(tmp_path, start_daemon):
    key = Record(name("k@example."), RType.KEY, 300,
                 KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes(32)))
    with ScriptedServer(lambda q: [answer(q, [key]).to_wire()], delay=0.5) as root:
        resolver = start_resolver(start_daemon, tmp_path / "r", [("a.root.", root.address)])
        # the root answers one query at a time: the priming query first, so
        # that the question's answer is not late by its delay
        resolver.wait_for(r"root hints primed|priming failed")
        replies = []

        def client(i):
            replies.append(udp_exchange(resolver.address,
                                        make_query(name("k@example"), RType.KEY, rd=True,
                                                   msg_id=i).to_wire()))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert sorted(Message.from_wire(r).id for r in replies) == list(range(20))
        assert all(Message.from_wire(r).answer[0].rdata == key.rdata for r in replies)
        # One query for the question; the other is the resolver priming its hints.
        assert [q.question.name for q in root.queries].count(name("k@example")) == 1


# -- hostile and broken upstreams ------------------------------------------------
def _mangle_id(q: Message) -> list[bytes]:
    reply = answer(q, [_key("k@example.")])
    reply.id = (q.id + 1) % 65536
    return [reply.to_wire()]


def _mangle_question(q: Message) -> list[bytes]:
    reply = answer(q, [_key("other@example.")])
    reply.question = type(q.question)(name("other@example"), RType.KEY)
    return [reply.to_wire()]


def _key(owner: str, seed: int = 0) -> Record:
    return Record(name(owner), RType.KEY, 300,
                  KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes([seed]) * 32))


def _endless_alias(q: Message) -> list[bytes]:
    local = q.question.name.local or ""  # the priming query asks for the root
    n = int(local[1:]) if local[1:].isdigit() else 0
    return [answer(q, [Record(q.question.name, RType.ALIAS, 300,
                              ALIAS(name(f"n{n + 1}@example")))]).to_wire()]


BROKEN = {
    "wrong id": _mangle_id,
    "wrong question": _mangle_question,
    "garbage": lambda q: [b"\x00\x01garbage", q.to_wire()[:2] + b"\xff" * 40],
    "oversized": lambda q: [q.to_wire()[:6] + b"\xdc\xff\xff" + b"\x90" * 60000],
    "silence": lambda q: [],
    "endless alias": _endless_alias,
}


@pytest.mark.parametrize("behaviour", BROKEN.values(), ids=BROKEN.keys())
def test_broken_upstream_gives_servfail_within_the_bound(tmp_path, start_daemon, behaviour):
    with ScriptedServer(behaviour) as root:
        resolver = start_resolver(start_daemon, tmp_path / "r", [("a.root.", root.address)])
        start = time.monotonic()
        reply = resolve(resolver, "k@example")
        assert reply.rcode == Rcode.SERVFAIL and reply.answer == []
        assert time.monotonic() - start < RESOLUTION_BOUND
    # the resolver is still alive and answers control messages
    flush = make_query(name("."), ControlCommand.FLUSH_ALL, opcode=Opcode.CONTROL)
    assert ask(resolver.address, flush).rcode == Rcode.NOERROR


def test_wrong_id_then_the_right_answer_is_accepted(tmp_path, start_daemon):
    def both(q):
        return _mangle_id(q) + [answer(q, [_key("k@example.")]).to_wire()]

    with ScriptedServer(both) as root:
        resolver = start_resolver(start_daemon, tmp_path / "r", [("a.root.", root.address)])
        assert resolve(resolver, "k@example").answer[0].rdata == _key("k@example.").rdata


def test_out_of_bailiwick_records_do_not_poison_the_cache(tmp_path, start_daemon):
    """com's server, asked about alice@example.com, aliases it to a name in
    org and supplies that name's KEY (a lie: it does not speak for org); the
    resolver must get the KEY from org's server, and cache only that."""
    poison = _key("victim@example.org.", seed=66)
    genuine = _key("victim@example.org.", seed=1)
    holder: dict = {}

    def com_behaviour(q):
        if q.question.name == name("alice@example.com"):
            alias = Record(name("alice@example.com"), RType.ALIAS, 300,
                           ALIAS(name("victim@example.org")))
            reply = answer(q, [alias, poison])
            reply.additional = [poison]
            return [reply.to_wire()]
        return [answer(q, []).to_wire()]

    def org_behaviour(q):
        return [answer(q, [genuine] if q.question.name == genuine.name else []).to_wire()]

    def root_behaviour(q):
        labels = q.question.name.labels  # () for the resolver's priming query
        tld = labels[-1] if labels else None
        if tld in ("com", "org"):
            return [referral(q, tld, f"ns1.nic.{tld}", holder[tld].address,
                             extra=[poison]).to_wire()]
        reply = answer(q, [])
        reply.rcode = Rcode.REFUSED
        reply.aa = False
        return [reply.to_wire()]

    with (ScriptedServer(com_behaviour) as com, ScriptedServer(org_behaviour) as org,
          ScriptedServer(root_behaviour) as root):
        holder.update(com=com, org=org)
        resolver = start_resolver(start_daemon, tmp_path / "r", [("a.root.", root.address)])
        chain = resolve(resolver, "alice@example.com")
        assert [(r.name, r.rtype) for r in chain.answer] == [
            (name("alice@example.com"), RType.ALIAS), (genuine.name, RType.KEY)]
        assert chain.answer[1].rdata == genuine.rdata
        victim = resolve(resolver, "victim@example.org")
        assert [r.rdata for r in victim.answer] == [genuine.rdata]
        assert any(q.question.name == genuine.name for q in org.queries)


@pytest.mark.parametrize("target", ["."])
def test_upward_and_looping_referrals_fail_within_the_bound(tmp_path, start_daemon, target):
    holder: list = []

    def com_behaviour(q):  # refers back up to the root
        return [referral(q, target, "a.root", holder[0].address).to_wire()]

    def root_behaviour(q):
        return [referral(q, "com", "ns1.nic.com", holder[1].address).to_wire()]

    with ScriptedServer(root_behaviour) as root, ScriptedServer(com_behaviour) as com:
        holder += [root, com]
        resolver = start_resolver(start_daemon, tmp_path / "r", [("a.root.", root.address)])
        start = time.monotonic()
        assert resolve(resolver, "x@example.com").rcode == Rcode.SERVFAIL
        assert time.monotonic() - start < RESOLUTION_BOUND


def test_garbage_from_clients_gets_formerr(hierarchy):
    reply = Message.from_wire(udp_exchange(hierarchy.resolver.address, b"\x12\x34\x00\x00\x01\x00\xc1"))
    assert reply.id == 0x1234 and reply.rcode == Rcode.FORMERR
