"""The resolver's request handler (`ResolverServer.handle`) under a fake clock:
the wire answer cache against the full path it stands in for.

Two handlers get the same cache contents: `wired` answers repeated query
bytes from its `AnswerCache`, `plain` (an answer cache of size 0) always takes
the full path. Every reply must be byte-identical. `max_clients = 0` makes a
cache miss REFUSED at once (no resolution starts), so every reply is
synchronous and a miss is visible as REFUSED.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyresolve.protocol import tsig
from keyresolve.resolver.cache import Cache, Rank
from keyresolve.protocol.codes import ControlCommand, Opcode, Rcode, RType
from keyresolve.cli.config import ResolverConfig
from keyresolve.daemons.resolver import ResolverServer
from keyresolve.protocol.message import Message, make_query
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import ADDR, ALIAS, KEY, SOA, KeyAlgorithm, KeyUsage, Record
from keyresolve.resolver.resolution import Resolver

T0 = 1_000_000.0
PEER = ("127.0.0.1", 40000)
OPS = tsig.SharedKey(Name.from_text("ops."), "hmac-sha256", b"s" * 32)


def n(text: str) -> Name:
    return Name.from_text(text)


def key(owner: str, ttl: int = 300, seed: int = 1) -> Record:
    return Record(n(owner), RType.KEY, ttl,
                  KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes([seed]) * 32))


def soa(zone: str, ttl: int = 3600, minimum: int = 60) -> Record:
    return Record(n(zone), RType.SOA, ttl, SOA(n("ns1." + zone), n("hostmaster@" + zone),
                                               1, 7200, 900, 1209600, minimum))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Pair:
    """A wired and a plain handler with equal caches, on one fake clock."""

    def __init__(self, max_records: int = 1000) -> None:
        self.clock = Clock()
        self.wired = self._server(max_records)
        self.plain = self._server(max_records)
        self.plain.answers.max_answers = 0

    def _server(self, max_records: int) -> ResolverServer:
        config = ResolverConfig(path=Path("resolver.toml"), listen=[],
                                root_hints=Path("root.hints"), max_clients=0,
                                keys={OPS.name: OPS})
        resolver = Resolver([(n("a.root."), ADDR.parse("192.0.2.1:53"))],
                            Cache(max_records=max_records), rng=random.Random(1))
        return ResolverServer(config, resolver, clock=self.clock)

    @property
    def caches(self) -> list[Cache]:
        return [self.wired.resolver.cache, self.plain.resolver.cache]

    def put(self, records: list[Record], rank: Rank = Rank.AUTH_ANSWER) -> None:
        for cache in self.caches:
            assert cache.put(records, rank, self.clock.now)

    def ask(self, data: bytes, tcp: bool = False) -> bytes:
        """Both handlers' reply, checked equal."""
        wired = self.wired.handle(data, PEER, tcp)
        assert wired == self.plain.handle(data, PEER, tcp)
        assert isinstance(wired, bytes)
        return wired


def query(owner: str, rtype: int = RType.KEY, msg_id: int = 7, **kwargs) -> bytes:
    return make_query(n(owner), rtype, msg_id=msg_id, rd=True, **kwargs).to_wire()


def hit_only(server: ResolverServer) -> None:
    """Make the full path of `server` fail loudly: a reply now is a wire hit."""
    def refuse(*args):
        raise AssertionError("the full path ran")

    server.resolver.start = refuse


def ttls(reply: bytes) -> list[int]:
    message = Message.from_wire(reply)
    return [r.ttl for r in message.answer + message.authority]


# -- hits ----------------------------------------------------------------------------
def test_a_repeated_query_is_answered_from_the_wire_cache_byte_identically():
    pair = Pair()
    pair.put([key("alice@example.com", seed=1), key("alice@example.com", seed=2)])
    first = pair.ask(query("alice@example.com"))
    assert len(pair.wired.answers) == 1
    hit_only(pair.wired)
    for msg_id in (7, 8, 0xFFFF):
        data = query("alice@example.com", msg_id=msg_id)
        reply = pair.wired.handle(data, PEER, False)
        assert reply == pair.plain.handle(data, PEER, False)
        assert reply[:2] == data[:2] and reply[2:] == first[2:]
    decoded = Message.from_wire(first)
    assert decoded.rcode == Rcode.NOERROR and len(decoded.answer) == 2 and decoded.ra


