"""Record types: wire vectors, validation, text forms, key ids and JSON shapes.

The strategies here (`rdatas`, `records`) are reused by test_message.py.
"""

from __future__ import annotations

import base64
import ipaddress
import json

import msgpack
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, x448, x25519
from hypothesis import given, settings
from hypothesis import strategies as st

from keyresolve.protocol.codes import RType
from keyresolve.protocol.errors import FormError, InvalidName, InvalidRecord
from keyresolve.protocol.message import Message
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import ADDR, ALIAS, KEY, MAX_TTL, NS, SOA, KEY_FLAG_NAMES, KeyAlgorithm, KeyFlag, KeyUsage, Record, key_flags_from_text, key_flags_to_text, rdata_from_text, rdata_from_wire

try:  # tests/ is a package
    from tests.test_names import domains, mailboxes, names
except ImportError:  # pragma: no cover - tests/ on sys.path without __init__.py
    from test_names import domains, mailboxes, names

FAST = settings(max_examples=100, deadline=None)


def n(text: str) -> Name:
    """Shorthand: parse an absolute name."""
    return Name.from_text(text)


def h(text: str) -> bytes:
    """Bytes from spaced hex."""
    return bytes.fromhex(text)


#: Public key sizes from the algorithms' RFCs, independent of records.py.
RFC_KEY_SIZES = {KeyAlgorithm.X25519: 32, KeyAlgorithm.ED25519: 32,
                 KeyAlgorithm.X448: 56, KeyAlgorithm.ED448: 57,
                 KeyAlgorithm.MLKEM768X25519: 1184 + 32}  # draft-ietf-hpke-pq: ML-KEM || X25519
RFC_USAGE = {KeyAlgorithm.X25519: KeyUsage.ENCRYPT, KeyAlgorithm.ED25519: KeyUsage.SIGN,
             KeyAlgorithm.X448: KeyUsage.ENCRYPT, KeyAlgorithm.ED448: KeyUsage.SIGN,
             KeyAlgorithm.MLKEM768X25519: KeyUsage.ENCRYPT}

# -- strategies --------------------------------------------------------------------
u32 = st.integers(0, 2**32 - 1)


@st.composite
def keys(draw) -> KEY:
    """A KEY of any algorithm with random bytes and flags."""
    algorithm = draw(st.sampled_from(list(KeyAlgorithm)))
    size = RFC_KEY_SIZES[algorithm]
    key = draw(st.binary(min_size=size, max_size=size))
    return KEY(algorithm, RFC_USAGE[algorithm], key, draw(st.integers(0, 0xFFFF)))


def addrs() -> st.SearchStrategy[ADDR]:
    """IPv4 and IPv6 server addresses with ports."""
    return st.builds(ADDR, st.ip_addresses(), st.integers(1, 65535))


def rdatas() -> st.SearchStrategy:
    """Rdata of every data type."""
    return st.one_of(
        st.builds(SOA, domains(), mailboxes(), u32, u32, u32, u32, u32),
        st.builds(NS, domains()),
        st.builds(ALIAS, names()),
        addrs(),
        keys(),
    )


def records() -> st.SearchStrategy[Record]:
    """Records with consistent type and any owner and TTL."""
    return st.builds(lambda owner, ttl, rdata: Record(owner, rdata.rtype, ttl, rdata),
                     names(), st.integers(0, MAX_TTL), rdatas())


# -- wire vectors ------------------------------------------------------------------
SOA_RDATA = SOA(n("ns1.example.com."), n("hostmaster@example.com."),
                2024010101, 7200, 3600, 1209600, 300)

