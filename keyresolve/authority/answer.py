"""Authoritative answering (sans-IO): a query and the zones we serve in, a response out.

The algorithm is RFC 1034 4.3.2 without wildcards, with ALIAS in the role of
CNAME:

1. find the closest enclosing zone we serve (none: REFUSED);
2. walking down from the apex, a name below it that owns NS is a zone cut; a
   query name at or below a cut (a mailbox counts by its domain) gets a
   referral: the cut's NS in authority, in-zone ADDR glue in additional, AA clear;
3. a node with the asked type: the answer, AA set;
4. a node with an ALIAS: the ALIAS in the answer, then the same steps for the
   target if we serve it (bounded by `MAX_ALIAS_CHAIN` and a loop check);
5. a node without the type, or an empty non-terminal: NODATA (NOERROR + SOA);
6. no such name: NXDOMAIN + SOA.

Negative answers carry the SOA with TTL min(SOA TTL, SOA minimum) (RFC 2308 3).
"""

from __future__ import annotations

from collections.abc import Callable

from ..protocol.codes import TRANSFER_TYPES, Opcode, Rcode, RType
from ..protocol.message import DEFAULT_UDP_SIZE, Message, make_response
from ..protocol.names import Name
from ..protocol.records import ALIAS, NS, SOA, Record
from ..zonedata.model import RRset, ZoneView

#: ALIAS records followed in one answer. Bounds the work one query costs us
#: (RFC 1034 3.6.2 asks servers to follow chains, not how far; resolvers such
#: as BIND stop CNAME chains around this depth). Past it, the answer ends with
#: the next ALIAS so the resolver can continue with its own limit.
MAX_ALIAS_CHAIN = 8

#: Returns the closest enclosing zone we serve for a name, or None.
FindZone = Callable[[Name], ZoneView | None]


def answer(query: Message, find_zone: FindZone) -> Message:
    """The authoritative response to a QUERY, from the zones `find_zone` returns."""
    response = make_response(query)
    response.ra = False
    response.udp_size = DEFAULT_UDP_SIZE
    question = query.question
    if question is None:
        response.rcode = Rcode.FORMERR
        return response
    if query.opcode != Opcode.QUERY or question.rtype in TRANSFER_TYPES:
        response.rcode = Rcode.NOTIMP
        return response
    zone = find_zone(question.name)
    if zone is None:
        response.rcode = Rcode.REFUSED
        return response
    _Answerer(response, find_zone).run(zone, question.name, question.rtype)
    return response


class _Answerer:
    """Fills one response; holds what is shared along an ALIAS chain."""

    def __init__(self, response: Message, find_zone: FindZone) -> None:
        self.response = response
        self.find_zone = find_zone
        self.additional_seen: set[Name] = set()

    def run(self, zone: ZoneView, name: Name, qtype: int) -> None:
        """Answer `name`/`qtype` in `zone`, following ALIAS records."""
        response = self.response
        seen = {name}
        followed = 0
        while True:
            cut = _find_cut(zone, name)
            if cut is not None:
                # Not authoritative below a cut. After an ALIAS the AA bit
                # stays: it describes the query name (RFC 1035 4.1.1).
                self.add_referral(zone, *cut)
                return
            if followed == 0:
                response.aa = True
            node = zone.get_node(name)
            if not node:
                # A mailbox is a leaf: nothing can exist below it.
                if name.is_mailbox or not zone.has_descendants(name):
                    response.rcode = Rcode.NXDOMAIN
                else:
                    response.rcode = Rcode.NOERROR  # empty non-terminal (RFC 8020)
                self.add_negative_soa(zone)
                return
            response.rcode = Rcode.NOERROR
            if qtype == RType.ANY:
                for rtype in sorted(node):
                    response.answer.extend(node[rtype].records(name, rtype))
                if name == zone.origin and RType.NS in node:
                    self.add_glue(zone, node[RType.NS])
                return
            rrset = node.get(qtype)
            if rrset is not None:
                response.answer.extend(rrset.records(name, qtype))
                if qtype == RType.NS and name == zone.origin:
                    self.add_glue(zone, rrset)
                return
            alias = node.get(RType.ALIAS)
            if alias is None:
                self.add_negative_soa(zone)  # NODATA
                return
            # An ALIAS RRset holds one record (the zone checker enforces it);
            # if there were more, all are shown and the first is followed.
            response.answer.extend(alias.records(name, RType.ALIAS))
            target_rdata = alias.rdatas[0]
            assert isinstance(target_rdata, ALIAS)
            target = target_rdata.target
            # On a loop or a chain too long, stop with what we have (NOERROR):
            # the last ALIAS shows the resolver where the chain goes on, and it
            # applies its own loop and length checks.
            if target in seen or followed == MAX_ALIAS_CHAIN:
                return
            next_zone = self.find_zone(target)
            if next_zone is None:
                return  # not ours: the resolver follows the ALIAS
            seen.add(target)
            followed += 1
            zone, name = next_zone, target

    def add_referral(self, zone: ZoneView, cut: Name, ns: RRset) -> None:
        """The cut's NS in authority and its in-zone glue in additional."""
        self.response.rcode = Rcode.NOERROR
        self.response.authority.extend(ns.records(cut, RType.NS))
        self.add_glue(zone, ns)

    def add_glue(self, zone: ZoneView, ns: RRset) -> None:
        """ADDR records of the NS targets that lie in `zone` (no out-of-zone glue:
        a server cannot vouch for it, RFC 2181 5.4.1)."""
        for rdata in ns.rdatas:
            assert isinstance(rdata, NS)
            target = rdata.target
            if target in self.additional_seen or not target.is_subdomain(zone.origin):
                continue
            self.additional_seen.add(target)
            node = zone.get_node(target)
            if node and RType.ADDR in node:
                self.response.additional.extend(node[RType.ADDR].records(target, RType.ADDR))

    def add_negative_soa(self, zone: ZoneView) -> None:
        """The zone's SOA in authority, with the negative-caching TTL."""
        self.response.authority.append(negative_soa(zone))


def negative_soa(zone: ZoneView) -> Record:
    """The SOA for a negative answer: TTL min(SOA TTL, minimum) (RFC 2308 3)."""
    soa = zone.soa
    rdata = soa.rdata
    assert isinstance(rdata, SOA)
    return Record(soa.name, RType.SOA, min(soa.ttl, rdata.minimum), rdata)


def _find_cut(zone: ZoneView, name: Name) -> tuple[Name, RRset] | None:
    """The highest name strictly below the apex, at or above `name`'s domain,
    that owns NS: the zone cut `name` falls under (RFC 1034 4.3.2 step 3b)."""
    labels = name.labels
    depth = len(zone.origin.labels)
    # Domains from just below the apex down to name's own domain.
    for start in range(len(labels) - depth - 1, -1, -1):
        domain = Name(labels[start:])
        node = zone.get_node(domain)
        if node is not None and RType.NS in node:
            return domain, node[RType.NS]
    return None
