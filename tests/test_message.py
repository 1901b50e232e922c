"""The message codec: header and body vectors, strict decoding, hostile input,
fuzzing, truncation for UDP, error responses and TCP framing."""

from __future__ import annotations

import ipaddress
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyresolve.protocol import names as names_module
from keyresolve.protocol.codes import Opcode, Rcode, RType
from keyresolve.protocol.errors import (BadVersion, FormError, KeyresolveError, NotImplementedOpcode,
                               ProtocolError)
from keyresolve.protocol.message import (BODY_ARRAY, EMPTY_SECTION, QUESTION_ARRAY, header_tail)
from keyresolve.protocol.message import (DEFAULT_UDP_SIZE, MAX_MESSAGE, FrameReader, Message, Question,
                                Signature, array_header, error_response_wire, frame, is_response, make_query,
                                make_response, max_response_size, peek_id)
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import ADDR, KEY, NS, KeyAlgorithm, KeyUsage, Opaque, Record

try:  # tests/ is a package
    from tests.test_names import domains, names
    from tests.test_records import records
except ImportError:  # pragma: no cover - tests/ on sys.path without __init__.py
    from test_names import domains, names
    from test_records import records

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: For the costlier generators (whole messages, nested msgpack).
FUZZ_SLOW = settings(max_examples=120, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])

#: What Message.from_wire may raise, and nothing else.
DECODE_ERRORS = (FormError, BadVersion, NotImplementedOpcode)
KNOWN_OPCODES = [int(o) for o in Opcode]
UNKNOWN_OPCODES = [o for o in range(16) if o not in KNOWN_OPCODES]


def n(text: str) -> Name:
    """Shorthand: parse an absolute name."""
    return Name.from_text(text)


def h(text: str) -> bytes:
    """Bytes from spaced hex."""
    return bytes.fromhex(text)


ALICE = n("alice@example.com.")
EXAMPLE = n("example.com.")
NS1 = n("ns1.example.com.")
X25519_KEY = KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes(range(32)))
SIGNATURE = Signature(n("tsig-key.example."), "hmac-sha256", 1700000000, 300, b"\x11" * 32,
                      0x4242, 18, b"\x00\x01")

# -- vectors: message <-> bytes ------------------------------------------------------
#: The empty body [nil, [], [], [], udp_size] up to udp_size.
EMPTY_BODY = h("95 c0 90 90 90")

VECTORS = {
    "empty": (Message(), h("00 00 00 00 01 00") + EMPTY_BODY + h("cd 04 d0")),
    # QR | CONTROL << 11 | AA | TC | RD | RA | rcode 0xfff: low 4 bits f, high byte ff.
    "all-flags": (Message(id=0xFFFF, opcode=Opcode.CONTROL, qr=True, aa=True, tc=True, rd=True,
                          ra=True, rcode=0xFFF, udp_size=0),
                  h("ff ff bf 8f 01 ff") + EMPTY_BODY + h("00")),
    "notify": (Message(id=1, opcode=Opcode.NOTIFY, aa=True, question=Question(EXAMPLE, RType.SOA)),
               h("00 01 24 00 01 00 95 92 ac") + b"example.com." + h("06 90 90 90 cd 04 d0")),
    "axfr": (Message(id=0x0102, opcode=Opcode.TRANSFER, question=Question(EXAMPLE, RType.AXFR),
                     udp_size=65535),
             h("01 02 30 00 01 00 95 92 ac") + b"example.com." + h("cc fc 90 90 90 cd ff ff")),
    "update": (Message(id=2, opcode=Opcode.UPDATE, udp_size=512),
               h("00 02 28 00 01 00") + EMPTY_BODY + h("cd 02 00")),
    # BADTIME 19 = high 1, low 3.
    "badtime": (Message(id=3, qr=True, rcode=Rcode.BADTIME, udp_size=128),
                h("00 03 80 03 01 01") + EMPTY_BODY + h("cc 80")),
    "unknown-qtype": (Message(id=4, question=Question(ALICE, 0xFFFF), udp_size=127),
                      h("00 04 00 00 01 00 95 92 b2") + b"alice@example.com."
                      + h("cd ff ff 90 90 90 7f")),
    "referral": (
        Message(id=0x1234, qr=True, rd=True, question=Question(ALICE, RType.KEY),
                authority=[Record(EXAMPLE, RType.NS, 86400, NS(NS1))],
                additional=[Record(NS1, RType.ADDR, 86400,
                                   ADDR(ipaddress.ip_address("192.0.2.1"), 5353))]),
        h("12 34 81 00 01 00 95 92 b2") + b"alice@example.com." + h("19 90")
        + h("91 94 ac") + b"example.com." + h("02 ce 00 01 51 80 91 b0") + b"ns1.example.com."
        + h("91 94 b0") + b"ns1.example.com." + h("01 ce 00 01 51 80 92 c4 04 c0 00 02 01 cd 14 e9")
        + h("cd 04 d0")),
    "answer": (
        Message(id=0x1234, qr=True, aa=True, question=Question(ALICE, RType.KEY),
                answer=[Record(ALICE, RType.KEY, 3600, X25519_KEY)]),
        h("12 34 84 00 01 00 95 92 b2") + b"alice@example.com." + h("19 91 94 b2")
        + b"alice@example.com." + h("19 cd 0e 10 94 01 01 00 c4 20") + bytes(range(32))
        + h("90 90 cd 04 d0")),
    # SG (0x0010) and the trailer array of 8 after the body.
    "signed": (
        Message(id=9, opcode=Opcode.CONTROL, question=Question(EXAMPLE, RType.SOA),
                signature=SIGNATURE),
        h("00 09 38 10 01 00 95 92 ac") + b"example.com." + h("06 90 90 90 cd 04 d0")
        + h("98 b1") + b"tsig-key.example." + h("ab") + b"hmac-sha256"
        + h("ce 65 53 f1 00 cd 01 2c c4 20") + b"\x11" * 32 + h("cd 42 42 12 c4 02 00 01")),
}


