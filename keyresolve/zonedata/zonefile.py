"""Zone files: the master-file format of docs/zone-format.md.

In the spirit of RFC 1035 section 5: ``$ORIGIN``, ``$TTL``, ``$INCLUDE``,
``;`` comments, ``@``, relative and absolute names, parentheses, per-record
TTLs with BIND units, and owner continuation (a line that starts with a blank
reuses the previous owner).

- `iter_records` streams the records of a file (syntax only);
- `load_zone` / `parse_zone_text` / `load_zone_with_sources` build a `Zone`
  and run the semantic checks (apex SOA and NS, glue, zone cuts, ALIAS
  exclusivity, mailbox owners, one TTL per RRset);
- `load_hints` reads a root hints file.

Every problem becomes a `ZoneFileError(file, line, message)`; callers get all
of them at once in one `ZoneErrors` (up to `MAX_ERRORS`). Line 0 means the file
as a whole. Sans-IO: the files are read through a `Files` object the caller
passes (`keyresolve.files.local.LOCAL_FILES` for the local disk), and the
caller pauses the garbage collector around big zones if it wants
(`keyresolve.files.local.gc_paused`).
"""

from __future__ import annotations

import binascii
import bisect
import hashlib
import io
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal, Protocol

import msgpack

from ..protocol.codes import DATA_TYPES, RType, rtype_from_text
from ..protocol.errors import (InvalidName, InvalidRecord, ZoneErrors, ZoneFileError,
                     MAX_PATH_EXCERPT, cut, excerpt)
from ..protocol.grammar import BASE64, CLASS_IN, TTL_FIRST, TYPE_KEY
from ..protocol.message import MAX_MESSAGE as MAX_WIRE_MESSAGE, Question, answer_size
from ..protocol.names import ROOT, Name, canonical_local, store_key_ancestors
from .nodes import ENTRY, KEY_RDATA_HEADS, decode_node, node_entries, node_head, node_types
from ..protocol.message import array_header
from ..protocol.records import (ADDR, ALIAS, KEY, NS, SOA, KeyAlgorithm, KeyUsage, Record,
                                 parse_ttl)
from .model import Zone

#: Longest physical line in bytes (newline excluded); bounds memory on hostile input.
MAX_LINE = 64 * 1024
#: Most characters one logical record may gather across parentheses (an unclosed
#: '(' would otherwise swallow the rest of the file into memory).
MAX_RECORD_TEXT = 64 * 1024
#: Deepest $INCLUDE nesting (the main file is depth 0); also stops include bombs.
MAX_INCLUDE_DEPTH = 8
#: Errors collected before giving up on a file: enough to fix a batch, bounded output.
MAX_ERRORS = 100
#: Longest error message kept; hostile tokens can be 64 KiB long. Room for
#: the three paths (`MAX_PATH_EXCERPT` each) an $INCLUDE refusal names.
MAX_MESSAGE = 1000

_READ_LIMIT = MAX_LINE + 1  # a line of MAX_LINE bytes plus its newline
_TYPES: dict[str, int] = {RType(t).name: RType(t) for t in DATA_TYPES}
_RDATA: dict[int, type[SOA] | type[NS] | type[ALIAS] | type[ADDR] | type[KEY]] = {
    RType.SOA: SOA, RType.NS: NS, RType.ALIAS: ALIAS, RType.ADDR: ADDR, RType.KEY: KEY}
_BAD = object()  # owner that failed to parse: continuation lines after it are skipped
_LINE_SPAN = 1 << 32  # packs (file index, line) into one int: index * span + line
_TTL_FIRST = TTL_FIRST  # a module-level alias: read per token on the hot path


class Files(Protocol):
    """The file access the readers need, passed in by the caller (the local
    disk: `keyresolve.files.local.LocalFiles`). Paths are POSIX path text."""

    def realpath(self, path: str) -> str:
        """`path` absolute, with symlinks and ``..`` resolved (as
        `os.path.realpath`; ``""`` is the current directory)."""

    def open(self, path: str, *, nofollow: bool = False) -> BinaryIO:
        """Open the regular file at `path` for reading, without waiting on a
        FIFO; with `nofollow`, a symlink as the last part of `path` is
        refused. Raises `OSError` (its `strerror` goes into the reader's
        ``FILE:LINE`` error), also for a file that is not a regular file.
        `path` holds no NUL (the reader refuses such paths itself)."""

    def size(self, stream: BinaryIO) -> int:
        """The size in bytes of the file `stream` (from `open`) reads."""


def _quoted_name(name: Name) -> str:
    """A name as an error message names it: cut to an excerpt (`errors.cut`),
    as every other token a zone file supplies."""
    return cut(str(name))



class StopReading(Exception):
    """The error cap was reached or parsing cannot go on: reading stops (the
    compilers' own signal, never raised to their callers)."""


class _Errors:
    """The error list shared by the reader and the checks; stops at MAX_ERRORS."""

    def __init__(self) -> None:
        self.items: list[ZoneFileError] = []
        # placeholders (index, message maker, (owner key, type)) that `resolve` fills
        self.later: list[tuple[int, Callable[[str], str], tuple[bytes, int]]] = []

    def add(self, filename: str, line: int, message: str) -> None:
        self.items.append(ZoneFileError(filename, line, _clip(message)))
        if len(self.items) >= MAX_ERRORS:
            self.items.append(ZoneFileError(
                filename, line, f"too many errors ({MAX_ERRORS}); stopped here"))
            raise StopReading

    def add_later(self, filename: str, line: int, make: Callable[[str], str],
                  rrset: tuple[bytes, int]) -> None:
        """An error whose message names where an RRset written earlier starts
        (``make(where)``): compiles keep no locations of written nodes, so it
        is a placeholder until `resolve` has re-read the zone."""
        self.later.append((len(self.items), make, rrset))
        self.add(filename, line, "")

    def resolve(self, where: Callable[[tuple[bytes, int]], str]) -> None:
        """Fill the placeholders of `add_later`; `where` locates an RRset."""
        for index, make, rrset in self.later:
            old = self.items[index]
            self.items[index] = ZoneFileError(old.filename, old.line, _clip(make(where(rrset))))
        self.later = []


def _clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + "..."


def _seconds(token: str) -> str:
    """An SOA timer with BIND units (``1h``) as plain seconds text."""
    if token.isdigit() or not token[:1].isdigit():
        return token  # plain numbers and non-numbers go to SOA.from_text as they are
    return str(parse_ttl(token))


def inside(path: str, roots: Iterable[str]) -> bool:
    """Whether `path` is one of `roots` or lies below one. All are absolute
    real paths (symlinks and ``..`` resolved): this compares text only."""
    for root in roots:
        if path == root or path.startswith(root.rstrip(posixpath.sep) + posixpath.sep):
            return True
    return False


