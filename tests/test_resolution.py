"""Iterative resolution against a scripted in-memory network (no sockets).

Servers are functions from a query to a response (or None: the datagram is
lost) built from `Zone` objects. Every response goes through the wire codec.
Time is a float that the driver advances by a fixed latency per answer and by
the query's timeout when nothing comes back.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from keyresolve.resolver.cache import Cache, Rank
from keyresolve.protocol.codes import Opcode, Rcode, RType, rtype_from_text
from keyresolve.protocol.errors import KeyresolveError
from keyresolve.protocol.message import Message, Question
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import ADDR, ALIAS, NS, SOA, Record, rdata_from_text
from keyresolve.resolver.resolution import (HOLD_DOWN_PENALTY, INFRA_TTL, MAX_ALIAS_CHAIN,
                                   MAX_QUERY_TIMEOUT, MIN_QUERY_TIMEOUT, UNKNOWN_SERVER_TIMEOUT,
                                   Done, Resolver, Send, response_matches)
from keyresolve.zonedata.model import Zone

T0 = 1_000_000.0
LATENCY = 0.01
KEY_B64 = base64.b64encode(bytes(range(32))).decode()

ROOT_A, ROOT_B = ("10.0.0.1", 53), ("10.0.0.2", 53)
COM1, COM2 = ("10.1.0.1", 53), ("10.1.0.2", 53)
EXAMPLE_COM = ("10.2.0.1", 53)
ORG = ("10.3.0.1", 53)
EXAMPLE_ORG = ("10.4.0.1", 53)
GLUELESS = ("10.5.0.1", 53)
OTHER = ("10.6.0.1", 53)


def n(text: str) -> Name:
    return Name.from_text(text)


def make_zone(origin: str, *lines: str, soa_ttl: int = 3600, minimum: int = 300) -> Zone:
    """A zone from 'owner ttl TYPE data' lines (names relative to the origin)."""
    o = n(origin)
    records = [Record(o, RType.SOA, soa_ttl,
                      SOA(Name.from_text("ns1", o), Name.from_text("hostmaster@", o),
                          1, 7200, 900, 1209600, minimum))]
    for line in lines:
        owner, ttl, rtype_text, *data = line.split()
        rtype = rtype_from_text(rtype_text)
        records.append(Record(Name.from_text(owner, o), rtype, int(ttl),
                              rdata_from_text(rtype, data, o)))
    return Zone.from_records(o, records)


# -- a minimal authoritative server (RFC 1034 4.3.2 without wildcards) ------------------
def mini_answer(query: Message, find_zone: Callable[[Name], Zone | None]) -> Message:
    """Referral below a cut, AA answer, ALIAS chase in served zones, NODATA, NXDOMAIN."""
    question = query.question
    response = Message(id=query.id, opcode=query.opcode, qr=True, question=question)
    zone = find_zone(question.name)
    if zone is None:
        response.rcode = Rcode.REFUSED
        return response
    name, seen = question.name, {question.name}
    for step in range(8):
        below_apex = [d for d in name.ancestors() if d != zone.origin
                      and d.is_subdomain(zone.origin)]
        for cut in reversed(below_apex):  # highest cut first
            node = zone.get_node(cut)
            if node and RType.NS in node:
                response.authority += node[RType.NS].records(cut, RType.NS)
                for rdata in node[RType.NS].rdatas:
                    glue = zone.get_node(rdata.target)
                    if glue and RType.ADDR in glue:
                        response.additional += glue[RType.ADDR].records(rdata.target,
                                                                          RType.ADDR)
                return response
        response.aa = response.aa or step == 0
        node = zone.get_node(name)
        soa = zone.soa
        negative = Record(soa.name, RType.SOA, min(soa.ttl, soa.rdata.minimum), soa.rdata)
        if node is None:
            empty_non_terminal = not name.is_mailbox and zone.has_descendants(name)
            response.rcode = Rcode.NOERROR if empty_non_terminal else Rcode.NXDOMAIN
            response.authority.append(negative)
            return response
        if question.rtype in node:
            response.answer += node[question.rtype].records(name, question.rtype)
            return response
        if RType.ALIAS not in node:
            response.authority.append(negative)
            return response
        response.answer += node[RType.ALIAS].records(name, RType.ALIAS)
        target = node[RType.ALIAS].rdatas[0].target
        zone = find_zone(target)
        if target in seen or zone is None:
            return response
        seen.add(target)
        name = target
    return response


def _real_answer():
    try:
        from keyresolve.authority.answer import answer
    except ImportError:  # pragma: no cover - the module is written concurrently
        return None
    return answer


ANSWERERS = {"mini": mini_answer, "authority": _real_answer()}


# -- the network and the driver ------------------------------------------------------
@dataclass
class Net:
    """Server address -> handler(query, tcp); a missing server never answers."""

    answer: Callable = mini_answer
    servers: dict = field(default_factory=dict)
    sent: list[Send] = field(default_factory=list)
    now: float = T0

    def serve(self, address, *zones: Zone) -> None:
        def find_zone(name: Name) -> Zone | None:
            best = None
            for zone in zones:
                if name.is_subdomain(zone.origin) and (
                        best is None or len(zone.origin.labels) > len(best.origin.labels)):
                    best = zone
            return best

        self.servers[address] = lambda query, tcp: self.answer(query, find_zone)

    def to(self, address) -> list[Send]:
        return [s for s in self.sent if s.server == address]


def drive(resolver: Resolver, net: Net, name: str, rtype: int = RType.ADDR):
    """Run one resolution to the end; returns (Done, Resolution)."""
    res = resolver.start(Question(n(name), rtype), net.now)
    for _ in range(200):
        action = res.next_action(net.now)
        if isinstance(action, Done):
            return action, res
        assert isinstance(action, Send) and not action.message.rd
        net.sent.append(action)
        handler = net.servers.get(action.server)
        reply = handler(action.message, action.tcp) if handler else None
        if reply is None:
            net.now += action.timeout
            assert res.on_timeout(action, net.now)
        else:
            reply = Message.from_wire(reply.to_wire())
            net.now += LATENCY
            assert res.on_response(action, reply, net.now, source=action.server)
    raise AssertionError("resolution did not end")


ROOT_HINTS = [(n("a.root."), ADDR.parse("10.0.0.1:53")), (n("b.root."), ADDR.parse("10.0.0.2:53"))]


def world(net: Net) -> None:
    """root -> com, org; com -> example.com, glueless.com, ...; org -> example.org."""
    root = make_zone(
        ".", "@ 86400 NS a.root.", "@ 86400 NS b.root.",
        "a.root. 86400 ADDR 10.0.0.1:53", "b.root. 86400 ADDR 10.0.0.2:53",
        "com. 172800 NS ns1.com.", "com. 172800 NS ns2.com.",
        "ns1.com. 172800 ADDR 10.1.0.1:53", "ns2.com. 172800 ADDR 10.1.0.2:53",
        "org. 172800 NS ns1.org.", "ns1.org. 172800 ADDR 10.3.0.1:53")
    com = make_zone(
        "com.", "@ 172800 NS ns1.com.", "ns1.com. 172800 ADDR 10.1.0.1:53",
        "example.com. 86400 NS ns1.example.com.", "ns1.example.com. 86400 ADDR 10.2.0.1:53",
        "glueless.com. 86400 NS ns.example.org.",
        "cyc-a.com. 86400 NS ns.cyc-b.com.", "cyc-b.com. 86400 NS ns.cyc-a.com.",
        "nogl.com. 86400 NS ns.nogl.com.",
        # sib.com's server lives in other.com: the com zone has that
        # address, but as glue for sib.com it is sibling glue.
        "sib.com. 86400 NS ns.other.com.", "other.com. 86400 NS ns.other.com.",
        "ns.other.com. 86400 ADDR 10.6.0.1:53")
    chain = [f"c{i} 300 ALIAS c{i + 1}" for i in range(20)]
    example_com = make_zone(
        "example.com.", "@ 86400 NS ns1", "ns1 86400 ADDR 10.2.0.1:53",
        "www 300 ADDR 192.0.2.1:4000", "mail 300 ALIAS www",
        f"alice@ 3600 KEY x25519 encrypt {KEY_B64}", f"carol@ 3600 KEY x25519 encrypt {KEY_B64}",
        "to-org 600 ALIAS bob@example.org.", "loop 300 ALIAS loop.example.org.",
        "self-a 300 ALIAS self-b", "self-b 300 ALIAS self-a",
        *chain, "c20 300 ADDR 192.0.2.20:4000")
    org = make_zone("org.", "@ 172800 NS ns1.org.", "ns1.org. 172800 ADDR 10.3.0.1:53",
                    "example.org. 86400 NS ns1.example.org.",
                    "ns1.example.org. 86400 ADDR 10.4.0.1:53")
    example_org = make_zone(
        "example.org.", "@ 86400 NS ns1", "ns1 86400 ADDR 10.4.0.1:53",
        "ns 86400 ADDR 10.5.0.1:53", f"bob@ 1800 KEY x25519 encrypt {KEY_B64}",
        "loop 300 ALIAS loop.example.com.", soa_ttl=60, minimum=300)
    glueless = make_zone("glueless.com.", "@ 86400 NS ns.example.org.",
                         "www 300 ADDR 192.0.2.9:4000")
    other = make_zone("other.com.", "@ 86400 NS ns", "ns 86400 ADDR 10.6.0.1:53")
    sib = make_zone("sib.com.", "@ 86400 NS ns.other.com.", "www 300 ADDR 192.0.2.7:4000")
    net.serve(ROOT_A, root)
    net.serve(ROOT_B, root)
    net.serve(COM1, com)
    net.serve(COM2, com)
    net.serve(EXAMPLE_COM, example_com)
    net.serve(ORG, org)
    net.serve(EXAMPLE_ORG, example_org)
    net.serve(GLUELESS, glueless)
    net.serve(OTHER, other, sib)


@pytest.fixture(params=sorted(ANSWERERS))
def net(request) -> Net:
    answer = ANSWERERS[request.param]
    if answer is None:
        pytest.skip("keyresolve.authority.answer is not available")
    net = Net(answer=answer)
    world(net)
    return net


def make_resolver(**kwargs) -> Resolver:
    return Resolver(ROOT_HINTS, Cache(), rng=random.Random(7), **kwargs)


def texts(records: list[Record]) -> list[str]:
    return [r.to_text() for r in records]


def seed_fast(resolver: Resolver, server, now: float = T0) -> None:
    """Make `server` the preferred one: a measured RTT below any unknown server's."""
    resolver.record_answer(server, 0.0001, now)