@pytest.mark.parametrize("inserted_at", [T0, T0 + 0.37, T0 + 0.999999])
def test_ttls_count_down_exactly_as_the_full_path(inserted_at):
    pair = Pair()
    pair.clock.now = inserted_at
    pair.put([key("alice@example.com", ttl=3)])
    data = query("alice@example.com")
    seen = []
    step = 0.0625
    pair.clock.now = inserted_at
    while pair.clock.now < inserted_at + 3:
        seen.append(ttls(pair.ask(data))[0])  # equal to the full path's, checked in ask
        pair.clock.now += step
    assert seen == sorted(seen, reverse=True) and set(seen) == {0, 1, 2, 3}
    assert len(pair.wired.answers) == 1
    pair.clock.now = inserted_at + 3  # expired: a miss for both (REFUSED: no resolution)
    assert Message.from_wire(pair.ask(data)).rcode == Rcode.REFUSED
    assert len(pair.wired.answers) == 0


def test_ttls_at_each_second_boundary_match():
    pair = Pair()
    pair.clock.now = T0 + 0.25
    pair.put([key("alice@example.com", ttl=10)])
    data = query("alice@example.com")
    pair.ask(data)
    for second in range(1, 10):
        for delta in (-1e-9, 0.0, 1e-9):
            pair.clock.now = T0 + 0.25 + second + delta
            pair.ask(data)


def test_an_alias_chain_counts_down_each_ttl_and_ends_at_the_earliest_expiry():
    pair = Pair()
    pair.put([Record(n("team@example.com"), RType.ALIAS, 2, ALIAS(n("alice@example.com")))])
    pair.clock.now = T0 + 0.5
    pair.put([key("alice@example.com", ttl=5)])
    data = query("team@example.com")
    assert ttls(pair.ask(data)) == [1, 5]
    pair.clock.now = T0 + 1.2
    assert ttls(pair.ask(data)) == [0, 4]
    pair.clock.now = T0 + 1.99
    assert ttls(pair.ask(data)) == [0, 3]
    pair.clock.now = T0 + 2.0  # the alias expired: the chain is gone
    assert Message.from_wire(pair.ask(data)).rcode == Rcode.REFUSED


@pytest.mark.parametrize("negative", ["nxdomain", "nodata"])
def test_negative_answers_carry_the_rfc2308_ttl_and_count_down(negative):
    pair = Pair()
    proof = soa("example.com", ttl=3600, minimum=4)  # negative TTL: min(3600, 4)
    for cache in pair.caches:
        if negative == "nxdomain":
            assert cache.put_nxdomain(n("nobody@example.com"), proof, T0)
        else:
            assert cache.put_nodata(n("nobody@example.com"), RType.KEY, proof, T0)
    data = query("nobody@example.com")
    reply = Message.from_wire(pair.ask(data))
    assert reply.rcode == (Rcode.NXDOMAIN if negative == "nxdomain" else Rcode.NOERROR)
    assert [r.rtype for r in reply.authority] == [RType.SOA] and reply.authority[0].ttl == 4
    assert len(pair.wired.answers) == 1
    pair.clock.now = T0 + 2.5
    assert ttls(pair.ask(data)) == [1]
    pair.clock.now = T0 + 4
    assert Message.from_wire(pair.ask(data)).rcode == Rcode.REFUSED


# -- invalidation --------------------------------------------------------------------
def _control(command: int, owner: str = ".") -> bytes:
    return make_query(n(owner), command, msg_id=9, opcode=Opcode.CONTROL).to_wire()