class Include:
    """A $INCLUDE request the file loop carries out (what `ZoneReader`'s
    entry parser returns for the directive)."""

    __slots__ = ("filename", "origin")

    def __init__(self, filename: str, origin: Name | None) -> None:
        self.filename = filename
        self.origin = origin


class ZoneReader:
    """Streaming zone-file parser: iterate for ``(Record, filename, line)``.

    Syntax errors do not raise: they go to `errors` and the bad line is
    skipped; iteration ends early at `MAX_ERRORS` or when no origin is known.
    After iteration, `origin` is the zone's origin (the `origin` argument, else
    the file's first ``$ORIGIN``) and `sources` lists ``(path, sha256)`` of
    every file read, the main file first. No semantic checks happen here.

    A ``$INCLUDE`` must name a file inside the main file's directory (for
    `text`, the current directory) or inside one of `include_dirs`, once
    symlinks and ``..`` are resolved; any other is refused unread.

    Files are read through `files`; reading `path` needs it, and `text`
    without it refuses every ``$INCLUDE`` (no file access), the error
    ending with `no_access` (why: the caller's words).
    """

    def __init__(self, path: str | None, origin: Name | None = None, *,
                 files: Files | None = None, text: str | None = None,
                 filename: str | None = None, include_dirs: Iterable[str] = (),
                 no_access: str = "no file access given") -> None:
        """Read the file at `path`, or `text` (shown as `filename`) if given."""
        if origin is not None and origin.is_mailbox:
            raise InvalidName(f"zone origin {origin} is a mailbox")
        if text is None and files is None:
            raise ValueError("reading a zone file needs files=")
        self.files = files
        self.path = str(path) if path is not None else None  # a str, also in messages
        self.include_dirs = tuple(str(d) for d in include_dirs)
        self.no_access = no_access
        self._roots: tuple[str, ...] = ()  # real paths includes must lie in; set by __iter__
        self.text = text
        self.filename = filename if filename is not None else (self.path or "<string>")
        self.origin: Name | None = origin  # the zone's origin
        self.sources: list[tuple[str, bytes]] = []
        #: The main file could not be opened (its one error says why).
        self.unreadable = False
        self._errors = _Errors()
        self.errors: list[ZoneFileError] = self._errors.items
        self._cur: Name | None = origin  # the current $ORIGIN
        self._ttl: int | None = None  # $TTL
        self._owner: Name | object | None = None  # previous owner (RFC 1035 5.1)
        self._owner_token: str | None = None  # cache: last owner text and its origin
        self._owner_origin: Name | None = None

    def __iter__(self) -> Iterator[tuple[Record, str, int]]:
        main_dir = "" if self.text is not None or self.path is None else posixpath.dirname(self.path)
        files = self.files
        if files is not None:
            self._roots = tuple(files.realpath(d) for d in (main_dir, *self.include_dirs))
        try:
            if self.text is not None:
                data = self.text.encode("utf-8", "surrogatepass")
                # $INCLUDE paths are relative to the current directory
                yield from self._parse_stream(io.BytesIO(data), self.filename, "", 0, ())
            else:
                assert self.path is not None
                stream = self._open(self.path, self.filename, 0,
                                    f"cannot read zone file {self.path!r}")
                if stream is None:
                    self.unreadable = True
                    return
                assert files is not None
                with stream:
                    yield from self._parse_stream(
                        stream, self.filename, posixpath.dirname(self.path), 0,
                        (files.realpath(self.path),))
        except StopReading:
            return

    # -- files ---------------------------------------------------------------
    def _open(self, path: str, where: str, line: int, what: str, *,
              nofollow: bool = False, detail: str = "") -> BinaryIO | None:
        """Open a regular file through `files`; report failure at where:line
        (`what`, the reason, then `detail`) and return None. With
        `nofollow`, a symlink as the last part of `path` is refused."""
        if "\0" in path:  # the OS cannot name such a file
            self._errors.add(where, line, f"{what}: NUL in file name")
            return None
        assert self.files is not None
        try:
            return self.files.open(path, nofollow=nofollow)
        except OSError as exc:
            self._errors.add(where, line, f"{what}: {exc.strerror or exc}{detail}")
            return None

    def _parse_stream(self, stream: BinaryIO, fname: str, fdir: str, depth: int,
                      stack: tuple[str, ...]) -> Iterator[tuple[Record, str, int]]:
        """Parse one file; `stack` holds the real paths of the including files."""
        err = self._errors.add
        entry = self._entry
        hasher = hashlib.sha256()
        slot = len(self.sources)
        self.sources.append((fname, b""))
        readline = stream.readline
        update = hasher.update
        lineno = 0
        paren = 0  # line of the open '(' or 0
        pending: list[str] = []  # tokens of the logical record being gathered
        pend_line = 0
        pend_cont = False
        pend_bad = False
        pend_len = 0
        while True:
            try:
                raw = readline(_READ_LIMIT)
            except OSError as exc:
                err(fname, lineno + 1, f"read error: {exc.strerror or exc}")
                return
            if not raw:
                break
            update(raw)
            lineno += 1
            if len(raw) == _READ_LIMIT and raw[-1] != 10:
                while True:  # skip the rest of the line without keeping it
                    more = readline(_READ_LIMIT)
                    update(more)
                    if not more or more[-1] == 10:
                        break
                err(fname, lineno, f"line longer than {MAX_LINE} bytes")
                pend_bad = pend_bad or bool(paren)
                continue
            try:
                line = raw.decode()
            except UnicodeDecodeError as exc:
                err(fname, lineno, f"not valid UTF-8 (bad byte at column {exc.start + 1})")
                pend_bad = pend_bad or bool(paren)
                continue
            if lineno == 1 and line[:1] == "\ufeff":
                line = line[1:]  # byte-order mark
            cut = line.find(";")
            if cut >= 0:
                line = line[:cut]
            if not paren and "(" not in line and ")" not in line:
                # fast path: one line, one entry
                tokens = line.split()
                if not tokens:
                    continue
                result = entry(tokens, line[0] in " \t", fname, lineno)
                if result is None:
                    continue
                if type(result) is Record:
                    yield result, fname, lineno
                else:
                    yield from self._include(result, fname, fdir, lineno, depth, stack)
                continue
            # parentheses: gather tokens until the ')' (RFC 1035 5.1)
            if not paren:
                pending = []
                pend_line = lineno
                pend_cont = line[0] in " \t"
                pend_bad = False
                pend_len = 0
            for tok in line.replace("(", " ( ").replace(")", " ) ").split():
                if tok == "(":
                    if paren:
                        err(fname, lineno, f"'(' inside the '(' of line {paren} "
                            "(parentheses do not nest)")
                        pend_bad = True
                    else:
                        paren = lineno
                elif tok == ")":
                    if paren:
                        paren = 0
                    else:
                        err(fname, lineno, "')' without a matching '('")
                        pend_bad = True
                else:
                    pend_len += len(tok)
                    if pend_len <= MAX_RECORD_TEXT:
                        pending.append(tok)
                    elif not pend_bad:
                        err(fname, pend_line,
                            f"record longer than {MAX_RECORD_TEXT} characters")
                        pend_bad = True
            if paren or pend_bad or not pending:
                continue
            result = entry(pending, pend_cont, fname, pend_line)
            pending = []
            if result is None:
                continue
            if type(result) is Record:
                yield result, fname, pend_line
            else:
                yield from self._include(result, fname, fdir, pend_line, depth, stack)
        if paren:
            err(fname, paren, "'(' is never closed (no ')' before the end of the file)")
        self.sources[slot] = (fname, hasher.digest())

    def _include(self, inc: Include, fname: str, fdir: str, lineno: int, depth: int,
                 stack: tuple[str, ...]) -> Iterator[tuple[Record, str, int]]:
        """Parse an included file with its own origin; restore state after."""
        err = self._errors.add
        path = posixpath.join(fdir, inc.filename)
        if depth + 1 > MAX_INCLUDE_DEPTH:
            err(fname, lineno, f"$INCLUDE nested deeper than {MAX_INCLUDE_DEPTH} files")
            return
        if "\0" in path:  # the OS cannot name such a file
            err(fname, lineno, "cannot read included file "
                f"{excerpt(inc.filename, MAX_PATH_EXCERPT)}: NUL in file name")
            return
        if self.files is None:
            err(fname, lineno, "cannot read included file "
                f"{excerpt(inc.filename, MAX_PATH_EXCERPT)}: {self.no_access}")
            return
        real = self.files.realpath(path)
        if not inside(real, self._roots):
            err(fname, lineno, f"$INCLUDE {excerpt(inc.filename, MAX_PATH_EXCERPT)} is outside "
                f"{self._allowed_text()}; not read "
                f"(resolved: {excerpt(real, MAX_PATH_EXCERPT)})")
            return
        if real in stack:
            chain = " -> ".join(posixpath.basename(p) for p in (*stack, real))
            err(fname, lineno, f"$INCLUDE loop: {chain}")
            return
        # the resolved path, as checked (a symlink swapped in since is refused)
        stream = self._open(real, fname, lineno,
                            f"cannot read included file {excerpt(inc.filename, MAX_PATH_EXCERPT)}",
                            nofollow=True,
                            detail=f" (resolved: {excerpt(real, MAX_PATH_EXCERPT)})")
        if stream is None:
            return
        # RFC 1035 5.1: the included file's $ORIGIN does not leak back; as BIND,
        # the previous owner is restored too, while $TTL carries on.
        saved = (self._cur, self._owner, self._owner_token, self._owner_origin)
        if inc.origin is not None:
            self._cur = inc.origin
        self._owner = None
        self._owner_token = None
        try:
            with stream:
                yield from self._parse_stream(stream, path, posixpath.dirname(path),
                                              depth + 1, (*stack, real))
        finally:
            self._cur, self._owner, self._owner_token, self._owner_origin = saved

    def _allowed_text(self) -> str:
        """Where includes may lie, for the error of one that does not."""
        main, *others = self._roots
        where = "the current directory" if self.text is not None else "the zone file's directory"
        text = f"{where} {main}"
        if others:
            text += " and include_dirs " + ", ".join(others)
        return text

    # -- entries -------------------------------------------------------------
    def _entry(self, tokens: list[str], cont: bool, fname: str,
               lineno: int) -> Record | Include | None:
        """Interpret one logical line: a directive or a record."""
        first = tokens[0]
        if not cont and is_directive(first):
            return self._directive(tokens, fname, lineno)
        err = self._errors.add
        origin = self._cur
        if origin is None:
            err(fname, lineno, "no $ORIGIN and no zone name given")
            raise StopReading  # relative names cannot be completed from here on
        if cont:
            owner = self._owner
            if owner is None:
                err(fname, lineno, "line starts with a blank but there is no previous owner")
                return None
            pos = 0
        else:
            if first == self._owner_token and origin is self._owner_origin:
                owner = self._owner
            else:
                self._owner_token = first
                self._owner_origin = origin
                try:
                    owner = Name.from_text(first, origin)
                except InvalidName as exc:
                    owner = _BAD
                    self._owner_token = None  # report each line that repeats it
                    err(fname, lineno, f"bad owner name: {exc}")
                self._owner = owner
            pos = 1
        if owner is _BAD:
            return None  # already reported
        # owner [ttl] [class] type rdata; ttl and class in either order (RFC 1035 5.1)
        ttl: int | None = None
        klass = False
        count = len(tokens)
        while True:
            if pos >= count:
                err(fname, lineno, "record has no type")
                return None
            tok = tokens[pos]
            rtype = _TYPES.get(tok)
            if rtype is not None:
                break
            upper = tok.upper()
            rtype = _TYPES.get(upper)
            if rtype is not None:
                break
            if tok[0] in _TTL_FIRST:
                if ttl is not None:
                    err(fname, lineno, f"second TTL {excerpt(tok)} (type missing?)")
                    return None
                try:
                    ttl = parse_ttl(tok)
                except InvalidRecord as exc:
                    err(fname, lineno, str(exc))
                    return None
            elif upper == CLASS_IN and not klass:
                klass = True  # the only class; accepted and ignored
            else:
                err(fname, lineno, _unknown_type(tok))
                return None
            pos += 1
        if ttl is None:
            ttl = self._ttl
            if ttl is None:
                err(fname, lineno, "record has no TTL and no $TTL is set")
                return None
        try:
            fields = tokens[pos + 1:]
            if rtype == RType.SOA and len(fields) == 7:
                fields[3:] = [_seconds(f) for f in fields[3:]]  # timers may use units
            rdata = _RDATA[rtype].from_text(fields, origin)
        except (InvalidName, InvalidRecord, ValueError) as exc:
            err(fname, lineno, f"bad {RType(rtype).name} data: {exc}")
            return None
        return Record(owner, rtype, ttl, rdata)  # type: ignore[arg-type]

    def _domain_arg(self, text: str, what: str, fname: str, lineno: int) -> Name | None:
        """A directive's domain argument, relative to the current origin; None
        (with the error recorded) if it is invalid or a mailbox."""
        try:
            name = Name.from_text(text, self._cur)
        except InvalidName as exc:
            self._errors.add(fname, lineno, f"bad {what}: {exc}")
            return None
        if name.is_mailbox:
            self._errors.add(fname, lineno, f"{what} {name} is a mailbox, not a domain")
            return None
        return name

    def _directive(self, tokens: list[str], fname: str, lineno: int) -> Include | None:
        err = self._errors.add
        word = tokens[0].upper()
        args = tokens[1:]
        if word == "$ORIGIN":
            if len(args) != 1:
                err(fname, lineno, "$ORIGIN takes one domain name")
                return None
            name = self._domain_arg(args[0], "$ORIGIN", fname, lineno)
            if name is None:
                return None
            self._cur = name
            if self.origin is None:
                self.origin = name
        elif word == "$TTL":
            if len(args) != 1:
                err(fname, lineno, "$TTL takes one TTL")
                return None
            try:
                self._ttl = parse_ttl(args[0])
            except InvalidRecord as exc:
                err(fname, lineno, f"bad $TTL: {exc}")
        elif word == "$INCLUDE":
            if not 1 <= len(args) <= 2:
                err(fname, lineno, "$INCLUDE takes a file name and an optional origin")
                return None
            if self._cur is None:
                err(fname, lineno, "no $ORIGIN and no zone name given")
                raise StopReading
            origin = None
            if len(args) == 2:
                origin = self._domain_arg(args[1], "$INCLUDE origin", fname, lineno)
                if origin is None:
                    return None
            return Include(args[0], origin)
        else:
            err(fname, lineno, f"unknown directive {excerpt(tokens[0])} "
                "(one of $ORIGIN, $TTL, $INCLUDE)")
        return None