# -- resolution ----------------------------------------------------------------------
def test_three_level_resolution(net):
    resolver = make_resolver()
    done, res = drive(resolver, net, "www.example.com.")
    reply = done.response
    assert reply.rcode == Rcode.NOERROR and done.reason is None
    assert reply.qr and reply.ra and not reply.aa
    assert texts(reply.answer) == ["www.example.com.\t300\tADDR\t192.0.2.1:4000"]
    assert res.queries == 3
    assert [(e.zone_cut, e.outcome, e.referral) for e in res.trace] == [
        (n("."), "referral", n("com.")), (n("com."), "referral", n("example.com.")),
        (n("example.com."), "answer", None)]
    assert res.trace[2].server == EXAMPLE_COM and res.trace[2].server_name == n("ns1.example.com.")
    assert all(e.rtt == pytest.approx(LATENCY) for e in res.trace)
    assert net.sent[1].zone_cut == n("com.") and net.sent[1].server in (COM1, COM2)


def test_mailbox_key_and_cached_delegation(net):
    resolver = make_resolver()
    done, res = drive(resolver, net, "alice@example.com.", RType.KEY)
    assert done.rcode == Rcode.NOERROR
    [key] = done.response.answer
    assert key.name == n("alice@example.com.") and key.rtype == RType.KEY and key.ttl == 3600
    # The example.com cut is cached now: another mailbox there costs one query.
    done, res = drive(resolver, net, "carol@example.com.", RType.KEY)
    assert done.rcode == Rcode.NOERROR and res.queries == 1
    assert res.trace[0].zone_cut == n("example.com.")


