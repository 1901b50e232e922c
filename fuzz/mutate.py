"""Hostile messages: valid queries (from keyresolve.protocol.message.make_query) and
ways to break them. Every function takes a `random.Random`, so a seed gives
the same bytes (signed queries aside: their MAC covers the clock)."""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable

import msgpack

from keyresolve.protocol import tsig
from keyresolve.protocol.codes import Opcode, RType
from keyresolve.protocol.message import HEADER_SIZE, MAX_MESSAGE, Message, Signature, make_query
from keyresolve.protocol.names import Name

from .daemons import OPS, XFER

NAMES = [Name.from_text(t) for t in (
    "alice@example.", "team@example.", "example.", "nobody@example.", "alice@private.",
    "x@ns1.sub.example.", "sub.example.", ".", "user7@example.", "a.b.c.d.e.f.g.example.")]
TYPES = [RType.KEY, RType.SOA, RType.NS, RType.ADDR, RType.ALIAS, RType.ANY, RType.AXFR,
         RType.IXFR, 0, 65535, 7]
OPCODES = [Opcode.QUERY] * 6 + [Opcode.NOTIFY, Opcode.TRANSFER, Opcode.UPDATE,
                                Opcode.CONTROL, 3]


def query_message(rng: random.Random) -> Message:
    """A well-formed query (make_query), unsigned."""
    return make_query(rng.choice(NAMES), rng.choice(TYPES), msg_id=rng.randrange(1 << 16),
                      rd=rng.random() < 0.5, opcode=rng.choice(OPCODES),
                      udp_size=rng.choice([0, 512, 1232, 4096, 65535]))


def valid_query(rng: random.Random, *, signed: bool | None = None) -> bytes:
    """The wire bytes of a well-formed query, sometimes signed with a real key."""
    query = query_message(rng)
    if signed is None:
        signed = rng.random() < 0.2
    if signed:
        return tsig.sign(query, rng.choice([XFER, OPS]), int(time.time()))
    return query.to_wire()


def bitflip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(out))
        out[at] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data))]


def extend(rng: random.Random, data: bytes) -> bytes:
    junk = rng.choice([rng.randbytes(rng.randint(1, 64)), b"\xc0" * rng.randint(1, 8),
                       msgpack.packb(random_value(rng, 3)), rng.randbytes(rng.randint(1, 2000))])
    return (data + junk)[:MAX_MESSAGE]


#: msgpack type bytes followed by a length of this many bytes (str, bin,
#: array, map, ext), and the fixed-size forms.
_LENGTH_CODES = [(0xd9, 1), (0xda, 2), (0xdb, 4), (0xc4, 1), (0xc5, 2), (0xc6, 4),
                 (0xdc, 2), (0xdd, 4), (0xde, 2), (0xdf, 4), (0xc7, 1), (0xc8, 2), (0xc9, 4)]


