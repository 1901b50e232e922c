"""Messages and their wire codec (sans-IO).

Layout (docs/protocol.md): a 6-byte header, a msgpack body, and, when the
SG flag is set, a msgpack signature trailer.

    0-1  id            (as DNS, RFC 1035 4.1.1)
    2-3  flags         QR | opcode(4) | AA | TC | RD | RA | Z | Z | SG | rcode low(4)
    4    version       1
    5    rcode high    full rcode = high << 4 | low
    6-   body          msgpack [question, answer, authority, additional, udp_size]
    ...  trailer       msgpack signature array, present only when SG is set
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import msgpack

from .codes import Opcode, Rcode, opcode_to_text, rcode_to_text, rtype_to_text
from .errors import BadVersion, FormError, KeyresolveError, NotImplementedOpcode, from_peer
from .names import Name
from .records import Record, Wire, WireFields

#: msgpack array headers of 0..15 items (fixarrays), by count.
FIXARRAY = [bytes((0x90 | count,)) for count in range(16)]


def array_header(count: int) -> bytes:
    """The msgpack header of an array of `count` items (its shortest form,
    as msgpack.packb writes it)."""
    if count < 16:
        return FIXARRAY[count]
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


#: The protocol version this implementation speaks.
VERSION = 1
HEADER = struct.Struct(">HHBB")
HEADER_SIZE = HEADER.size
#: A TCP frame's 2-byte length prefix bounds every message.
MAX_MESSAGE = 65535
#: RFC 9715 / DNS flag day 2020: 1232 bytes avoids IP fragmentation on
#: common paths (1280 IPv6 minimum MTU - 48 bytes of headers).
DEFAULT_UDP_SIZE = 1232
#: RFC 6891 6.2.5: advertised sizes below 512 are treated as 512.
MIN_UDP_SIZE = 512
#: Records per section; a 64 KiB message cannot hold more records than this
#: (a record is at least 8 bytes in msgpack), so larger counts are hostile.
MAX_RECORDS = 8192
#: Longest key name or algorithm name in a signature trailer.
MAX_SIG_NAME = 255
#: Longest MAC (HMAC-SHA512) and "other data" in a signature trailer.
MAX_SIG_BYTES = 64

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_Z = 0x0060  # must be zero
FLAG_SG = 0x0010
OPCODE_SHIFT = 11

# The layout's bytes as `encode_unsigned` writes them (msgpack's shortest
# forms), named for code that matches or splices messages as bytes
# (authority.fastpath) instead of building a Message.
#: The body's header: a msgpack array of 5 [question, answer, authority,
#: additional, udp_size].
BODY_ARRAY = FIXARRAY[5]
#: A question's header: a msgpack array of 2 [name, type].
QUESTION_ARRAY = FIXARRAY[2]
#: An empty answer, authority or additional section: a msgpack array of 0.
EMPTY_SECTION = FIXARRAY[0]


def header_tail(flags: int, rcode: int = 0) -> bytes:
    """Header bytes 2-5, what follows the id, as `encode_unsigned` writes
    them for the flags word `flags` (FLAG_* and the opcode; SG included)
    and the full `rcode`: the flags word with the rcode's low 4 bits,
    VERSION, the rcode's high bits."""
    return HEADER.pack(0, flags | (rcode & 0xF), VERSION, (rcode >> 4) & 0xFF)[2:]

_KNOWN_OPCODES = frozenset(int(o) for o in Opcode)



def strict_unpack_limits(max_bytes: int, max_array: int) -> msgpack.UnpackOptions:
    """``msgpack.unpackb``'s keyword arguments for the strict decoding every
    wire format here uses: str and bin of at most `max_bytes`, arrays of at
    most `max_array` items (as tuples), no maps, no ext types."""
    return dict(raw=False, use_list=False, strict_map_key=True,
                max_str_len=max_bytes, max_bin_len=max_bytes,
                max_array_len=max_array, max_map_len=0, max_ext_len=0)


