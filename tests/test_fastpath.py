"""The authoritative fast path against the full path, over a real LMDB store.

The full path (`Message.from_wire` -> `authority.answer` -> `to_wire`) is the
reference: whenever `Responder.answer` returns bytes they must be exactly the
full path's, and whenever the full decoder rejects a message the fast path
must return None.
"""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyresolve.authority import fastpath
from keyresolve.authority.answer import answer
from keyresolve.protocol.codes import Rcode, RType
from keyresolve.protocol.errors import KeyresolveError
from keyresolve.protocol.message import (BODY_ARRAY, DEFAULT_UDP_SIZE, EMPTY_SECTION, FIXARRAY,
                                         FLAG_AA, FLAG_QR, FLAG_RA, FLAG_RD, FLAG_SG, FLAG_TC,
                                         OPCODE_SHIFT, QUESTION_ARRAY, VERSION, Message, Signature,
                                         header_tail, make_query, max_response_size)
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import ADDR, ALIAS, KEY, NS, KeyAlgorithm, KeyUsage, Record
from keyresolve.store.zones import Store
from keyresolve.zonedata.model import Zone
from keyresolve.zonedata.zonefile import parse_zone_text

N = Name.from_text
MAP_SIZE = 1 << 26  # small: these zones take kilobytes
HEADER = struct.Struct(">HHBB")


def _b64(seed: int) -> str:
    import base64

    return base64.b64encode(bytes((seed * 7 + i) % 256 for i in range(32))).decode()


def _many_keys(owner: str, count: int, seed: int) -> str:
    return "\n".join(f"{owner} KEY x25519 encrypt {_b64(seed + i)}" for i in range(count))


EXAMPLE_COM = f"""
$ORIGIN example.com.
$TTL 3600
@            SOA   ns1 hostmaster@example.com. 2026112201 3600 600 604800 300
@            NS    ns1
@            NS    ns.other.net.
ns1          ADDR  192.0.2.1:53
ns1          ADDR  [2001:db8::1]:5353
alice@       KEY   x25519 encrypt {_b64(1)}
first.last@  300 KEY x25519 encrypt {_b64(2)}
             300 KEY ed25519 sign {_b64(3)}
o'neil+tag@  KEY   x25519 encrypt {_b64(4)}
a-b_c!#$%&*/=?^`{{|}}~@ KEY x25519 encrypt {_b64(5)}
www-team@    ALIAS alice@
elsewhere@   ALIAS dave@example.org.
bob@team     KEY   x25519 encrypt {_b64(6)}
eve@deep.er.team KEY x25519 encrypt {_b64(9)}
ops@ns1      KEY   x25519 encrypt {_b64(11)}
sub          NS    ns1.sub
ns1.sub      ADDR  192.0.2.9:53
{_many_keys("medium@", 12, 10)}
{_many_keys("huge@", 40, 30)}
"""

EXAMPLE_ORG = f"""
$ORIGIN example.org.
$TTL 60
@            SOA   ns1 hostmaster@example.org. 7 3600 600 604800 30
@            NS    ns1
ns1          ADDR  198.51.100.1:53
dave@        86400 KEY x25519 encrypt {_b64(7)}
{"a" * 40}@ KEY x25519 encrypt {_b64(12)}
"""

# A child zone served from the same store, not delegated from example.com.
ENG = f"""
$ORIGIN eng.example.com.
$TTL 600
@            SOA   ns1 hostmaster@eng.example.com. 1 3600 600 604800 300
@            NS    ns1
ns1          ADDR  192.0.2.2:53
carol@       KEY   ed25519 sign {_b64(8)}
"""


def _odd_zone() -> Zone:
    """What zone files forbid but a store may still hold (a transfer writes
    what the primary sends): ADDR and NS at a mailbox, ALIAS beside a KEY,
    a mailbox below a zone cut (occluded)."""
    o = N("odd.test.")
    soa = parse_zone_text(
        "$ORIGIN odd.test.\n@ 60 SOA ns1 h@odd.test. 1 1 1 1 1\n@ 60 NS ns1\n"
        "ns1 60 ADDR 192.0.2.3:53\nsub 60 NS ns1\n")
    records = list(soa.records())
    key = KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, b"\x01" * 32)
    records += [
        Record(N("box@odd.test."), RType.ADDR, 60, ADDR.parse("192.0.2.4:4000")),
        Record(N("box@odd.test."), RType.NS, 60, NS(N("ns1.odd.test."))),
        Record(N("box@odd.test."), RType.KEY, 60, key),
        Record(N("both@odd.test."), RType.KEY, 60, key),
        Record(N("both@odd.test."), RType.ALIAS, 60, ALIAS(N("box@odd.test."))),
        Record(N("hidden@sub.odd.test."), RType.KEY, 60, key),
        Record(N("deeper@x.sub.odd.test."), RType.KEY, 60, key),
    ]
    return Zone.from_records(o, records)


