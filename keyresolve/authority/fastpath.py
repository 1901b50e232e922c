"""The authoritative hot path (sans-IO): answer the common query in bytes.

A plain KEY (or ADDR, NS, SOA) query for a mailbox is answered straight from
the stored node bytes, without building Message, Name or Record objects; a
mailbox that owns nothing gets NXDOMAIN with the zone's SOA bytes (`negative`,
packed once by the caller). Anything else -- signed, truncated, ALIAS,
NODATA, names that are not mailboxes, other opcodes, non-canonical spelling
or encoding, a too-small UDP size -- returns None and goes through the full path (`keyresolve.authority.answer`), which stays the
reference: tests check both give byte-identical answers.

The fast path accepts a strict subset of what the full decoder accepts, so it
never answers a message the full path would reject. It matches the query's
bytes with one regular expression (`_QUERY`), taking only the shortest
msgpack encodings (what every encoder writes) of the one layout

    95 92 <name: fixstr or str8> <type: fixint> 90 90 90 <udp_size>

(the header, the body's and the question's arrays and the empty sections
are message.py's `header_tail`, `BODY_ARRAY`, `QUESTION_ARRAY` and
`EMPTY_SECTION`; udp_size, which is not echoed, may be a fixint, uint8 or
uint16), so the question can be echoed byte for byte, and splices the
stored rdata into the answer. That relies on stored nodes being `nodes.encode_node`'s
output (msgpack.packb of canonical values): re-encoding the decoded values,
as the full path does, gives the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import msgpack

from .answer import negative_soa
from ..protocol.codes import Rcode, RType
from ..protocol.errors import InvalidName
from ..protocol.grammar import LABEL, LOCAL
from ..protocol.message import (BODY_ARRAY, DEFAULT_UDP_SIZE, EMPTY_SECTION, FLAG_AA, FLAG_QR,
                                FLAG_RD, MIN_UDP_SIZE, QUESTION_ARRAY, header_tail)
from ..protocol.names import MAX_LOCAL, MAX_NAME, Name
from ..zonedata.nodes import (BIN8, ENTRY, FIXARRAY_BASE, KEY_RDATA, ONE_ENTRY, ONE_RDATA,
                              RDATAS_AT, skip)
from ..protocol.message import FIXARRAY, array_header
from ..zonedata.model import ZoneView

#: The canonical local part and absolute domain, lower case (`grammar`'s
#: pieces, which names.py parses with; anything else, such as upper case,
#: takes the full path, which lower-cases it). Matched against the name's
#: bytes: other than ASCII never matches.
_LOCAL = LOCAL.encode("ascii")
_DOMAIN = re.compile(rf"(?:{LABEL}\.)+\Z".encode("ascii"))
#: Types a node may be asked for here (each a msgpack positive fixint, so its
#: byte is its value); ANY, ALIAS and transfers need the full path.
_FAST_TYPES = frozenset(int(t) for t in (RType.KEY, RType.ADDR, RType.NS, RType.SOA))
_TYPE_BYTES = b"".join(re.escape(bytes((t,))) for t in sorted(_FAST_TYPES))
#: The query's header bytes 2-5 without and with RD (message.header_tail):
#: they differ only in the first, RD's byte, whose value (0 or 1) indexes
#: the response heads below.
_QUERY_HEADS = (header_tail(0), header_tail(FLAG_RD))
#: The one query layout taken here, whole (see the module docstring), in one
#: match: header bytes 2-7 (the id is free; flags none or RD only: QR,
#: opcode QUERY = 0, AA, TC, RA, Z, SG and the rcode clear; version; an
#: array of 5 whose first item is an array of 2); the name's header (fixstr,
#: or str8 where a fixstr cannot hold it); a canonical local part; "@"; the
#: domain (only bytes that are not a type's: `_DOMAIN` checks it after); the
#: type; three empty sections; the UDP size as a positive fixint, uint8 or
#: uint16. `answer` checks the length the name's header states.
_QUERY = re.compile(
    rb"..[" + re.escape(bytes((_QUERY_HEADS[0][0], _QUERY_HEADS[1][0]))) + rb"]"
    + re.escape(_QUERY_HEADS[0][1:] + BODY_ARRAY + QUESTION_ARRAY)
    + rb"([\xa0-\xbf]|\xd9[\x20-\xff])(" + _LOCAL + rb")@([^" + _TYPE_BYTES
    + rb"]+)([" + _TYPE_BYTES + rb"])" + re.escape(EMPTY_SECTION * 3)
    + rb"([\x00-\x7f]|\xcc.|\xcd..)\Z",
    re.DOTALL).match
#: Domains whose route a `Responder` remembers (a handful in practice).
#: Bounds the memory hostile queries for made-up domains can take; past it,
#: start over.
MAX_CACHED_DOMAINS = 4096

#: Response header bytes 2-6: flags QR|AA, without and with RD (indexed by
#: the query's RD byte); the version; rcode NOERROR; the body's array of 5.
_RESPONSE_HEAD = tuple(header_tail(FLAG_QR | FLAG_AA | rd) + BODY_ARRAY for rd in (0, FLAG_RD))
_TAIL = EMPTY_SECTION * 2 + msgpack.packb(DEFAULT_UDP_SIZE)  # empty authority, additional
#: The same for NXDOMAIN: an empty answer, then the SOA in authority.
_NXDOMAIN_HEAD = tuple(header_tail(FLAG_QR | FLAG_AA | rd, Rcode.NXDOMAIN) + BODY_ARRAY
                       for rd in (0, FLAG_RD))
_NEGATIVE_TAIL = EMPTY_SECTION + msgpack.packb(DEFAULT_UDP_SIZE)  # empty additional
_ALIAS = int(RType.ALIAS)  # a plain int: faster to compare than the enum member
#: `nodes`' pieces under this module's own names, as the hot code below
#: reads them (measured ~4 % faster per answer than reading the imported
#: names directly: benchmarks/RESULTS.md, "One owner for the node format").
_ENTRY = ENTRY  # a stored node entry: [rtype, ttl, rdatas]
_ONE_ENTRY = ONE_ENTRY  # a node of one entry
_ONE_RDATA = ONE_RDATA  # an rdatas array of one rdata
_KEY_RDATA = KEY_RDATA  # a packed KEY rdata: [algorithm, usage, flags, bin8 key]
_BIN8 = BIN8  # the key bytes' header; their length follows
_ARRAY_BASE = FIXARRAY_BASE  # a fixarray's header less its count
_RDATAS_AT = RDATAS_AT  # where a one-entry node's rdatas begin, by its TTL's first byte
_ARRAYS = FIXARRAY  # fixarray headers
_skip = skip
_RECORD = FIXARRAY[4]  # an answer record: [name, rtype, ttl, rdata]
_ONE_RECORD = FIXARRAY[1] + _RECORD  # an answer section of that one record
_NO_ANSWER = EMPTY_SECTION + FIXARRAY[1]  # an empty answer, one authority record (the SOA)
_TWO_RECORDS = FIXARRAY[2]

#: Responses a `Responder` caches. One costs ~300 bytes (query key,
#: response, table slots): 65,536 take ~20 MB, which keeps a server answering
#: from a 1,000,000-key zone within its 150 MB RSS goal.
MAX_CACHED_RESPONSES = 65536
#: Seconds a `Responder` is kept before its owner starts over.
MAX_RESPONSE_AGE = 300.0



class Negative(bytes):
    """What a lookup returns for a mailbox that owns nothing (NXDOMAIN: a
    mailbox is a leaf): the packed record the authority section carries,
    the zone's SOA with the negative-caching TTL. Made by `negative`."""

    __slots__ = ()


