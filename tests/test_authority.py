"""Authoritative answering over hand-built in-memory zones.

`ZONES`, `CASES`, `find_zone_in` and `summary` are reused by tests/test_store.py
to run the same table over the LMDB store.
"""

from __future__ import annotations

import msgpack
import pytest

from keyresolve.authority.answer import MAX_ALIAS_CHAIN, answer
from keyresolve.protocol.codes import Opcode, Rcode, RType, rtype_to_text
from keyresolve.protocol.message import DEFAULT_UDP_SIZE, HEADER, VERSION, Message, Question, make_query
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import ADDR, ALIAS, KEY, NS, SOA, KeyAlgorithm, KeyUsage, Record
from keyresolve.zonedata.model import Zone

N = Name.from_text
SOA_TTL = 3600
SOA_MINIMUM = 300
ORG_SOA_TTL = 60  # below the org zone's minimum: the negative TTL is the SOA TTL


def _soa(origin: str, ttl: int, minimum: int) -> Record:
    return Record(N(origin), RType.SOA, ttl,
                  SOA(N("ns1." + origin), N("hostmaster@" + origin), 2024010101, 7200, 3600,
                      1209600, minimum))


def _key(fill: int) -> KEY:
    return KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes([fill]) * 32)


def _rec(owner: str, rdata, ttl: int = 3600) -> Record:
    return Record(N(owner), rdata.rtype, ttl, rdata)


def _chain(prefix: str, links: int, zone: str) -> list[Record]:
    """prefix0@ -> prefix1@ -> ... -> prefix<links>@ (which owns a KEY)."""
    out = [_rec(f"{prefix}{i}@{zone}", ALIAS(N(f"{prefix}{i + 1}@{zone}")))
           for i in range(links)]
    out.append(_rec(f"{prefix}{links}@{zone}", _key(9)))
    return out


def build_zones() -> dict[Name, Zone]:
    """example.com (delegates sub.) and example.org; example.net is not served."""
    com = "example.com."
    com_records = [
        _soa(com, SOA_TTL, SOA_MINIMUM),
        _rec(com, NS(N("ns1.example.com."))),
        _rec(com, NS(N("ns2.other.net."))),
        _rec("ns1.example.com.", ADDR.parse("192.0.2.1:53")),
        _rec("alice@example.com.", _key(1)),
        _rec("alice.b@example.com.", _key(2)),
        _rec("a.b.c.example.com.", ADDR.parse("192.0.2.7:4000")),
        # delegation of sub.example.com: glue below the cut, sibling, out of zone
        _rec("sub.example.com.", NS(N("ns.sub.example.com."))),
        _rec("sub.example.com.", NS(N("ns1.example.com."))),
        _rec("sub.example.com.", NS(N("ns.other.net."))),
        _rec("ns.sub.example.com.", ADDR.parse("[2001:db8::53]:53")),
        # aliases
        _rec("bob@example.com.", ALIAS(N("alice@example.com."))),
        _rec("carol@example.com.", ALIAS(N("dave@example.org."))),
        _rec("erin@example.com.", ALIAS(N("frank@example.net."))),
        _rec("ghost@example.com.", ALIAS(N("nobody@example.com."))),
        _rec("deleg@example.com.", ALIAS(N("x@sub.example.com."))),
        _rec("loop1@example.com.", ALIAS(N("loop2@example.com."))),
        _rec("loop2@example.com.", ALIAS(N("loop1@example.com."))),
        _rec("www.example.com.", ALIAS(N("example.org."))),
        *_chain("ok", MAX_ALIAS_CHAIN, com),
        *_chain("long", MAX_ALIAS_CHAIN + 12, com),
    ]
    org = "example.org."
    org_records = [
        _soa(org, ORG_SOA_TTL, SOA_MINIMUM),
        _rec(org, NS(N("ns1.example.org."))),
        _rec("ns1.example.org.", ADDR.parse("198.51.100.1:53")),
        _rec("dave@example.org.", _key(4)),
    ]
    return {N(com): Zone.from_records(N(com), com_records),
            N(org): Zone.from_records(N(org), org_records)}


ZONES = build_zones()


def find_zone_in(zones):
    """A find_zone over a dict origin -> zone: closest enclosing origin."""
    def find_zone(name: Name):
        for domain in name.ancestors():
            if domain in zones:
                return zones[domain]
        return None
    return find_zone


def summary(response: Message) -> tuple:
    """(rcode, aa, answer, authority, additional) with records as 'owner TYPE'."""
    def section(records):
        return [f"{r.name} {rtype_to_text(r.rtype)}" for r in records]
    return (Rcode(response.rcode).name, response.aa, section(response.answer),
            section(response.authority), section(response.additional))