ZONES = [parse_zone_text(EXAMPLE_COM), parse_zone_text(EXAMPLE_ORG), parse_zone_text(ENG),
         _odd_zone()]
ORIGINS = {zone.origin for zone in ZONES}


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    """One read snapshot of a store holding every zone above."""
    with Store(tmp_path_factory.mktemp("fastpath") / "db", map_size=MAP_SIZE) as store:
        for zone in ZONES:
            store.replace_zone_reference(zone)
        with store.snapshot() as snapshot:
            yield snapshot


def _responder(snapshot, find_route) -> fastpath.Responder:
    """A responder over `snapshot` that caches nothing: every answer is made."""
    responder = fastpath.Responder(find_route, limit=0)
    responder.read = snapshot.node_reader()
    return responder


def _apex(snapshot) -> fastpath.Responder:
    """Mailboxes at a zone apex only, without NXDOMAIN."""
    def find_route(domain_key: bytes) -> fastpath.Route | None:
        found = snapshot.mailbox_route(domain_key)
        return None if found is None or found[0] != domain_key else (found[1], None)
    return _responder(snapshot, find_route)


def _enclosing(snapshot) -> fastpath.Responder:
    """Mailboxes in any enclosing zone, without NXDOMAIN."""
    def find_route(domain_key: bytes) -> fastpath.Route | None:
        found = snapshot.mailbox_route(domain_key)
        return None if found is None else (found[1], None)
    return _responder(snapshot, find_route)


def _negative(snapshot) -> fastpath.Responder:
    """As serve.py's: the enclosing zone, and its Negative for a missing mailbox."""
    def find_route(domain_key: bytes) -> fastpath.Route | None:
        found = snapshot.mailbox_route(domain_key)
        if found is None:
            return None
        return found[1], fastpath.negative(snapshot.get_zone(Name.from_store_key(found[0])))
    return _responder(snapshot, find_route)


#: The store lookups: mailboxes at a zone apex only, or in any enclosing zone
#: (without NXDOMAIN, or with it).
LOOKUPS = {"apex": _apex, "enclosing": _enclosing, "negative": _negative}


@pytest.fixture(params=sorted(LOOKUPS))
def lookup(request, snap):
    """(kind, a responder for that kind of lookup) over the snapshot."""
    return request.param, LOOKUPS[request.param](snap)


def wire(name="alice@example.com.", rtype: object = RType.KEY, *, msg_id=0x1234, flags=0,
         version=VERSION, rcode_high=0, udp_size: object = DEFAULT_UDP_SIZE, body=None,
         trailer=b"") -> bytes:
    """A query built by hand, so every field can be wrong."""
    if body is None:
        body = [[name, rtype], [], [], [], udp_size]
    return HEADER.pack(msg_id, flags, version, rcode_high) + msgpack.packb(body) + trailer


def full_path(data: bytes, snapshot) -> bytes:
    """The reference response (raises what the decoder raises)."""
    query = Message.from_wire(data)
    return answer(query, snapshot.find_zone).to_wire(max_response_size(query, tcp=False))


def check(data: bytes, snapshot, lookup) -> bytes | None:
    """The fast path's answer, checked against the full path."""
    fast = lookup[1].answer(data)
    try:
        reference = full_path(data, snapshot)
    except KeyresolveError:
        assert fast is None, "the fast path answered a message the full decoder rejects"
        return None
    if fast is not None:
        assert fast == reference
    return fast


def _zone_of(name: Name, kind: str) -> Zone | None:
    """The zone a lookup of `kind` reads `name` from: the zone at its domain
    ("apex"), or the closest enclosing zone unless a cut lies on the way."""
    if kind == "apex":
        return next((z for z in ZONES if z.origin == name.domain), None)
    enclosing = [z for z in ZONES if name.is_subdomain(z.origin)]
    if not enclosing:
        return None
    zone = max(enclosing, key=lambda z: len(z.origin.labels))
    cuts = [n for n, node in zone.nodes.items()
            if n != zone.origin and n.local is None and RType.NS in node]
    if any(name.is_subdomain(cut) for cut in cuts):
        return None
    return zone