def negative(zone: ZoneView) -> Negative:
    """The `Negative` of `zone`: what the full path puts in authority
    (`authority.negative_soa`), packed as `Message.to_wire` packs it."""
    return Negative(msgpack.packb(negative_soa(zone).to_wire()))


#: Where the mailboxes of a domain D are found: (the node key prefix to
#: which a local part's bytes are appended, the `Negative` of D's zone, or
#: None to leave NXDOMAIN to the full path).
Route = tuple[bytes, Negative | None]
#: find_route(domain_key) -> the `Route` of D (`domain_key` = D.store_key() of a
#: valid domain), or None to leave every name of D to the full path: D not
#: served, or not this way (a zone cut, a policy). None is not remembered.
FindRoute = Callable[[bytes], Route | None]


class Responder:
    """Answers the common query from stored node bytes, for one data version
    and policy: its owner makes a new one when either changes (and, so that
    the cache follows a drifting set of popular names, every
    `MAX_RESPONSE_AGE` seconds), and sets `read` to each batch's node reader
    (`store.Snapshot.node_reader`).

    Answers are cached without their id (bytes 2 onwards), by the query's
    bytes after its id: a hit is the query's id followed by the cached
    bytes. Only NOERROR answers are kept (names asked for at random cannot
    crowd them out), and once `limit` are held new ones are not added: under
    a scan of more names than that, an LRU or FIFO cache would hit nothing,
    while this one keeps hitting for the share it holds (and popular names
    are among the first seen).
    """

    __slots__ = ("read", "responses", "limit", "_find_route", "_routes")

    def __init__(self, find_route: FindRoute, limit: int = MAX_CACHED_RESPONSES) -> None:
        #: node key -> raw node bytes, or None if absent.
        self.read: Callable[[bytes], bytes | None] | None = None
        self.responses: dict[bytes, bytes] = {}
        self.limit = limit
        self._find_route = find_route
        self._routes: dict[bytes, Route] = {}  # by the domain's text

    def answer(self, data: bytes) -> bytes | None:
        """The response bytes for `data`, or None to use the full path."""
        question = data[2:]
        cached = self.responses.get(question)
        if cached is not None:
            return data[:2] + cached
        match = _QUERY(data)
        if match is None:
            return None
        head, local, domain = match.group(1, 2, 3)
        # The name's length as its header states it must be what was matched.
        if ((head[-1] - 0xA0 if len(head) == 1 else head[-1]) != len(local) + len(domain) + 1
                or len(local) > MAX_LOCAL):
            return None
        route = self._routes.get(domain)
        if route is None:
            route = self._route(domain)
            if route is None:
                return None
        # `read` is set for every batch that answers (see the class docstring).
        node = self.read(route[0] + local)  # type: ignore[misc]
        end = match.end(3)  # the name's end: the type follows
        if node is None:  # NXDOMAIN: a mailbox is a leaf
            if route[1] is None:
                return None
            out = b"".join((data[:2], _NXDOMAIN_HEAD[data[2]], data[7:end + 1], _NO_ANSWER,
                            route[1], _NEGATIVE_TAIL))
            return None if len(out) > MIN_UDP_SIZE and not _fits(out, match) else out
        if (node[0] == _ONE_ENTRY and node[1] == _ENTRY and node[2] == data[end]
                and node[rdatas := _RDATAS_AT.get(node[3], 0)] == _ONE_RDATA
                and node[rdatas + 1] == _KEY_RDATA and node[rdatas + 5] == _BIN8
                and rdatas + 7 + node[rdatas + 6] == len(node)):
            # The most common node, spliced in one join: one entry, of the
            # type asked, whose one KEY rdata ([fixint x 3, bin8]) ends the
            # node; its record [owner, type, TTL, rdata] is the node without
            # its headers. (A TTL of no known encoding gives rdatas 0:
            # node[1] is no _KEY_RDATA.)
            out = b"".join((data[:2], _RESPONSE_HEAD[data[2]], data[7:end + 1], _ONE_RECORD,
                            data[8:end], node[2:rdatas], node[rdatas + 1:], _TAIL))
        else:
            records = _answer_records(node, data[end], data[8:end])
            if records is None:
                return None
            out = b"".join((data[:2], _RESPONSE_HEAD[data[2]], data[7:end + 1], records, _TAIL))
        if len(out) > MIN_UDP_SIZE and not _fits(out, match):
            return None
        if len(self.responses) < self.limit:
            self.responses[question] = out[2:]
        return out

    def _route(self, domain: bytes) -> Route | None:
        """The route of `domain` (canonical text, absolute) from `find_route`,
        remembered; None for an invalid domain or where find_route says so."""
        if not _DOMAIN.match(domain) or len(domain) + 1 > MAX_NAME:
            return None
        try:  # once per domain: the store key as names.py defines it
            domain_key = Name.from_text(domain.decode("ascii")).store_key()
        except InvalidName:
            return None
        route = self._find_route(domain_key)
        if route is not None:
            if len(self._routes) >= MAX_CACHED_DOMAINS:
                self._routes.clear()
            self._routes[domain] = route
        return route