WIRE_VECTORS = [
    (Record(n("ns1.example.com."), RType.ADDR, 3600, ADDR(ipaddress.ip_address("192.0.2.1"), 5353)),
     h("94 b0") + b"ns1.example.com." + h("01 cd 0e 10 92 c4 04 c0 00 02 01 cd 14 e9")),
    (Record(n("ns1.example.com."), RType.ADDR, 0, ADDR(ipaddress.ip_address("2001:db8::1"), 53)),
     h("94 b0") + b"ns1.example.com." + h("01 00 92 c4 10 20 01 0d b8")
     + bytes(11) + h("01 35")),
    (Record(n("ns1.example.com."), RType.ADDR, 127, ADDR(ipaddress.ip_address("10.0.0.1"), 65535)),
     h("94 b0") + b"ns1.example.com." + h("01 7f 92 c4 04 0a 00 00 01 cd ff ff")),
    (Record(n("example.com."), RType.NS, 86400, NS(n("ns1.example.com."))),
     h("94 ac") + b"example.com." + h("02 ce 00 01 51 80 91 b0") + b"ns1.example.com."),
    (Record(n("alice@example.com."), RType.ALIAS, 300, ALIAS(n("alice@example.net."))),
     h("94 b2") + b"alice@example.com." + h("05 cd 01 2c 91 b2") + b"alice@example.net."),
    (Record(n("www.example.com."), RType.ALIAS, 128, ALIAS(n("."))),
     h("94 b0") + b"www.example.com." + h("05 cc 80 91 a1") + b"."),
    (Record(n("example.com."), RType.SOA, 3600, SOA_RDATA),
     h("94 ac") + b"example.com." + h("06 cd 0e 10 97 b0") + b"ns1.example.com." + h("b7")
     + b"hostmaster@example.com." + h("ce 78 a3 f1 75 cd 1c 20 cd 0e 10 ce 00 12 75 00 cd 01 2c")),
    (Record(n("alice@example.com."), RType.KEY, 3600,
            KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes(range(32)))),
     h("94 b2") + b"alice@example.com." + h("19 cd 0e 10 94 01 01 00 c4 20") + bytes(range(32))),
    (Record(n("alice@example.com."), RType.KEY, MAX_TTL,
            KEY(KeyAlgorithm.ED25519, KeyUsage.SIGN, b"\xab" * 32, 0x8001)),
     h("94 b2") + b"alice@example.com." + h("19 ce 7f ff ff ff 94 02 02 cd 80 01 c4 20")
     + b"\xab" * 32),
    (Record(n("bob@example.com."), RType.KEY, 60,
            KEY(KeyAlgorithm.X448, KeyUsage.ENCRYPT, b"\x01" * 56, 255)),
     h("94 b0") + b"bob@example.com." + h("19 3c 94 03 01 cc ff c4 38") + b"\x01" * 56),
    (Record(n("example.com."), RType.KEY, 65536,
            KEY(KeyAlgorithm.ED448, KeyUsage.SIGN, b"\xff" * 57)),
     h("94 ac") + b"example.com." + h("19 ce 00 01 00 00 94 04 02 00 c4 39") + b"\xff" * 57),
]
VECTOR_IDS = [f"{RType(rec.rtype).name}-{i}" for i, (rec, _) in enumerate(WIRE_VECTORS)]


def decode_record(data: bytes) -> Record:
    """msgpack bytes of one record -> Record, as the message codec reads it."""
    return Record.from_wire(msgpack.unpackb(data, raw=False, use_list=False))


#: A query-less response whose answer holds one record: header, then the body
#: [nil, [record], [], [], 1232] split around the record.
MSG_HEAD = h("00 07 80 00 01 00 95 c0 91")
MSG_TAIL = h("90 90 cd 04 d0")


@pytest.mark.parametrize("record,data", WIRE_VECTORS, ids=VECTOR_IDS)
def test_record_vectors_both_ways(record: Record, data: bytes) -> None:
    assert msgpack.packb(record.to_wire()) == data
    assert decode_record(data) == record


@pytest.mark.parametrize("record,data", WIRE_VECTORS, ids=VECTOR_IDS)
def test_record_vectors_inside_a_message(record: Record, data: bytes) -> None:
    wire = MSG_HEAD + data + MSG_TAIL
    msg = Message.from_wire(wire)
    assert msg.answer == [record] and msg.qr and msg.id == 7
    assert msg.to_wire() == wire
    for cut in range(len(wire)):
        with pytest.raises(FormError):
            Message.from_wire(wire[:cut])
    for junk in (b"\x00", b"\xc0", b"\x90", data):
        with pytest.raises(FormError):
            Message.from_wire(wire + junk)