@pytest.mark.parametrize("name", VECTORS)
def test_vector_encodes_to_its_bytes(name: str) -> None:
    msg, data = VECTORS[name]
    assert msg.to_wire() == data


@pytest.mark.parametrize("name", VECTORS)
def test_vector_bytes_decode_to_the_message(name: str) -> None:
    msg, data = VECTORS[name]
    decoded = Message.from_wire(data)
    assert decoded == msg
    if msg.signature is None:
        assert decoded.signed_bytes is None
    else:
        # The MAC covers header and body exactly as received, SG set.
        assert decoded.signed_bytes == data[:len(data) - len(msgpack.packb(SIGNATURE.to_wire()))]


@pytest.mark.parametrize("name", VECTORS)
def test_vector_decodes_the_same_without_the_name_cache(name: str) -> None:
    msg, data = VECTORS[name]
    assert Message.from_wire(data, cache_names=False) == msg


@pytest.mark.parametrize("count", [0, 1, 15, 16, 17, 300])
def test_packed_answer_encodes_as_the_records_would(count: int) -> None:
    records = [Record(n(f"u{i}@example.com."), RType.ADDR, 60,
                      ADDR(ipaddress.ip_address("192.0.2.1"), 5353 + i)) for i in range(count)]
    plain = Message(id=7, qr=True, opcode=Opcode.TRANSFER, question=Question(EXAMPLE, RType.AXFR),
                    answer=records, authority=[Record(EXAMPLE, RType.NS, 60, NS(NS1))])
    packed = Message(id=7, qr=True, opcode=Opcode.TRANSFER, question=Question(EXAMPLE, RType.AXFR),
                     packed_answer=[msgpack.packb(r.to_wire()) for r in records],
                     authority=plain.authority)
    assert packed.to_wire() == plain.to_wire()
    assert packed.answer_count == plain.answer_count == count
    assert Message.from_wire(packed.to_wire()) == plain


@pytest.mark.parametrize("count", [0, 15, 16, 65535, 65536, 2**20])
def test_array_header_is_msgpacks(count: int) -> None:
    assert array_header(count) == msgpack.packb([None] * count)[:len(array_header(count))]
    unpacker = msgpack.Unpacker()
    unpacker.feed(array_header(count))
    assert unpacker.read_array_header() == count


def test_answer_records_and_packed_answer_do_not_mix() -> None:
    msg = Message(answer=[Record(NS1, RType.ADDR, 60, ADDR(ipaddress.ip_address("192.0.2.1"), 53))],
                  packed_answer=[])
    with pytest.raises(ValueError):
        msg.to_wire()


def test_bulk_decode_leaves_the_name_cache_alone() -> None:
    owners = [n(f"bulk-{i}@cache-test.example.") for i in range(50)]
    msg = Message(id=1, qr=True, opcode=Opcode.TRANSFER,
                  answer=[Record(o, RType.ADDR, 60, ADDR(ipaddress.ip_address("192.0.2.1"), 5353))
                          for o in owners])
    before = names_module._from_wire_cached.cache_info()
    decoded = Message.from_wire(msg.to_wire(), cache_names=False)
    after = names_module._from_wire_cached.cache_info()
    assert [r.name for r in decoded.answer] == owners
    assert (after.hits, after.misses) == (before.hits, before.misses)