def fast_expected(name: Name, rtype: int, size: int, kind: str = "apex") -> bool | None:
    """When the fast path should answer (independent of its code): a mailbox
    in a zone the lookup reads, asked for a type it owns among KEY, ADDR, NS
    and SOA, in a response that fits `size`. None (either will do) for a node
    that also has an ALIAS: the fast path may leave those to the full path."""
    zone = _zone_of(name, kind) if name.local is not None else None
    if zone is None:
        return False
    node = zone.nodes.get(name, {})
    if rtype not in node or rtype not in (RType.KEY, RType.ADDR, RType.NS, RType.SOA):
        return False
    if RType.ALIAS in node:
        return None
    records = node[rtype].records(name, rtype)
    body = [[name.to_wire(), rtype], [r.to_wire() for r in records], [], [], DEFAULT_UDP_SIZE]
    return 6 + len(msgpack.packb(body)) <= size


# -- every name and type of the zones ------------------------------------------------
ALL_TYPES = (RType.ADDR, RType.NS, RType.ALIAS, RType.SOA, RType.KEY, RType.ANY, RType.AXFR, 99)
OWNERS = sorted({name for zone in ZONES for name in zone.nodes}, key=Name.store_key)
#: Mailboxes the fast path never answers: ALIAS, too big, or occluded by a cut.
NEVER_FAST = {"www-team", "elsewhere", "both", "huge", "hidden", "deeper"}


@pytest.mark.parametrize("owner", OWNERS, ids=str)
def test_every_owner_and_type(snap, lookup, owner):
    answered = 0
    for rtype in ALL_TYPES:
        for flags in (0, FLAG_RD):
            fast = check(wire(owner.to_wire(), rtype, flags=flags), snap, lookup)
            expected = fast_expected(owner, rtype, DEFAULT_UDP_SIZE, lookup[0])
            if expected is not None:
                assert (fast is not None) == expected, rtype
            if fast is not None:
                answered += 1
                response = Message.from_wire(fast)
                assert response.rd == bool(flags) and response.aa and response.qr
                assert response.answer and all(r.name == owner for r in response.answer)
    if owner.local is not None and owner.local not in NEVER_FAST and (
            lookup[0] != "apex" or owner.domain in ORIGINS):
        assert answered, "the fast path never answered this mailbox"


def test_the_fast_path_answers_the_common_query(snap, lookup):
    data = wire("alice@example.com.", RType.KEY, msg_id=0xBEEF)
    fast = check(data, snap, lookup)
    assert fast is not None
    response = Message.from_wire(fast)
    assert response.id == 0xBEEF and response.rcode == Rcode.NOERROR
    assert [str(r.name) for r in response.answer] == ["alice@example.com."]
    assert response.answer[0].ttl == 3600


BELOW_APEX = ["bob@team.example.com.", "eve@deep.er.team.example.com.", "ops@ns1.example.com."]


@pytest.mark.parametrize("name", BELOW_APEX)
def test_mailboxes_below_the_apex_need_the_enclosing_lookup(snap, lookup, name):
    fast = check(wire(name), snap, lookup)
    assert (fast is not None) == (lookup[0] != "apex")


def test_mailbox_route_reports_the_zone_and_stops_at_cuts(snap):
    read = snap.node_reader()

    def find(name: str):
        n = N(name)
        route = snap.mailbox_route(n.domain.store_key())
        return None if route is None else (route[0], read(route[1] + n.local.encode("ascii")))

    zone, node = find("bob@team.example.com.")
    assert zone == N("example.com.").store_key() and node is not None
    assert find("zed@team.example.com.") == (N("example.com.").store_key(), None)
    assert find("carol@eng.example.com.")[0] == N("eng.example.com.").store_key()
    assert find("x@sub.example.com.") is None  # the cut itself
    assert find("hidden@sub.odd.test.") is None and find("deeper@x.sub.odd.test.") is None
    assert find("x@example.net.") is None and find("x@com.") is None