# -- invalid wire rdata ------------------------------------------------------------
K32 = b"\x00" * 32
BAD_RDATA = [
    (RType.SOA, ["ns1.example.com.", "hostmaster@example.com.", 1, 2, 3, 4]),
    (RType.SOA, ["ns1.example.com.", "hostmaster@example.com.", 1, 2, 3, 4, 5, 6]),
    (RType.SOA, ["ns1@example.com.", "hostmaster@example.com.", 1, 2, 3, 4, 5]),
    (RType.SOA, ["ns1.example.com.", "hostmaster.example.com.", 1, 2, 3, 4, 5]),
    (RType.SOA, ["ns1.example.com", "hostmaster@example.com.", 1, 2, 3, 4, 5]),
    (RType.SOA, [b"ns1.example.com.", "hostmaster@example.com.", 1, 2, 3, 4, 5]),
    (RType.SOA, ["ns1.example.com.", "hostmaster@example.com.", -1, 2, 3, 4, 5]),
    (RType.SOA, ["ns1.example.com.", "hostmaster@example.com.", 1, 2**32, 3, 4, 5]),
    (RType.SOA, ["ns1.example.com.", "hostmaster@example.com.", 1, 2, True, 4, 5]),
    (RType.SOA, ["ns1.example.com.", "hostmaster@example.com.", 1, 2, 3, 4.0, 5]),
    (RType.SOA, ["ns1.example.com.", "hostmaster@example.com.", 1, 2, 3, 4, None]),
    (RType.NS, []),
    (RType.NS, ["a.example.", "b.example."]),
    (RType.NS, ["alice@example.com."]),
    (RType.NS, [b"ns1.example.com."]),
    (RType.NS, [7]),
    (RType.NS, ["ns1..example."]),
    (RType.ALIAS, ["alice@example.net"]),
    (RType.ALIAS, [None]),
    (RType.ADDR, [b"\x01\x02\x03", 53]),
    (RType.ADDR, [b"\x01\x02\x03\x04\x05", 53]),
    (RType.ADDR, [b"\x00" * 15, 53]),
    (RType.ADDR, [b"\x00" * 17, 53]),
    (RType.ADDR, [b"", 53]),
    (RType.ADDR, ["1.2.3.4", 53]),
    (RType.ADDR, [b"\x01\x02\x03\x04", 0]),
    (RType.ADDR, [b"\x01\x02\x03\x04", 65536]),
    (RType.ADDR, [b"\x01\x02\x03\x04", -1]),
    (RType.ADDR, [b"\x01\x02\x03\x04", True]),
    (RType.ADDR, [b"\x01\x02\x03\x04", "53"]),
    (RType.ADDR, [b"\x01\x02\x03\x04"]),
    (RType.ADDR, [b"\x01\x02\x03\x04", 53, 0]),
    (RType.KEY, [1, 1, 0]),
    (RType.KEY, [1, 1, 0, K32, 0]),
    (RType.KEY, [0, 1, 0, K32]),
    (RType.KEY, [5, 1, 0, K32]),
    (RType.KEY, [1, 0, 0, K32]),
    (RType.KEY, [1, 3, 0, K32]),
    (RType.KEY, [1, 2, 0, K32]),  # x25519 is not for signing
    (RType.KEY, [2, 1, 0, K32]),  # ed25519 is not for encryption
    (RType.KEY, [True, 1, 0, K32]),
    (RType.KEY, [1, True, 0, K32]),
    (RType.KEY, ["1", 1, 0, K32]),
    (RType.KEY, [1, 1, 0, "A" * 32]),
    (RType.KEY, [1, 1, 0x10000, K32]),
    (RType.KEY, [1, 1, -1, K32]),
    (RType.KEY, [1, 1, True, K32]),
    (RType.KEY, [1, 1, None, K32]),
    (RType.KEY, [1, 1, 0, b"\x00" * 31]),
    (RType.KEY, [1, 1, 0, b"\x00" * 33]),
    (RType.KEY, [3, 1, 0, K32]),
    (RType.KEY, [4, 2, 0, b"\x00" * 56]),
    (RType.IXFR, []),
    (RType.AXFR, []),
    (RType.ANY, []),
    (0, []),
    (3, [1.5]),  # unknown types are carried opaquely, but only plain msgpack values
    (3, [{}]),
    (3, [[[[["too deep"]]]]]),
    (3, [1, [2, [3, [4, []]]]]),  # protocol.md 8B: the rdata array is level 1 of 4
]


@pytest.mark.parametrize("fields", [[], ["x."], [1, b"\x00", None, ["nested", [2]]],
                                    [1, [2, [3, [4]]]]])