@pytest.mark.parametrize("name", VECTORS)
def test_vector_truncated_at_every_length_is_a_form_error(name: str) -> None:
    data = VECTORS[name][1]
    for cut in range(len(data)):
        with pytest.raises(FormError):
            Message.from_wire(data[:cut])


@pytest.mark.parametrize("junk", [b"\x00", b"\xc0", b"\xc1", b"\x95\xc0\x90\x90\x90\x00",
                                  b"\xff" * 10])
@pytest.mark.parametrize("name", VECTORS)
def test_vector_with_trailing_junk_is_a_form_error(name: str, junk: bytes) -> None:
    with pytest.raises(FormError):
        Message.from_wire(VECTORS[name][1] + junk)


def test_non_minimal_encodings_are_accepted() -> None:
    # array 16 for the body, str 8 for the name, uint32 type, int16 udp_size.
    data = (h("12 34 01 00 01 00 dc 00 05 92 d9 12") + b"alice@example.com."
            + h("ce 00 00 00 19 dc 00 00 dd 00 00 00 00 90 d1 04 d0"))
    assert Message.from_wire(data) == make_query(ALICE, RType.KEY, msg_id=0x1234, rd=True)


def test_upper_case_names_decode_to_canonical_form() -> None:
    data = h("12 34 00 00 01 00 95 92 b2") + b"ALICE@Example.COM." + h("19 90 90 90 cd 04 d0")
    assert Message.from_wire(data).question == Question(ALICE, RType.KEY)


# -- header checks -----------------------------------------------------------------
QUERY = VECTORS["empty"][1]


@pytest.mark.parametrize("size", range(6))
def test_shorter_than_the_header_is_a_form_error(size: int) -> None:
    with pytest.raises(FormError):
        Message.from_wire(QUERY[:size])


def _message_of(size: int) -> bytes:
    """A well-formed message of exactly `size` bytes: one record of a type
    this version does not know, whose bytes fill it (msgpack bin 16 has a
    fixed 3-byte header from 256 to 65535 bytes)."""
    def wire(filler: int) -> bytes:
        record = Record(ALICE, 0xFF00, 60, Opaque(0xFF00, (bytes(filler),)))
        return Message(id=1, qr=True, answer=[record]).to_wire(max_size=2 * MAX_MESSAGE)

    data = wire(size - (len(wire(256)) - 256))
    assert len(data) == size
    return data


def test_longer_than_65535_is_a_form_error() -> None:
    """The limit itself: a message otherwise valid, one byte too long."""
    assert Message.from_wire(_message_of(MAX_MESSAGE)).answer[0].rdata.fields[0]
    with pytest.raises(FormError, match="longer than 65535"):
        Message.from_wire(_message_of(MAX_MESSAGE + 1))


@pytest.mark.parametrize("version", [0, 2, 255])
def test_other_versions_are_badvers_whatever_follows(version: int) -> None:
    for body in (EMPTY_BODY + h("00"), b"", b"\xc1garbage"):
        with pytest.raises(BadVersion):
            Message.from_wire(bytes([0, 1, 0x70, 0x60, version, 0]) + body)


@pytest.mark.parametrize("z_bit", [0x40, 0x20])
def test_reserved_bits_are_a_form_error(z_bit: int) -> None:
    with pytest.raises(FormError):
        Message.from_wire(bytes([0, 1, 0, z_bit, 1, 0]) + EMPTY_BODY + h("00"))


@pytest.mark.parametrize("opcode", UNKNOWN_OPCODES)
def test_unknown_opcodes_are_notimp_before_the_body_is_read(opcode: int) -> None:
    header = bytes([0, 1, opcode << 3, 0, 1, 0])
    for body in (EMPTY_BODY + h("00"), b"", b"\xc1", b"\x81\x01\x02"):
        with pytest.raises(NotImplementedOpcode):
            Message.from_wire(header + body)


@pytest.mark.parametrize("opcode", KNOWN_OPCODES)
def test_known_opcodes_decode(opcode: int) -> None:
    msg = Message.from_wire(bytes([0, 1, opcode << 3, 0, 1, 0]) + EMPTY_BODY + h("00"))
    assert msg.opcode == opcode


def test_sg_without_trailer_and_trailer_without_sg_are_form_errors() -> None:
    unsigned, signed = VECTORS["empty"][1], VECTORS["signed"][1]
    with pytest.raises(FormError):
        Message.from_wire(unsigned[:3] + bytes([unsigned[3] | 0x10]) + unsigned[4:])
    cleared = signed[:3] + bytes([signed[3] & ~0x10]) + signed[4:]
    with pytest.raises(FormError):
        Message.from_wire(cleared)