COM_SOA = ["example.com. SOA"]
ORG_SOA = ["example.org. SOA"]
SUB_NS = ["sub.example.com. NS"] * 3
SUB_GLUE = ["ns.sub.example.com. ADDR", "ns1.example.com. ADDR"]

# (qname, qtype, rcode, aa, answer, authority, additional)
CASES = [
    # plain answers
    ("alice@example.com.", "KEY", "NOERROR", True, ["alice@example.com. KEY"], [], []),
    ("ns1.example.com.", "ADDR", "NOERROR", True, ["ns1.example.com. ADDR"], [], []),
    ("example.com.", "SOA", "NOERROR", True, COM_SOA, [], []),
    # apex NS: in-zone glue only (ns2.other.net is not ours)
    ("example.com.", "NS", "NOERROR", True, ["example.com. NS"] * 2, [],
     ["ns1.example.com. ADDR"]),
    ("example.com.", "ANY", "NOERROR", True, ["example.com. NS"] * 2 + COM_SOA, [],
     ["ns1.example.com. ADDR"]),
    ("alice@example.com.", "ANY", "NOERROR", True, ["alice@example.com. KEY"], [], []),
    # NODATA: the name exists without the type, or is an empty non-terminal
    ("alice@example.com.", "ADDR", "NOERROR", True, [], COM_SOA, []),
    ("ns1.example.com.", "TYPE99", "NOERROR", True, [], COM_SOA, []),
    ("c.example.com.", "ADDR", "NOERROR", True, [], COM_SOA, []),
    ("b.c.example.com.", "ANY", "NOERROR", True, [], COM_SOA, []),
    # NXDOMAIN
    ("zed@example.com.", "KEY", "NXDOMAIN", True, [], COM_SOA, []),
    ("nope.c.example.com.", "KEY", "NXDOMAIN", True, [], COM_SOA, []),
    ("x@a.b.c.example.com.", "KEY", "NXDOMAIN", True, [], COM_SOA, []),
    # a missing mailbox whose key is a prefix of an existing one is not an ENT
    ("alic@example.com.", "KEY", "NXDOMAIN", True, [], COM_SOA, []),
    ("alice@example.org.", "KEY", "NXDOMAIN", True, [], ORG_SOA, []),
    # referrals: at the cut, below it, a mailbox under it, the glue name itself
    ("sub.example.com.", "NS", "NOERROR", False, [], SUB_NS, SUB_GLUE),
    ("sub.example.com.", "ADDR", "NOERROR", False, [], SUB_NS, SUB_GLUE),
    ("deep.er.sub.example.com.", "KEY", "NOERROR", False, [], SUB_NS, SUB_GLUE),
    ("x@sub.example.com.", "KEY", "NOERROR", False, [], SUB_NS, SUB_GLUE),
    ("ns.sub.example.com.", "ADDR", "NOERROR", False, [], SUB_NS, SUB_GLUE),
    # ALIAS asked for itself is not followed
    ("bob@example.com.", "ALIAS", "NOERROR", True, ["bob@example.com. ALIAS"], [], []),
    ("bob@example.com.", "ANY", "NOERROR", True, ["bob@example.com. ALIAS"], [], []),
    # ALIAS within the zone, into another served zone, out of what we serve
    ("bob@example.com.", "KEY", "NOERROR", True,
     ["bob@example.com. ALIAS", "alice@example.com. KEY"], [], []),
    ("carol@example.com.", "KEY", "NOERROR", True,
     ["carol@example.com. ALIAS", "dave@example.org. KEY"], [], []),
    ("carol@example.com.", "ADDR", "NOERROR", True, ["carol@example.com. ALIAS"], ORG_SOA, []),
    ("www.example.com.", "NS", "NOERROR", True,
     ["www.example.com. ALIAS", "example.org. NS"], [], ["ns1.example.org. ADDR"]),
    ("erin@example.com.", "KEY", "NOERROR", True, ["erin@example.com. ALIAS"], [], []),
    # chain ending at a missing name: the rcode of the last name (RFC 6604)
    ("ghost@example.com.", "KEY", "NXDOMAIN", True, ["ghost@example.com. ALIAS"], COM_SOA, []),
    # chain into a delegation: AA describes the query name; referral appended
    ("deleg@example.com.", "KEY", "NOERROR", True, ["deleg@example.com. ALIAS"], SUB_NS,
     SUB_GLUE),
    # loop: the chain so far, NOERROR
    ("loop1@example.com.", "KEY", "NOERROR", True,
     ["loop1@example.com. ALIAS", "loop2@example.com. ALIAS"], [], []),
    # a chain of exactly MAX_ALIAS_CHAIN is followed to the end
    ("ok0@example.com.", "KEY", "NOERROR", True,
     [f"ok{i}@example.com. ALIAS" for i in range(MAX_ALIAS_CHAIN)]
     + [f"ok{MAX_ALIAS_CHAIN}@example.com. KEY"], [], []),
    # a longer one stops after MAX_ALIAS_CHAIN hops, with the next ALIAS shown
    ("long0@example.com.", "KEY", "NOERROR", True,
     [f"long{i}@example.com. ALIAS" for i in range(MAX_ALIAS_CHAIN + 1)], [], []),
]