def test_unknown_types_are_carried_opaquely(fields: list) -> None:
    from keyresolve.protocol.message import Message
    from keyresolve.protocol.records import Opaque

    rdata = rdata_from_wire(3, fields)
    assert isinstance(rdata, Opaque) and rdata.to_wire() == fields
    record = Record(Name.from_text("x.example."), 3, 60, rdata)
    msg = Message(id=1, qr=True, answer=[record])
    decoded = Message.from_wire(msg.to_wire())
    assert decoded.answer == [Record(record.name, 3, 60, Opaque(3, _tupled(fields)))]
    assert decoded.to_wire() == msg.to_wire()
    assert record.to_json()["type"] == "TYPE3" and "opaque" in record.to_json()["data"]


def _tupled(value):
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


@pytest.mark.parametrize("rtype,fields", BAD_RDATA)
def test_bad_rdata_is_a_form_error(rtype: int, fields: list) -> None:
    with pytest.raises((InvalidRecord, InvalidName)):
        rdata_from_wire(rtype, fields)
    # The same rdata inside a record inside a message: FORMERR, nothing else.
    record = msgpack.packb(["x.example.", int(rtype), 60, fields])
    with pytest.raises(FormError):
        Message.from_wire(MSG_HEAD + record + MSG_TAIL)


@pytest.mark.parametrize("rdata", [{}, "ns1.example.com.", 5, None, b"\x01"])
def test_rdata_must_be_an_array(rdata) -> None:
    with pytest.raises(InvalidRecord):
        rdata_from_wire(RType.NS, rdata)


@pytest.mark.parametrize("fields", [
    ["x.example.", 2, 60],
    ["x.example.", 2, 60, ["ns1.example."], 0],
    ["x.example.", 2, -1, ["ns1.example."]],
    ["x.example.", 2, MAX_TTL + 1, ["ns1.example."]],
    ["x.example.", 2, True, ["ns1.example."]],
    ["x.example.", 2, 1.5, ["ns1.example."]],
    ["x.example.", "2", 60, ["ns1.example."]],
    ["x.example.", True, 60, ["ns1.example."]],
    ["x.example.", 2**64 - 1, 60, ["ns1.example."]],
    [b"x.example.", 2, 60, ["ns1.example."]],
    ["x.example", 2, 60, ["ns1.example."]],
    [None, 2, 60, ["ns1.example."]],
    "x.example.",
    {"name": "x.example."},
])
def test_bad_records_are_form_errors(fields) -> None:
    with pytest.raises(FormError):
        Record.from_wire(fields)


@FAST
@given(records())
def test_record_wire_round_trip(record: Record) -> None:
    assert decode_record(msgpack.packb(record.to_wire())) == record


# -- KEY validation ----------------------------------------------------------------
@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_key_length_and_usage_per_algorithm(algorithm: KeyAlgorithm) -> None:
    size, usage = RFC_KEY_SIZES[algorithm], RFC_USAGE[algorithm]
    assert KEY(algorithm, usage, b"\x00" * size).key == b"\x00" * size
    for wrong in (0, size - 1, size + 1, 64):
        with pytest.raises(InvalidRecord):
            KEY(algorithm, usage, b"\x00" * wrong)
    other = KeyUsage.SIGN if usage == KeyUsage.ENCRYPT else KeyUsage.ENCRYPT
    with pytest.raises(InvalidRecord):
        KEY(algorithm, other, b"\x00" * size)


REAL_KEYS = [
    (KeyAlgorithm.X25519, x25519.X25519PrivateKey),
    (KeyAlgorithm.ED25519, ed25519.Ed25519PrivateKey),
    (KeyAlgorithm.X448, x448.X448PrivateKey),
    (KeyAlgorithm.ED448, ed448.Ed448PrivateKey),
]


@pytest.mark.parametrize("algorithm,private_cls", REAL_KEYS)
def test_real_public_keys_are_accepted(algorithm, private_cls) -> None:
    raw = private_cls.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key = KEY(algorithm, RFC_USAGE[algorithm], raw)
    assert KEY.from_wire(tuple(key.to_wire())) == key


@pytest.mark.parametrize("flags", [-1, 0x10000, True, "0"])
def test_key_flags_range(flags) -> None:
    with pytest.raises(InvalidRecord):
        KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, K32, flags)


def test_unknown_key_flags_are_carried() -> None:
    key = KEY.from_wire((1, 1, 0xFFFF, K32))
    assert key.flags == 0xFFFF and key.to_wire()[2] == 0xFFFF