def test_cache_hit_needs_no_network_and_ttls_count_down(net):
    resolver = make_resolver()
    drive(resolver, net, "www.example.com.")
    net.now += 100
    done, res = drive(resolver, net, "www.example.com.")
    assert res.queries == 0 and res.trace == []
    assert [r.ttl for r in done.response.answer] == [200]
    net.now += 200  # the ADDR expired, the delegations did not
    done, res = drive(resolver, net, "www.example.com.")
    assert res.queries == 1 and done.response.answer[0].ttl == 300


def test_glue_from_referrals_is_not_an_answer(net):
    resolver = make_resolver()
    drive(resolver, net, "www.example.com.")
    assert resolver.cache.get(n("ns1.example.com."), RType.ADDR, net.now) is None
    done, res = drive(resolver, net, "ns1.example.com.")
    assert res.queries == 1 and res.trace[0].outcome == "answer"  # asked the zone itself
    assert resolver.cache.rank(n("ns1.example.com."), RType.ADDR, net.now) == Rank.AUTH_ANSWER


def test_ns_without_glue_is_resolved_by_a_sub_resolution(net):
    resolver = make_resolver()
    done, res = drive(resolver, net, "www.glueless.com.")
    assert texts(done.response.answer) == ["www.glueless.com.\t300\tADDR\t192.0.2.9:4000"]
    depths = [(e.depth, e.zone_cut) for e in res.trace]
    assert depths == [(0, n(".")), (0, n("com.")),
                      (1, n(".")), (1, n("org.")), (1, n("example.org.")),
                      (0, n("glueless.com."))]
    assert res.trace[1].referral == n("glueless.com.")
    assert res.trace[-1].server == GLUELESS and res.trace[-1].server_name == n("ns.example.org.")


