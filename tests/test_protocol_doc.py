"""The hex examples in docs/protocol.md agree with the codec.

Every example is a fenced block preceded by ``<!-- example: NAME -->`` and
followed by an annotation table preceded by ``<!-- annotation: NAME -->``.
For each one this test builds the message from its parts, checks that encoding
gives exactly the documented bytes, that decoding the bytes gives the message
(or the documented error), and that the annotation table is the one
`annotate` derives from the bytes. So the document and the code never drift.

Run ``python tests/test_protocol_doc.py`` to print the blocks to paste into
the document after a deliberate wire change.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from keyresolve.protocol import control
from keyresolve.protocol.codes import (CONTROL_RESULT, ControlCommand, Opcode, Rcode, RType, rcode_to_text,
                              rtype_to_text)
from keyresolve.protocol.errors import BadVersion, FormError, ProtocolError
from keyresolve.protocol.message import Message, error_response_wire, make_query, make_response
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import KEY, SOA, KeyAlgorithm, KeyUsage, Record

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"

ALICE = Name.from_text("alice@example.com.")
BOB = Name.from_text("bob@example.com.")
ZONE = Name.from_text("example.com.")


# -- the example messages, built from their parts ---------------------------------
def key_query() -> Message:
    """A KEY query for alice@example.com., id 0x1234, recursion desired."""
    return make_query(ALICE, RType.KEY, msg_id=0x1234, rd=True)


def key_response() -> Message:
    """The authoritative answer: one X25519 KEY, TTL 3600."""
    msg = make_response(key_query())
    msg.aa = True
    key = KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes(range(32)))
    msg.answer.append(Record(ALICE, RType.KEY, 3600, key))
    return msg


def nxdomain_response() -> Message:
    """bob@example.com. does not exist: NXDOMAIN with the zone's SOA.

    The SOA record's TTL is min(SOA TTL 3600, minimum 300) = 300 (RFC 2308 3).
    """
    query = make_query(BOB, RType.KEY, msg_id=0x1235, rd=True)
    msg = make_response(query, Rcode.NXDOMAIN)
    msg.aa = True
    soa = SOA(Name.from_text("ns1.example.com."), Name.from_text("hostmaster@example.com."),
              2024010101, 7200, 3600, 1209600, 300)
    msg.authority.append(Record(ZONE, RType.SOA, 300, soa))
    return msg


def formerr_request() -> bytes:
    """The query's header with a body array of 4 instead of 5."""
    return key_query().to_wire()[:6] + bytes([0x94, 0xC0, 0x90, 0x90, 0x90])


def formerr_response() -> Message:
    """What error_response_wire answers to it: id, opcode and RD echoed."""
    return Message(id=0x1234, qr=True, rd=True, rcode=Rcode.FORMERR)


def badvers_request() -> bytes:
    """The KEY query with version byte 2."""
    data = bytearray(key_query().to_wire())
    data[4] = 2
    return bytes(data)


def badvers_response() -> Message:
    """BADVERS (16): rcode-high 1, rcode-low 0; version byte says 1."""
    return Message(id=0x1234, qr=True, rd=True, rcode=Rcode.BADVERS)


def control_request() -> Message:
    """`keyresolve ctl zone-status example.com`: CONTROL, id 0x4321."""
    return control.make_request(ControlCommand.ZONE_STATUS, ZONE, msg_id=0x4321)


def control_response() -> Message:
    """Its answer: one CONTROL_RESULT record of three fields."""
    return control.make_result(control_request(), {"zone": "example.com.", "role": "primary",
                                                   "serial": 2024010101})


@dataclass
class Example:
    """One documented example: the bytes and how they must decode."""

    build: Callable[[], Message | bytes]
    error: type[ProtocolError] | None = None  # decoding raises this
    answer_to: str | None = None  # the request error_response_wire answers

    def wire(self) -> bytes:
        built = self.build()
        return built if isinstance(built, bytes) else built.to_wire()


EXAMPLES: dict[str, Example] = {
    "key-query": Example(key_query),
    "key-response": Example(key_response),
    "nxdomain-response": Example(nxdomain_response),
    "formerr-request": Example(formerr_request, error=FormError),
    "formerr-response": Example(formerr_response, answer_to="formerr-request"),
    "badvers-request": Example(badvers_request, error=BadVersion),
    "badvers-response": Example(badvers_response, answer_to="badvers-request"),
    "control-request": Example(control_request),
    "control-response": Example(control_response),
}


