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
as a whole. Sans-IO apart from reading the files themselves.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

from .codes import DATA_TYPES, RType, rtype_from_text
from .errors import InvalidName, InvalidRecord, ZoneErrors, ZoneFileError
from .names import ROOT, Name
from .records import ADDR, ALIAS, KEY, MAX_TTL, NS, SOA, Record
from .zone import RRset, Zone

#: Longest physical line in bytes (newline excluded); bounds memory on hostile input.
MAX_LINE = 64 * 1024
#: Most characters one logical record may gather across parentheses (an unclosed
#: '(' would otherwise swallow the rest of the file into memory).
MAX_RECORD_TEXT = 64 * 1024
#: Deepest $INCLUDE nesting (the main file is depth 0); also stops include bombs.
MAX_INCLUDE_DEPTH = 8
#: Errors collected before giving up on a file: enough to fix a batch, bounded output.
MAX_ERRORS = 100
#: Longest error message kept; hostile tokens can be 64 KiB long.
MAX_MESSAGE = 300
#: Seconds per BIND TTL unit (w d h m s), case-insensitive.
TTL_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}

_READ_LIMIT = MAX_LINE + 1  # a line of MAX_LINE bytes plus its newline
_MAX_TTL_DIGITS = len(str(MAX_TTL))  # longer digit runs overflow; checked before int()
_TYPES: dict[str, int] = {RType(t).name: RType(t) for t in DATA_TYPES}
_RDATA = {RType.SOA: SOA, RType.NS: NS, RType.ALIAS: ALIAS, RType.ADDR: ADDR, RType.KEY: KEY}
_BAD = object()  # owner that failed to parse: continuation lines after it are skipped
_LINE_SPAN = 1 << 32  # packs (file index, line) into one int: index * span + line


class _Stop(Exception):
    """Internal: the error cap was reached or parsing cannot go on."""


class _Errors:
    """The error list shared by the reader and the checks; stops at MAX_ERRORS."""

    def __init__(self) -> None:
        self.items: list[ZoneFileError] = []

    def add(self, filename: str, line: int, message: str) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + "..."
        self.items.append(ZoneFileError(filename, line, message))
        if len(self.items) >= MAX_ERRORS:
            self.items.append(ZoneFileError(
                filename, line, f"too many errors ({MAX_ERRORS}); stopped here"))
            raise _Stop


def parse_ttl(text: str) -> int:
    """Parse a TTL: seconds (``3600``) or BIND units (``1h30m``, ``2d``, ``1w``).

    Raises `InvalidRecord` for bad syntax or a value above `MAX_TTL` (RFC 2181 8).
    """
    if not text:
        raise InvalidRecord("empty TTL")
    if text.isdigit() and text.isascii():
        if len(text) > _MAX_TTL_DIGITS or int(text) > MAX_TTL:
            raise InvalidRecord(f"TTL {_short(text)} is larger than {MAX_TTL}")
        return int(text)
    total = 0
    digits = ""
    for ch in text.lower():
        if "0" <= ch <= "9":
            digits += ch
            if len(digits) > _MAX_TTL_DIGITS:
                raise InvalidRecord(f"TTL {_short(text)} is larger than {MAX_TTL}")
        elif ch in TTL_UNITS and digits:
            total += int(digits) * TTL_UNITS[ch]
            digits = ""
        else:
            raise InvalidRecord(
                f"bad TTL {_short(text)!r} (seconds, or units like 1h30m, 2d, 1w)")
    if digits:  # as BIND: once units are used, every number needs one
        raise InvalidRecord(f"bad TTL {_short(text)!r}: {digits} has no unit")
    if total > MAX_TTL:
        raise InvalidRecord(f"TTL {_short(text)} is larger than {MAX_TTL}")
    return total