def test_sibling_glue_is_ignored(net):
    resolver = make_resolver()
    done, res = drive(resolver, net, "www.sib.com.")
    assert texts(done.response.answer) == ["www.sib.com.\t300\tADDR\t192.0.2.7:4000"]
    # ns.other.com was looked up on its own instead of trusting sib.com's referral.
    assert any(e.depth == 1 and e.question.name == n("ns.other.com.") for e in res.trace)


def test_alias_within_one_zone_is_one_query(net):
    resolver = make_resolver()
    done, res = drive(resolver, net, "mail.example.com.")
    assert texts(done.response.answer) == ["mail.example.com.\t300\tALIAS\twww.example.com.",
                                           "www.example.com.\t300\tADDR\t192.0.2.1:4000"]
    assert res.queries == 3
    # AA speaks for the query name; what follows the ALIAS ranks lower.
    cache = resolver.cache
    assert cache.rank(n("mail.example.com."), RType.ALIAS, net.now) == Rank.AUTH_ANSWER
    assert cache.rank(n("www.example.com."), RType.ADDR, net.now) == Rank.NONAUTH_ANSWER


def test_alias_across_zones_to_a_mailbox(net):
    resolver = make_resolver()
    done, res = drive(resolver, net, "to-org.example.com.", RType.KEY)
    assert done.rcode == Rcode.NOERROR
    answer = done.response.answer
    assert [(r.name, r.rtype) for r in answer] == [(n("to-org.example.com."), RType.ALIAS),
                                                   (n("bob@example.org."), RType.KEY)]
    cuts = [e.zone_cut for e in res.trace]
    assert cuts == [n("."), n("com."), n("example.com."), n("."), n("org."), n("example.org.")]
    assert res.trace[2].outcome == "alias"
    # The whole chain is cached: a repeat costs nothing and keeps the chain.
    done, res = drive(resolver, net, "to-org.example.com.", RType.KEY)
    assert res.queries == 0 and [r.rtype for r in done.response.answer] == [RType.ALIAS,
                                                                            RType.KEY]


@pytest.mark.parametrize("name", ["loop.example.com.", "self-a.example.com."])
def test_alias_loop_is_servfail(net, name):
    resolver = make_resolver()
    done, res = drive(resolver, net, name)
    assert done.rcode == Rcode.SERVFAIL and "alias loop" in done.reason
    assert done.response.answer == [] and res.queries <= 6


def test_alias_chain_length_is_bounded(net):
    resolver = make_resolver()
    # c9 -> ... -> c20 is exactly MAX_ALIAS_CHAIN aliases: answered.
    done, _ = drive(resolver, net, f"c{20 - MAX_ALIAS_CHAIN}.example.com.")
    assert done.rcode == Rcode.NOERROR and len(done.response.answer) == MAX_ALIAS_CHAIN + 1
    resolver.cache.flush()
    done, _ = drive(resolver, net, f"c{19 - MAX_ALIAS_CHAIN}.example.com.")
    assert done.rcode == Rcode.SERVFAIL and f"longer than {MAX_ALIAS_CHAIN}" in done.reason
    done, _ = drive(resolver, net, "c0.example.com.")  # now partly from the cache
    assert done.rcode == Rcode.SERVFAIL and "longer than" in done.reason


def test_nxdomain_is_cached_for_min_of_soa_ttl_and_minimum(net):
    resolver = make_resolver()
    done, res = drive(resolver, net, "nope.example.com.")
    assert done.rcode == Rcode.NXDOMAIN and done.response.answer == []
    [soa] = done.response.authority
    assert soa.name == n("example.com.") and soa.ttl == 300  # min(3600, 300)
    net.now += 100
    done, res = drive(resolver, net, "nope.example.com.", RType.KEY)  # any type
    assert res.queries == 0 and done.rcode == Rcode.NXDOMAIN
    assert done.response.authority[0].ttl == 200
    net.now += 200
    done, res = drive(resolver, net, "nope.example.com.")
    assert res.queries == 1 and done.rcode == Rcode.NXDOMAIN