# -- strict body decoding ------------------------------------------------------------
HEADER = h("12 34 01 00 01 00")


def body(obj) -> bytes:
    """A query header followed by `obj` packed as the body."""
    return HEADER + msgpack.packb(obj)


RECORD_OK = ["x.example.", 2, 60, ["ns1.example."]]
BAD_BODIES = {
    "not-an-array": 5,
    "nil": None,
    "map": {"question": None},
    "array-of-4": [None, [], [], []],
    "array-of-6": [None, [], [], [], 1232, None],
    "question-of-1": [["x."], [], [], [], 1232],
    "question-of-3": [["x.", 1, 0], [], [], [], 1232],
    "question-name-bytes": [[b"x.", 1], [], [], [], 1232],
    "question-name-relative": [["x", 1], [], [], [], 1232],
    "question-name-invalid": [["a..b.", 1], [], [], [], 1232],
    "question-type-negative": [["x.", -1], [], [], [], 1232],
    "question-type-65536": [["x.", 65536], [], [], [], 1232],
    "question-type-bool": [["x.", True], [], [], [], 1232],
    "question-type-float": [["x.", 1.0], [], [], [], 1232],
    "question-type-str": [["x.", "KEY"], [], [], [], 1232],
    "question-empty-map": [{}, [], [], [], 1232],
    "question-false": [False, [], [], [], 1232],
    "section-nil": [None, None, [], [], 1232],
    "section-map": [None, [], {}, [], 1232],
    "section-record": [None, RECORD_OK, [], [], 1232],
    "section-bad-record": [None, [], [], [["x.example.", 2, 60]], 1232],
    "udp-size-negative": [None, [], [], [], -1],
    "udp-size-65536": [None, [], [], [], 65536],
    "udp-size-bool": [None, [], [], [], True],
    "udp-size-nil": [None, [], [], [], None],
    "udp-size-float": [None, [], [], [], 1232.0],
    "udp-size-uint64-max": [None, [], [], [], 2**64 - 1],
    "udp-size-int64-min": [None, [], [], [], -2**63],
    "ttl-uint64-max": [None, [["x.example.", 2, 2**64 - 1, ["ns1.example."]]], [], [], 1232],
}


@pytest.mark.parametrize("name", BAD_BODIES)
def test_malformed_bodies_are_form_errors(name: str) -> None:
    with pytest.raises(FormError):
        Message.from_wire(body(BAD_BODIES[name]))


def test_a_well_formed_body_from_the_same_helper_decodes() -> None:
    # Guards the table above: only the named defect makes those bodies fail.
    msg = Message.from_wire(body([["x.", 1], [RECORD_OK], [], [], 1232]))
    assert msg.answer[0].rdata == NS(n("ns1.example."))


SIG_OK = ["k.", "hmac-sha256", 0, 300, b"", 1, 0, b""]
BAD_TRAILERS = [
    SIG_OK[:7],
    SIG_OK + [None],
    [b"k.", *SIG_OK[1:]],
    ["k", *SIG_OK[1:]],
    ["k" * 256 + ".", *SIG_OK[1:]],
    [SIG_OK[0], b"hmac", *SIG_OK[2:]],
    [SIG_OK[0], "a" * 256, *SIG_OK[2:]],
    [*SIG_OK[:2], -1, *SIG_OK[3:]],
    [*SIG_OK[:2], 2**48, *SIG_OK[3:]],
    [*SIG_OK[:2], True, *SIG_OK[3:]],
    [*SIG_OK[:3], 65536, *SIG_OK[4:]],
    [*SIG_OK[:4], "mac", *SIG_OK[5:]],
    [*SIG_OK[:4], b"m" * 65, *SIG_OK[5:]],
    [*SIG_OK[:5], 65536, *SIG_OK[6:]],
    [*SIG_OK[:6], 4096, SIG_OK[7]],
    [*SIG_OK[:6], -1, SIG_OK[7]],
    [*SIG_OK[:7], b"o" * 65],
    [*SIG_OK[:7], "other"],
    {"mac": b""},
    None,
]


@pytest.mark.parametrize("trailer", BAD_TRAILERS)
def test_malformed_trailers_are_form_errors(trailer) -> None:
    header = h("12 34 00 10 01 00")
    with pytest.raises(FormError):
        Message.from_wire(header + EMPTY_BODY + h("00") + msgpack.packb(trailer))