def unpack_strict(data: bytes, limits: msgpack.UnpackOptions, what: str) -> Any:
    """`data` decoded with `limits` (`strict_unpack_limits`); FormError
    naming `what` for anything undecodable, over a limit or followed by more."""
    try:
        return msgpack.unpackb(data, **limits)
    except Exception as exc:
        raise FormError(f"undecodable {what}: {exc.__class__.__name__}") from None


_UNPACK_LIMITS = strict_unpack_limits(MAX_MESSAGE, MAX_RECORDS)


@dataclass(frozen=True, slots=True)
class Question:
    """The name and type asked about."""

    name: Name
    rtype: int

    def to_wire(self) -> list[Wire]:
        return [self.name.to_wire(), int(self.rtype)]

    def __str__(self) -> str:
        return f"{self.name} {rtype_to_text(self.rtype)}"


@dataclass(frozen=True, slots=True)
class Signature:
    """The HMAC trailer (see keyresolve.protocol.tsig for its meaning)."""

    key_name: Name
    algorithm: str
    time_signed: int
    fudge: int
    mac: bytes
    original_id: int
    error: int = 0
    other: bytes = b""

    def to_wire(self) -> list[Wire]:
        return [self.key_name.to_wire(), self.algorithm, self.time_signed, self.fudge,
                self.mac, self.original_id, self.error, self.other]

    @classmethod
    def from_wire(cls, fields: Any) -> Signature:
        if type(fields) is not tuple or len(fields) != 8:
            raise FormError("signature trailer must be an array of 8")
        key_name, algorithm, time_signed, fudge, mac, original_id, error, other = fields
        if type(key_name) is not str or len(key_name) > MAX_SIG_NAME:
            raise FormError("signature key name must be a short string")
        if type(algorithm) is not str or len(algorithm) > MAX_SIG_NAME:
            raise FormError("signature algorithm must be a short string")
        if type(time_signed) is not int or not 0 <= time_signed < 2**48:
            raise FormError("signature time must be a 48-bit integer")
        if type(fudge) is not int or not 0 <= fudge <= 0xFFFF:
            raise FormError("signature fudge must be a 16-bit integer")
        if type(mac) is not bytes or len(mac) > MAX_SIG_BYTES:
            raise FormError("signature MAC must be at most 64 bytes")
        if type(original_id) is not int or not 0 <= original_id <= 0xFFFF:
            raise FormError("signature original id must be a 16-bit integer")
        if type(error) is not int or not 0 <= error <= 0xFFF:
            raise FormError("signature error must be a 12-bit integer")
        if type(other) is not bytes or len(other) > MAX_SIG_BYTES:
            raise FormError("signature other data must be at most 64 bytes")
        return cls(Name.from_wire(key_name), algorithm, time_signed, fudge, mac,
                   original_id, error, other)