# -- cases where the fast path must defer ------------------------------------------------
def _raw_query(name: bytes, rtype: bytes, udp_size: bytes) -> bytes:
    """A query with the given msgpack encodings of its name, type and udp_size."""
    return HEADER.pack(1, 0, VERSION, 0) + b"\x95\x92" + name + rtype + b"\x90\x90\x90" + udp_size


def _signature_trailer() -> bytes:
    sig = Signature(N("k."), "hmac-sha256", 1, 300, b"\x00" * 32, 0x1234)
    return msgpack.packb(sig.to_wire())


DEFER = [
    # spelling: the full path lower-cases, the fast path leaves that to it
    ("upper-case local", wire("Alice@example.com.")),
    ("upper-case domain", wire("alice@Example.COM.")),
    ("relative name", wire("alice@example.com")),
    ("root mailbox", wire("alice@.")),
    ("domain, not mailbox", wire("ns1.example.com.", RType.ADDR)),
    ("apex SOA", wire("example.com.", RType.SOA)),
    ("local part too long", wire("a" * 65 + "@example.com.")),
    ("empty local part", wire("@example.com.")),
    ("bad local part", wire("a..b@example.com.")),
    ("non-ASCII", wire("al\u212aice@example.com.")),
    # the data: negative answers, chains, delegations, other zones
    ("NODATA", wire("alice@example.com.", RType.ADDR)),
    ("ALIAS owner", wire("www-team@example.com.")),
    ("ALIAS out of zone", wire("elsewhere@example.com.")),
    ("ALIAS beside KEY", wire("both@odd.test.")),
    ("asked for ALIAS", wire("www-team@example.com.", RType.ALIAS)),
    ("ANY", wire("alice@example.com.", RType.ANY)),
    ("AXFR type", wire("alice@example.com.", RType.AXFR)),
    ("IXFR type", wire("alice@example.com.", RType.IXFR)),
    ("unknown type", wire("alice@example.com.", 99)),
    ("below a zone cut", wire("x@sub.example.com.")),
    ("occluded below a cut", wire("hidden@sub.odd.test.")),
    ("occluded further below a cut", wire("deeper@x.sub.odd.test.")),
    ("not our zone", wire("alice@example.net.")),
    ("parent of a zone", wire("alice@com.")),
    # size: a response over the client's limit is a TC answer (full path)
    ("too big for 512", wire("medium@example.com.", udp_size=512)),
    ("too big for udp_size 0 (= 512)", wire("medium@example.com.", udp_size=0)),
    ("too big for 1232", wire("huge@example.com.")),
    ("too big for 1232 even if 65535 is offered", wire("huge@example.com.", udp_size=65535)),
    # header
    ("QR", wire(flags=FLAG_QR)),
    ("AA", wire(flags=FLAG_AA)),
    ("TC", wire(flags=FLAG_TC)),
    ("RA", wire(flags=FLAG_RA)),
    ("rcode low", wire(flags=Rcode.NXDOMAIN)),
    ("rcode high", wire(rcode_high=1)),
    ("SG without trailer", wire(flags=FLAG_SG)),
    ("signed query", wire(flags=FLAG_SG, trailer=_signature_trailer())),
    *[(f"Z bit {bit:#x}", wire(flags=bit)) for bit in (0x0040, 0x0020)],
    *[(f"opcode {op}", wire(flags=op << OPCODE_SHIFT)) for op in range(1, 16)],
    *[(f"version {v}", wire(version=v)) for v in (0, 2, 255)],
    ("short", wire()[:7]),
    ("header only", wire()[:6]),
    # body
    ("trailing junk", wire() + b"\x00"),
    ("trailing junk, RD", wire(flags=FLAG_RD) + b"\xc0"),
    ("truncated body", wire()[:-1]),
    ("no question", wire(body=[None, [], [], [], 1232])),
    ("question of 3", wire(body=[["alice@example.com.", 25, 1], [], [], [], 1232])),
    ("body of 4", wire(body=[["alice@example.com.", 25], [], [], []])),
    ("body of 6", wire(body=[["alice@example.com.", 25], [], [], [], 1232, 0])),
    ("body a map", wire(body={"q": 1})),
    ("answer section nil", wire(body=[["alice@example.com.", 25], None, [], [], 1232])),
    ("authority section 0", wire(body=[["alice@example.com.", 25], [], 0, [], 1232])),
    ("additional section false", wire(body=[["alice@example.com.", 25], [], [], False, 1232])),
    ("additional section empty string", wire(body=[["alice@example.com.", 25], [], [], "", 1232])),
    ("answer section holds a record", wire(body=[
        ["alice@example.com.", 25], [["alice@example.com.", 25, 60, [1, 1, 0, b"\0" * 32]]],
        [], [], 1232])),
    ("name as bin", wire(body=[[b"alice@example.com.", 25], [], [], [], 1232])),
    ("type as bool", wire(rtype=True)),
    ("type negative", wire(rtype=-25)),
    ("type a float", wire(rtype=25.0)),
    ("udp_size negative", wire(udp_size=-1)),
    ("udp_size too large", wire(udp_size=65536)),
    ("udp_size nil", wire(udp_size=None)),
    ("udp_size bool", wire(udp_size=True)),
    # msgpack allows wider encodings than the shortest; the full path decodes
    # them, the fast path (which echoes the question's bytes) leaves them to it
    ("udp_size as uint32", _raw_query(b"\xb2alice@example.com.", b"\x19", b"\xce\0\0\4\xd0")),
    ("type as uint8", _raw_query(b"\xb2alice@example.com.", b"\xcc\x19", b"\xcd\x04\xd0")),
    ("name as str8", _raw_query(b"\xd9\x12alice@example.com.", b"\x19", b"\xcd\x04\xd0")),
    ("name as str16", _raw_query(b"\xda\0\x12alice@example.com.", b"\x19", b"\xcd\x04\xd0")),
    ("sections as array16", HEADER.pack(1, 0, VERSION, 0) + b"\x95\x92\xb2alice@example.com."
     b"\x19\xdc\0\0\x90\x90\xcd\x04\xd0"),
    ("body as array16", HEADER.pack(1, 0, VERSION, 0) + b"\xdc\0\x05\x92\xb2alice@example.com."
     b"\x19\x90\x90\x90\xcd\x04\xd0"),
]