def test_a_well_formed_trailer_decodes() -> None:
    msg = Message.from_wire(h("12 34 00 10 01 00") + EMPTY_BODY + h("00") + msgpack.packb(SIG_OK))
    assert msg.signature == Signature(n("k."), "hmac-sha256", 0, 300, b"", 1)


# -- hostile msgpack -------------------------------------------------------------------
HOSTILE = {
    "array32-2^32-as-body": h("dd ff ff ff ff"),
    "array32-2^32-as-section": h("95 c0 dd ff ff ff ff"),
    "array16-over-limit": h("95 c0 dc ff ff") + b"\xc0" * 65535,
    "array-8193-records": h("95 c0 dc 20 01") + b"\xc0" * 8193,
    "deep-nesting": b"\x91" * 60000 + b"\xc0",
    "deep-nesting-unterminated": b"\x91" * 60000,
    "str32-huge": h("db ff ff ff ff"),
    "str32-huge-as-name": h("95 92 db ff ff ff ff"),
    "str16-past-end": h("95 92 da ff ff") + b"a" * 100,
    "bin32-huge": h("95 c0 91 94 a1 2e 01 00 92 c6 ff ff ff ff"),
    "map-as-body": h("81 a1 71 c0"),
    "map32-huge": h("df ff ff ff ff"),
    "empty-map-as-body": h("80"),
    "empty-map-as-question": h("95 80 90 90 90 00"),
    "empty-map-as-section": h("95 c0 80 90 90 00"),
    "empty-map-as-udp-size": h("95 c0 90 90 90 80"),
    "fixext-as-body": h("d4 01 00"),
    "fixext-as-udp-size": h("95 c0 90 90 90 d4 01 00"),
    "ext8-empty": h("95 c0 90 90 90 c7 00 05"),
    "ext32-huge": h("95 c0 90 90 90 c9 ff ff ff ff 05"),
    "timestamp": h("95 c0 90 90 90 d6 ff 00 00 00 00"),
    "true-as-qtype": h("95 92 a1 2e c3 90 90 90 00"),
    "false-as-udp-size": h("95 c0 90 90 90 c2"),
    "float32": h("95 c0 90 90 90 ca 44 9a 00 00"),
    "float64": h("95 c0 90 90 90 cb 40 93 40 00 00 00 00 00"),
    "negative-fixint": h("95 c0 90 90 90 ff"),
    "int8-negative": h("95 c0 90 90 90 d0 80"),
    "int64-min": h("95 c0 90 90 90 d3 80 00 00 00 00 00 00 00"),
    "uint64-max-qtype": h("95 92 a1 2e cf ff ff ff ff ff ff ff ff 90 90 90 00"),
    "invalid-utf8-name": h("95 92 a2 ff fe 19 90 90 90 00"),
    "surrogate-name": h("95 92 a3 ed a0 80 19 90 90 90 00"),
    "never-used-0xc1": h("c1"),
    "empty-body": b"",
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_msgpack_is_a_quick_form_error(name: str) -> None:
    start = time.perf_counter()
    with pytest.raises(FormError):
        Message.from_wire(HEADER + HOSTILE[name])
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_msgpack_in_the_trailer_is_a_form_error(name: str) -> None:
    with pytest.raises(FormError):
        Message.from_wire(h("12 34 00 10 01 00") + EMPTY_BODY + h("00") + HOSTILE[name])


# -- hypothesis: round trips -----------------------------------------------------------
signatures = st.builds(
    Signature, domains(), st.text(max_size=20), st.integers(0, 2**48 - 1),
    st.integers(0, 0xFFFF), st.binary(max_size=64), st.integers(0, 0xFFFF),
    st.integers(0, 0xFFF), st.binary(max_size=64))

questions = st.builds(Question, names(), st.integers(0, 0xFFFF))

messages = st.builds(
    Message,
    id=st.integers(0, 0xFFFF), opcode=st.sampled_from(KNOWN_OPCODES), qr=st.booleans(),
    aa=st.booleans(), tc=st.booleans(), rd=st.booleans(), ra=st.booleans(),
    rcode=st.integers(0, 0xFFF), question=st.none() | questions,
    answer=st.lists(records(), max_size=2), authority=st.lists(records(), max_size=1),
    additional=st.lists(records(), max_size=1), udp_size=st.integers(0, 0xFFFF),
    signature=st.none() | signatures)


@FAST
@given(messages)
def test_message_round_trip(msg: Message) -> None:
    data = msg.to_wire()
    decoded = Message.from_wire(data)
    assert decoded == msg
    assert peek_id(data) == msg.id and is_response(data) == msg.qr
    if msg.signature is not None:
        assert decoded.signed_bytes == msg.encode_unsigned(signed=True)


# -- fuzzing ---------------------------------------------------------------------------
def check_decode(data: bytes) -> Message | None:
    """Decode; only the three protocol errors may escape, and whatever decodes
    re-encodes to bytes that decode to the same message."""
    try:
        msg = Message.from_wire(data)
    except DECODE_ERRORS:
        return None
    assert Message.from_wire(msg.to_wire()) == msg
    return msg


def check_error_response(data: bytes, rcode: int) -> None:
    """error_response_wire never raises and answers with a bare response."""
    answer = error_response_wire(data, rcode)
    if len(data) < 2 or (len(data) >= 3 and data[2] & 0x80):
        assert answer is None
        return
    assert answer is not None
    assert peek_id(answer) == peek_id(data) and is_response(answer)
    assert answer[4] == 1 and (answer[5] << 4 | answer[3] & 0xF) == rcode
    opcode = data[2] >> 3 & 0xF if len(data) >= 4 else 0
    rd = len(data) >= 4 and bool(data[2] & 1)
    # Whatever the opcode, the bare response decodes (protocol.md 4.4).
    msg = Message.from_wire(answer)
    assert (msg.id, msg.qr, msg.rcode, msg.opcode, msg.rd) == (
        peek_id(data), True, rcode, opcode, rd)
    assert msg.question is None and not (msg.answer or msg.authority or msg.additional)


@FUZZ
@given(st.binary(max_size=80), st.integers(0, 0xFFF))
def test_random_bytes(data: bytes, rcode: int) -> None:
    check_decode(data)
    check_error_response(data, rcode)


@FUZZ
@given(st.sampled_from(KNOWN_OPCODES), st.binary(max_size=80))
def test_random_bodies_behind_a_valid_header(opcode: int, tail: bytes) -> None:
    data = bytes([0x12, 0x34, opcode << 3, 0, 1, 0]) + tail
    try:
        Message.from_wire(data)
    except ProtocolError as exc:
        assert isinstance(exc, FormError)
        check_error_response(data, exc.rcode)


@st.composite
def mutated(draw) -> bytes:
    """A valid message with byte flips, insertions and deletions."""
    data = bytearray(draw(messages).to_wire())
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[at:at + draw(st.integers(1, 4))]
    return bytes(data)


@FUZZ_SLOW
@given(mutated(), st.integers(0, 0xFFF))
def test_mutated_messages(data: bytes, rcode: int) -> None:
    check_decode(data)
    check_error_response(data, rcode)


def msgpack_values() -> st.SearchStrategy:
    """Any msgpack value, including types the protocol forbids."""
    leaves = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats()
              | st.text(max_size=12) | st.binary(max_size=12)
              | st.sampled_from(["x.", "alice@example.com.", "Example.COM.", ".", "a..b."])
              | st.sampled_from([1, 2, 5, 6, 25, 251, 252, 255, 0xFFFF, 2**31, 2**32])
              | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4)))
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=6)
                        | st.dictionaries(st.text(max_size=3), inner, max_size=2),
                        max_leaves=12)