@dataclass(slots=True)
class Message:
    """A query or response. Sections hold `Record`s."""

    id: int = 0
    opcode: int = Opcode.QUERY
    qr: bool = False
    aa: bool = False
    tc: bool = False
    rd: bool = False
    ra: bool = False
    rcode: int = Rcode.NOERROR
    question: Question | None = None
    answer: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)
    udp_size: int = DEFAULT_UDP_SIZE
    signature: Signature | None = None
    #: Bytes of header and body exactly as received (what a MAC covers);
    #: None on messages we built.
    signed_bytes: bytes | None = field(default=None, compare=False, repr=False)
    #: An answer section of records already packed (each a msgpack array
    #: ``[name, type, ttl, rdata]``), in place of `answer`: bulk responses
    #: (zone transfers) are spliced from stored bytes without decoding them.
    packed_answer: list[bytes] | None = field(default=None, repr=False)
    #: With ``from_wire(raw_answer=True)``: the answer section's records as
    #: msgpack decoded them, unchecked, and `answer` empty. For zone
    #: transfers, whose receiver (`keyresolve.authority.xfr.Inbound`) checks each
    #: record itself and packs most of them without making objects.
    raw_answer: WireFields | None = field(default=None, repr=False, compare=False)

    @property
    def answer_count(self) -> int:
        """Records in the answer section, packed, raw or not."""
        if self.packed_answer is not None:
            return len(self.packed_answer)
        return len(self.answer) if self.raw_answer is None else len(self.raw_answer)

    # -- flags -------------------------------------------------------------
    @property
    def flags_text(self) -> list[str]:
        """The set flags as lower-case mnemonics, in header order."""
        names = (("qr", self.qr), ("aa", self.aa), ("tc", self.tc), ("rd", self.rd),
                 ("ra", self.ra))
        return [n for n, on in names if on]

    def flags_word(self, signed: bool | None = None) -> int:
        """The 16-bit flags word of the header."""
        if signed is None:
            signed = self.signature is not None
        return ((FLAG_QR if self.qr else 0) | ((self.opcode & 0xF) << OPCODE_SHIFT)
                | (FLAG_AA if self.aa else 0) | (FLAG_TC if self.tc else 0)
                | (FLAG_RD if self.rd else 0) | (FLAG_RA if self.ra else 0)
                | (FLAG_SG if signed else 0) | (self.rcode & 0xF))

    # -- wire ----------------------------------------------------------------
    def to_wire(self, max_size: int = MAX_MESSAGE) -> bytes:
        """Encode; if the result exceeds `max_size`, encode a TC response instead.

        The truncated form keeps the header and question and empties every
        section, so the client retries over TCP (as RFC 2181 9 advises).
        A signature trailer is appended as is (keyresolve.protocol.tsig makes it).
        """
        data = self.encode_unsigned(signed=self.signature is not None)
        trailer = b"" if self.signature is None else msgpack.packb(self.signature.to_wire())
        if len(data) + len(trailer) > max_size:
            if self.signature is not None:
                raise KeyresolveError("signed message exceeds the size limit; "
                                      "truncate before signing")
            data = self.truncated().encode_unsigned(signed=False)
        return data + trailer

    def encode_unsigned(self, signed: bool = False) -> bytes:
        """Header and body, without the trailer; SG set if `signed`."""
        header = HEADER.pack(self.id, self.flags_word(signed), VERSION, (self.rcode >> 4) & 0xFF)
        question = None if self.question is None else self.question.to_wire()
        authority = [r.to_wire() for r in self.authority]
        additional = [r.to_wire() for r in self.additional]
        if self.packed_answer is None:
            return header + msgpack.packb(
                [question, [r.to_wire() for r in self.answer], authority, additional,
                 self.udp_size])
        if self.answer:
            raise ValueError("a message has answer records or a packed answer, not both")
        # The bytes msgpack.packb would give for the same body.
        return b"".join((header, BODY_ARRAY, msgpack.packb(question),
                         array_header(len(self.packed_answer)), *self.packed_answer,
                         msgpack.packb(authority), msgpack.packb(additional),
                         msgpack.packb(self.udp_size)))

    def truncated(self) -> Message:
        """A copy with TC set and every section emptied."""
        return Message(id=self.id, opcode=self.opcode, qr=self.qr, aa=self.aa, tc=True,
                       rd=self.rd, ra=self.ra, rcode=self.rcode, question=self.question,
                       udp_size=self.udp_size)

    @classmethod
    def from_wire(cls, data: bytes, *, cache_names: bool = True,
                  raw_answer: bool = False) -> Message:
        """Decode strictly; raises FormError, BadVersion or NotImplementedOpcode,
        all of them the peer's errors (`remote`).

        The error carries nothing about the message; use `error_response_wire`
        to answer it from the raw bytes. Without `cache_names`, record owners
        bypass `Name.from_wire`'s cache (for zone transfers: a million unique
        names would only evict the names queries repeat). With `raw_answer`,
        the answer section is left to the caller to check (`raw_answer`).
        """
        if len(data) < HEADER_SIZE:
            raise FormError("message shorter than the header")
        if len(data) > MAX_MESSAGE:
            raise FormError("message longer than 65535 bytes")
        msg_id, flags, version, rcode_high = HEADER.unpack_from(data)
        if version != VERSION:
            raise BadVersion(f"protocol version {version} is not supported")
        if flags & FLAG_Z:
            raise FormError("reserved header bits are set")
        opcode = (flags >> OPCODE_SHIFT) & 0xF
        # Checked before the body: a future opcode may define another body.
        # Only for requests: a response to one (NOTIMP) has the body of 4.1.
        if opcode not in _KNOWN_OPCODES and not flags & FLAG_QR:
            raise NotImplementedOpcode(f"unknown opcode {opcode}")
        try:
            body = msgpack.unpackb(data[HEADER_SIZE:], **_UNPACK_LIMITS)
            trailer = None
        except msgpack.ExtraData as extra:
            if not flags & FLAG_SG:
                raise FormError("trailing bytes after the message body") from None
            body = extra.unpacked
            trailer = _unpack(extra.extra)
            signed_end = len(data) - len(extra.extra)
        except Exception as exc:
            raise FormError(f"undecodable body: {exc.__class__.__name__}") from None
        else:
            if flags & FLAG_SG:
                raise FormError("SG flag set but no signature trailer")
        try:
            msg = _body_from_wire(body, Name.from_wire if cache_names
                                  else Name.from_wire_uncached, raw_answer)
            if flags & FLAG_SG:  # not `trailer is not None`: a nil trailer is malformed
                signature = Signature.from_wire(trailer)
        except KeyresolveError as exc:
            from_peer(exc)
            raise
        msg.id = msg_id
        msg.qr = bool(flags & FLAG_QR)
        msg.opcode = opcode
        msg.aa = bool(flags & FLAG_AA)
        msg.tc = bool(flags & FLAG_TC)
        msg.rd = bool(flags & FLAG_RD)
        msg.ra = bool(flags & FLAG_RA)
        msg.rcode = (rcode_high << 4) | (flags & 0xF)
        if flags & FLAG_SG:
            msg.signature = signature
            msg.signed_bytes = data[:signed_end]
        return msg

    def __str__(self) -> str:
        return (f"id={self.id} opcode={opcode_to_text(self.opcode)} "
                f"rcode={rcode_to_text(self.rcode)} flags={','.join(self.flags_text)} "
                f"q={self.question}")