@pytest.mark.parametrize("data", [d for _, d in DEFER], ids=[label for label, _ in DEFER])
def test_the_fast_path_defers(snap, lookup, data):
    assert check(data, snap, lookup) is None


NXDOMAIN = [
    ("apex zone", wire("zed@example.com.")),
    ("prefix of a mailbox", wire("alic@example.com.")),
    ("RD", wire("zed@example.com.", flags=FLAG_RD)),
    ("udp_size 0", wire("zed@example.org.", udp_size=0)),
    ("below the apex", wire("zed@team.example.com.")),
    ("child zone in the same store", wire("zed@eng.example.com.")),
    ("str8 name", wire("z" * 40 + "@example.org.")),
]


@pytest.mark.parametrize("data", [d for _, d in NXDOMAIN], ids=[label for label, _ in NXDOMAIN])
def test_nxdomain_needs_a_lookup_giving_the_negative_soa(snap, lookup, data):
    fast = check(data, snap, lookup)
    assert (fast is not None) == (lookup[0] == "negative")
    if fast is not None:
        response = Message.from_wire(fast)
        assert response.rcode == Rcode.NXDOMAIN and response.aa and not response.answer
        assert [r.rtype for r in response.authority] == [RType.SOA]


def test_nxdomain_is_not_answered_at_or_below_a_cut(snap):
    lookup = ("negative", _negative(snap))
    for name in ("x@sub.example.com.", "nobody@sub.odd.test.", "zed@x.sub.odd.test."):
        assert check(wire(name), snap, lookup) is None


ANSWER = [
    ("plain", wire()),
    ("RD", wire(flags=FLAG_RD)),
    ("id 0", wire(msg_id=0)),
    ("id ffff", wire(msg_id=0xFFFF)),
    ("two keys", wire("first.last@example.com.")),
    ("apostrophe and plus", wire("o'neil+tag@example.com.")),
    ("every atom character", wire("a-b_c!#$%&*/=?^`{|}~@example.com.")),
    ("other zone, long TTL", wire("dave@example.org.")),
    ("child zone in the same store", wire("carol@eng.example.com.")),
    ("ADDR at a mailbox", wire("box@odd.test.", RType.ADDR)),
    ("NS at a mailbox", wire("box@odd.test.", RType.NS)),
    *[(f"udp_size {size}", wire(udp_size=size)) for size in (0, 1, 511, 512, 1232, 4096, 65535)],
    *[(f"medium, udp_size {size}", wire("medium@example.com.", udp_size=size))
      for size in (1232, 1233, 4096)],
    # a name of 32 bytes or more is a str8
    ("str8 name", wire("a" * 40 + "@example.org.", udp_size=1232)),
    # udp_size is not echoed: any of its usual encodings will do
    ("udp_size 100 as uint8", _raw_query(b"\xb2alice@example.com.", b"\x19", b"\xcc\x64")),
    ("udp_size 4 as uint16", _raw_query(b"\xb2alice@example.com.", b"\x19", b"\xcd\x00\x04")),
]