def _seconds(token: str) -> str:
    """An SOA timer with BIND units (``1h``) as plain seconds text."""
    if token.isdigit() or not token[:1].isdigit():
        return token  # plain numbers and non-numbers go to SOA.from_text as they are
    return str(parse_ttl(token))


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class _Include:
    """Internal: a $INCLUDE request the file loop carries out."""

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
    """

    def __init__(self, path: str | None, origin: Name | None = None, *,
                 text: str | None = None, filename: str | None = None) -> None:
        """Read the file at `path`, or `text` (shown as `filename`) if given."""
        if origin is not None and origin.is_mailbox:
            raise InvalidName(f"zone origin {origin} is a mailbox")
        self.path = path
        self.text = text
        self.filename = filename if filename is not None else (path or "<string>")
        self.origin: Name | None = origin  # the zone's origin
        self.sources: list[tuple[str, bytes]] = []
        self._errors = _Errors()
        self.errors: list[ZoneFileError] = self._errors.items
        self._cur: Name | None = origin  # the current $ORIGIN
        self._ttl: int | None = None  # $TTL
        self._owner: Name | object | None = None  # previous owner (RFC 1035 5.1)
        self._owner_token: str | None = None  # cache: last owner text and its origin
        self._owner_origin: Name | None = None

    def __iter__(self) -> Iterator[tuple[Record, str, int]]:
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
                    return
                with stream:
                    yield from self._parse_stream(
                        stream, self.filename, os.path.dirname(self.path), 0,
                        (os.path.realpath(self.path),))
        except _Stop:
            return

    # -- files ---------------------------------------------------------------
    def _open(self, path: str, where: str, line: int, what: str) -> BinaryIO | None:
        """Open a regular file; report failure at where:line and return None."""
        try:
            stream = open(path, "rb")  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            self._errors.add(where, line, f"{what}: {exc.strerror or exc}")
            return None
        except ValueError:  # NUL in the path
            self._errors.add(where, line, f"{what}: NUL in file name")
            return None
        try:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                # devices and FIFOs could be endless (/dev/zero)
                stream.close()
                self._errors.add(where, line, f"{what}: not a regular file")
                return None
        except OSError as exc:
            stream.close()
            self._errors.add(where, line, f"{what}: {exc.strerror or exc}")
            return None
        return stream

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

    def _include(self, inc: _Include, fname: str, fdir: str, lineno: int, depth: int,
                 stack: tuple[str, ...]) -> Iterator[tuple[Record, str, int]]:
        """Parse an included file with its own origin; restore state after."""
        err = self._errors.add
        path = os.path.join(fdir, inc.filename)
        if depth + 1 > MAX_INCLUDE_DEPTH:
            err(fname, lineno, f"$INCLUDE nested deeper than {MAX_INCLUDE_DEPTH} files")
            return
        if "\0" in path:  # the OS cannot name such a file
            err(fname, lineno, f"cannot read included file {_short(inc.filename)!r}: "
                "NUL in file name")
            return
        real = os.path.realpath(path)
        if real in stack:
            chain = " -> ".join(os.path.basename(p) for p in (*stack, real))
            err(fname, lineno, f"$INCLUDE loop: {chain}")
            return
        stream = self._open(path, fname, lineno,
                            f"cannot read included file {_short(inc.filename)!r}")
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
                yield from self._parse_stream(stream, path, os.path.dirname(path),
                                              depth + 1, (*stack, real))
        finally:
            self._cur, self._owner, self._owner_token, self._owner_origin = saved

    # -- entries -------------------------------------------------------------
    def _entry(self, tokens: list[str], cont: bool, fname: str,
               lineno: int) -> Record | _Include | None:
        """Interpret one logical line: a directive or a record."""
        first = tokens[0]
        if first[0] == "$" and not cont:
            return self._directive(tokens, fname, lineno)
        err = self._errors.add
        origin = self._cur
        if origin is None:
            err(fname, lineno, "no $ORIGIN and no zone name given")
            raise _Stop  # relative names cannot be completed from here on
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
            if "0" <= tok[0] <= "9":
                if ttl is not None:
                    err(fname, lineno, f"second TTL {_short(tok)!r} (type missing?)")
                    return None
                try:
                    ttl = parse_ttl(tok)
                except InvalidRecord as exc:
                    err(fname, lineno, str(exc))
                    return None
            elif upper == "IN" and not klass:
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

    def _directive(self, tokens: list[str], fname: str, lineno: int) -> _Include | None:
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
                raise _Stop
            origin = None
            if len(args) == 2:
                origin = self._domain_arg(args[1], "$INCLUDE origin", fname, lineno)
                if origin is None:
                    return None
            return _Include(args[0], origin)
        else:
            err(fname, lineno, f"unknown directive {_short(tokens[0])!r} "
                "(one of $ORIGIN, $TTL, $INCLUDE)")
        return None


def _unknown_type(token: str) -> str:
    upper = token.upper()
    if upper in ("CH", "HS", "CS"):
        return f"class {upper} is not supported (only IN)"
    try:
        value = rtype_from_text(token)
    except ValueError:
        return f"unknown record type {_short(token)!r}"
    if value in DATA_TYPES:  # the generic TYPE<n> spelling is not offered
        return f"write {RType(value).name}, not {token!r}"
    return f"type {_short(upper)} cannot appear in zone data"


# -- semantic checks -----------------------------------------------------------
class _Builder:
    """Groups records into RRsets and runs the zone checks of docs/zone-format.md."""

    def __init__(self, origin: Name, errors: _Errors, main: str) -> None:
        self.origin = origin
        self.errors = errors
        self.files: list[str] = [main]
        self.file_index: dict[str, int] = {main: 0}
        self._last_file = main  # file of the previous record and its index
        self._last_index = 0
        # RRsets being built: (ttl, loc of the first record, rdata) while they
        # hold one record, then [ttl, loc, [rdata, ...]]. Most hold one, and a
        # zone can have a million: the tuple takes 90 bytes less than the lists.
        self.nodes: dict[Name, dict[int, tuple | list]] = {}
        self.soa_loc: int | None = None
        self.ns: list[tuple[Name, int]] = []  # (target, loc) of every NS record

    def where(self, loc: int) -> tuple[str, int]:
        index, line = divmod(loc, _LINE_SPAN)
        return self.files[index], line

    def at(self, loc: int) -> str:
        return "%s:%d" % self.where(loc)

    def error(self, loc: int, message: str) -> None:
        self.errors.add(*self.where(loc), message)

    def add(self, rec: Record, fname: str, line: int) -> None:
        if fname == self._last_file:
            index = self._last_index
        else:
            index = self.file_index.get(fname)  # type: ignore[assignment]
            if index is None:
                index = self.file_index[fname] = len(self.files)
                self.files.append(fname)
            self._last_file = fname
            self._last_index = index
        loc = index * _LINE_SPAN + line
        name = rec.name
        rtype = rec.rtype
        origin = self.origin
        if not name.is_subdomain(origin):
            self.error(loc, f"{name} is outside the zone {origin}")
            return
        if name.local is not None and rtype != RType.KEY and rtype != RType.ALIAS:
            self.error(loc, f"mailbox {name} may own only KEY and ALIAS records, "
                       f"not {RType(rtype).name}")
            return
        node = self.nodes.get(name)
        if node is None:
            node = self.nodes[name] = {}
        rrs = node.get(rtype)
        if rrs is not None:
            if rec.ttl != rrs[0]:  # RFC 2181 5.2
                self.error(loc, f"TTL {rec.ttl} differs from TTL {rrs[0]} of the "
                           f"{RType(rtype).name} records of {name} at {self.at(rrs[1])} "
                           "(one name and type, one TTL: RFC 2181 5.2)")
                return
            if (rec.rdata == rrs[2]) if type(rrs) is tuple else (rec.rdata in rrs[2]):
                return  # identical duplicate: dropped, as BIND does
        if rtype == RType.SOA:
            if name != origin:
                self.error(loc, f"SOA must be at the zone apex {origin}, not at {name}")
                return
            if self.soa_loc is not None:
                self.error(loc, f"second SOA record (the first is at {self.at(self.soa_loc)})")
                return
            self.soa_loc = loc
        elif rtype == RType.ALIAS:
            if name == origin:
                self.error(loc, "ALIAS not allowed at the zone apex")
                return
            if rrs is not None:
                self.error(loc, f"second ALIAS at {name} (the first is at "
                           f"{self.at(rrs[1])}); a name has at most one")
                return
        elif rtype == RType.NS:
            self.ns.append((rec.rdata.target, loc))  # type: ignore[union-attr]
        if rrs is None:
            node[rtype] = (rec.ttl, loc, rec.rdata)
        elif type(rrs) is tuple:
            node[rtype] = [rrs[0], rrs[1], [rrs[2], rec.rdata]]
        else:
            rrs[2].append(rec.rdata)

    def finish(self) -> Zone:
        origin = self.origin
        nodes = self.nodes
        found: list[tuple[int, str]] = []  # sorted by location before reporting
        apex = nodes.get(origin, {})
        if self.soa_loc is None:
            found.append((0, f"no SOA record at the zone apex {origin}"))
        if RType.NS not in apex:
            found.append((self.soa_loc or 0, f"no NS record at the zone apex {origin}"))
        # zone cuts: NS below the apex (RFC 1034 4.2.1)
        cuts = {name for name, node in nodes.items() if name != origin and RType.NS in node}
        for name, node in nodes.items():
            cut = _enclosing_cut(name, cuts, origin) if cuts else None
            if cut is not None:  # occluded data: only glue (RFC 1034 4.2.1)
                for rtype, rrs in node.items():
                    if rtype != RType.ADDR:
                        found.append((rrs[1], f"{RType(rtype).name} at {name} below the "
                                      f"delegation point {cut}: only ADDR (glue) allowed"))
                continue
            if name in cuts:
                for rtype, rrs in node.items():
                    if rtype != RType.NS and rtype != RType.ADDR:
                        found.append((rrs[1], f"{RType(rtype).name} at the delegation "
                                      f"point {name}: only NS and ADDR (glue) belong there"))
                continue
            alias = node.get(RType.ALIAS)
            if alias is not None and len(node) > 1:
                for rtype, rrs in node.items():
                    if rtype != RType.ALIAS:
                        found.append((rrs[1], f"{RType(rtype).name} at {name}, which has "
                                      f"an ALIAS (at {self.at(alias[1])}): ALIAS is "
                                      "exclusive"))
        for target, loc in self.ns:  # glue: in-zone NS targets need addresses
            if target.is_subdomain(origin) and RType.ADDR not in nodes.get(target, ()):
                found.append((loc, f"NS target {target} is inside the zone but has no "
                              "ADDR record (glue)"))
        found.sort(key=lambda item: item[0])
        for loc, message in found:
            self.error(loc, message)
        for node in nodes.values():  # in place: no second copy of a big zone
            for rtype, rrs in node.items():
                rdatas = rrs[2]
                node[rtype] = RRset(rrs[0], (rdatas,) if type(rrs) is tuple else tuple(rdatas))
        self.nodes = {}
        return Zone(origin, nodes)  # type: ignore[arg-type]


def _enclosing_cut(name: Name, cuts: set[Name], origin: Name) -> Name | None:
    """The zone cut strictly above `name` (a mailbox counts as below its domain)."""
    labels = name.labels
    stop = len(labels) - len(origin.labels)
    start = 0 if name.local is not None else 1
    for i in range(start, stop):
        candidate = Name(labels[i:])
        if candidate in cuts:
            return candidate
    return None


# -- public API ------------------------------------------------------------------
def iter_records(path: str, origin: Name | None = None) -> Iterator[tuple[Record, str, int]]:
    """Stream ``(record, filename, line)`` from a zone file and its includes.

    Only syntax is checked (no zone checks: see `load_zone`). Records of good
    lines are yielded as they are read; if any line was bad, `ZoneErrors` is
    raised at the end (or once `MAX_ERRORS` is reached).
    """
    reader = ZoneReader(path, origin)
    yield from reader
    if reader.errors:
        raise ZoneErrors(reader.errors)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a zone is built.

    Building a zone allocates millions of long-lived containers and no
    reference cycles, and every collection walks all of them: about 18 % of
    the parse time of a large zone. Reference counting still frees what is
    dropped. The switch is process-wide (a daemon compiling in a worker
    thread pauses collection for its other threads meanwhile); it is turned
    back on at the end if it was on at the start.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load(reader: ZoneReader) -> Zone:
    with _gc_paused():
        return _build(reader)


def _build(reader: ZoneReader) -> Zone:
    errors = reader._errors
    builder: _Builder | None = None
    zone: Zone | None = None
    try:
        for rec, fname, line in reader:
            if builder is None:
                assert reader.origin is not None
                builder = _Builder(reader.origin, errors, reader.filename)
            builder.add(rec, fname, line)
        if reader.origin is None:
            if not errors.items:  # else already reported at the first record
                errors.add(reader.filename, 0, "no $ORIGIN and no zone name given")
        else:
            if builder is None:
                builder = _Builder(reader.origin, errors, reader.filename)
            # checks run even after syntax errors, so one pass reports everything
            zone = builder.finish()
    except _Stop:
        pass
    if errors.items or zone is None:
        raise ZoneErrors(errors.items)
    return zone


def load_zone(path: str, origin: Name | None = None) -> Zone:
    """Parse a zone file (with its includes) and check it; raises `ZoneErrors`
    listing every error found."""
    return _load(ZoneReader(path, origin))


def load_zone_with_sources(path: str,
                           origin: Name | None = None) -> tuple[Zone, list[tuple[str, bytes]]]:
    """As `load_zone`, also returning ``(path, sha256 digest)`` of every file
    read, the main file first, so a caller can skip unchanged zones."""
    reader = ZoneReader(path, origin)
    zone = _load(reader)
    seen: set[str] = set()
    sources = []
    for name, digest in reader.sources:
        if name not in seen:
            seen.add(name)
            sources.append((name, digest))
    return zone, sources


def parse_zone_text(text: str, filename: str = "<string>", origin: Name | None = None) -> Zone:
    """As `load_zone`, from a string; ``$INCLUDE`` paths are relative to the
    current directory."""
    return _load(ZoneReader(None, origin, text=text, filename=filename))


def load_hints(path: str) -> list[tuple[Name, ADDR]]:
    """Read a root hints file: NS records at ``.`` and ADDR records for their
    targets (no SOA). Returns ``(server, address)`` pairs in file order."""
    reader = ZoneReader(path, ROOT)
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
    except _Stop:
        pass
    if errors.items:
        raise ZoneErrors(errors.items)
    return [(target, addr) for target in servers for addr in addrs[target]]


#: Order of types in `summarize`.
_SUMMARY_ORDER = (RType.SOA, RType.NS, RType.ADDR, RType.KEY, RType.ALIAS)


def summarize(zone: Zone) -> str:
    """One line: ``example.com.: serial 2026112201, 10 records (SOA 1, NS 2, ...)``."""
    counts: dict[int, int] = {}
    for node in zone.nodes.values():
        for rtype, rrset in node.items():
            counts[rtype] = counts.get(rtype, 0) + len(rrset.rdatas)
    total = sum(counts.values())
    parts = [f"{RType(t).name} {counts[t]}" for t in _SUMMARY_ORDER if counts.get(t)]
    try:
        serial = str(zone.serial)
    except KeyError:
        serial = "none"
    noun = "record" if total == 1 else "records"
    return f"{zone.origin}: serial {serial}, {total} {noun} ({', '.join(parts)})"


__all__ = ["MAX_ERRORS", "MAX_INCLUDE_DEPTH", "MAX_LINE", "MAX_RECORD_TEXT", "TTL_UNITS",
           "ZoneReader", "iter_records", "load_hints", "load_zone", "load_zone_with_sources",
           "parse_ttl", "parse_zone_text", "summarize"]