KEY_IDS = [
    # algorithm, key bytes, key id (first 8 bytes of SHA-256(alg || key), hex)
    (KeyAlgorithm.X25519, bytes(range(32)), "491176b0f443c65a"),
    (KeyAlgorithm.ED25519, bytes(range(32)), "121e01fd47d8c2ec"),
    (KeyAlgorithm.X448, b"\x00" * 56, "e2888be85371209f"),
    (KeyAlgorithm.ED448, b"\xff" * 57, "27885ca78955e915"),
]


@pytest.mark.parametrize("algorithm,raw,key_id", KEY_IDS)
def test_key_id_is_stable(algorithm, raw, key_id) -> None:
    key = KEY(algorithm, RFC_USAGE[algorithm], raw)
    assert key.key_id == key_id
    # Flags are not part of the identity of a key.
    assert KEY(algorithm, RFC_USAGE[algorithm], raw, 5).key_id == key_id


# -- text forms ----------------------------------------------------------------------
ORIGIN = n("example.com.")
B64 = base64.b64encode(bytes(range(32))).decode()

TEXT_VECTORS = [
    # type, tokens, origin, rdata, canonical text relative to origin
    (RType.ADDR, "192.0.2.1:53", None, ADDR(ipaddress.ip_address("192.0.2.1"), 53),
     "192.0.2.1:53"),
    (RType.ADDR, "192.0.2.1:00053", None, ADDR(ipaddress.ip_address("192.0.2.1"), 53),
     "192.0.2.1:53"),
    (RType.ADDR, "[2001:db8::1]:5353", None, ADDR(ipaddress.ip_address("2001:db8::1"), 5353),
     "[2001:db8::1]:5353"),
    (RType.ADDR, "[2001:DB8:0:0::1]:1", None, ADDR(ipaddress.ip_address("2001:db8::1"), 1),
     "[2001:db8::1]:1"),
    (RType.ADDR, "[::ffff:192.0.2.1]:65535", None,
     ADDR(ipaddress.ip_address("::ffff:192.0.2.1"), 65535), "[::ffff:c000:201]:65535"),
    (RType.NS, "ns1", ORIGIN, NS(n("ns1.example.com.")), "ns1"),
    (RType.NS, "ns1.example.net.", ORIGIN, NS(n("ns1.example.net.")), "ns1.example.net."),
    (RType.ALIAS, "bob@", ORIGIN, ALIAS(n("bob@example.com.")), "bob@"),
    (RType.ALIAS, "Alice@Example.NET.", ORIGIN, ALIAS(n("alice@example.net.")),
     "alice@example.net."),
    (RType.ALIAS, "@", ORIGIN, ALIAS(ORIGIN), "@"),
    (RType.SOA, "ns1 hostmaster@ 2024010101 7200 3600 1209600 300", ORIGIN, SOA_RDATA,
     "ns1 hostmaster@ 2024010101 7200 3600 1209600 300"),
    (RType.SOA, "ns1.example.com. hostmaster@example.com. 4294967295 0 0 0 0", None,
     SOA(n("ns1.example.com."), n("hostmaster@example.com."), 2**32 - 1, 0, 0, 0, 0),
     "ns1.example.com. hostmaster@example.com. 4294967295 0 0 0 0"),
    (RType.KEY, f"x25519 encrypt {B64}", None,
     KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes(range(32))), f"x25519 encrypt {B64}"),
    (RType.KEY, f"X25519 ENCRYPT {B64[:10]} {B64[10:]}", None,
     KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes(range(32))), f"x25519 encrypt {B64}"),
    (RType.KEY, f"ed448 sign {base64.b64encode(b'z' * 57).decode()}", None,
     KEY(KeyAlgorithm.ED448, KeyUsage.SIGN, b"z" * 57),
     f"ed448 sign {base64.b64encode(b'z' * 57).decode()}"),
    # flags: names of the defined bits, lowest first, then the rest as a number
    (RType.KEY, f"x25519 encrypt flags=registered {B64}", None,
     KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes(range(32)), KeyFlag.REGISTERED),
     f"x25519 encrypt flags=registered {B64}"),
    (RType.KEY, f"ed25519 sign FLAGS=Interim,REGISTERED {B64[:10]} {B64[10:]}", None,
     KEY(KeyAlgorithm.ED25519, KeyUsage.SIGN, bytes(range(32)), 3),
     f"ed25519 sign flags=registered,interim {B64}"),
    (RType.KEY, f"x25519 encrypt flags=256,registered,0256 {B64}", None,
     KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes(range(32)), 0x101),
     f"x25519 encrypt flags=registered,256 {B64}"),
    (RType.KEY, f"x25519 encrypt flags=65535 {B64}", None,
     KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes(range(32)), 0xFFFF),
     f"x25519 encrypt flags=registered,interim,65532 {B64}"),
    (RType.KEY, f"x25519 encrypt flags=0 {B64}", None,  # no flags: no token
     KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes(range(32))), f"x25519 encrypt {B64}"),
]