@pytest.mark.parametrize("data", [d for _, d in ANSWER], ids=[label for label, _ in ANSWER])
def test_the_fast_path_answers_exactly_as_the_full_path(snap, lookup, data):
    assert check(data, snap, lookup) is not None


@pytest.mark.parametrize("rd", [False, True])
@pytest.mark.parametrize(("name", "rcode"), [("alice@example.com.", Rcode.NOERROR),
                                             ("nobody@example.com.", Rcode.NXDOMAIN)])
def test_the_layout_the_fast_path_takes_and_writes_is_message_pys(snap, rd, name, rcode):
    """A query as message.py encodes it is taken, and the answer's bytes
    are message.py's: its header and body arrays (`header_tail`,
    `BODY_ARRAY`, `QUESTION_ARRAY`, `EMPTY_SECTION`), as the full path
    encodes them."""
    query = make_query(N(name), RType.KEY, msg_id=0x4242, rd=rd).to_wire()
    assert query[2:8] == (header_tail(FLAG_RD if rd else 0) + BODY_ARRAY + QUESTION_ARRAY)
    fast = check(query, snap, ("negative", _negative(snap)))
    assert fast is not None
    flags = FLAG_QR | FLAG_AA | (FLAG_RD if rd else 0)
    assert fast[:7] == b"\x42\x42" + header_tail(flags, rcode) + BODY_ARRAY
    assert fast[7:8] == QUESTION_ARRAY
    additional_and_size = EMPTY_SECTION + msgpack.packb(DEFAULT_UDP_SIZE)
    assert fast.endswith(additional_and_size)
    if rcode == Rcode.NXDOMAIN:
        assert EMPTY_SECTION + FIXARRAY[1] in fast  # no answer, the SOA in authority
    else:
        assert fast.endswith(EMPTY_SECTION + additional_and_size)  # no authority


def test_medium_needs_more_than_512_and_fits_1232():
    # keeps the size cases above meaningful if the zone data changes
    medium = N("medium@example.com.")
    assert not fast_expected(medium, RType.KEY, 512)
    assert fast_expected(medium, RType.KEY, 1232)
    assert not fast_expected(N("huge@example.com."), RType.KEY, 1232)


def test_lookup_refusing_a_zone_sends_it_to_the_full_path(snap):
    # how serve.py keeps zones that require signed queries off the fast path
    data = wire("alice@example.com.")
    refused = {N("example.com.").store_key()}

    def find_route(domain_key: bytes) -> fastpath.Route | None:
        found = snap.mailbox_route(domain_key)
        return None if found is None or found[0] in refused else (found[1], None)

    responder = _responder(snap, find_route)
    assert responder.answer(data) is None
    assert responder.answer(wire("dave@example.org.")) is not None


# -- fuzzing -----------------------------------------------------------------------
BASES = [d for _, d in ANSWER] + [wire("medium@example.com.", udp_size=600),
                                  wire("zed@example.com."), wire("www-team@example.com."),
                                  *[wire(name) for name in BELOW_APEX]]


@st.composite
def mutated(draw) -> bytes:
    """A valid query with a few bytes changed, inserted, deleted, or cut off."""
    data = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(("set", "flip", "insert", "delete", "cut", "append")))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 4))]
        elif kind == "cut":
            del data[pos:]
        elif kind == "append":
            data += draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_mutated_queries(snap, lookup, data):
    check(data, snap, lookup)


_scalars = (st.none() | st.booleans() | st.integers(-2, 70000) | st.floats(allow_nan=False)
            | st.sampled_from(["alice@example.com.", "medium@example.com.", "Alice@example.com.",
                               "dave@example.org.", "x@sub.example.com.", ""])
            | st.binary(max_size=4))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=6)
