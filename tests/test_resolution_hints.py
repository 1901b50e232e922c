"""The root hints (pinned, primed, refreshed) and the infrastructure cache,
against the scripted network of test_resolution (no sockets, a fake clock)."""

from __future__ import annotations

import random

from keyresolve.resolver.cache import Cache
from keyresolve.protocol.codes import Rcode, RType
from keyresolve.protocol.records import ADDR
from keyresolve.resolver.resolution import PRIMING_MIN_TTL, PRIMING_RETRY, Done, Resolver, Send

from .test_resolution import (ANSWERERS, EXAMPLE_COM, ROOT_A, ROOT_B, ROOT_HINTS, Net,
                              drive, make_zone, n, world)

#: The real authoritative answerer: it adds the root servers' addresses to
#: the answer of ". NS", as a root server does.
AUTHORITY = ANSWERERS["authority"]


def prime(resolver: Resolver, net: Net) -> bool:
    """Run a priming to its end at the net's time; `finish_priming`'s result."""
    assert resolver.priming_wait(net.now) == 0
    res = resolver.start_priming(net.now)
    for _ in range(50):
        action = res.next_action(net.now)
        if isinstance(action, Done):
            return resolver.finish_priming(action, net.now)
        assert isinstance(action, Send) and action.zone_cut == n(".")
        assert action.message.question.rtype == RType.NS
        net.sent.append(action)
        handler = net.servers.get(action.server)
        reply = handler(action.message, action.tcp) if handler else None
        if reply is None:
            net.now += action.timeout
            res.on_timeout(action, net.now)
        else:
            net.now += 0.01
            res.on_response(action, reply, net.now, action.server)
    raise AssertionError("priming did not end")


def root_zone(address: str, ttl: int):
    return make_zone(".", f"@ {ttl} NS a.root.", f"a.root. {ttl} ADDR {address}",
                     "com. 172800 NS ns1.com.", "ns1.com. 172800 ADDR 10.1.0.1:53")


def test_priming_takes_the_root_servers_from_the_root_and_refreshes_them_at_ttl_end():
    net = Net(answer=AUTHORITY)
    resolver = Resolver(ROOT_HINTS, Cache(), rng=random.Random(1))
    net.serve(ROOT_A, root_zone("10.0.0.1:53", 7200))
    net.serve(ROOT_B, root_zone("10.0.0.1:53", 7200))
    assert prime(resolver, net)
    # The root names one server now: b.root. is gone from the hints.
    assert resolver.root_hints == [(n("a.root."), ADDR.parse("10.0.0.1:53"))]
    assert resolver.priming_wait(net.now) == 7200
    assert resolver.cache.get(n("."), RType.NS, net.now) is None  # hints are not cache data

    # The root server moves; at the end of the TTL, priming learns it.
    moved = ("10.0.0.9", 53)
    net.serve(moved, root_zone("10.0.0.9:53", 30))
    net.serve(ROOT_A, root_zone("10.0.0.9:53", 30))
    net.now += 7199
    assert resolver.priming_wait(net.now) == 1
    net.now += 1
    assert prime(resolver, net)
    assert resolver.root_hints == [(n("a.root."), ADDR.parse("10.0.0.9:53"))]
    assert resolver.priming_wait(net.now) == PRIMING_MIN_TTL  # a 30 s TTL is raised

    # A failed priming (the root is silent) keeps the hints, and is retried.
    del net.servers[moved]
    net.now += PRIMING_MIN_TTL
    assert not prime(resolver, net)
    assert resolver.root_hints == [(n("a.root."), ADDR.parse("10.0.0.9:53"))]
    assert resolver.priming_wait(net.now) == PRIMING_RETRY


def test_a_priming_answer_without_addresses_keeps_the_known_ones():
    net = Net()  # the minimal answerer gives no additional section
    world(net)
    resolver = Resolver(ROOT_HINTS, Cache(), rng=random.Random(1))
    assert prime(resolver, net)
    assert sorted(resolver.root_hints) == sorted(ROOT_HINTS)


def test_a_cached_root_ns_set_without_addresses_does_not_hide_the_hints():
    net = Net()
    world(net)
    resolver = Resolver(ROOT_HINTS, Cache(), rng=random.Random(1))
    done, _ = drive(resolver, net, ".", RType.NS)  # a stub asks for the root NS set
    assert done.rcode == Rcode.NOERROR and resolver.cache.get(n("."), RType.NS, net.now)
    done, res = drive(resolver, net, "www.example.com.")
    assert done.rcode == Rcode.NOERROR, done.reason
    assert res.trace[0].zone_cut == n(".") and res.trace[0].server in (ROOT_A, ROOT_B)


def test_a_flood_of_leaf_answers_keeps_delegations_and_server_addresses():
    net = Net()
    world(net)
    resolver = Resolver(ROOT_HINTS, Cache(max_records=20), rng=random.Random(1))
    done, _ = drive(resolver, net, "www.glueless.com.")
    assert done.rcode == Rcode.NOERROR
    for i in range(500):  # unique names, each a new NXDOMAIN in the answer part
        net.now += 0.01
        done, _ = drive(resolver, net, f"x{i}.example.com.")
        assert done.rcode == Rcode.NXDOMAIN
    # glueless.com's server address, found by a sub-resolution, was kept.
    net.sent.clear()
    done, res = drive(resolver, net, "www.glueless.com.")
    assert done.rcode == Rcode.NOERROR and res.queries == 1  # the answer itself was evicted
    done, res = drive(resolver, net, "alice@example.com.", RType.KEY)
    assert done.rcode == Rcode.NOERROR and [e.server for e in res.trace] == [EXAMPLE_COM]