# -- hex dumps ---------------------------------------------------------------------
def hexdump(data: bytes) -> str:
    """16 bytes a line, each line starting with its offset (4 hex digits)."""
    lines = []
    for start in range(0, len(data), 16):
        chunk = data[start:start + 16]
        lines.append(f"{start:04x}  " + " ".join(f"{b:02x}" for b in chunk))
    return "\n".join(lines)


def parse_hexdump(text: str) -> bytes:
    """Inverse of `hexdump`; checks each line's offset."""
    out = bytearray()
    for line in text.strip().splitlines():
        offset, *octets = line.split()
        assert int(offset, 16) == len(out), f"bad offset in line {line!r}"
        out += bytes(int(o, 16) for o in octets)
    return bytes(out)


# -- annotation: a minimal msgpack walker that keeps byte offsets -------------------
@dataclass
class Node:
    """One msgpack object: where it starts, where its header ends, where it ends."""

    start: int
    head_end: int
    end: int
    fmt: str
    value: object
    children: list[Node] = field(default_factory=list)


_FIXED = {0xC0: ("nil", None), 0xC2: ("false", False), 0xC3: ("true", True)}
_UINT = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_STR = {0xD9: 1, 0xDA: 2, 0xDB: 4}
_BIN = {0xC4: 1, 0xC5: 2, 0xC6: 4}
_ARRAY = {0xDC: 2, 0xDD: 4}


def parse_msgpack(data: bytes, pos: int) -> Node:
    """Parse the subset of msgpack the protocol uses, keeping offsets."""
    b = data[pos]

    def length(size: int) -> int:
        return int.from_bytes(data[pos + 1:pos + 1 + size], "big")

    if b <= 0x7F:
        return Node(pos, pos + 1, pos + 1, "positive fixint", b)
    if b in _FIXED:
        fmt, value = _FIXED[b]
        return Node(pos, pos + 1, pos + 1, fmt, value)
    if b in _UINT:
        size = _UINT[b]
        return Node(pos, pos + 1, pos + 1 + size, f"uint{size * 8}", length(size))
    if 0xA0 <= b <= 0xBF or b in _STR:
        size = 0 if b <= 0xBF else _STR[b]
        n = b & 0x1F if b <= 0xBF else length(size)
        head = pos + 1 + size
        fmt = f"fixstr({n})" if b <= 0xBF else f"str{size * 8}({n})"
        return Node(pos, head, head + n, fmt, data[head:head + n].decode())
    if b in _BIN:
        size = _BIN[b]
        n = length(size)
        head = pos + 1 + size
        return Node(pos, head, head + n, f"bin{size * 8}({n})", data[head:head + n])
    if 0x90 <= b <= 0x9F or b in _ARRAY:
        size = 0 if b <= 0x9F else _ARRAY[b]
        n = b & 0x0F if b <= 0x9F else length(size)
        fmt = f"fixarray({n})" if b <= 0x9F else f"array{size * 8}({n})"
        node = Node(pos, pos + 1 + size, 0, fmt, n)
        at = node.head_end
        for _ in range(n):
            child = parse_msgpack(data, at)
            node.children.append(child)
            at = child.end
        node.end = at
        return node
    raise ValueError(f"msgpack format 0x{b:02x} is not used by the protocol")


_RDATA_FIELDS = {
    RType.SOA: ("mname (primary server)", "rname (contact mailbox)", "serial", "refresh",
                "retry", "expire", "minimum (negative-answer TTL cap)"),
    RType.KEY: ("algorithm", "usage", "flags (reserved)", "key"),
    RType.ADDR: ("address", "port"),
    RType.NS: ("target",),
    RType.ALIAS: ("target",),
}


def _span(start: int, end: int) -> str:
    return f"{start}" if end - start <= 1 else f"{start}–{end - 1}"


def _octets(data: bytes, start: int, end: int) -> str:
    shown = data[start:min(end, start + 6)].hex(" ")
    return shown + (" …" if end - start > 6 else "")