_types = st.sampled_from([RType.KEY, RType.ADDR, RType.NS, RType.SOA, RType.ANY, 0, 65535])


@st.composite
def structured(draw) -> bytes:
    """Bodies of the right shape with any value in any slot."""
    question = draw(st.sampled_from([["alice@example.com.", RType.KEY]]) | st.tuples(
        _values, _types).map(list) | st.tuples(_scalars, _values).map(list) | _values)
    body = [question, draw(st.just([]) | _values), draw(st.just([]) | _values),
            draw(st.just([]) | _values), draw(st.sampled_from([1232, 0, 512]) | _values)]
    if draw(st.booleans()):
        body = draw(st.lists(_values, max_size=6)) if draw(st.booleans()) else body[:4]
    flags = draw(st.sampled_from([0, FLAG_RD]) | st.integers(0, 0xFFFF))
    return wire(body=body, flags=flags, version=draw(st.sampled_from([VERSION, VERSION, 0, 2])))


@settings(max_examples=150, deadline=None)
@given(data=structured())
def test_structured_bodies(snap, data):
    # the lookup matters little here: most of these fail the decoders
    check(data, snap, ("enclosing", _enclosing(snap)))


_ttls = st.sampled_from([0, 1, 127, 128, 255, 256, 65535, 65536, 2**31 - 1]) | st.integers(0, 2**31 - 1)
_small = st.sampled_from([0, 1, 2]) | st.integers(0, 255)  # mostly fixints, as stored keys
_key_rdata = st.tuples(_small, _small, _small | st.integers(0, 0xFFFF),
                       st.binary(min_size=32, max_size=32) | st.binary(max_size=300)).map(list)
_other_rdata = st.sampled_from([["192.0.2.1", 53], ["ns1.example.com."], "alice@example.com."])


@st.composite
def stored_nodes(draw) -> tuple[bytes, int]:
    """Stored node bytes (as `store.encode_node` packs them) of one to three
    entries, each of 1 to 17 rdatas, and a type to ask: KEY rdatas with
    every width of flags and key, TTLs of every msgpack width."""
    types = draw(st.just([RType.KEY]) | st.lists(st.sampled_from(
        [RType.ADDR, RType.NS, RType.SOA, RType.KEY, RType.ALIAS]), min_size=1, max_size=3,
        unique=True))
    entries = []
    for rtype in sorted(types):
        rdata = _key_rdata if rtype == RType.KEY else _other_rdata
        count = draw(st.sampled_from([1, 2]) | st.integers(1, 17))
        entries.append([int(rtype), draw(_ttls), draw(st.lists(rdata, min_size=count,
                                                               max_size=count))])
    return msgpack.packb(entries), draw(st.sampled_from(sorted(types) + [RType.KEY]))


@settings(max_examples=400, deadline=None)
@given(node_and_type=stored_nodes(), flags=st.sampled_from([0, FLAG_RD]),
       udp_size=st.sampled_from([512, 1232, 4096]))
def test_answers_spliced_from_node_bytes_match_a_decode_and_reencode(node_and_type, flags,
                                                                      udp_size):
    node, rtype = node_and_type
    data = wire("x@example.com.", rtype, flags=flags, udp_size=udp_size)
    responder = fastpath.Responder(lambda domain_key: (b"", None), limit=0)
    responder.read = lambda key: node
    fast = responder.answer(data)
    # the reference: msgpack decodes the node, the answer records are packed anew
    entries = msgpack.unpackb(node)
    asked = [e for e in entries if e[0] == rtype]
    if rtype == RType.ALIAS or not asked:
        assert fast is None  # chains and NODATA are the full path's
        return
    _, ttl, rdatas = asked[0]
    body = [["x@example.com.", rtype], [["x@example.com.", rtype, ttl, rd] for rd in rdatas],
            [], [], DEFAULT_UDP_SIZE]
    expected = (data[:2] + HEADER.pack(0, FLAG_QR | FLAG_AA | flags, VERSION, 0)[2:]
                + msgpack.packb(body))
    if len(expected) > max(512, min(udp_size, 1232)):
        assert fast is None  # truncation is the full path's
    elif any(e[0] == RType.ALIAS for e in entries):
        assert fast in (None, expected)  # an ALIAS before the type: the full path's
    else:
        assert fast == expected


