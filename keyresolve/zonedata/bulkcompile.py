"""The bulk compile: a zone file whose bulk is mailbox KEY lines, compiled
about 2.5 times faster than line by line, for the same result.

`compile_bulk` reads the file in chunks and matches every line of a chunk
with one regular expression (`_LINE`): the common line, a mailbox's KEY
record (``alice@[domain] [ttl] [IN] KEY x25519 encrypt <base64>``, or a
continuation line of it), yields its fields straight from the match, and
its node is built as bytes, after its key with the caller's prefix (the
store's key, so that the writer only splits them), and kept in a list
sorted once at the end. Any
other line goes, as tokens, through the `zonefile.CompileReader` that
`zonefile.compile_nodes` uses, into a `zonefile.ZoneBuilder`; the zone
checks run there over both, as in a streaming compile.

It is optimistic: it gives up, returning None or raising `Repeated` from
`BulkZone.batches`, on whatever it does not handle itself, and the caller
then compiles the file with `zonefile.compile_nodes`, which reports every
error with its file:line. It gives up on: any error, ``$INCLUDE``,
parentheses, a line it cannot decode, a text zone, a file bigger than
`MAX_BULK_FILE` (it holds the zone's nodes in memory), a mailbox with more
than `MAX_BULK_KEYS` keys, and an owner whose
lines are not all adjacent (`Repeated`, found when the sorted nodes are
read). Sans-IO, as `zonefile`: the file is read through the caller's
`zonefile.Files`, and the caller pauses the garbage collector around it
(`keyresolve.files.local.gc_paused`: the nodes are many objects, no cycles).
"""

from __future__ import annotations

import binascii
import bisect
import hashlib
import operator
import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Literal

from ..protocol.codes import RType
from ..protocol.errors import InvalidRecord
from ..protocol.grammar import (ATOM_CHAR, BASE64_CHAR, BASE64_PAD, BLANK, CLASS_IN, DOMAIN_CHAR, TTL_CHAR,
                      TTL_START, TYPE_KEY)
from ..protocol.names import MAX_LOCAL, Name
from .nodes import ONE_RDATA, node_head
from ..protocol.message import array_header
from .zonefile import (KEY_HEADS_BY_TEXT, MAX_LINE, CompiledZone, CompileReader, Include,
                       Files, MemoryNodes, StopReading, ZoneBuilder, compile_nodes,
                       is_directive, parse_ttl)

#: Largest zone file the bulk compile takes. It holds every mailbox node in
#: memory with the store's key prefix, about 1.7 bytes per byte of file: a
#: 1,000,000-key zone (73 MiB) peaks near 155 MB. Bigger files are compiled
#: by `zonefile.compile_nodes`, whose memory does not grow with the zone.
MAX_BULK_FILE = 96 << 20
#: Most KEY records of one mailbox the bulk compile takes: 64 keys of any
#: algorithm always fit in one message, and `zonefile.compile_nodes` measures
#: the answer of a mailbox with more (docs/zone-format.md, Limits).
MAX_BULK_KEYS = 64
#: Bytes read at a time: large enough that per-chunk costs vanish, small
#: next to the nodes held.
CHUNK = 4 << 20

_ATOM = ATOM_CHAR.encode("ascii")
_BLANKS = BLANK.encode("ascii") + rb"{1,1024}+"  # a run of blanks, bounded
_KEY = int(RType.KEY)
_ONE_RDATA = bytes((ONE_RDATA,))  # the rdatas array of a one-KEY node
_KINDS = b"|".join(sorted({alg.encode() for alg, _ in KEY_HEADS_BY_TEXT}))
_USAGES = b"|".join(sorted({usage.encode() for _, usage in KEY_HEADS_BY_TEXT}))
#: One line: either a mailbox KEY line (groups: local part, domain, TTL,
#: "algorithm usage", base64; no owner on a continuation line), or any
#: other line (group 6). Each match is exactly one line, so a chunk's
#: matches count its lines. The KEY branch takes a subset of the lines that
#: `zonefile.CompileReader._entry` takes its fast path for: lower-case
#: local parts, blank runs and comments bounded so that a line it takes is
#: never longer than `MAX_LINE`. What it does not check (domain labels, the
#: TTL's value, the key's length) is checked per line; a failed check is an
#: error of the file. A KEY line with flags (``flags=...`` after the usage,
#: `records.FLAGS_PREFIX`) is never a KEY match: the base64 group stops at
#: its "=" and nothing but a comment may follow, so the line goes to the
#: general parser. Possessive quantifiers: no backtracking.
_LINE = re.compile(
    rb"(?:(" + _ATOM + rb"++(?:\." + _ATOM + rb"++)*+)@(" + DOMAIN_CHAR.encode() + rb"*+))?"
    + _BLANKS
    + rb"(?:(" + TTL_START.encode() + TTL_CHAR.encode() + rb"{0,1023}+)" + _BLANKS + rb")?"
    + rb"(?:" + CLASS_IN.encode() + _BLANKS + rb")?" + TYPE_KEY.encode() + _BLANKS
    + rb"((?:" + _KINDS + rb")" + _BLANKS + rb"(?:" + _USAGES + rb"))" + _BLANKS
    + rb"(" + BASE64_CHAR.encode() + rb"{1,4096}+" + BASE64_PAD.encode() + rb")"
    + rb"[ \t\r]{0,1024}+(?:;[^\n]{0,1024}+)?\n|([^\n]*)\n")
