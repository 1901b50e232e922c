"""End-to-end: a flood of unique names does not cost the resolver its
delegations or its root (issue #17 item 6)."""

from __future__ import annotations

import secrets
import socket
import time

from keyresolve.protocol.codes import Rcode, RType
from keyresolve.protocol.message import Message, make_query

from .ans import name
from .test_resolver_e2e import build_hierarchy, resolve, start_resolver

#: Unique names in the flood: 40 times the answer cache below.
FLOOD_NAMES = 2000
#: Queries in flight at once during the flood.
FLOOD_WINDOW = 64
#: The flood gives up after this long (bounded in time as well as count).
FLOOD_SECONDS = 30.0
#: Every existing name of the test hierarchy (tests/test_resolver_e2e.py EXAMPLE).
EXISTING = ["alice@example.com", "short@example.com", "team@example.com"] + [
    f"user{i}@example.com" for i in range(12)]


def flood(address, names: list[str]) -> dict[int, int]:
    """Ask for every name over UDP, `FLOOD_WINDOW` at a time; rcode counts."""
    rcodes: dict[int, int] = {}
    pending: dict[int, float] = {}
    todo = list(enumerate(names))
    deadline = time.monotonic() + FLOOD_SECONDS
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        while (todo or pending) and time.monotonic() < deadline:
            while todo and len(pending) < FLOOD_WINDOW:
                i, text = todo.pop()
                sock.sendto(make_query(name(text), RType.KEY, rd=True, msg_id=i).to_wire(),
                            address)
                pending[i] = time.monotonic()
            try:
                reply = Message.from_wire(sock.recv(65535))
            except TimeoutError:
                # Lost datagrams: give up on queries older than a resolution.
                now = time.monotonic()
                for i in [i for i, sent in pending.items() if now - sent > 6]:
                    del pending[i]
                continue
            if pending.pop(reply.id, None) is not None:
                rcodes[reply.rcode] = rcodes.get(reply.rcode, 0) + 1
    return rcodes


def test_a_flood_of_unique_names_keeps_every_existing_name_resolvable(tmp_path, start_daemon):
    h = build_hierarchy(tmp_path, start_daemon)
    # An answer cache of 50 records against a flood 40 times as large.
    resolver = start_resolver(start_daemon, tmp_path / "small", [("a.root-servers.",
                                                                   h.root.address)],
                              cache_size=50)
    # The root hints are primed from the root itself at start.
    resolver.wait_logged(r"root hints primed: a\.root-servers\.$")
    assert all(resolve(resolver, text).rcode == Rcode.NOERROR for text in EXISTING)

    # Unique random names aimed at the root: each NXDOMAIN is a new entry.
    names = [f"f{secrets.token_hex(8)}." for _ in range(FLOOD_NAMES)]
    rcodes = flood(resolver.address, names)
    assert rcodes.get(Rcode.NXDOMAIN, 0) >= FLOOD_NAMES * 0.9, rcodes

    # The example.com delegation outlived the flood: its names resolve (the
    # flood pushed their answers out) with the root and com servers gone.
    h.root.stop()
    h.com.stop()
    rcodes_after = [resolve(resolver, text).rcode for text in EXISTING]
    assert rcodes_after == [Rcode.NOERROR] * len(EXISTING)
    reply = resolve(resolver, "alice@example.com")
    assert reply.answer and reply.answer[0].name == name("alice@example.com")


def test_existing_names_resolve_through_the_root_after_a_flood(tmp_path, start_daemon):
    """The root's servers come from the hints, never from a cached root NS
    set whose addresses the cache does not hold ("a.root-servers. is inside
    the zone but has no glue")."""
    h = build_hierarchy(tmp_path, start_daemon)
    resolver = start_resolver(start_daemon, tmp_path / "small", [("a.root-servers.",
                                                                   h.root.address)],
                              cache_size=50)
    # A stub asking for the root NS set (as `dig . NS` does) puts it in the cache.
    assert resolve(resolver, ".", RType.NS).rcode == Rcode.NOERROR
    names = [f"f{secrets.token_hex(8)}." for _ in range(FLOOD_NAMES // 4)]
    rcodes = flood(resolver.address, names)
    assert rcodes.get(Rcode.NXDOMAIN, 0) >= len(names) * 0.9, rcodes
    # Nothing of com or example.com was cached before: all of it comes from
    # the root down, whatever the flood left in the cache.
    rcodes_after = [resolve(resolver, text).rcode for text in EXISTING]
    assert rcodes_after == [Rcode.NOERROR] * len(EXISTING)