def _fits(out: bytes, match: re.Match[bytes]) -> bool:
    """Whether the response fits UDP as message.max_response_size has it:
    min(advertised, 1232), at least 512. A longer answer is a TC response:
    the full path makes it."""
    udp: bytes = match.group(5)
    udp_size = udp[1] << 8 | udp[2] if len(udp) == 3 else udp[-1]
    return len(out) <= max(min(udp_size, DEFAULT_UDP_SIZE), MIN_UDP_SIZE)


def _answer_records(node: bytes, rtype: int, owner: bytes) -> bytes | None:
    """The answer section (msgpack) for `rtype` from stored node bytes; None
    for NODATA, or an ALIAS before the type (chains are the full path's).
    `owner` is the packed owner name. Each record is spliced from the stored
    bytes: ``[owner, rtype, ttl, rdata]``."""
    try:
        if node[0] == _ONE_ENTRY and node[1] == _ENTRY and node[2] == rtype:
            # One entry, of the type asked, whose rdatas end the node (the
            # one-KEY node never gets here: `Responder.answer` splices it).
            # KEY rdatas ([algorithm, usage, flags, bin8 key], each int a
            # fixint) are measured from their header, others walked.
            rdatas = _RDATAS_AT[node[3]]
            count = node[rdatas] - _ARRAY_BASE
            start = rdatas + 1
            if count == 2 and node[start] == _KEY_RDATA and node[start + 4] == _BIN8:
                # The next most common node: two KEY rdatas (a key to encrypt,
                # one to sign), measured without the loop below.
                second = start + 6 + node[start + 5]
                if (node[start + 1] < 0x80 and node[start + 2] < 0x80 and node[start + 3] < 0x80
                        and node[second] == _KEY_RDATA and node[second + 1] < 0x80
                        and node[second + 2] < 0x80 and node[second + 3] < 0x80
                        and node[second + 4] == _BIN8
                        and second + 6 + node[second + 5] == len(node)):
                    head = b"".join((_RECORD, owner, node[2:rdatas]))  # + type and TTL
                    return b"".join((_TWO_RECORDS, head, node[start:second], head,
                                     node[second:]))
            if 0 < count < 16:
                head = b"".join((_RECORD, owner, node[2:rdatas]))  # + type and TTL
                parts = [_ARRAYS[count]]
                for _ in range(count):
                    if (node[start] == _KEY_RDATA and node[start + 1] < 0x80
                            and node[start + 2] < 0x80 and node[start + 3] < 0x80
                            and node[start + 4] == _BIN8):
                        end = start + 6 + node[start + 5]
                    else:
                        end = _skip(node, start, 1)
                    parts += (head, node[start:end])
                    start = end
                if start == len(node):
                    return b"".join(parts)
        return _walk(node, rtype, owner)
    except (IndexError, KeyError):
        return _answer_records_slow(node, rtype, owner)