def _value_text(node: Node) -> str:
    if isinstance(node.value, str):
        return f'"{node.value}"'
    if isinstance(node.value, bytes):
        return f"{len(node.value)} bytes"
    if node.fmt.startswith(("fixarray", "array")):
        return f"array of {node.value}"
    return "nil" if node.value is None else str(node.value)


def _rdata_meaning(rtype: int, index: int, node: Node) -> str:
    name = _RDATA_FIELDS[RType(rtype)][index]
    if rtype == RType.KEY and index == 0:
        return f"{name} = {node.value} ({KeyAlgorithm(node.value).name})"
    if rtype == RType.KEY and index == 1:
        return f"{name} = {node.value} ({KeyUsage(node.value).name})"
    return f"{name} = {_value_text(node)}"


def annotate(data: bytes) -> str:
    """A markdown table: offset, bytes, encoding and meaning of every field."""
    rows: list[tuple[int, int, str, str]] = []

    def add(node: Node, meaning: str) -> None:
        # An array's row covers its header; its elements get rows of their own.
        is_array = node.fmt.startswith(("fixarray", "array"))
        rows.append((node.start, node.head_end if is_array else node.end, node.fmt, meaning))

    msg_id, flags, version, rcode_high = struct.unpack_from(">HHBB", data)
    opcode = (flags >> 11) & 0xF
    rcode = rcode_high << 4 | flags & 0xF
    rows.append((0, 2, "header", f"id = 0x{msg_id:04x}"))
    rows.append((2, 3, "header", (
        f"QR={flags >> 15} opcode={opcode} ({Opcode(opcode).name}) "
        f"AA={flags >> 10 & 1} TC={flags >> 9 & 1} RD={flags >> 8 & 1}")))
    rows.append((3, 4, "header", (
        f"RA={flags >> 7 & 1} Z={flags >> 6 & 1} Z={flags >> 5 & 1} SG={flags >> 4 & 1} "
        f"rcode-low={flags & 0xF}")))
    rows.append((4, 5, "header", f"version = {version}"))
    rows.append((5, 6, "header",
                 f"rcode-high = {rcode_high}: rcode = {rcode} ({rcode_to_text(rcode)})"))

    body = parse_msgpack(data, 6)
    if body.fmt != "fixarray(5)":
        add(body, f"body: array of {body.value}, not 5 (malformed)")
        for i, child in enumerate(body.children):
            add(child, f"element {i} = {_value_text(child)}")
        return _table(data, rows)
    add(body, "body = [question, answer, authority, additional, udp_size]")
    question = body.children[0]
    if question.value is None:
        add(question, "question: none")
    else:
        add(question, "question = [name, type]")
        qname, qtype = question.children
        add(qname, f"question name = {_value_text(qname)}")
        add(qtype, f"question type = {qtype.value} ("
            + (f"command {ControlCommand(qtype.value).name}" if opcode == Opcode.CONTROL
               else rtype_to_text(qtype.value)) + ")")
    for section, node in zip(("answer", "authority", "additional"), body.children[1:4]):
        add(node, f"{section} section: {node.value} record(s)")
        for i, rec in enumerate(node.children):
            add(rec, f"{section}[{i}] = [owner, type, ttl, rdata]")
            owner, rtype, ttl, rdata = rec.children
            add(owner, f"owner = {_value_text(owner)}")
            if rtype.value == CONTROL_RESULT:
                add(rtype, f"type = {rtype.value} (CONTROL_RESULT)")
                add(ttl, f"ttl = {ttl.value} s")
                add(rdata, f"rdata: {rdata.value} result field(s)")
                for pair in rdata.children:
                    field, value = pair.children
                    add(pair, "result field = [name, value]")
                    add(field, f"field name = {_value_text(field)}")
                    add(value, f"{field.value} = {_value_text(value)}")
                continue
            add(rtype, f"type = {rtype.value} ({rtype_to_text(rtype.value)})")
            add(ttl, f"ttl = {ttl.value} s")
            add(rdata, f"rdata: {rtype_to_text(rtype.value)} fields")
            for j, item in enumerate(rdata.children):
                add(item, _rdata_meaning(rtype.value, j, item))
    udp = body.children[4]
    add(udp, f"udp_size = {udp.value}")
    assert body.end == len(data), "trailing bytes in an example"
    return _table(data, rows)