@pytest.mark.parametrize("command", [ControlCommand.FLUSH_NAME, ControlCommand.FLUSH_ALL])
def test_a_flush_clears_the_wire_answers(command):
    pair = Pair()
    pair.put([key("alice@example.com")])
    pair.put([key("bob@example.com")])
    alice, bob = query("alice@example.com"), query("bob@example.com")
    pair.ask(alice)
    pair.ask(bob)
    assert len(pair.wired.answers) == 2
    assert Message.from_wire(pair.ask(_control(command, "alice@example.com"))).rcode == 0
    assert Message.from_wire(pair.ask(alice)).rcode == Rcode.REFUSED
    if command == ControlCommand.FLUSH_NAME:
        assert len(pair.wired.answers) == 1 and Message.from_wire(pair.ask(bob)).answer
    else:
        assert len(pair.wired.answers) == 0


#: A peer that is not loopback. The handler is called directly: nothing is sent there.
ELSEWHERE = ("192.0.2.1", 5353)
#: A valid key that is not a control key.
READER = tsig.SharedKey(Name.from_text("reader."), "hmac-sha256", b"r" * 32)


def _flush_server() -> ResolverServer:
    """A handler with a full cache; OPS may flush, READER may only query."""
    config = ResolverConfig(path=Path("resolver.toml"), listen=[],
                            root_hints=Path("root.hints"), max_clients=0,
                            keys={OPS.name: OPS, READER.name: READER}, control_keys=[OPS.name])
    resolver = Resolver([(n("a.root."), ADDR.parse("192.0.2.1:53"))], Cache(),
                        rng=random.Random(1))
    server = ResolverServer(config, resolver, clock=Clock())
    for owner in ("alice@example.com", "bob@example.com"):
        assert resolver.cache.put([key(owner)], Rank.AUTH_ANSWER, T0)
    return server


def _send_control(server: ResolverServer, command: int, peer: tuple,
                  signer: tsig.SharedKey | None) -> Message:
    message = make_query(n("alice@example.com"), command, msg_id=9, opcode=Opcode.CONTROL)
    data = (message.to_wire() if signer is None
            else tsig.sign(message, signer, int(time.time())))
    reply = server.handle(data, peer, False)
    assert isinstance(reply, bytes)
    return Message.from_wire(reply)


@pytest.mark.parametrize("command", [ControlCommand.FLUSH_NAME, ControlCommand.FLUSH_ALL])
@pytest.mark.parametrize("peer,signer", [
    (ELSEWHERE, None),               # unsigned, not from loopback
    (("2001:db8::1", 5353), None),
    (("fe80::1%lo", 5353), None),
    (("::ffff:192.0.2.1", 5353), None),
    (PEER, READER),                  # a valid key, but not a control key, even from loopback
    (ELSEWHERE, READER),
])
def test_a_refused_flush_leaves_the_cache_as_it_was(command, peer, signer):
    server = _flush_server()
    cache = server.resolver.cache
    before = len(cache)
    reply = _send_control(server, command, peer, signer)
    assert reply.rcode == Rcode.REFUSED
    assert (reply.signature is not None) == (signer is not None)
    assert len(cache) == before
    assert cache.get(n("alice@example.com"), RType.KEY, T0) is not None


@pytest.mark.parametrize("command", [ControlCommand.FLUSH_NAME, ControlCommand.FLUSH_ALL])
@pytest.mark.parametrize("peer,signer", [
    (PEER, None),                    # unsigned from loopback
    (("127.0.0.2", 5353), None),
    (("::1", 5353), None),
    (("::ffff:127.0.0.1", 5353), None),  # IPv4 loopback on a dual-stack [::] socket
    (ELSEWHERE, OPS),                # a control key, from anywhere
    (PEER, OPS),
])
def test_an_allowed_flush_empties_the_cache(command, peer, signer):
    server = _flush_server()
    cache = server.resolver.cache
    reply = _send_control(server, command, peer, signer)
    assert reply.rcode == Rcode.NOERROR
    assert cache.get(n("alice@example.com"), RType.KEY, T0) is None
    if command == ControlCommand.FLUSH_ALL:
        assert len(cache) == 0
    else:
        assert cache.get(n("bob@example.com"), RType.KEY, T0) is not None