def test_nodata_is_cached_with_soa_ttl_when_smaller(net):
    resolver = make_resolver()
    done, res = drive(resolver, net, "bob@example.org.", RType.ADDR)
    assert done.rcode == Rcode.NOERROR and done.response.answer == []
    [soa] = done.response.authority
    assert soa.name == n("example.org.") and soa.ttl == 60  # min(60, 300)
    done, res = drive(resolver, net, "bob@example.org.", RType.ADDR)
    assert res.queries == 0 and done.response.authority[0].ttl == 60
    done, res = drive(resolver, net, "bob@example.org.", RType.KEY)  # other type: not cached
    assert res.queries == 1 and done.response.answer[0].rtype == RType.KEY
    net.now += 60
    done, res = drive(resolver, net, "bob@example.org.", RType.ADDR)
    assert res.queries == 1


def test_nxdomain_after_alias_keeps_the_chain():
    net = Net()
    world(net)
    zone = make_zone("example.com.", "@ 86400 NS ns1", "ns1 86400 ADDR 10.2.0.1:53",
                     "dangling 300 ALIAS gone.example.org.")
    net.serve(EXAMPLE_COM, zone)
    done, _ = drive(make_resolver(), net, "dangling.example.com.", RType.KEY)
    assert done.rcode == Rcode.NXDOMAIN
    assert [r.rtype for r in done.response.answer] == [RType.ALIAS]
    assert done.response.authority[0].name == n("example.org.")


def test_circular_glueless_delegations_fail_cleanly(net):
    resolver = make_resolver()
    done, res = drive(resolver, net, "www.cyc-a.com.")
    assert done.rcode == Rcode.SERVFAIL and "circular dependency" in done.reason
    assert res.queries < 10


def test_in_zone_ns_without_glue_fails_cleanly(net):
    done, res = drive(make_resolver(), net, "www.nogl.com.")
    assert done.rcode == Rcode.SERVFAIL
    assert "ns.nogl.com. is inside the zone but has no glue" in done.reason
    assert res.queries == 2


def test_expired_glue_refetches_the_delegation_from_the_parent(net):
    resolver = make_resolver()
    drive(resolver, net, "www.example.com.")
    resolver.cache.flush_name(n("ns1.example.com."))  # as if the glue had expired
    net.now += 1000
    done, res = drive(resolver, net, "www.example.com.")
    assert done.rcode == Rcode.NOERROR
    assert [(e.zone_cut, e.outcome) for e in res.trace] == [
        (n("com."), "referral"), (n("example.com."), "answer")]


def test_lame_cached_cut_refetches_the_delegation(net):
    """example.com moved to a new server; the old one now refuses it."""
    resolver = make_resolver()
    drive(resolver, net, "www.example.com.")
    com = make_zone("com.", "@ 172800 NS ns1.com.", "ns1.com. 172800 ADDR 10.1.0.1:53",
                    "example.com. 86400 NS ns2.example.com.",
                    "ns2.example.com. 86400 ADDR 10.2.0.2:53")
    moved = make_zone("example.com.", "@ 86400 NS ns2", "ns2 86400 ADDR 10.2.0.2:53",
                      f"alice@ 3600 KEY x25519 encrypt {KEY_B64}")
    net.serve(COM1, com)
    net.serve(COM2, com)
    net.serve(("10.2.0.2", 53), moved)
    net.serve(EXAMPLE_COM, make_zone("example.net."))  # refuses example.com
    done, res = drive(resolver, net, "alice@example.com.", RType.KEY)
    assert done.rcode == Rcode.NOERROR
    assert [(e.server, e.zone_cut, e.outcome) for e in res.trace] == [
        (EXAMPLE_COM, n("example.com."), "error"), (res.trace[1].server, n("com."), "referral"),
        (("10.2.0.2", 53), n("example.com."), "answer")]


# -- servers failing -----------------------------------------------------------------
def test_root_failover_then_srtt_prefers_the_good_root(net):
    root = net.servers[ROOT_A]
    dead: list = []

    def first_contact_dies(address):
        def handler(query, tcp):
            if not dead:
                dead.append(address)
            return None if dead[0] == address else root(query, tcp)
        return handler

    net.servers[ROOT_A] = first_contact_dies(ROOT_A)
    net.servers[ROOT_B] = first_contact_dies(ROOT_B)
    resolver = make_resolver()
    done, res = drive(resolver, net, "www.example.com.")
    assert done.rcode == Rcode.NOERROR
    [bad] = dead
    good = ROOT_B if bad == ROOT_A else ROOT_A
    assert [(e.server, e.outcome) for e in res.trace[:2]] == [(bad, "timeout"),
                                                              (good, "referral")]
    assert res.trace[0].zone_cut == n(".") and net.sent[0].timeout == UNKNOWN_SERVER_TIMEOUT
    assert resolver.server_stats(good, net.now).srtt == pytest.approx(LATENCY)
    for label in ("www", "mail", "alice@", "nope", "c20"):
        resolver.cache.flush()
        net.sent.clear()
        name = f"{label}example.com." if label.endswith("@") else f"{label}.example.com."
        drive(resolver, net, name)
        assert net.sent[0].server == good