def near_records() -> st.SearchStrategy:
    """Arrays of 4 shaped like records, with arbitrary parts."""
    return st.lists(msgpack_values(), min_size=4, max_size=4) | records().map(
        lambda r: r.to_wire())


@FUZZ_SLOW
@given(msgpack_values() | st.tuples(
    st.none() | msgpack_values(), st.lists(near_records(), max_size=2),
    st.lists(near_records(), max_size=1), st.lists(near_records(), max_size=1),
    msgpack_values()).map(list))
def test_structured_msgpack_bodies(value) -> None:
    data = HEADER + msgpack.packb(value)
    if len(data) <= MAX_MESSAGE:
        check_decode(data)


# -- truncation for UDP ------------------------------------------------------------------
def big_response(count: int = 100) -> Message:
    """An authoritative answer with `count` KEY records for alice."""
    query = make_query(ALICE, RType.KEY, msg_id=0x4321, rd=True)
    msg = make_response(query)
    msg.aa = True
    for i in range(count):
        key = KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes([i]) * 32)
        msg.answer.append(Record(ALICE, RType.KEY, 3600, key))
    msg.authority.append(Record(EXAMPLE, RType.NS, 3600, NS(NS1)))
    msg.additional.append(Record(NS1, RType.ADDR, 3600, ADDR.parse("192.0.2.1:53")))
    return msg