def is_directive(token: str) -> bool:
    """Whether a line whose first field is `token` is a directive: it starts
    with ``$`` (RFC 1035 5.1) and is not a mailbox owner (no ``@``: a local
    part may begin with ``$``, as in ``$bob@``)."""
    return token[0] == "$" and "@" not in token


def _unknown_type(token: str) -> str:
    upper = token.upper()
    if upper in ("CH", "HS", "CS"):
        return f"class {upper} is not supported (only IN)"
    try:
        value = rtype_from_text(token)
    except ValueError:
        return f"unknown record type {excerpt(token)}"
    if value in DATA_TYPES:  # the generic TYPE<n> spelling is not offered
        return f"write {RType(value).name}, not {excerpt(token)}"
    return f"type {cut(upper)} cannot appear in zone data"


# -- compiling: records to stored nodes, with the zone checks -----------------------
class NodeSink(Protocol):
    """Where `compile_nodes` writes a zone's nodes as it reads the file.

    Keys are owner keys relative to the origin (`Name.store_key` without the
    origin's key; b"" is the apex); values are the stored form of
    `keyresolve.zonedata.nodes.encode_node`. The zone checks read back what was
    written, so a compile holds only the node being built in memory.
    """

    def get(self, key: bytes) -> bytes | None:
        """The value last put at `key`, or None."""

    def put(self, key: bytes, value: bytes) -> None:
        """Write `key`, replacing any value it had."""

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every key starting with `prefix` and its value, keys ascending."""


@dataclass(frozen=True)
class CompiledZone:
    """What `compile_nodes` wrote: the zone's origin, its SOA serial, its record
    count, ``(path, sha256 digest)`` of every file read, the main file first,
    and its record count by type."""

    origin: Name
    serial: int
    records: int
    sources: list[tuple[str, bytes]]
    types: dict[int, int] = field(default_factory=dict)


_KEY = int(RType.KEY)
_ALIAS = int(RType.ALIAS)
_NS = int(RType.NS)
_ADDR = int(RType.ADDR)
_SOA = int(RType.SOA)
_ENTRY_HEAD = bytes((ENTRY,))
_array = array_header  # read per node by `ZoneBuilder._flush` (measured faster)


#: One-type node headers a builder remembers (zones use a few TTLs).
_MAX_HEADS = 1024
#: Stored mailbox nodes up to this many bytes always fit in one message
#: (`message.answer_size`): a record in a response adds its owner (a
#: mailbox: 64 + 1 + 255 characters at most, `names.MAX_LOCAL` and
#: `names.MAX_NAME`) and ~10 bytes to its rdata, which is at least 38 bytes
#: (an x25519 KEY), so it is at most ~10 times its part of the node; 10 * 2 KiB
#: plus a question and `message.MAX_TRAILER` is a third of `message.MAX_MESSAGE`.
#: Bigger nodes are measured with the message codec.
_SIZE_CHECK_FLOOR = 2048


class ZoneBuilder:
    """Groups records into nodes written to a `NodeSink` and runs the zone
    checks of docs/zone-format.md.

    Only the node of the current owner is held, as ``{type: [ttl, location,
    [packed rdata, ...]]}``; when the owner changes it is encoded once and
    put. An owner that comes back later is read back from the sink (location
    None: the RRset was written earlier). The whole-zone checks run in
    `finish` over what was written plus compact summaries: zone cuts, in-zone
    NS targets, and nodes that hold an ALIAS and other types.
    """

    def __init__(self, origin: Name, errors: _Errors, main: str, sink: NodeSink) -> None:
        self.origin = origin
        self.errors = errors
        self.sink = sink
        self.files: list[str] = [main]
        self.file_index: dict[str, int] = {main: 0}
        self._last_file = main  # file of the previous record and its index
        self._last_index = 0
        self.key: bytes | None = None  # owner key of the node being built
        self.node: dict[int, list[Any]] = {}  # [ttl, location, [packed rdata, ...]]
        self.records = 0
        self.types: dict[int, int] = {}  # records by type
        self.soa_loc: int | None = None
        self.cuts: set[bytes] = set()  # owner keys of NS records below the apex
        self.ns: list[tuple[Name, bytes, int]] = []  # in-zone NS targets: (target, key, loc)
        self.exclusive: set[bytes] = set()  # nodes written with an ALIAS and other types
        self.capped = False  # the error cap was reached while adding
        self.pack = msgpack.Packer().pack
        self._heads: dict[tuple[int, int], bytes] = {}  # packed start of one-type nodes
        #: Mailboxes whose records cannot fit in one message: key -> (response
        #: size, records, location of their first RRset or None, its type).
        self.oversized: dict[bytes, tuple[int, int, int | None, int]] = {}

    # -- locations -------------------------------------------------------------
    def loc(self, fname: str, line: int) -> int:
        """(file, line) packed into one int; files are numbered as first seen."""
        if fname == self._last_file:
            index = self._last_index
        else:
            index = self.file_index.get(fname)  # type: ignore[assignment]
            if index is None:
                index = self.file_index[fname] = len(self.files)
                self.files.append(fname)
            self._last_file = fname
            self._last_index = index
        return index * _LINE_SPAN + line

    def where(self, loc: int) -> tuple[str, int]:
        index, line = divmod(loc, _LINE_SPAN)
        return self.files[index], line

    def at(self, loc: int) -> str:
        return "%s:%d" % self.where(loc)

    def name(self, key: bytes) -> Name:
        return Name.from_store_key(self.origin.store_key() + key)

    def error(self, loc: int, message: str) -> None:
        try:
            self.errors.add(*self.where(loc), message)
        except StopReading:
            self.capped = True
            raise

    def error_about(self, loc: int, rrset_loc: int | None, rrset: tuple[bytes, int],
                    make: Callable[[str], str]) -> None:
        """An error at `loc` whose message names where `rrset` starts."""
        if rrset_loc is not None:
            self.error(loc, make(self.at(rrset_loc)))
            return
        try:
            self.errors.add_later(*self.where(loc), make, rrset)
        except StopReading:
            self.capped = True
            raise

    # -- adding ------------------------------------------------------------------
    def add(self, key: bytes, rtype: int, ttl: int, rdata: bytes, loc: int,
            target: tuple[Name, bytes] | None = None) -> None:
        """Add one record of owner `key` (in the zone; a mailbox owns only KEY
        and ALIAS), `rdata` packed; `target` is an NS record's in-zone target
        and its key."""
        if key != self.key:
            self._start(key)
        node = self.node
        rrs = node.get(rtype)
        if rrs is not None:
            if ttl != rrs[0]:  # RFC 2181 5.2
                old = rrs[0]
                self.error_about(loc, rrs[1], (key, rtype), lambda at: (
                    f"TTL {ttl} differs from TTL {old} of the {RType(rtype).name} records "
                    f"of {self.name(key)} at {at} (one name and type, one TTL: RFC 2181 5.2)"))
                return
            if rdata in rrs[2]:
                return  # identical duplicate: dropped, as BIND does
        if rtype == _SOA:
            if key:
                self.error(loc, f"SOA must be at the zone apex {self.origin}, "
                           f"not at {self.name(key)}")
                return
            if self.soa_loc is not None:
                self.error(loc, f"second SOA record (the first is at {self.at(self.soa_loc)})")
                return
            self.soa_loc = loc
        elif rtype == _ALIAS:
            if not key:
                self.error(loc, "ALIAS not allowed at the zone apex")
                return
            if rrs is not None:
                self.error_about(loc, rrs[1], (key, rtype), lambda at: (
                    f"second ALIAS at {self.name(key)} (the first is at {at}); "
                    "a name has at most one"))
                return
        elif rtype == _NS:
            if key:
                self.cuts.add(key)
            if target is not None:
                self.ns.append((target[0], target[1], loc))
        if rrs is None:
            node[rtype] = [ttl, loc, [rdata]]
        else:
            rrs[2].append(rdata)
        self.records += 1
        self.types[rtype] = self.types.get(rtype, 0) + 1

    def _start(self, key: bytes) -> None:
        if self.key is not None:
            self._flush()
        self.key = key
        old = self.sink.get(key)
        pack = self.pack
        self.node = {} if old is None else {
            rtype: [ttl, None, [pack(rdata) for rdata in rdatas]]
            for rtype, ttl, rdatas in node_entries(old)}

    def _flush(self) -> None:
        """Encode the current node (as `nodes.encode_node`) and put it."""
        node = self.node
        if not node:
            return  # every record of a new owner was rejected
        pack = self.pack
        if len(node) == 1:  # most nodes: one type, often one record
            for rtype, (ttl, _, rdatas) in node.items():
                head = self._heads.get((rtype, ttl))
                if head is None:
                    head = node_head(rtype, ttl)
                    if len(self._heads) < _MAX_HEADS:
                        self._heads[rtype, ttl] = head
                value = head + _array(len(rdatas)) + b"".join(rdatas)
        else:
            parts = [_array(len(node))]
            for rtype in sorted(node):
                ttl, _, rdatas = node[rtype]
                parts += (_ENTRY_HEAD, pack(rtype), pack(ttl), _array(len(rdatas)), *rdatas)
            value = b"".join(parts)
            if _ALIAS in node:
                self.exclusive.add(self.key)  # type: ignore[arg-type]
        if len(value) > _SIZE_CHECK_FLOOR:
            self._check_size(self.key, value)  # type: ignore[arg-type]
        self.sink.put(self.key, value)  # type: ignore[arg-type]

    def _check_size(self, key: bytes, value: bytes) -> None:
        """Note a mailbox whose stored node `value` makes an answer longer
        than one message (`message.answer_size`): it could never be served."""
        name = self.name(key)
        if not name.is_mailbox:
            return
        records = [record for rtype, rrset in decode_node(value).items()
                   for record in rrset.records(name, rtype)]
        size = answer_size(Question(name, RType.ANY), records)
        if size > MAX_WIRE_MESSAGE:
            rtype = _KEY if _KEY in self.node else next(iter(self.node))
            self.oversized[key] = (size, len(records), self.node[rtype][1], rtype)
        else:
            self.oversized.pop(key, None)

    # -- whole-zone checks ---------------------------------------------------------
    def _cut_above(self, key: bytes) -> bytes | None:
        """The zone cut strictly above owner `key` (a mailbox counts as below
        its domain), or None."""
        cuts = self.cuts
        domain, at, _ = key.partition(b"@")
        above = store_key_ancestors(domain)  # zone-relative: b"" is the apex
        if not at:
            above.pop()  # strictly above
        for zone_cut in reversed(above):
            if zone_cut in cuts:
                return zone_cut
        return None

    def finish(self, locate: Callable[[set[tuple[bytes, int]]],
                                      dict[tuple[bytes, int], tuple[str, int]]]) -> None:
        """Write the last node and run the whole-zone checks; `locate` finds
        where RRsets start by re-reading the zone (only when errors need it)."""
        if self.key is not None:
            self._flush()
            self.key = None
            self.node = {}
        origin = self.origin
        found: list[tuple[int, str]] = []  # sorted by location before reporting
        if self.soa_loc is None:
            found.append((0, f"no SOA record at the zone apex {origin}"))
        if _NS not in node_types(self.sink.get(b"")):
            found.append((self.soa_loc or 0, f"no NS record at the zone apex {origin}"))
        # RRsets in error: (key, type, what, key of the cut or the ALIAS)
        bad: list[tuple[bytes, int, str, bytes]] = []
        for zone_cut in sorted(self.cuts):  # zone cuts: NS below the apex (RFC 1034 4.2.1)
            if self._cut_above(zone_cut) is not None:
                continue  # occluded: scanned below the cut above it
            for key, value in self.sink.scan(zone_cut):
                if key == zone_cut:
                    bad += [(key, rtype, "cut", b"") for rtype in node_types(value)
                            if rtype != _NS and rtype != _ADDR]
                    continue
                above = self._cut_above(key)
                assert above is not None
                bad += [(key, rtype, "below", above) for rtype in node_types(value)
                        if rtype != _ADDR]  # occluded data: only glue
        for key in self.exclusive:
            if key not in self.cuts and self._cut_above(key) is None:
                bad += [(key, rtype, "alias", key) for rtype in node_types(self.sink.get(key))
                        if rtype != _ALIAS]
        wanted = {(key, rtype) for key, rtype, _, _ in bad}
        wanted |= {(key, rtype) for key, (_, _, loc, rtype) in self.oversized.items()
                   if loc is None}
        wanted |= {(key, _ALIAS) for key, _, what, _ in bad if what == "alias"}
        wanted |= {rrset for _, _, rrset in self.errors.later}
        located = locate(wanted) if wanted else {}

        def loc_of(rrset: tuple[bytes, int]) -> int:
            where = located.get(rrset)
            return 0 if where is None else self.loc(*where)  # 0: file changed meanwhile

        self.errors.resolve(lambda rrset: self.at(loc_of(rrset)))
        for key, rtype, what, other in bad:
            kind = RType(rtype).name
            if what == "cut":
                message = (f"{kind} at the delegation point "
                           f"{_quoted_name(self.name(key))}: only NS and ADDR (glue) belong there")
            elif what == "below":
                message = (f"{kind} at {_quoted_name(self.name(key))} below the delegation "
                           f"point {_quoted_name(self.name(other))}: only ADDR (glue) allowed")
            else:
                message = (f"{kind} at {_quoted_name(self.name(key))}, which has an ALIAS "
                           f"(at {self.at(loc_of((key, _ALIAS)))}): ALIAS is exclusive")
            found.append((loc_of((key, rtype)), message))
        for key, (size, count, loc, rtype) in self.oversized.items():
            found.append((loc_of((key, rtype)) if loc is None else loc,
                          f"mailbox {_quoted_name(self.name(key))}: its {count} records make a "
                          f"{size}-byte answer, longer than one message "
                          f"({MAX_WIRE_MESSAGE} bytes); it "
                          "could never be served"))
        glue: dict[bytes, bool] = {}
        for target, key, loc in self.ns:  # glue: in-zone NS targets need addresses
            has = glue.get(key)
            if has is None:
                has = glue[key] = _ADDR in node_types(self.sink.get(key))
            if not has:
                found.append((loc, f"NS target {_quoted_name(target)} is inside the zone "
                              "but has no ADDR record (glue)"))
        found.sort(key=lambda item: item[0])
        for loc, message in found:
            self.error(loc, message)

    def serial(self) -> int:
        """The serial of the apex SOA written."""
        apex = self.sink.get(b"")
        assert apex is not None  # finish checked it
        soa = decode_node(apex)[_SOA].rdatas[0]
        assert isinstance(soa, SOA)
        return soa.serial


class _Locator:
    """Stands in for the `ZoneBuilder` of a second reading of the zone: notes
    the (file, line) where each wanted (owner key, type) RRset starts."""

    def __init__(self, wanted: set[tuple[bytes, int]]) -> None:
        self.wanted = set(wanted)
        self.found: dict[tuple[bytes, int], tuple[str, int]] = {}

    def loc(self, fname: str, line: int) -> tuple[str, int]:
        return fname, line

    def add(self, key: bytes, rtype: int, ttl: int, rdata: bytes, loc: tuple[str, int],
            target: object = None) -> None:
        # The first record of an owner and type always starts its RRset (the
        # checks that can reject it reject every record of that owner and type).
        rrset = (key, rtype)
        if rrset in self.wanted:
            self.wanted.discard(rrset)
            self.found[rrset] = loc
            if not self.wanted:
                raise StopReading  # ends the reading


#: Packed KEY rdata up to the key bytes, and the key length
#: (`nodes.KEY_RDATA_HEADS`), by (algorithm, usage) as zone files usually
#: spell them.
KEY_HEADS_BY_TEXT = {(KeyAlgorithm(alg).name.lower(), KeyUsage(usage).name.lower()): head
                     for (alg, usage), head in KEY_RDATA_HEADS.items()}
_BASE64 = re.compile(BASE64)  # what b64decode(validate=True) accepts
#: Domain parts of mailbox owners, and TTL texts, the fast path remembers
#: (zones use a few of each).
MAX_DOMAIN_CACHE = 4096
_MISSING = object()


class CompileReader(ZoneReader):
    """A `ZoneReader` that hands records to a builder as it reads them.

    The common line, a mailbox's KEY record (``alice@ [ttl] [IN] KEY x25519
    encrypt <base64>``), takes a fast path that makes neither `Name` nor
    `Record` objects; anything else, and every line the fast path has doubts
    about, goes through the general parser, so errors are the same. A KEY
    line with a flags token (``flags=...``) has five tokens from KEY on, so
    the fast path never takes it.
    Iterating yields nothing.
    """

    def __init__(self, path: str | None, origin: Name | None,
                 make_builder: Callable[[ZoneReader], Any], *, files: Files | None = None,
                 text: str | None = None, filename: str | None = None,
                 include_dirs: Iterable[str] = ()) -> None:
        super().__init__(path, origin, files=files, text=text, filename=filename,
                         include_dirs=include_dirs)
        self.make_builder = make_builder
        self.builder: Any = None  # made at the first record: $ORIGIN may name the zone
        self._zone_key = b""
        # domain text -> zone-relative key, or False
        self._domains: dict[str, bytes | Literal[False]] = {}
        self._domains_origin: Name | None = None  # the $ORIGIN `_domains` is for
        self._ttls: dict[str, int] = {}  # TTL text -> seconds
        self._pack = msgpack.Packer().pack

    def _new_builder(self) -> Any:
        assert self.origin is not None
        self._zone_key = self.origin.store_key()
        self.builder = self.make_builder(self)
        return self.builder

    def _entry(self, tokens: list[str], cont: bool, fname: str,
               lineno: int) -> Record | Include | None:
        count = len(tokens)
        if count < 4 or tokens[-4] != TYPE_KEY or self._cur is None:
            return self._general(tokens, cont, fname, lineno)
        if cont:
            owner = self._owner
            first = 0
        else:
            token = tokens[0]
            if token == self._owner_token and self._cur is self._owner_origin:
                owner = self._owner
            else:
                owner = self._fast_owner(token)
                if owner is None:
                    return self._general(tokens, cont, fname, lineno)
                self._owner = owner
                self._owner_token = token
                self._owner_origin = self._cur
            first = 1
        if type(owner) is not tuple or count - first > 6:
            return self._general(tokens, cont, fname, lineno)
        ttl = None
        klass = False
        for tok in tokens[first:count - 4]:  # [ttl] [IN], either order
            if tok == CLASS_IN and not klass:
                klass = True
            elif ttl is None and tok[0] in _TTL_FIRST:
                ttl = self._ttls.get(tok)
                if ttl is None:
                    try:
                        ttl = parse_ttl(tok)
                    except InvalidRecord:
                        return self._general(tokens, cont, fname, lineno)
                    if len(self._ttls) < MAX_DOMAIN_CACHE:
                        self._ttls[tok] = ttl
            else:
                return self._general(tokens, cont, fname, lineno)
        if ttl is None:
            ttl = self._ttl
        head = KEY_HEADS_BY_TEXT.get((tokens[-3], tokens[-2]))
        if ttl is None or head is None:
            return self._general(tokens, cont, fname, lineno)
        text = tokens[-1]
        if not _BASE64.fullmatch(text):  # as base64.b64decode(validate=True)
            return self._general(tokens, cont, fname, lineno)
        try:
            key = binascii.a2b_base64(text)
        except binascii.Error:
            return self._general(tokens, cont, fname, lineno)
        if len(key) != head[1]:
            return self._general(tokens, cont, fname, lineno)
        builder = self.builder or self._new_builder()
        builder.add(owner[0], _KEY, ttl, head[0] + key, builder.loc(fname, lineno))
        return None

    def _fast_owner(self, token: str) -> tuple[bytes, str, Name] | None:
        """A mailbox owner as (zone-relative key, token, origin), or None when
        the general parser must look at it (not a mailbox, invalid, outside
        the zone)."""
        local, at, domain = token.partition("@")
        if not at:
            return None
        cur = self._cur
        assert cur is not None
        if cur is not self._domains_origin:
            self._domains = {}
            self._domains_origin = cur
        dkey = self._domains.get(domain, _MISSING)
        if dkey is _MISSING:
            dkey = self._domain_key(domain, cur)
            if len(self._domains) < MAX_DOMAIN_CACHE:
                self._domains[domain] = dkey
        if dkey is False:
            return None
        try:
            local = canonical_local(local)
        except InvalidName:
            return None
        return dkey + b"@" + local.encode("ascii"), token, cur  # type: ignore[operator]

    def _domain_key(self, domain: str, cur: Name) -> bytes | Literal[False]:
        """The zone-relative key of a mailbox's domain part, or False."""
        if "@" in domain:
            return False
        try:
            name = Name.from_text(domain, cur) if domain else cur
        except InvalidName:
            return False
        if self.builder is None:
            self._new_builder()
        key = name.store_key()
        zone_key = self._zone_key
        return key[len(zone_key):] if key.startswith(zone_key) else False

    def _general(self, tokens: list[str], cont: bool, fname: str,
                 lineno: int) -> Include | None:
        owner = self._owner
        if type(owner) is tuple:  # the general parser needs the fast path's owner as a Name
            self._owner = Name.from_text(owner[1], owner[2])
        result = super()._entry(tokens, cont, fname, lineno)
        if type(result) is Record:
            self._record(result, fname, lineno)
            return None
        return result

    def _record(self, rec: Record, fname: str, lineno: int) -> None:
        builder = self.builder or self._new_builder()
        loc = builder.loc(fname, lineno)
        name = rec.name
        rtype = rec.rtype
        key = name.store_key()
        zone_key = self._zone_key
        if not key.startswith(zone_key):  # keys end labels with \0: an exact test
            self._errors.add(fname, lineno, f"{name} is outside the zone {self.origin}")
            return
        if name.local is not None and rtype != _KEY and rtype != _ALIAS:
            self._errors.add(fname, lineno, f"mailbox {name} may own only KEY and ALIAS "
                             f"records, not {RType(rtype).name}")
            return
        target = None
        if rtype == _NS:
            target_key = rec.rdata.target.store_key()  # type: ignore[union-attr]
            if target_key.startswith(zone_key):
                target = rec.rdata.target, target_key[len(zone_key):]  # type: ignore[union-attr]
        builder.add(key[len(zone_key):], int(rtype), rec.ttl, self._pack(rec.rdata.to_wire()),
                    loc, target)