# -- the store's per-version read cache ------------------------------------------------
def test_answers_follow_reloads_while_old_snapshots_keep_their_version(tmp_path):
    """Routes, zones and SOAs are cached per data version: a snapshot taken
    after a reload sees the new zone, one still open sees the old one."""
    v1 = EXAMPLE_COM
    # v2: bob's subdomain is now delegated, alice's key changed, serial bumped
    kept = [line for line in EXAMPLE_COM.splitlines() if "@team" not in line and "er.team" not in line]
    v2 = ("\n".join(kept).replace("2026112201", "2026112202").replace(_b64(1), _b64(99))
          + "\nteam NS ns1.team\nns1.team ADDR 192.0.2.77:53\n")
    with Store(tmp_path / "db", map_size=MAP_SIZE) as store:
        store.replace_zone_reference(parse_zone_text(v1))
        queries = [wire("alice@example.com."), wire("bob@team.example.com."),
                   wire("zed@example.com."), wire("zed@team.example.com.")]

        def answers(snapshot):
            lookup = ("enclosing", _enclosing(snapshot))
            for data in queries:
                check(data, snapshot, lookup)  # fast == full wherever fast answers
            return ([lookup[1].answer(q) for q in queries[:2]],
                    [full_path(q, snapshot) for q in queries])

        with store.snapshot() as old:
            before = answers(old)
            assert all(before[0])
            store.replace_zone_reference(parse_zone_text(v2))
            with store.snapshot() as new:
                after = answers(new)
                again = answers(old)
                assert again == before
                assert after[0][0] is not None and after[0][0] != before[0][0]
                assert after[0][1] is None  # now a referral: the full path's
                referral = Message.from_wire(after[1][1])
                assert not referral.aa and referral.authority[0].rtype == RType.NS
                soa = Message.from_wire(after[1][2]).authority[0]
                assert soa.rdata.serial == 2026112202
                assert Message.from_wire(before[1][2]).authority[0].rdata.serial == 2026112201
        store.delete_zone(N("example.com."))
        with store.snapshot() as gone:
            assert _enclosing(gone).answer(queries[0]) is None
            assert Message.from_wire(full_path(queries[0], gone)).rcode == Rcode.REFUSED


def test_the_response_cache_keeps_the_first_noerror_answers_up_to_its_limit(snap):
    responder = _negative(snap)
    responder.limit = 2
    queries = [wire("alice@example.com."), wire("zed@example.com."), wire("dave@example.org."),
               wire("carol@eng.example.com.")]
    answers = [responder.answer(q) for q in queries]
    assert all(answers) and Message.from_wire(answers[1]).rcode == Rcode.NXDOMAIN
    # the first two NOERROR answers, without their ids; NXDOMAIN is not kept
    assert responder.responses == {queries[0][2:]: answers[0][2:], queries[2][2:]: answers[2][2:]}
    # a hit is the asking query's id and the cached bytes: the same answer
    again = wire("alice@example.com.", msg_id=0x4321)
    responder.read = None  # a hit reads nothing
    assert responder.answer(again) == again[:2] + answers[0][2:]
    assert fastpath.Responder(lambda domain_key: None).limit == fastpath.MAX_CACHED_RESPONSES


def test_routes_are_remembered_per_domain_up_to_a_bound_and_none_never(monkeypatch):
    monkeypatch.setattr(fastpath, "MAX_CACHED_DOMAINS", 3)
    asked: list[bytes] = []

    def find_route(domain_key: bytes) -> fastpath.Route | None:
        asked.append(domain_key)
        return None if domain_key.startswith(b"org\0") else (domain_key, None)

    responder = fastpath.Responder(find_route, limit=0)
    responder.read = lambda key: None  # every mailbox missing, no Negative: the full path's
    for _ in range(2):
        assert responder.answer(wire("a@d1.example.com.")) is None
    assert asked == [N("d1.example.com.").store_key()]  # remembered after the first
    for _ in range(2):
        responder.answer(wire("a@example.org."))
    assert asked[1:] == [N("example.org.").store_key()] * 2  # None: asked every time
    for i in range(2, 6):  # made-up domains: the memory stays bounded
        responder.answer(wire(f"a@d{i}.example.com."))
        assert len(responder._routes) <= 3
    assert responder.answer(wire("a@Bad_.example.com.")) is None  # not canonical: never asked
    assert N("bad_.example.com.").store_key() not in asked