def _id(case) -> str:
    return f"{case[0]}/{case[1]}"


def _ask(find_zone, qname: str, qtype: str, **kwargs) -> Message:
    from keyresolve.protocol.codes import rtype_from_text

    query = make_query(N(qname), rtype_from_text(qtype), msg_id=4242, **kwargs)
    return answer(query, find_zone)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_answer_table(case):
    qname, qtype, rcode, aa, ans, auth, add = case
    response = _ask(find_zone_in(ZONES), qname, qtype)
    assert summary(response) == (rcode, aa, ans, auth, add)
    # every response survives the wire
    assert Message.from_wire(response.to_wire(65535)) == response


def test_refused_out_of_zone():
    for qname in ("frank@example.net.", "com.", "."):
        response = _ask(find_zone_in(ZONES), qname, "KEY")
        assert summary(response) == ("REFUSED", False, [], [], [])


def test_header_echo():
    response = _ask(find_zone_in(ZONES), "alice@example.com.", "KEY", rd=True, udp_size=4096)
    assert (response.id, response.opcode, response.qr, response.rd, response.ra) == (
        4242, Opcode.QUERY, True, True, False)
    assert response.udp_size == DEFAULT_UDP_SIZE
    assert response.question == Question(N("alice@example.com."), RType.KEY)


def test_answer_data():
    response = _ask(find_zone_in(ZONES), "bob@example.com.", "KEY")
    assert response.answer == [
        Record(N("bob@example.com."), RType.ALIAS, 3600, ALIAS(N("alice@example.com."))),
        Record(N("alice@example.com."), RType.KEY, 3600, _key(1)),
    ]


@pytest.mark.parametrize("qname, origin, ttl", [
    ("zed@example.com.", "example.com.", SOA_MINIMUM),  # min(3600, 300)
    ("dave@example.org.", "example.org.", ORG_SOA_TTL),  # min(60, 300); NODATA (asked ADDR)
])
def test_negative_soa_ttl(qname, origin, ttl):
    response = _ask(find_zone_in(ZONES), qname, "ADDR")
    [soa] = response.authority
    assert soa.name == N(origin) and soa.rtype == RType.SOA and soa.ttl == ttl
    assert soa.rdata == ZONES[N(origin)].soa.rdata


def test_case_insensitive_from_wire():
    raw = HEADER.pack(7, 0, VERSION, 0) + msgpack.packb(
        [["Alice@EXAMPLE.Com.", int(RType.KEY)], [], [], [], 1232])
    response = answer(Message.from_wire(raw), find_zone_in(ZONES))
    assert summary(response) == ("NOERROR", True, ["alice@example.com. KEY"], [], [])


@pytest.mark.parametrize("qtype", [RType.AXFR, RType.IXFR])
def test_transfer_in_query_is_notimp(qtype):
    response = answer(make_query(N("example.com."), qtype), find_zone_in(ZONES))
    assert summary(response) == ("NOTIMP", False, [], [], [])


def test_other_opcode_is_notimp():
    query = make_query(N("example.com."), RType.SOA, opcode=Opcode.NOTIFY)
    assert answer(query, find_zone_in(ZONES)).rcode == Rcode.NOTIMP


def test_questionless_is_formerr():
    response = answer(Message(id=9), find_zone_in(ZONES))
    assert (response.rcode, response.qr, response.id) == (Rcode.FORMERR, True, 9)


def test_closest_zone_wins_over_delegation():
    """Serving the child too: its data is answered, not the parent's referral."""
    sub = N("sub.example.com.")
    child = Zone.from_records(sub, [
        _soa("sub.example.com.", 120, 60),
        _rec("sub.example.com.", NS(N("ns.sub.example.com."))),
        _rec("x@sub.example.com.", _key(7)),
    ])
    zones = {**ZONES, sub: child}
    response = _ask(find_zone_in(zones), "deleg@example.com.", "KEY")
    assert summary(response) == ("NOERROR", True,
                                 ["deleg@example.com. ALIAS", "x@sub.example.com. KEY"], [], [])