def test_all_servers_refusing_is_servfail_with_reason(net):
    def refuse(query, tcp):
        return Message(id=query.id, qr=True, rcode=Rcode.REFUSED, question=query.question)

    net.servers[ROOT_A] = net.servers[ROOT_B] = refuse
    done, res = drive(make_resolver(), net, "www.example.com.")
    assert done.rcode == Rcode.SERVFAIL
    assert done.reason.startswith("www.example.com. ADDR: no server of zone . answered")
    assert "10.0.0.1:53: answered REFUSED" in done.reason
    assert "10.0.0.2:53: answered REFUSED" in done.reason
    assert res.queries == 2 and done.response.answer == []


def test_all_servers_silent_is_servfail_within_the_time_bound(net):
    del net.servers[ROOT_A], net.servers[ROOT_B]
    resolver = make_resolver(resolution_timeout=10.0)
    done, res = drive(resolver, net, "www.example.com.")
    assert done.rcode == Rcode.SERVFAIL and "10.0.0.1:53: timeout" in done.reason
    # Each root is tried twice (one lost datagram is forgiven), backing off.
    assert [s.timeout for s in net.sent] == [1.0, 1.0, 2.0, 2.0]
    assert net.now == pytest.approx(T0 + 6.0)


def test_total_time_bound(net):
    del net.servers[ROOT_A], net.servers[ROOT_B]
    resolver = make_resolver(resolution_timeout=1.5)
    done, res = drive(resolver, net, "www.example.com.")
    assert done.rcode == Rcode.SERVFAIL and "time limit (1.5 s)" in done.reason
    assert [s.timeout for s in net.sent] == [1.0, 0.5]  # the last one is cut short
    assert net.now == pytest.approx(T0 + 1.5)


def test_max_upstream_queries(net):
    done, res = drive(make_resolver(max_queries=2), net, "www.example.com.")
    assert done.rcode == Rcode.SERVFAIL and "query limit (2)" in done.reason
    assert res.queries == 2
    # Sub-resolutions share the budget.
    done, res = drive(make_resolver(max_queries=4), net, "www.glueless.com.")
    assert done.rcode == Rcode.SERVFAIL and res.queries == 4


@pytest.mark.parametrize("rcode", [Rcode.REFUSED, Rcode.SERVFAIL, Rcode.FORMERR, Rcode.NOTIMP])
def test_error_answers_fall_through_to_another_server(net, rcode):
    def broken(query, tcp):
        return Message(id=query.id, qr=True, rcode=rcode, question=query.question)

    net.servers[COM1] = broken
    resolver = make_resolver()
    seed_fast(resolver, COM1)
    done, res = drive(resolver, net, "www.example.com.")
    assert done.rcode == Rcode.NOERROR
    assert [(e.server, e.outcome) for e in res.trace[1:3]] == [(COM1, "error"),
                                                               (COM2, "referral")]
    assert res.trace[1].detail == f"answered {rcode.name}"
    assert resolver.server_stats(COM1, net.now).failures == 1


def test_timeouts_are_retried_once_then_other_servers(net):
    del net.servers[COM1]
    resolver = make_resolver()
    seed_fast(resolver, COM1)
    done, res = drive(resolver, net, "www.example.com.")
    assert done.rcode == Rcode.NOERROR
    assert [(e.server, e.outcome) for e in res.trace[1:3]] == [(COM1, "timeout"),
                                                               (COM2, "referral")]
    assert net.sent[1].timeout == MIN_QUERY_TIMEOUT  # fast server: short timeout
    # The timeout backed COM1 off past COM2's measured RTO: COM2 comes first now.
    resolver.cache.flush()
    net.sent.clear()
    drive(resolver, net, "www.example.com.")
    assert net.sent[1].server == COM2


def test_truncated_answer_is_retried_over_tcp(net):
    inner = net.servers[EXAMPLE_COM]

    def udp_truncates(query, tcp):
        reply = inner(query, tcp)
        return reply if tcp else reply.truncated()

    net.servers[EXAMPLE_COM] = udp_truncates
    done, res = drive(make_resolver(), net, "alice@example.com.", RType.KEY)
    assert done.rcode == Rcode.NOERROR and done.response.answer[0].rtype == RType.KEY
    assert [(s.server, s.tcp) for s in net.sent[2:]] == [(EXAMPLE_COM, False),
                                                         (EXAMPLE_COM, True)]
    assert res.trace[2].outcome == "truncated"


