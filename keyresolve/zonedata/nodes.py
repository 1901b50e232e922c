"""The stored-node format (sans-IO): the one owner of its bytes.

A node (every record of one owner) is stored as the msgpack of

    [[rtype, ttl, [rdata wire, ...]], ...]     entries sorted by rtype

written with msgpack's shortest encodings (`msgpack.packb` of canonical
values), so that encoding is canonical: ``encode_node(decode_node(b)) == b``
for every stored `b`. The compilers (`zonefile`, `bulkcompile`, the store's
transfer writer) build these bytes without objects, and the fast path
(`fastpath`) splices answers out of them; they take the pieces they build or
read from here (`node_head`, `KEY_RDATA_HEADS`, `RDATAS_AT`,
`skip`), and tests/test_nodes.py checks that each gives `encode_node`'s bytes.
The store key of an owner is `Name.store_key()` (`keyresolve.protocol.names`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from ..protocol.codes import RType
from ..protocol.errors import KeyresolveError, StoreError
from ..protocol.records import KEY_ALGORITHMS, rdata_from_wire
from ..protocol.message import FIXARRAY, array_header
from .model import Node, RRset

#: The msgpack header of a node entry ``[rtype, ttl, rdatas]`` (a fixarray of 3).
ENTRY = 0x93


def node_head(rtype: int, ttl: int) -> bytes:
    """A node of one entry, up to the header of its rdatas' array: what
    `encode_node` writes first for a node holding only `rtype` records."""
    return b"\x91\x93" + msgpack.packb(rtype) + msgpack.packb(ttl)


#: A node holding only KEY records, up to their TTL.
KEY_NODE_HEAD = b"\x91\x93" + msgpack.packb(int(RType.KEY))


def key_node_head(ttl: int) -> bytes:
    """A node holding only KEY records of `ttl`, up to their rdatas' array
    (`key_node` completes it)."""
    return KEY_NODE_HEAD + msgpack.packb(ttl)


def key_node(head: bytes, packed_rdatas: list[bytes]) -> bytes:
    """The stored node of KEY records (as `encode_node`) from `key_node_head`
    and their rdatas, each already packed (as msgpack packs `KEY.to_wire()`)."""
    if len(packed_rdatas) == 1:
        return head + FIXARRAY[1] + packed_rdatas[0]
    return b"".join((head, array_header(len(packed_rdatas)), *packed_rdatas))


#: Packed KEY rdata (flags 0) up to the key bytes, and the key length, by
#: (algorithm, usage) numbers: what msgpack packs `KEY.to_wire()` to.
KEY_RDATA_HEADS = {(int(alg), int(usage)): (msgpack.packb([int(alg), int(usage), 0, bytes(n)])[:-n],
                                           n)
                   for alg, (n, usage) in KEY_ALGORITHMS.items()}
#: Where an entry's rdatas begin in a node of one entry, by its TTL's first
#: byte (a fixint, uint8/16/32 TTL takes 1, 2, 3 or 5 bytes after the node
#: and entry headers and the type, a fixint).
RDATAS_AT = {**{byte: 4 for byte in range(0x80)}, 0xCC: 5, 0xCD: 6, 0xCE: 8}
#: Bytes of the msgpack scalars `skip` passes over, by first byte (nil,
#: booleans, unsigned and signed ints).
_SCALAR_SIZE = {0xC0: 1, 0xC2: 1, 0xC3: 1, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9,
                0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9}


def skip(buf: bytes, pos: int, count: int) -> int:
    """The offset after `count` msgpack objects at `pos`. Knows the encodings
    stored rdata uses (ints, fixstr, str8, bin8, bin16, fixarray); raises KeyError
    on others, IndexError past the end."""
    while count:
        count -= 1
        byte = buf[pos]
        if byte < 0x80 or byte >= 0xE0:  # fixint
            pos += 1
        elif byte >= 0xA0:
            if byte < 0xC0:  # fixstr
                pos += byte - 0x9F
            elif byte == 0xC4 or byte == 0xD9:  # bin8, str8
                pos += 2 + buf[pos + 1]
            elif byte == 0xC5:  # bin16: an mlkem768x25519 key
                pos += 3 + (buf[pos + 1] << 8 | buf[pos + 2])
            else:
                pos += _SCALAR_SIZE[byte]
        elif byte >= 0x90:  # fixarray: its items follow
            pos += 1
            count += byte - 0x90
        else:
            raise KeyError(byte)  # fixmap: never stored
    return pos


def encode_node(node: Node, pack: Callable[[Any], bytes] = msgpack.packb) -> bytes:
    """The stored form of a node: ``[[rtype, ttl, [rdata wire, ...]], ...]``.

    `pack` may be a bulk loader's own ``msgpack.Packer().pack`` (a Packer is
    faster but not thread-safe, so none is shared at module level).
    """
    return pack([[int(rtype), node[rtype].ttl, [rd.to_wire() for rd in node[rtype].rdatas]]
                 for rtype in sorted(node)])


def node_tuples(value: bytes) -> tuple[tuple[int, int, tuple], ...]:
    """A stored node's entries, ``(rtype, ttl, (rdata fields, ...))`` each,
    their shape checked but the rdatas not decoded (for a reader that
    passes them on packed, or decodes them: `decode_node`); StoreError on
    anything malformed."""
    try:
        items = msgpack.unpackb(value, raw=False, use_list=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StoreError(f"corrupt node in store: {exc}") from exc
    if type(items) is not tuple or not items:
        raise StoreError("node is not a non-empty array")
    for item in items:
        if type(item) is not tuple or len(item) != 3:
            raise StoreError("node entry is not [rtype, ttl, rdatas]")
        rtype, ttl, rdatas = item
        if type(rtype) is not int or type(ttl) is not int or type(rdatas) is not tuple:
            raise StoreError("node entry has wrong field types")
    return items


def decode_node(value: bytes) -> Node:
    """Inverse of `encode_node`; raises StoreError on anything malformed."""
    items = node_tuples(value)
    try:
        return {rtype: RRset(ttl, tuple(rdata_from_wire(rtype, fields) for fields in rdatas))
                for rtype, ttl, rdatas in items}
    except (KeyresolveError, ValueError, TypeError) as exc:
        raise StoreError(f"corrupt node in store: {exc}") from exc


def node_entries(value: bytes) -> list[list]:
    """A stored node's entries as msgpack decodes them, ``[rtype, ttl,
    [rdata fields, ...]]`` each, no objects made: for a compiler that packs
    them again. Unchecked: `decode_node` checks."""
    return msgpack.unpackb(value)


def node_types(value: bytes | None) -> list[int]:
    """The record types of a stored node (none for None)."""
    return [] if value is None else [entry[0] for entry in node_entries(value)]


__all__ = ["ENTRY", "KEY_NODE_HEAD", "KEY_RDATA_HEADS", "RDATAS_AT", "decode_node",
           "encode_node", "key_node", "key_node_head", "node_entries", "node_head", "node_tuples",
           "node_types", "skip"]