def test_new_data_in_the_cache_replaces_the_wire_answer():
    pair = Pair()
    pair.put([key("alice@example.com", seed=1)], Rank.NONAUTH_ANSWER)
    data = query("alice@example.com")
    old = pair.ask(data)
    pair.clock.now += 1.5
    pair.put([key("alice@example.com", ttl=600, seed=2)])  # higher rank replaces
    new = pair.ask(data)
    assert new != old and ttls(new) == [600]


def test_an_alias_target_appearing_later_is_not_shadowed():
    """An answer depends on the lookups that missed too: a KEY stored at the
    name asked (beside its ALIAS) changes what the full path answers."""
    pair = Pair()
    pair.put([Record(n("team@example.com"), RType.ALIAS, 300, ALIAS(n("alice@example.com")))])
    pair.put([key("alice@example.com")])
    data = query("team@example.com")
    assert len(Message.from_wire(pair.ask(data)).answer) == 2
    pair.put([key("team@example.com", seed=3)])
    assert [r.rtype for r in Message.from_wire(pair.ask(data)).answer] == [RType.KEY]


def test_lru_eviction_in_the_record_cache_drops_the_wire_answer():
    pair = Pair(max_records=2)
    pair.put([key("alice@example.com")])
    pair.put([key("bob@example.com")])
    alice, bob = query("alice@example.com"), query("bob@example.com")
    pair.ask(bob)
    pair.ask(alice)  # alice is now the most recent in both caches
    pair.ask(bob)  # a wire hit refreshes bob's recency as the full path does
    pair.put([key("carol@example.com")])  # evicts the least recent: alice
    assert Message.from_wire(pair.ask(alice)).rcode == Rcode.REFUSED
    assert Message.from_wire(pair.ask(bob)).answer
    assert len(pair.wired.answers) == 1


def test_the_answer_cache_is_bounded():
    pair = Pair()
    pair.wired.answers.max_answers = 2
    for i in range(4):
        pair.put([key(f"user{i}@example.com")])
        pair.ask(query(f"user{i}@example.com"))
    assert len(pair.wired.answers) == 2
    for i in range(4):  # the evicted ones are answered by the full path, the same
        assert Message.from_wire(pair.ask(query(f"user{i}@example.com"))).answer


# -- never cached --------------------------------------------------------------------
def test_signed_queries_bypass_the_wire_cache():
    pair = Pair()
    pair.put([key("alice@example.com")])
    signed = tsig.sign(make_query(n("alice@example.com"), RType.KEY, msg_id=7, rd=True), OPS,
                       int(time.time()))
    for _ in range(2):
        reply = Message.from_wire(pair.wired.handle(signed, PEER, False))
        assert reply.signature is not None and reply.answer
    assert len(pair.wired.answers) == 0


def test_tcp_truncated_servfail_and_refused_answers_are_not_cached():
    pair = Pair()
    pair.put([key("big@example.com", seed=i) for i in range(40)])
    pair.put([Record(n("loop@example.com"), RType.ALIAS, 300, ALIAS(n("loop@example.com")))])
    assert Message.from_wire(pair.ask(query("big@example.com"), tcp=True)).answer
    assert Message.from_wire(pair.ask(query("big@example.com", udp_size=512))).tc
    assert Message.from_wire(pair.ask(query("loop@example.com"))).rcode == Rcode.SERVFAIL
    assert Message.from_wire(pair.ask(query("example.com", RType.AXFR))).rcode == Rcode.NOTIMP
    assert len(pair.wired.answers) == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_cached_queries_get_exactly_what_the_strict_path_gives(data):
    pair = Pair()
    pair.put([key("alice@example.com")])
    original = query("alice@example.com")
    pair.ask(original)
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(mutated)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip" and position < len(mutated):
            mutated[position] ^= data.draw(st.integers(1, 255))
        elif action == "insert":
            mutated.insert(position, data.draw(st.integers(0, 255)))
        elif position < len(mutated):
            del mutated[position]
    mutated = bytes(mutated)
    assert pair.wired.handle(mutated, PEER, False) == pair.plain.handle(mutated, PEER, False)