def _table(data: bytes, rows: list[tuple[int, int, str, str]]) -> str:
    lines = ["| Offset | Bytes | Encoding | Meaning |", "|---|---|---|---|"]
    for start, end, fmt, meaning in rows:
        lines.append(f"| {_span(start, end)} | `{_octets(data, start, end)}` | {fmt} | {meaning} |")
    return "\n".join(lines)


def render(name: str) -> str:
    """The markdown of one example: marker, hex block, annotation marker, table."""
    data = EXAMPLES[name].wire()
    return (f"<!-- example: {name} -->\n```text\n{hexdump(data)}\n```\n\n"
            f"<!-- annotation: {name} -->\n{annotate(data)}\n")


# -- reading the document ----------------------------------------------------------
_EXAMPLE_RE = re.compile(r"<!-- example: (\S+) -->\n```text\n(.*?)```", re.S)
_ANNOTATION_RE = re.compile(r"<!-- annotation: (\S+) -->\n((?:\|.*\n)+)")


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def doc_examples() -> dict[str, bytes]:
    """Every example block in the document, by name."""
    found: dict[str, bytes] = {}
    for match in _EXAMPLE_RE.finditer(_doc()):
        assert match[1] not in found, f"example {match[1]} appears twice"
        found[match[1]] = parse_hexdump(match[2])
    return found


def doc_annotations() -> dict[str, str]:
    """Every annotation table in the document, by name."""
    return {m[1]: m[2].rstrip("\n") for m in _ANNOTATION_RE.finditer(_doc())}


# -- tests -------------------------------------------------------------------------
def test_every_example_is_documented_and_checked() -> None:
    assert set(doc_examples()) == set(EXAMPLES)
    assert set(doc_annotations()) == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_bytes_are_what_the_encoder_produces(name: str) -> None:
    assert doc_examples()[name] == EXAMPLES[name].wire()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_decodes_to_the_described_message(name: str) -> None:
    example = EXAMPLES[name]
    data = doc_examples()[name]
    if example.error is not None:
        with pytest.raises(example.error) as info:
            Message.from_wire(data)
        # The server's answer is error_response_wire with the error's rcode.
        assert type(info.value) is example.error
        return
    built = example.build()
    assert isinstance(built, Message)
    assert Message.from_wire(data) == built


@pytest.mark.parametrize("name", [n for n, e in EXAMPLES.items() if e.answer_to])
def test_error_example_is_the_answer_to_its_request(name: str) -> None:
    examples = doc_examples()
    request = examples[EXAMPLES[name].answer_to]
    with pytest.raises(ProtocolError) as info:
        Message.from_wire(request)
    assert error_response_wire(request, info.value.rcode) == examples[name]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_annotation_table_matches_the_bytes(name: str) -> None:
    assert doc_annotations()[name] == annotate(doc_examples()[name])


def test_annotation_covers_every_byte() -> None:
    # The tables are the third party's map of the wire: no byte may be skipped.
    for name, data in doc_examples().items():
        covered = set()
        for line in annotate(data).splitlines()[2:]:
            span = line.split("|")[1].strip()
            first, _, last = span.partition("–")
            covered.update(range(int(first), int(last or first) + 1))
        assert covered == set(range(len(data))), name


def test_hexdump_round_trip_checks_offsets() -> None:
    data = bytes(range(40))
    assert parse_hexdump(hexdump(data)) == data
    with pytest.raises(AssertionError):
        parse_hexdump("0000  00 01\n0003  02")


def test_control_example_decodes_to_its_command_and_result() -> None:
    # both ways through keyresolve.protocol.control, as a third party's client and server see it
    examples = doc_examples()
    assert control.decode_request(examples["control-request"]) == control.ControlRequest(
        ControlCommand.ZONE_STATUS, ZONE)
    response, fields = control.decode_result(examples["control-response"])
    assert response.id == 0x4321 and response.rcode == Rcode.NOERROR
    assert fields == {"zone": "example.com.", "role": "primary", "serial": 2024010101}


if __name__ == "__main__":
    for example_name in EXAMPLES:
        print(render(example_name))