def compile_nodes(sink: NodeSink, path: str | None, origin: Name | None = None, *,
                  files: Files | None = None, text: str | None = None,
                  filename: str | None = None,
                  include_dirs: Iterable[str] = ()) -> CompiledZone:
    """Parse and check a zone file (with its includes), read through
    `files`, writing its nodes to `sink` as they are read; raises
    `ZoneErrors` listing every error found (then `sink` holds a partial zone:
    a store discards it). With `text`, the zone is `text` (shown as
    `filename`, else `path`) instead of a file. Includes may lie in the zone
    file's directory or in `include_dirs` (`ZoneReader`).

    Memory stays bounded whatever the zone's size (the node being built, the
    zone cuts and in-zone NS targets); error messages that name where an
    RRset written earlier starts re-read the zone to find it.
    """
    def open_reader(make_builder: Callable[[ZoneReader], Any]) -> CompileReader:
        return CompileReader(path, origin, make_builder, files=files, text=text,
                             filename=filename if filename is not None else path,
                             include_dirs=include_dirs)

    def locate(wanted: set[tuple[bytes, int]]) -> dict[tuple[bytes, int], tuple[str, int]]:
        locator = _Locator(wanted)
        for _ in open_reader(lambda _reader: locator):
            pass
        return locator.found

    # Made by CompileReader._new_builder, which asserts the origin is known.
    reader = open_reader(
        lambda r: ZoneBuilder(r.origin, r._errors, r.filename, sink))  # type: ignore[arg-type]
    errors = reader._errors
    builder: ZoneBuilder | None = None
    try:
        for _ in reader:
            pass
        builder = reader.builder
        if reader.origin is None:
            if not errors.items:  # else already reported at the first record
                errors.add(reader.filename, 0, "no $ORIGIN and no zone name given")
        elif reader.unreadable:
            pass  # its one error says why; no zone checks of a file not read
        elif builder is None or not builder.capped:
            if builder is None:
                builder = reader._new_builder()
            # checks run even after syntax errors, so one pass reports everything
            builder.finish(locate)
    except StopReading:
        pass
    if errors.items or builder is None:
        raise ZoneErrors(errors.items)
    seen: set[str] = set()
    sources = []
    for name, digest in reader.sources:
        if name not in seen:
            seen.add(name)
            sources.append((name, digest))
    return CompiledZone(builder.origin, builder.serial(), builder.records, sources,
                        dict(builder.types))