#: Packed KEY rdata up to the key bytes, and the key length, by the
#: "algorithm usage" of a match with its blanks as one space.
_HEADS = {b"%s %s" % (alg.encode(), usage.encode()): head
          for (alg, usage), head in KEY_HEADS_BY_TEXT.items()}
#: Separates an owner key from its node in `BulkZone` entries: sorts below
#: every byte that can follow a mailbox key's prefix (local parts are
#: printable ASCII), and no key holds it (keys are ASCII).
_SEP = b"\0\xff"
#: (key, node) of a partitioned entry.
_KEY_NODE = operator.itemgetter(0, 2)


class GiveUp(Exception):
    """The bulk compile does not handle this file (internal)."""


class Repeated(Exception):
    """An owner's lines are not all adjacent: compile with `zonefile.compile_nodes`."""


class _Sink:
    """The `zonefile.NodeSink` of the builder: nodes of the general lines in a
    dict, and the mailbox nodes of the bulk lines (sorted before the checks
    that `scan`)."""

    def __init__(self, prefix: bytes) -> None:
        self.nodes: dict[bytes, bytes] = {}
        self.prefix = prefix
        self.entries: list[bytes] = []  # prefix + owner key + _SEP + node

    def get(self, key: bytes) -> bytes | None:
        return self.nodes.get(key)  # mailbox nodes also in `entries`: `Repeated` later

    def put(self, key: bytes, value: bytes) -> None:
        self.nodes[key] = value

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        found = [item for item in self.nodes.items() if item[0].startswith(prefix)]
        entries, strip = self.entries, len(self.prefix)
        wanted = self.prefix + prefix
        for i in range(bisect.bisect_left(entries, wanted), len(entries)):
            entry = entries[i]
            if not entry.startswith(wanted):
                break
            key, _, node = entry.partition(_SEP)
            found.append((key[strip:], node))
        yield from sorted(found)


class BulkZone:
    """What `compile_bulk` read: `compiled`, and the nodes to write (`batches`)."""

    def __init__(self, compiled: CompiledZone, sink: _Sink) -> None:
        self.compiled = compiled
        self._sink = sink

    def batches(self, size: int = 20_000) -> Iterator[list[tuple[bytes, bytes]]]:
        """Every node as (prefix + owner key, stored node), keys ascending,
        in lists of about `size` (the prefix given to `compile_bulk`); raises
        `Repeated` (before yielding the list that has it) where an owner came
        back after other owners: the bulk compile does not merge those."""
        prefix = self._sink.prefix
        general = sorted((prefix + key, value) for key, value in self._sink.nodes.items())
        entries = self._sink.entries
        split = operator.methodcaller("partition", _SEP)
        last = None
        for start in range(0, len(entries), size):
            part = entries[start:start + size]
            batch = list(map(_KEY_NODE, map(split, part)))
            if start + size >= len(entries):
                upto = len(general)  # the last batch takes the rest
            else:
                upto = bisect.bisect_right(general, (batch[-1][0],))
            if upto:
                batch += general[:upto]
                del general[:upto]
                batch.sort()
            yield _unique(batch, last)
            last = batch[-1][0]
        if general:
            yield _unique(general, last)


def _unique(batch: list[tuple[bytes, bytes]], last: bytes | None) -> list[tuple[bytes, bytes]]:
    """`batch` (sorted, after a batch ending with key `last`) if its keys are
    all different and after `last`; else raises `Repeated`."""
    keys = {key for key, _ in batch}
    if len(keys) != len(batch) or last in keys:
        raise Repeated(batch[0][0])
    return batch