def _unpack(data: bytes) -> Any:
    return unpack_strict(data, _UNPACK_LIMITS, "signature trailer")


def _body_from_wire(body: Any, parse_name: Callable[[str], Name],
                    raw_answer: bool = False) -> Message:
    if type(body) is not tuple or len(body) != 5:
        raise FormError("body must be an array of 5")
    question, answer, authority, additional, udp_size = body
    msg = Message()
    if question is not None:
        if type(question) is not tuple or len(question) != 2:
            raise FormError("question must be [name, type]")
        name, rtype = question
        if type(name) is not str or type(rtype) is not int or not 0 <= rtype <= 0xFFFF:
            raise FormError("question must be [name string, type 0..65535]")
        msg.question = Question(Name.from_wire(name), rtype)
    for section, target in ((answer, msg.answer), (authority, msg.authority),
                            (additional, msg.additional)):
        if type(section) is not tuple:
            raise FormError("sections must be arrays")
        if raw_answer and target is msg.answer:
            msg.raw_answer = section
            continue
        target.extend(Record.from_wire(r, parse_name) for r in section)
    if type(udp_size) is not int or not 0 <= udp_size <= MAX_MESSAGE:
        raise FormError("udp_size must be 0..65535")
    msg.udp_size = udp_size
    return msg


def peek_id(data: bytes) -> int | None:
    """The message id, or None if not even that can be read."""
    if len(data) < 2:
        return None
    return int.from_bytes(data[:2], "big")