def test_on_error_skips_the_server(net):
    resolver = make_resolver()
    res = resolver.start(Question(n("www.example.com."), RType.ADDR), T0)
    first = res.next_action(T0)
    assert res.on_error(first, T0 + 0.001, "connection refused")
    assert not res.on_error(first, T0 + 0.001, "again")  # no longer in flight
    second = res.next_action(T0 + 0.001)
    assert {first.server, second.server} == {ROOT_A, ROOT_B}
    assert res.trace[0].outcome == "error" and res.trace[0].detail == "connection refused"


# -- referrals and bailiwick -----------------------------------------------------------
def hostile_referral(owner: str):
    def handler(query, tcp):
        return Message(id=query.id, qr=True, question=query.question,
                       authority=[Record(n(owner), RType.NS, 3600, NS(n("ns.evil.")))],
                       additional=[Record(n("ns.evil."), RType.ADDR, 3600,
                                          ADDR.parse("6.6.6.6:53"))])
    return handler


@pytest.mark.parametrize("owner", [".", "com.", "org.", "www.example.com.", "example.net."])
def test_upward_sideways_and_too_deep_referrals_are_lame(net, owner):
    net.servers[COM1] = hostile_referral(owner)
    resolver = make_resolver()
    seed_fast(resolver, COM1)
    done, res = drive(resolver, net, "example.com.", RType.KEY)
    assert done.rcode == Rcode.NOERROR  # COM2 was asked instead
    assert res.trace[1].server == COM1 and res.trace[1].outcome == "error"
    assert "referral" in res.trace[1].detail
    assert not any(s.server == ("6.6.6.6", 53) for s in net.sent)
    assert resolver.cache.get(n("ns.evil."), RType.ADDR, net.now, min_rank=Rank.GLUE) is None


def test_out_of_bailiwick_records_are_ignored_and_never_cached(net):
    evil = ADDR.parse("6.6.6.6:53")
    com = net.servers[COM1]

    def poisoning(query, tcp):
        reply = com(query, tcp)
        reply.answer.append(Record(n("www.example.org."), RType.ADDR, 3600, evil))
        reply.authority.append(Record(n("org."), RType.NS, 3600, NS(n("ns.evil."))))
        reply.additional += [Record(n("ns1.example.org."), RType.ADDR, 3600, evil),
                             Record(n("ns.evil."), RType.ADDR, 3600, evil),
                             # in com's bailiwick, but not glue of the referral:
                             Record(n("www.example.com."), RType.ADDR, 3600, evil)]
        return reply

    net.servers[COM1] = net.servers[COM2] = poisoning
    resolver = make_resolver()
    done, _ = drive(resolver, net, "www.example.com.")
    assert texts(done.response.answer) == ["www.example.com.\t300\tADDR\t192.0.2.1:4000"]
    cache = resolver.cache
    for name in ("www.example.org.", "ns1.example.org.", "ns.evil."):
        assert cache.get(n(name), RType.ADDR, net.now, min_rank=Rank.GLUE) is None
    assert cache.find_delegation(n("example.org."), net.now) is None
    done, _ = drive(resolver, net, "bob@example.org.", RType.KEY)
    assert done.rcode == Rcode.NOERROR
    assert not any(s.server == ("6.6.6.6", 53) for s in net.sent)


def test_out_of_bailiwick_data_in_an_authoritative_answer_is_dropped(net):
    evil = ADDR.parse("6.6.6.6:53")
    inner = net.servers[EXAMPLE_COM]

    def poisoning(query, tcp):
        reply = inner(query, tcp)
        reply.answer.append(Record(n("www.example.org."), RType.ADDR, 3600, evil))
        reply.authority.append(Record(n("example.org."), RType.NS, 3600, NS(n("ns.evil."))))
        return reply

    net.servers[EXAMPLE_COM] = poisoning
    resolver = make_resolver()
    done, _ = drive(resolver, net, "www.example.com.")
    assert texts(done.response.answer) == ["www.example.com.\t300\tADDR\t192.0.2.1:4000"]
    assert resolver.cache.get(n("www.example.org."), RType.ADDR, net.now,
                              min_rank=Rank.GLUE) is None
    assert resolver.cache.find_delegation(n("example.org."), net.now) is None