class _Reader(CompileReader):
    """The general parser of the lines `_LINE` does not take as KEY lines."""

    def line(self, raw: bytes, lineno: int, bulk_owner: bool) -> bool:
        """Parse one line (without its newline) as `ZoneReader` does; returns
        whether it was a record with an owner of its own (which ends the node
        of the bulk owner; a directive does not). With `bulk_owner`, a
        continuation line gives up: its owner is one this reader did not see."""
        if len(raw) > MAX_LINE:
            raise GiveUp
        try:
            line = raw.decode()
        except UnicodeDecodeError:
            raise GiveUp from None
        if lineno == 1 and line[:1] == "\ufeff":
            line = line[1:]
        cut = line.find(";")
        if cut >= 0:
            line = line[:cut]
        if "(" in line or ")" in line:
            raise GiveUp
        tokens = line.split()
        if not tokens:
            return False
        cont = line[0] in " \t"
        if cont and bulk_owner:
            raise GiveUp
        try:
            result = self._entry(tokens, cont, self.filename, lineno)
        except StopReading:
            raise GiveUp from None
        if type(result) is Include or self._errors.items:
            raise GiveUp
        return not cont and not is_directive(tokens[0])


def compile_bulk(path: str, origin: Name | None = None, prefix: bytes = b"", *,
                 files: Files) -> BulkZone | None:
    """Compile the zone file at `path` (no includes), read through `files`,
    into memory, its nodes keyed by `prefix` + owner key; None where the
    bulk compile gives up (see the module docstring): then compile it with
    `zonefile.compile_nodes`, which reports the errors."""
    sink = _Sink(prefix)
    # Made by CompileReader._new_builder, which asserts the origin is known.
    reader = _Reader(path, origin, lambda r: ZoneBuilder(r.origin,  # type: ignore[arg-type]
                                                         r._errors, r.filename, sink),
                     files=files)
    stream = reader._open(path, path, 0, "cannot read zone file")  # regular files only
    if stream is None:
        return None
    try:
        with stream:
            if files.size(stream) > MAX_BULK_FILE:
                return None
            return _compile(stream, reader, sink)
    except (OSError, GiveUp):
        return None


def _compile(stream: BinaryIO, reader: _Reader, sink: _Sink) -> BulkZone:
    entries = sink.entries
    prefix = sink.prefix
    general = reader.line
    a2b = binascii.a2b_base64
    add_entry = entries.append
    tables: dict[int, dict[bytes, tuple[bytes, bytes, int]]] = {}  # by TTL: see _kinds
    node_heads: dict[int, bytes] = {}  # by TTL: _SEP and a KEY node up to its rdatas' array
    table: dict[bytes, tuple[bytes, bytes, int]] = {}  # tables[table_ttl]
    table_ttl = None
    ttls: dict[bytes, int] = {}
    # domain text -> prefix + zone-relative key + b"@", or False
    domains: dict[bytes, bytes | Literal[False]] = {}
    cur = reader._cur  # the reader's $ORIGIN and $TTL, read again after each general line
    default_ttl = reader._ttl
    hasher = hashlib.sha256()
    key: bytes | None = None  # owner key of the node being built from bulk lines
    node_ttl = 0
    first = b""  # the node's entry after its key, while it has one record
    more: list[bytes] | None = None  # its rdatas once it has a second
    records = 0  # records of bulk lines
    lineno = 0
    rest = b""
    while True:
        chunk = stream.read(CHUNK)
        hasher.update(chunk)
        if chunk:
            chunk = rest + chunk
            end = chunk.rfind(b"\n") + 1
            rest = chunk[end:]
            if len(rest) > MAX_LINE:
                raise GiveUp
        elif rest:
            chunk = rest + b"\n"  # the last line has no newline
            end = len(chunk)
            rest = b""
        else:
            break
        for lineno, (local, domain, ttl_text, kind, text, other) in enumerate(
                _LINE.findall(chunk, 0, end), lineno + 1):
            if kind:
                if not local and key is None:  # continues a general line's owner
                    other = _continuation(ttl_text, kind, text)
                else:
                    if ttl_text:
                        ttl = ttls.get(ttl_text)
                        if ttl is None:
                            try:
                                ttl = ttls[ttl_text] = parse_ttl(ttl_text.decode())
                            except InvalidRecord:
                                raise GiveUp from None
                    else:
                        ttl = default_ttl
                    if ttl != table_ttl:
                        if ttl is None:
                            raise GiveUp  # no TTL: an error
                        table = tables.get(ttl) or _kinds(ttl, tables, node_heads)
                        table_ttl = ttl
                    found = table.get(kind) or table.get(b" ".join(kind.split()))
                    if found is None:
                        raise GiveUp  # e.g. "x25519 sign": an error
                    try:
                        raw = a2b(text)
                    except binascii.Error:
                        raise GiveUp from None
                    if len(raw) != found[2]:
                        raise GiveUp  # an error: compile_nodes reports it
                    if local:
                        at = domains.get(domain)
                        if at is None:
                            if cur is None:
                                raise GiveUp  # no origin yet
                            at = reader._domain_key(domain.decode(), cur)
                            at = domains[domain] = False if at is False else prefix + at + b"@"
                        if at is False or len(local) > MAX_LOCAL:
                            raise GiveUp
                        owner = at + local
                        if owner != key:
                            if key is not None:
                                add_entry(key + (first if more is None
                                                 else _node(node_heads[node_ttl], more)))
                            key = owner
                            # An int: a None TTL raised GiveUp above (the first table is empty).
                            node_ttl = ttl  # type: ignore[assignment]
                            first = found[0] + raw
                            more = None
                            records += 1
                            continue
                    # the bulk owner again
                    if ttl != node_ttl:
                        raise GiveUp  # one TTL per RRset: an error
                    rdata = found[1] + raw
                    if more is None:
                        more = [first[len(node_heads[node_ttl]) + 1:]]  # after a 1-item array
                    if rdata not in more:  # identical duplicates are dropped
                        if len(more) == MAX_BULK_KEYS:
                            raise GiveUp  # its answer's size is checked there
                        more.append(rdata)
                        records += 1
                    continue
            # any other line: the general parser
            if general(other, lineno, key is not None):
                if key is not None:
                    add_entry(key + (first if more is None else _node(node_heads[node_ttl], more)))
                    key = None
            if reader._cur is not cur:
                cur = reader._cur
                domains = {}
            default_ttl = reader._ttl
    if key is not None:
        add_entry(key + (first if more is None else _node(node_heads[node_ttl], more)))
    return _finish(reader, sink, records, hasher.digest())