@pytest.mark.parametrize("rtype,text,origin,rdata,canonical", TEXT_VECTORS)
def test_text_vectors_both_ways(rtype, text, origin, rdata, canonical) -> None:
    assert rdata_from_text(rtype, text.split(), origin) == rdata
    assert rdata.to_text(origin) == canonical
    assert rdata_from_text(rtype, canonical.split(), origin) == rdata


BAD_TEXT = [
    (RType.ADDR, "192.0.2.1"),  # no port
    (RType.ADDR, "192.0.2.1:0"),
    (RType.ADDR, "192.0.2.1:65536"),
    (RType.ADDR, "192.0.2.1:-1"),
    (RType.ADDR, "192.0.2.1:5x"),
    (RType.ADDR, "192.0.2.1:"),
    (RType.ADDR, "192.0.2.1:\u0665\u0663"),  # Arabic-Indic digits
    (RType.ADDR, "2001:db8::1:53"),  # bare IPv6
    (RType.ADDR, "2001:db8::1"),
    (RType.ADDR, "[2001:db8::1]"),
    (RType.ADDR, "[2001:db8::1]:"),
    (RType.ADDR, "[2001:db8::1]53"),
    (RType.ADDR, "[fe80::1%eth0]:53"),
    (RType.ADDR, "300.1.1.1:53"),
    (RType.ADDR, "01.2.3.4:53"),
    (RType.ADDR, "ns1.example.com:53"),
    (RType.ADDR, ":53"),
    (RType.ADDR, "192.0.2.1:53 192.0.2.2:53"),
    (RType.ADDR, ""),
    (RType.NS, "alice@example.com."),
    (RType.NS, "a. b."),
    (RType.NS, "a..b."),
    (RType.SOA, "ns1 hostmaster.example.com. 1 2 3 4 5"),  # contact must be a mailbox
    (RType.SOA, "ns1@ hostmaster@ 1 2 3 4 5"),
    (RType.SOA, "ns1 hostmaster@ 1 2 3 4"),
    (RType.SOA, "ns1 hostmaster@ 1 2 3 4 5 6"),
    (RType.SOA, "ns1 hostmaster@ x 2 3 4 5"),
    (RType.SOA, "ns1 hostmaster@ -1 2 3 4 5"),
    (RType.SOA, "ns1 hostmaster@ 4294967296 2 3 4 5"),
    (RType.KEY, f"rsa encrypt {B64}"),
    (RType.KEY, f"x25519 sign {B64}"),
    (RType.KEY, f"ed25519 encrypt {B64}"),
    (RType.KEY, f"x25519 store {B64}"),
    (RType.KEY, "x25519 encrypt !!!!"),
    (RType.KEY, f"x25519 encrypt {base64.b64encode(bytes(31)).decode()}"),
    (RType.KEY, "x25519 encrypt"),
    (RType.KEY, f"1 1 {B64}"),
    (RType.KEY, f"x25519 encrypt flags= {B64}"),
    (RType.KEY, f"x25519 encrypt flags=verified {B64}"),
    (RType.KEY, f"x25519 encrypt flags=65536 {B64}"),
    (RType.KEY, f"x25519 encrypt flags=-1 {B64}"),
    (RType.KEY, f"x25519 encrypt flags=registered,,interim {B64}"),
    (RType.KEY, f"x25519 encrypt flags=\u0661 {B64}"),  # Arabic-Indic one
    (RType.KEY, "x25519 encrypt flags=registered"),  # no key
    (RType.KEY, f"x25519 encrypt {B64} flags=registered"),  # after the key
    (RType.KEY, f"x25519 flags=registered encrypt {B64}"),
    (RType.IXFR, "x"),
    (RType.ANY, "x"),
]