def peek_opcode(data: bytes) -> int | None:
    """The header opcode of a message not yet decoded (None: too short for a header)."""
    if len(data) < 4:
        return None
    return (data[2] >> (OPCODE_SHIFT - 8)) & 0xF


def is_response(data: bytes) -> bool:
    """True if the raw bytes carry the QR flag (never answer those)."""
    return len(data) >= 3 and bool(data[2] & 0x80)


def error_response_wire(data: bytes, rcode: int) -> bytes | None:
    """A bare response with `rcode` to raw bytes we could not decode.

    Echoes id, opcode and RD when readable; returns None when not even the id
    can be read, or the bytes are a response (so two servers never loop).
    """
    msg_id = peek_id(data)
    if msg_id is None or is_response(data):
        return None
    flags = FLAG_QR | (rcode & 0xF)
    if len(data) >= 4:
        flags |= int.from_bytes(data[2:4], "big") & ((0xF << OPCODE_SHIFT) | FLAG_RD)
    header = HEADER.pack(msg_id, flags, VERSION, (rcode >> 4) & 0xFF)
    return header + msgpack.packb([None, [], [], [], DEFAULT_UDP_SIZE])


def make_query(name: Name, rtype: int, *, msg_id: int | None = None, rd: bool = False,
               opcode: int = Opcode.QUERY, udp_size: int = DEFAULT_UDP_SIZE) -> Message:
    """A query with a random id unless one is given."""
    return Message(id=secrets.randbits(16) if msg_id is None else msg_id, opcode=opcode,
                   rd=rd, question=Question(name, rtype), udp_size=udp_size)


def make_response(query: Message, rcode: int = Rcode.NOERROR) -> Message:
    """An empty response to `query`: same id, opcode, question and RD."""
    return Message(id=query.id, opcode=query.opcode, qr=True, rd=query.rd, rcode=rcode,
                   question=query.question)


#: The longest signature trailer a response can carry: both names
#: `MAX_SIG_NAME` long, the longest MAC and other data, every number at its widest.
MAX_TRAILER = len(msgpack.packb(["x" * MAX_SIG_NAME, "x" * MAX_SIG_NAME, 2**48 - 1, 0xFFFF,
                                 bytes(MAX_SIG_BYTES), 0xFFFF, 0xFFF, bytes(MAX_SIG_BYTES)]))


def answer_size(question: Question, answer: list[Record]) -> int:
    """Bytes of the largest response to `question` with `answer` as its
    answer section: signed with the longest trailer (`MAX_TRAILER`). An
    answer for which this exceeds `MAX_MESSAGE` cannot be sent, even over TCP."""
    message = Message(qr=True, aa=True, question=question, answer=list(answer),
                      udp_size=MAX_MESSAGE)
    return len(message.encode_unsigned(signed=True)) + MAX_TRAILER


def max_response_size(query: Message, tcp: bool) -> int:
    """The largest response a client can take: min(advertised, our 1232) on UDP."""
    if tcp:
        return MAX_MESSAGE
    return max(MIN_UDP_SIZE, min(query.udp_size or MIN_UDP_SIZE, DEFAULT_UDP_SIZE))


# -- TCP framing ---------------------------------------------------------------
def frame(data: bytes) -> bytes:
    """Prefix a message with its 2-byte length for TCP."""
    if len(data) > MAX_MESSAGE:
        raise KeyresolveError("message too long for a TCP frame")
    return len(data).to_bytes(2, "big") + data


class FrameReader:
    """Sans-IO splitter of a TCP byte stream into messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the stream."""
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next whole message, or None until more bytes arrive."""
        if len(self._buffer) < 2:
            return None
        length = int.from_bytes(self._buffer[:2], "big")
        if len(self._buffer) < 2 + length:
            return None
        out = bytes(self._buffer[2:2 + length])
        del self._buffer[:2 + length]
        return out

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet returned as a frame."""
        return len(self._buffer)