def test_a_big_answer_is_truncated_to_fit() -> None:
    msg = big_response()
    assert len(msg.to_wire()) > DEFAULT_UDP_SIZE
    data = msg.to_wire(DEFAULT_UDP_SIZE)
    assert len(data) <= DEFAULT_UDP_SIZE
    small = Message.from_wire(data)
    assert small.tc and small.aa and small.qr and small.rd
    assert (small.id, small.rcode, small.question) == (msg.id, msg.rcode, msg.question)
    assert small.answer == small.authority == small.additional == []
    assert len(msg.answer) == 100 and not msg.tc  # the original is untouched


def test_truncation_happens_exactly_past_the_limit() -> None:
    msg = big_response(3)
    full = msg.to_wire()
    assert msg.to_wire(len(full)) == full
    assert Message.from_wire(msg.to_wire(len(full) - 1)) == msg.truncated()


def test_a_signed_message_is_never_cut() -> None:
    msg = big_response()
    msg.signature = SIGNATURE
    with pytest.raises(KeyresolveError) as info:
        msg.to_wire(DEFAULT_UDP_SIZE)
    assert not isinstance(info.value, ProtocolError)


@pytest.mark.parametrize("udp_size,tcp,want", [
    (0, False, 512),
    (100, False, 512),
    (512, False, 512),
    (1000, False, 1000),
    (1232, False, 1232),
    (1233, False, 1232),
    (4096, False, 1232),
    (65535, False, 1232),
    (0, True, 65535),
    (512, True, 65535),
])
def test_max_response_size(udp_size: int, tcp: bool, want: int) -> None:
    query = make_query(ALICE, RType.KEY, udp_size=udp_size)
    assert max_response_size(query, tcp) == want


@FAST
@given(st.integers(0, 0xFFFF), st.integers(0, 40))
def test_udp_responses_never_exceed_the_limit(udp_size: int, count: int) -> None:
    query = make_query(ALICE, RType.KEY, udp_size=udp_size)
    data = big_response(count).to_wire(max_response_size(query, tcp=False))
    assert len(data) <= min(max(udp_size, 512), 1232)
    msg = Message.from_wire(data)
    assert msg.tc == (len(msg.answer) < count)
    if msg.tc:
        assert msg.answer == msg.authority == msg.additional == []


# -- error responses, helpers -------------------------------------------------------------
@pytest.mark.parametrize("data,want", [
    (b"", None),
    (b"\x12", None),
    (b"\x12\x34", h("12 34 80 01 01 00") + EMPTY_BODY + h("cd 04 d0")),
    (b"\x12\x34\x01", h("12 34 80 01 01 00") + EMPTY_BODY + h("cd 04 d0")),
    (b"\x12\x34\x81", None),  # a response: never answered
    (h("12 34 39 ff"), h("12 34 b9 01 01 00") + EMPTY_BODY + h("cd 04 d0")),  # opcode 7, RD
    (h("12 34 86 00 01 00"), None),
])
def test_error_response_vectors(data: bytes, want: bytes | None) -> None:
    assert error_response_wire(data, Rcode.FORMERR) == want


def test_error_response_carries_a_12_bit_rcode() -> None:
    answer = error_response_wire(h("00 07 00 00"), Rcode.BADKEY)
    assert answer is not None and answer[:6] == h("00 07 80 02 01 01")
    assert Message.from_wire(answer).rcode == Rcode.BADKEY


@pytest.mark.parametrize("data,msg_id,response", [
    (b"", None, False), (b"\x01", None, False), (b"\x01\x02", 0x0102, False),
    (b"\x01\x02\x80", 0x0102, True), (b"\x01\x02\x7f", 0x0102, False),
])
def test_peek_id_and_is_response(data: bytes, msg_id: int | None, response: bool) -> None:
    assert peek_id(data) == msg_id and is_response(data) is response


def test_make_query_and_response() -> None:
    query = make_query(ALICE, RType.KEY, rd=True, udp_size=4096)
    assert 0 <= query.id <= 0xFFFF and not query.qr and query.rd and query.udp_size == 4096
    response = make_response(query, Rcode.REFUSED)
    assert (response.id, response.opcode, response.question, response.rd) == (
        query.id, query.opcode, query.question, True)
    assert response.qr and response.rcode == Rcode.REFUSED and not response.aa
    assert len({make_query(ALICE, RType.KEY).id for _ in range(64)}) > 1


def test_text_forms() -> None:
    msg = VECTORS["all-flags"][0]
    assert msg.flags_text == ["qr", "aa", "tc", "rd", "ra"]
    assert str(Question(ALICE, RType.KEY)) == "alice@example.com. KEY"
    assert str(VECTORS["answer"][0]) == (
        "id=4660 opcode=QUERY rcode=NOERROR flags=qr,aa q=alice@example.com. KEY")