def _walk(node: bytes, rtype: int, owner: bytes) -> bytes | None:
    """`_answer_records` for any node of the encodings `nodes.skip` knows."""
    entries = node[0] - _ARRAY_BASE  # the node is a fixarray of [rtype, ttl, rdatas]
    if not 0 <= entries < 16:
        raise KeyError(entries)
    pos = 1
    for _ in range(entries):
        stored_type = node[pos + 1]
        if node[pos] != _ENTRY or stored_type > 0x7F:
            raise KeyError(stored_type)  # not [fixint, ...]: the slow path decides
        if stored_type == _ALIAS:
            return None
        rdatas = _skip(node, pos + 2, 1)  # past the TTL
        count = node[rdatas] - _ARRAY_BASE
        if not 0 <= count < 16:
            raise KeyError(count)
        if stored_type != rtype:
            pos = _skip(node, rdatas + 1, count)
            continue
        head = b"".join((_RECORD, owner, node[pos + 1:rdatas]))  # + type and TTL
        parts = [_ARRAYS[count]]
        start = rdatas + 1
        for _ in range(count):
            end = _skip(node, start, 1)
            parts += (head, node[start:end])
            start = end
        if start > len(node):
            raise IndexError(start)  # cut short: slicing did not notice
        return b"".join(parts)
    return None  # NODATA


def _answer_records_slow(node: bytes, rtype: int, owner: bytes) -> bytes | None:
    """`_answer_records` for any stored encoding: decode, then re-encode."""
    found = None
    for entry in msgpack.unpackb(node, use_list=False, raw=False):
        if entry[0] == _ALIAS:
            return None
        if entry[0] == rtype:
            found = entry
    if found is None:
        return None  # NODATA
    _, ttl, rdatas = found
    head = b"".join((_RECORD, owner, bytes((rtype,)), msgpack.packb(ttl)))
    return array_header(len(rdatas)) + b"".join(head + msgpack.packb(rd) for rd in rdatas)
