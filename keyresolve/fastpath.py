"""The authoritative hot path (sans-IO): answer the common query in bytes.

A plain KEY (or other type) query for a mailbox whose domain is a zone apex
is answered straight from the stored node bytes, without building Message,
Name or Record objects. Anything else -- signed, truncated, ALIAS, missing
names, other opcodes, non-canonical spelling, a too-small UDP size -- returns
None and goes through the full path (`keyresolve.authority`), which stays the
reference: tests check both give byte-identical answers.

The fast path accepts a strict subset of what the full decoder accepts, so it
never answers a message the full path would reject.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

import msgpack

from .codes import RType
from .message import DEFAULT_UDP_SIZE, FLAG_AA, FLAG_QR, FLAG_RD, MIN_UDP_SIZE, VERSION
from .names import MAX_LOCAL, MAX_NAME

_HEADER = struct.Struct(">HHBB")
#: Query flags the fast path takes: QR, opcode (QUERY = 0), AA, TC, RA, Z and
#: SG clear, rcode 0; only RD may vary.
_FLAGS_MASK = 0xFFFF & ~FLAG_RD
#: The canonical absolute mailbox, lower case (names.py's grammar, restricted to
#: what is already canonical; anything else takes the full path).
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_MAILBOX = re.compile(rf"({_ATOM}(?:\.{_ATOM})*)@((?:{_LABEL}\.)+)\Z")
#: Types a node may be asked for here; ANY and transfers need the full path.
_FAST_TYPES = frozenset({RType.KEY, RType.ADDR, RType.NS, RType.SOA})
_PACK_UDP_SIZE = msgpack.packb(DEFAULT_UDP_SIZE)
_EMPTY_SECTIONS = b"\x90\x90"
_BODY_ARRAY = b"\x95"

#: lookup(zone_key, local) -> the stored node bytes of local@zone, or None when
#: there is no such zone (or it may not be answered here) or no such node.
Lookup = Callable[[bytes, str], bytes | None]


def answer(data: bytes, lookup: Lookup) -> bytes | None:
    """The response bytes for `data`, or None to use the full path."""
    if len(data) < 8 or data[4] != VERSION or data[5]:
        return None
    msg_id, flags, _, _ = _HEADER.unpack_from(data)
    if flags & _FLAGS_MASK:
        return None
    try:
        body = msgpack.unpackb(data[6:], use_list=False, raw=False, max_map_len=0,
                               max_ext_len=0, max_array_len=8, max_bin_len=0)
    except Exception:
        return None
    if (type(body) is not tuple or len(body) != 5 or body[1] or body[2] or body[3]
            or type(body[0]) is not tuple or len(body[0]) != 2):
        return None
    (name, rtype), udp_size = body[0], body[4]
    if type(name) is not str or type(rtype) is not int or rtype not in _FAST_TYPES:
        return None
    if type(udp_size) is not int or not 0 <= udp_size <= 0xFFFF:
        return None
    match = _MAILBOX.match(name)
    if match is None:
        return None
    local, domain = match.groups()
    if len(local) > MAX_LOCAL or len(domain) + 1 > MAX_NAME:
        return None
    zone_key = "".join(label + "\0" for label in reversed(domain[:-1].split("."))).encode()
    node = lookup(zone_key, local)
    if node is None:
        return None
    records = None
    for entry in msgpack.unpackb(node, use_list=False, raw=False):
        if entry[0] == RType.ALIAS:
            return None  # chains are the full path's
        if entry[0] == rtype:
            ttl = entry[1]
            records = [[name, rtype, ttl, rdata] for rdata in entry[2]]
    if records is None:
        return None  # NODATA
    header = _HEADER.pack(msg_id, FLAG_QR | FLAG_AA | (flags & FLAG_RD), VERSION, 0)
    out = b"".join((header, _BODY_ARRAY, msgpack.packb((name, rtype)), msgpack.packb(records),
                    _EMPTY_SECTIONS, _PACK_UDP_SIZE))
    limit = max(MIN_UDP_SIZE, min(udp_size or MIN_UDP_SIZE, DEFAULT_UDP_SIZE))
    return out if len(out) <= limit else None