def test_an_alias_target_outside_the_zone_is_not_taken_from_the_same_answer(net):
    """A server asked for example.com cannot also answer for example.org."""
    inner = net.servers[EXAMPLE_COM]

    def overreaching(query, tcp):
        reply = inner(query, tcp)
        if query.question.name == n("to-org.example.com."):
            reply.answer.append(Record(n("bob@example.org."), RType.ALIAS, 3600,
                                       ALIAS(n("www.evil."))))
        return reply

    net.servers[EXAMPLE_COM] = overreaching
    done, res = drive(make_resolver(), net, "to-org.example.com.", RType.KEY)
    assert [r.rtype for r in done.response.answer] == [RType.ALIAS, RType.KEY]
    assert res.trace[-1].zone_cut == n("example.org.")


# -- matching responses ----------------------------------------------------------------
def test_only_matching_responses_are_accepted():
    resolver = make_resolver()
    res = resolver.start(Question(n("www.example.com."), RType.ADDR), T0)
    send = res.next_action(T0)
    with pytest.raises(KeyresolveError):
        res.next_action(T0)  # a query is in flight
    query = send.message
    good = Message(id=query.id, qr=True, question=query.question)
    assert response_matches(send, good, send.server)
    assert response_matches(send, good)
    wrong = [
        Message(id=query.id ^ 1, qr=True, question=query.question),
        Message(id=query.id, qr=True, question=Question(n("www.example.com."), RType.KEY)),
        Message(id=query.id, qr=True, question=Question(n("ww.example.com."), RType.ADDR)),
        Message(id=query.id, qr=True, question=None),
        Message(id=query.id, qr=False, question=query.question),
        Message(id=query.id, qr=True, opcode=Opcode.NOTIFY, question=query.question),
    ]
    for reply in wrong:
        assert not response_matches(send, reply, send.server)
        assert not res.on_response(send, reply, T0 + 0.01, send.server)
    host, port = send.server
    assert not response_matches(send, good, (host, port + 1))
    assert not response_matches(send, good, ("10.9.9.9", port))
    assert response_matches(send, good, (f"::ffff:{host}", port))  # dual-stack socket
    assert not res.on_response(send, good, T0 + 0.01, ("10.9.9.9", port))
    # Still waiting for the real answer: a timeout is accepted, once.
    assert res.on_timeout(send, T0 + 1)
    assert not res.on_timeout(send, T0 + 1)
    assert not res.on_response(send, good, T0 + 1.1)  # late answers are dropped


def test_query_ids_come_from_the_injected_rng(net):
    ids = []
    for _ in range(2):
        net.sent.clear()
        resolver = Resolver(ROOT_HINTS, rng=random.Random(42))
        drive(resolver, net, "www.example.com.")
        ids.append([s.message.id for s in net.sent])
    assert ids[0] == ids[1] and len(set(ids[0])) == 3
    assert all(0 <= i < 65536 for i in ids[0])


# -- server statistics ---------------------------------------------------------------------
def test_server_stats_backoff_hold_down_and_decay():
    resolver = make_resolver()
    server = ("192.0.2.53", 53)
    assert resolver.server_stats(server, T0) is None
    assert resolver.query_timeout(server, T0) == UNKNOWN_SERVER_TIMEOUT
    assert 0.001 <= resolver.selection_key(server, T0) <= 0.032
    resolver.record_answer(server, 0.1, T0)
    stats = resolver.server_stats(server, T0)
    assert (stats.srtt, stats.rto) == (pytest.approx(0.1), pytest.approx(0.3))  # RFC 6298 2.2
    resolver.record_answer(server, 0.2, T0)
    assert stats.srtt == pytest.approx(0.1125)  # 7/8 * 0.1 + 1/8 * 0.2
    for _ in range(3):
        resolver.record_timeout(server, resolver.query_timeout(server, T0), T0)
    assert resolver.query_timeout(server, T0) == MAX_QUERY_TIMEOUT
    assert resolver.selection_key(server, T0) > HOLD_DOWN_PENALTY  # held down
    # Failures halve every minute: two minutes later the hold-down is over.
    assert resolver.selection_key(server, T0 + 120) < HOLD_DOWN_PENALTY
    assert resolver.server_stats(server, T0 + INFRA_TTL + 1) is None  # forgotten
    assert resolver.query_timeout(server, T0) == UNKNOWN_SERVER_TIMEOUT


def test_transfer_questions_are_notimp_without_queries():
    # As at an authoritative server: transfers use opcode TRANSFER (protocol.md 7).
    res = make_resolver().start(Question(n("example.com."), RType.AXFR), T0)
    done = res.next_action(T0)
    assert isinstance(done, Done) and done.rcode == Rcode.NOTIMP and res.queries == 0


def test_resolver_needs_root_hints():
    with pytest.raises(KeyresolveError):
        Resolver([])