def lengths(rng: random.Random, data: bytes) -> bytes:
    """A length field that lies: a msgpack header in the body with a bigger
    or smaller count than the bytes that follow."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(HEADER_SIZE, len(out)) if len(out) > HEADER_SIZE else len(out)
        if rng.random() < 0.4:
            out[at:at + 1] = bytes([rng.choice([0x90, 0x80, 0xa0]) | rng.randrange(16)])
            continue
        code, size = rng.choice(_LENGTH_CODES)
        value = rng.choice([0, 1, 2, 5, (1 << 8 * size) - 1, rng.randrange(1 << 8 * size)])
        header = bytes([code]) + value.to_bytes(size, "big")
        out[at:at + rng.choice([0, 1, 1 + size])] = header
    return bytes(out[:MAX_MESSAGE])


def random_value(rng: random.Random, depth: int):
    """A random msgpack value of every type, nested at most `depth` deep."""
    kinds = ["nil", "bool", "int", "bigint", "float", "str", "bin", "ext"]
    if depth > 0:
        kinds += ["array", "map"] * 2
    kind = rng.choice(kinds)
    if kind == "nil":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.randint(-300, 70000)
    if kind == "bigint":
        return rng.choice([2**64 - 1, -2**63, 2**32, 2**48, -1, 2**16])
    if kind == "float":
        return rng.choice([0.0, -1.5, 1e308, float("nan"), float("inf"), 25.0])
    if kind == "str":
        return rng.choice(["", "alice@example.", "a" * rng.randint(0, 300), "\u00e9\u2603",
                           "\x00", ".", "..", "@", "x" * 64 + ".example.", "hmac-sha256"])
    if kind == "bin":
        return rng.randbytes(rng.choice([0, 1, 32, 64, 65, 300]))
    if kind == "ext":
        if rng.random() < 0.2:
            return msgpack.Timestamp(rng.randrange(1 << 34), rng.randrange(10**9))
        return msgpack.ExtType(rng.randrange(128), rng.randbytes(rng.randint(0, 20)))
    if kind == "array":
        return [random_value(rng, depth - 1) for _ in range(rng.randint(0, 6))]
    return {rng.choice([0, 1, "a", "name", b"k"]): random_value(rng, depth - 1)
            for _ in range(rng.randint(0, 3))}


def _header(rng: random.Random, flags: int | None = None) -> bytes:
    if flags is None:
        flags = rng.choice([0, 0x0100, 0x0010, 0x3000, 0x2000, 0x0110])
    return struct.pack(">HHBB", rng.randrange(1 << 16), flags, 1, 0)


def _record(rng: random.Random):
    return [rng.choice(["alice@example.", "example.", ".", 5, None]),
            rng.choice([25, 6, 2, 1, 5, 255, 0, -1, 2**40, "KEY"]),
            rng.choice([60, 0, -1, 2**32, 2**31, "60", None]),
            random_value(rng, 2)]


def types(rng: random.Random, data: bytes) -> bytes:
    """msgpack type confusion: a body of the right shape with fields of the
    wrong types (and records with wrong rdata), or a body of another shape."""
    body = [["alice@example.", 25], [], [], [], 1232]
    for _ in range(rng.randint(1, 4)):
        slot = rng.randrange(5)
        choice = rng.random()
        if choice < 0.3:
            body[slot] = random_value(rng, 3)
        elif choice < 0.6 and slot in (1, 2, 3):
            body[slot] = [_record(rng) for _ in range(rng.randint(1, 4))]
        elif slot == 0:
            body[0] = [random_value(rng, 1), random_value(rng, 1)]
        else:
            body[slot] = random_value(rng, 1)
    if rng.random() < 0.2:
        body = body[:rng.randrange(5)] + [random_value(rng, 1)] * rng.randint(0, 3)
    try:
        packed = msgpack.packb(body)
    except (OverflowError, ValueError):
        packed = msgpack.packb([None, [], [], [], 1232])
    flags = None
    trailer = b""
    if rng.random() < 0.3:  # a signature trailer of the wrong types
        flags = 0x0010
        sig = [random_value(rng, 1) for _ in range(rng.choice([8, 8, 8, 7, 9, 0]))]
        try:
            trailer = msgpack.packb(sig)
        except (OverflowError, ValueError):
            trailer = b"\x98" + b"\xc0" * 8
    return (_header(rng, flags) + packed + trailer)[:MAX_MESSAGE]


def nesting(rng: random.Random, data: bytes) -> bytes:
    """Huge or deep values: arrays nested thousands deep, counts of 2^32,
    strings up to the message size, a section of the most records."""
    kind = rng.randrange(6)
    header = _header(rng)
    if kind == 0:
        depth = rng.choice([100, 1000, 10000, 60000])
        return (header + b"\x95" + b"\x91" * depth + b"\xc0")[:MAX_MESSAGE]
    if kind == 1:
        return header + b"\x95\xc0\xdd\xff\xff\xff\xff" + b"\xc0" * rng.randint(0, 100)
    if kind == 2:
        size = rng.choice([300, 5000, MAX_MESSAGE - HEADER_SIZE - 20])
        return (header + msgpack.packb([["a" * size + "@example.", 25], [], [], [], 1232])
                )[:MAX_MESSAGE]
    if kind == 3:
        count = rng.choice([8192, 8193, 20000])
        return (header + b"\x95\xc0\xdd" + count.to_bytes(4, "big") + b"\x90" * count)[
            :MAX_MESSAGE]
    if kind == 4:
        return (header + b"\x95" + b"\xdf\xff\xff\xff\xff" + b"\x91" * 1000)[:MAX_MESSAGE]
    signed = valid_query(rng, signed=True)
    return (signed + b"\x98" + b"\x91" * rng.choice([10, 1000, 30000]))[:MAX_MESSAGE]


def header(rng: random.Random, data: bytes) -> bytes:
    """A valid body under a random header (versions, opcodes, Z bits, QR)."""
    return rng.randbytes(HEADER_SIZE) + data[HEADER_SIZE:]


def noise(rng: random.Random, data: bytes) -> bytes:
    return rng.randbytes(rng.choice([0, 1, 2, 5, 6, 7, 100, 1500, 9000]))


def forged(rng: random.Random, data: bytes) -> bytes:
    """A signed query whose trailer fields are then broken (see Signature)."""
    query = query_message(rng)
    query.signature = Signature(
        rng.choice([XFER.name, OPS.name, Name.from_text("nobody.")]),
        rng.choice(["hmac-sha256", "hmac-sha512", "md5", "", "x" * 255]),
        rng.choice([0, int(time.time()), 2**48 - 1]), rng.randrange(1 << 16),
        rng.randbytes(rng.choice([0, 1, 31, 32, 64])), rng.randrange(1 << 16),
        rng.randrange(1 << 12), rng.randbytes(rng.choice([0, 6, 64])))
    return query.to_wire()


def unchanged(rng: random.Random, data: bytes) -> bytes:
    return data


MUTATORS: dict[str, tuple[Callable[[random.Random, bytes], bytes], str]] = {
    "valid": (unchanged, "valid queries, unchanged: names and types of the zones, every "
                         "opcode (CONTROL commands too, obeyed when signed with the ops key)"),
    "bitflip": (bitflip, "flip 1-8 bits of a valid query"),
    "truncate": (truncate, "cut a valid query short"),
    "extend": (extend, "append junk (bytes, nils, msgpack values) to a valid query"),
    "lengths": (lengths, "msgpack length fields that lie about what follows"),
    "types": (types, "msgpack type confusion in the body and the signature trailer"),
    "nesting": (nesting, "deep nesting, 2^32 counts, huge strings, max records"),
    "header": (header, "random header (version, opcode, Z bits, QR) on a valid body"),
    "noise": (noise, "random bytes of random length"),
    "forged": (forged, "signature trailers with broken fields"),
}


def mutate(rng: random.Random, kind: str) -> bytes:
    """One hostile message of mutation `kind`."""
    return MUTATORS[kind][0](rng, valid_query(rng))