@pytest.mark.parametrize("rtype,text", BAD_TEXT)
def test_bad_text_is_rejected(rtype: int, text: str) -> None:
    with pytest.raises((InvalidRecord, InvalidName)):
        rdata_from_text(rtype, text.split(), ORIGIN)


@FAST
@given(rdatas(), domains())
def test_text_round_trip(rdata, origin: Name) -> None:
    parsed = rdata_from_text(rdata.rtype, rdata.to_text(origin).split(), origin)
    assert parsed == rdata  # KEY flags included


@FAST
@given(st.integers(0, 0xFFFF))
def test_key_flags_text_round_trip(flags: int) -> None:
    text = key_flags_to_text(flags)
    assert key_flags_from_text(text) == flags
    assert key_flags_from_text(text.upper()) == flags
    assert all(item in KEY_FLAG_NAMES or item.isdigit() for item in text.split(","))


def test_key_flag_bits() -> None:
    # docs/protocol.md 6.4: the registry of KEY flag bits
    assert KeyFlag.REGISTERED == 0x0001 and KeyFlag.INTERIM == 0x0002
    assert KEY_FLAG_NAMES == {"registered": KeyFlag.REGISTERED, "interim": KeyFlag.INTERIM}


def test_record_to_text() -> None:
    record = Record(n("alice@example.com."), RType.KEY, 3600,
                    KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes(range(32))))
    assert record.to_text(ORIGIN) == f"alice@\t3600\tKEY\tx25519 encrypt {B64}"
    assert record.to_text() == f"alice@example.com.\t3600\tKEY\tx25519 encrypt {B64}"
    flagged = Record(record.name, RType.KEY, 3600,
                     KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes(range(32)),
                         KeyFlag.REGISTERED | 0x8000))
    assert flagged.to_text(ORIGIN) == (
        f"alice@\t3600\tKEY\tx25519 encrypt flags=registered,32768 {B64}")


def test_dig_prints_key_flags() -> None:
    from keyresolve.cli import dig

    key = KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes(range(32)), KeyFlag.REGISTERED)
    response = Message(id=1, qr=True, answer=[Record(n("alice@example.com."), RType.KEY, 60,
                                                     key)])
    text = dig.to_text(response, server="127.0.0.1:53", tcp=False, elapsed=0.0, size=0)
    assert f"KEY\tx25519 encrypt flags=registered {B64} ; key_id {key.key_id}" in text


def test_addr_host() -> None:
    assert ADDR.parse("[2001:db8::1]:53").host == "2001:db8::1"
    assert ADDR.parse("192.0.2.1:53").host == "192.0.2.1"


# -- JSON shapes ---------------------------------------------------------------------
def test_key_json() -> None:
    key = KEY(KeyAlgorithm.ED25519, KeyUsage.SIGN, b"\x07" * 32, 3)
    data = key.to_json()
    assert data["algorithm"] == "ed25519" and data["usage"] == "sign"
    assert base64.b64decode(data["key"]) == b"\x07" * 32
    assert data["key_id"] == key.key_id and len(data["key_id"]) == 16
    assert data["flags"] == 3


@pytest.mark.parametrize("text,want", [
    ("192.0.2.1:53", "192.0.2.1:53"),
    ("[2001:db8::1]:5353", "[2001:db8::1]:5353"),
])
def test_addr_json(text: str, want: str) -> None:
    assert ADDR.parse(text).to_json() == {"address": want}


def test_target_and_soa_json() -> None:
    assert NS(n("ns1.example.com.")).to_json() == {"target": "ns1.example.com."}
    assert ALIAS(n("bob@example.net.")).to_json() == {"target": "bob@example.net."}
    assert SOA_RDATA.to_json() == {
        "mname": "ns1.example.com.", "rname": "hostmaster@example.com.", "serial": 2024010101,
        "refresh": 7200, "retry": 3600, "expire": 1209600, "minimum": 300}


def test_record_json() -> None:
    record = Record(n("ns1.example.com."), RType.ADDR, 60, ADDR.parse("192.0.2.1:53"))
    assert record.to_json() == {"name": "ns1.example.com.", "type": "ADDR", "ttl": 60,
                                "data": {"address": "192.0.2.1:53"}}


@FAST
@given(records())
def test_every_record_json_serializes(record: Record) -> None:
    data = json.loads(json.dumps(record.to_json()))
    assert data["name"] == str(record.name) and data["ttl"] == record.ttl