class MemoryNodes:
    """A `NodeSink` in a dict, for building a `Zone` in memory."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}
        self._sorted: list[bytes] | None = None  # keys for `scan`, made on demand

    def get(self, key: bytes) -> bytes | None:
        return self.nodes.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self.nodes:
            self._sorted = None
        self.nodes[key] = value

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        if self._sorted is None:
            self._sorted = sorted(self.nodes)
        keys = self._sorted
        for i in range(bisect.bisect_left(keys, prefix), len(keys)):
            if not keys[i].startswith(prefix):
                break
            yield keys[i], self.nodes[keys[i]]

    def zone(self, origin: Name) -> Zone:
        """The nodes as a `Zone` (owners in the order first written)."""
        origin_key = origin.store_key()
        return Zone(origin, {
            Name.from_store_key(origin_key + key): decode_node(value)
            for key, value in self.nodes.items()})


# -- public API ------------------------------------------------------------------
def iter_records(path: str, origin: Name | None = None, *, files: Files,
                 include_dirs: Iterable[str] = ()) -> Iterator[tuple[Record, str, int]]:
    """Stream ``(record, filename, line)`` from a zone file and its includes,
    read through `files`.

    Only syntax is checked (no zone checks: see `load_zone`). Records of good
    lines are yielded as they are read; if any line was bad, `ZoneErrors` is
    raised at the end (or once `MAX_ERRORS` is reached).
    """
    reader = ZoneReader(path, origin, files=files, include_dirs=include_dirs)
    yield from reader
    if reader.errors:
        raise ZoneErrors(reader.errors)


def _load(path: str | None, origin: Name | None, *, files: Files | None,
          text: str | None = None, filename: str | None = None,
          include_dirs: Iterable[str] = ()) -> tuple[Zone, list[tuple[str, bytes]]]:
    sink = MemoryNodes()
    compiled = compile_nodes(sink, path, origin, files=files, text=text, filename=filename,
                             include_dirs=include_dirs)
    return sink.zone(compiled.origin), compiled.sources


def load_zone(path: str, origin: Name | None = None, *, files: Files,
              include_dirs: Iterable[str] = ()) -> Zone:
    """Parse a zone file (with its includes, which may lie in its directory
    or in `include_dirs`), read through `files`, and check it, into memory;
    raises `ZoneErrors` listing every error found. (`compile_nodes` writes a
    zone into a store without holding it in memory.) A caller building big
    zones pauses the garbage collector meanwhile (`files.local.gc_paused`)."""
    return _load(path, origin, files=files, include_dirs=include_dirs)[0]


def load_zone_with_sources(path: str, origin: Name | None = None, *, files: Files,
                           include_dirs: Iterable[str] = ()
                           ) -> tuple[Zone, list[tuple[str, bytes]]]:
    """As `load_zone`, also returning ``(path, sha256 digest)`` of every file
    read, the main file first, so a caller can skip unchanged zones."""
    return _load(path, origin, files=files, include_dirs=include_dirs)


def parse_zone_text(text: str, filename: str = "<string>", origin: Name | None = None, *,
                    files: Files | None = None, include_dirs: Iterable[str] = ()) -> Zone:
    """As `load_zone`, from a string. ``$INCLUDE`` paths are relative to the
    current directory, and may lie in it or in `include_dirs`; they are read
    through `files`, and without it every ``$INCLUDE`` is an error."""
    return _load(None, origin, files=files, text=text, filename=filename,
                 include_dirs=include_dirs)[0]


def load_hints(path: str, *, files: Files) -> list[tuple[Name, ADDR]]:
    """Read a root hints file through `files`: NS records at ``.`` and ADDR
    records for their targets (no SOA). Returns ``(server, address)`` pairs
    in file order."""
    reader = ZoneReader(path, ROOT, files=files)
    errors = reader._errors
    servers: dict[Name, int] = {}  # target -> line of its NS
    addrs: dict[Name, list[ADDR]] = {}
    try:
        for rec, fname, line in reader:
            if rec.rtype == RType.NS and rec.name == ROOT:
                servers.setdefault(rec.rdata.target, line)  # type: ignore[union-attr]
            elif rec.rtype == RType.ADDR:
                found = addrs.setdefault(rec.name, [])
                if rec.rdata not in found:
                    found.append(rec.rdata)  # type: ignore[arg-type]
            else:
                errors.add(fname, line, "a hints file holds only NS records at '.' "
                           f"and ADDR records, not {RType(rec.rtype).name} at {rec.name}")
        if not errors.items:
            if not servers:
                errors.add(reader.filename, 0, "no NS records at '.'")
            for target, line in servers.items():
                if target not in addrs:
                    errors.add(reader.filename, line, f"root server {target} has no ADDR record")
    except StopReading:
        pass
    if errors.items:
        raise ZoneErrors(errors.items)
    return [(target, addr) for target in servers for addr in addrs[target]]


#: Order of types in `summarize`.
_SUMMARY_ORDER = (RType.SOA, RType.NS, RType.ADDR, RType.KEY, RType.ALIAS)


def summarize(zone: Zone | CompiledZone) -> str:
    """One line: ``example.com.: serial 2026112201, 10 records (SOA 1, NS 2, ...)``."""
    if isinstance(zone, CompiledZone):
        counts = zone.types
        serial = str(zone.serial)
    else:
        counts = {}
        for node in zone.nodes.values():
            for rtype, rrset in node.items():
                counts[rtype] = counts.get(rtype, 0) + len(rrset.rdatas)
        try:
            serial = str(zone.serial)
        except KeyError:
            serial = "none"
    total = sum(counts.values())
    parts = [f"{RType(t).name} {counts[t]}" for t in _SUMMARY_ORDER if counts.get(t)]
    noun = "record" if total == 1 else "records"
    return f"{zone.origin}: serial {serial}, {total} {noun} ({', '.join(parts)})"


__all__ = ["KEY_HEADS_BY_TEXT", "MAX_DOMAIN_CACHE", "MAX_ERRORS", "MAX_INCLUDE_DEPTH", "MAX_LINE",
           "MAX_RECORD_TEXT", "CompileReader", "CompiledZone", "Files", "Include",
           "MemoryNodes", "NodeSink", "StopReading", "ZoneBuilder", "ZoneReader", "compile_nodes",
           "inside",
           "iter_records", "load_hints", "load_zone", "load_zone_with_sources",
           "parse_ttl", "parse_zone_text", "summarize"]