def _finish(reader: _Reader, sink: _Sink, records: int, digest: bytes) -> BulkZone:
    """Sort the bulk nodes, run the zone checks over all of them; the result
    with `records` records of bulk lines."""
    sink.entries.sort()
    builder = reader.builder
    if reader.origin is None:
        raise GiveUp
    if builder is None:
        builder = reader._new_builder()

    def locate(wanted: set[tuple[bytes, int]]) -> dict[tuple[bytes, int], tuple[str, int]]:
        raise GiveUp  # only errors need locations

    try:
        builder.finish(locate)
    except StopReading:
        raise GiveUp from None
    if reader._errors.items:
        raise GiveUp
    types = dict(builder.types)
    if records:
        types[_KEY] = types.get(_KEY, 0) + records
    compiled = CompiledZone(builder.origin, builder.serial(), builder.records + records,
                            [(reader.filename, digest)], types)
    return BulkZone(compiled, sink)


def _continuation(ttl_text: bytes, kind: bytes, text: bytes) -> bytes:
    """A KEY continuation line rebuilt for the general parser (an ``IN`` it
    had changes nothing)."""
    return b"\t" + b" ".join((ttl_text, b"KEY", kind, text) if ttl_text else (b"KEY", kind, text))


def _kinds(ttl: int, tables: dict[int, dict[bytes, tuple[bytes, bytes, int]]],
           node_heads: dict[int, bytes]) -> dict[bytes, tuple[bytes, bytes, int]]:
    """By "algorithm usage" of a KEY line of `ttl`: (`_SEP` and the one-record
    node up to the key bytes, the rdata up to them, the key length), as
    `zonefile.ZoneBuilder` encodes them; cached in `tables`, and the node
    head (`_SEP` and the node up to its rdatas' array) in `node_heads`."""
    head = node_heads[ttl] = _SEP + node_head(_KEY, ttl)
    table = tables[ttl] = {kind: (head + _ONE_RDATA + rhead, rhead, length)
                           for kind, (rhead, length) in _HEADS.items()}
    return table


def _node(head: bytes, rdatas: list[bytes]) -> bytes:
    """An entry after its key: `head` (from `node_heads`), then `rdatas`."""
    return head + array_header(len(rdatas)) + b"".join(rdatas)


def check_zone(path: str, origin: Name | None = None, *, files: Files,
               include_dirs: Iterable[str] = ()) -> CompiledZone:
    """Parse and check a zone file (with its includes, which may lie in its
    directory or in `include_dirs`), read through `files`, without keeping
    it: what `keyresolve zone check` runs. The bulk compile where it can,
    else the streaming compile with the nodes as bytes in memory (no objects
    per record); raises `ZoneErrors` listing every error, as
    `zonefile.load_zone`. The caller pauses the garbage collector."""
    zone = compile_bulk(path, origin, files=files)
    if zone is not None:
        try:
            for _ in zone.batches():
                pass  # an owner that comes back raises Repeated
            return zone.compiled
        except Repeated:
            pass
    return compile_nodes(MemoryNodes(), path, origin, files=files, include_dirs=include_dirs)