# -- TCP framing ---------------------------------------------------------------------------
def test_frame_prefixes_the_length() -> None:
    assert frame(b"abc") == b"\x00\x03abc"
    assert frame(b"") == b"\x00\x00"
    assert frame(b"x" * MAX_MESSAGE)[:2] == b"\xff\xff"
    with pytest.raises(KeyresolveError):
        frame(b"x" * (MAX_MESSAGE + 1))


MESSAGES = [VECTORS["answer"][1], b"", VECTORS["empty"][1], b"x" * 300]
STREAM = b"".join(frame(m) for m in MESSAGES)


def drain(reader: FrameReader) -> list[bytes]:
    """Every whole frame the reader holds."""
    out = []
    while (item := reader.next_frame()) is not None:
        out.append(item)
    return out


def test_several_frames_in_one_chunk() -> None:
    reader = FrameReader()
    reader.receive_data(STREAM)
    assert drain(reader) == MESSAGES and reader.pending == 0


def test_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        reader = FrameReader()
        reader.receive_data(STREAM[:cut])
        got = drain(reader)
        reader.receive_data(STREAM[cut:])
        assert got + drain(reader) == MESSAGES and reader.pending == 0


def test_one_byte_at_a_time() -> None:
    reader = FrameReader()
    got = []
    for i in range(len(STREAM)):
        reader.receive_data(STREAM[i:i + 1])
        got += drain(reader)
    assert got == MESSAGES


def test_partial_frame_waits() -> None:
    reader = FrameReader()
    data = frame(b"hello")
    reader.receive_data(data[:1])
    assert reader.next_frame() is None and reader.pending == 1
    reader.receive_data(data[1:-1])
    assert reader.next_frame() is None and reader.pending == len(data) - 1
    reader.receive_data(data[-1:] + data[:3])
    assert reader.next_frame() == b"hello"
    assert reader.next_frame() is None and reader.pending == 3


@FAST
@given(st.lists(st.binary(max_size=70000 // 8), max_size=8), st.data())
def test_any_chunking_gives_back_the_frames(payloads: list[bytes], data) -> None:
    stream = b"".join(frame(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    reader = FrameReader()
    got: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        reader.receive_data(stream[start:end])
        got += drain(reader)
    assert got == payloads and reader.pending == 0


@pytest.mark.parametrize("opcode", [1, 2, 3, 8, 15])
def test_a_notimp_response_to_an_unknown_opcode_decodes(opcode):
    # docs/protocol.md 4.4: step 6 is for requests; a response to a request of
    # an unknown opcode has the version 1 body and decodes, opcode echoed.
    request = bytearray(make_query(EXAMPLE, RType.KEY, msg_id=0x4242, rd=True).to_wire())
    request[2] = (request[2] & 0x87) | opcode << 3
    with pytest.raises(NotImplementedOpcode):
        Message.from_wire(bytes(request))
    reply = Message.from_wire(error_response_wire(bytes(request), Rcode.NOTIMP))
    assert (reply.id, reply.qr, reply.opcode, reply.rd, reply.rcode) == (
        0x4242, True, opcode, True, Rcode.NOTIMP)
    assert reply.question is None


@pytest.mark.parametrize("rcode", [Rcode.NOERROR, Rcode.NXDOMAIN, Rcode.REFUSED, Rcode.BADSIG])
@pytest.mark.parametrize(("qr", "aa", "rd", "tc", "opcode"),
                         [(False, False, False, False, Opcode.QUERY),
                          (False, False, True, False, Opcode.QUERY),
                          (True, True, False, False, Opcode.QUERY),
                          (True, True, True, True, Opcode.NOTIFY)])
def test_the_named_layout_bytes_are_what_encode_writes(rcode, qr, aa, rd, tc, opcode):
    """`header_tail`, `BODY_ARRAY`, `QUESTION_ARRAY` and `EMPTY_SECTION`
    (for code that matches or splices messages as bytes) are the bytes
    `encode_unsigned` writes."""
    msg = Message(id=0xABCD, opcode=opcode, qr=qr, aa=aa, rd=rd, tc=tc, rcode=rcode,
                  question=Question(Name.from_text("a@example.com."), RType.KEY))
    data = msg.encode_unsigned()
    assert data[:2] == b"\xab\xcd" and data[2:6] == header_tail(msg.flags_word(), rcode)
    assert data[6:7] == BODY_ARRAY and data[7:8] == QUESTION_ARRAY
    assert data.endswith(EMPTY_SECTION * 3 + msgpack.packb(DEFAULT_UDP_SIZE))
    assert msgpack.unpackb(data[6:]) == [["a@example.com.", RType.KEY], [], [], [],
                                         DEFAULT_UDP_SIZE]
