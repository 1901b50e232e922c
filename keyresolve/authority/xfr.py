"""Zone transfers (AXFR, IXFR) and NOTIFY, sans-IO.

docs/protocol.md section 8C is the specification. This module turns a TRANSFER
query and a zone (behind the small `TransferSource` protocol) into the
response messages, and turns the response messages a secondary receives into
calls on a `TransferWriter` (the LMDB one is `keyresolve.store.writer.ZoneWriter`).
Nothing here does I/O: the shell reads and writes the TCP frames, signs and
verifies them (`keyresolve.protocol.tsig.StreamSigner` / `StreamVerifier`), and owns
the timers.

Order of records ("store order"): owners by `Name.store_key()` ascending, then
types ascending; the order of the records of one RRset is not significant.
`Zone.records()` and `Snapshot.iter_records()` produce it, transfers send it,
and `diff_records` relies on it.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Protocol

import msgpack

from ..protocol.codes import TRANSFER_TYPES, Opcode, Rcode, RType
from ..protocol.errors import FormError, PeerError, ServerFailure, StoreError
from ..protocol.message import MAX_RECORDS, Message, Question
from ..protocol.grammar import LOCAL_RE
from ..protocol.names import MAX_LOCAL, Name
from ..zonedata.nodes import KEY_RDATA_HEADS
from ..protocol.records import MAX_TTL, SOA, Record, WireFields, soa_serial
from ..protocol.serial import serial_compare, serial_gt
from ..zonedata.model import Node, RRset, Zone

#: Largest encoded transfer message (before a signature trailer). Like BIND's
#: transfer-message-size (20480), well below the 65535 a TCP frame allows:
#: it bounds the memory one message costs both sides and what a broken stream
#: loses, while the per-message overhead stays below 0.2 %. A 64-byte
#: HMAC-SHA512 trailer still fits in any frame.
MAX_XFR_MESSAGE = 16384
#: Answer to a TRANSFER received over UDP: transfers are TCP only (RFC 5936
#: 4.2 for AXFR; this protocol drops RFC 1995's UDP IXFR). REFUSED, not
#: FORMERR: the message is well formed, the transport is not allowed.
UDP_TRANSFER_RCODE = Rcode.REFUSED
#: Records in one IXFR journal step besides its changes: the old and new SOA.
STEP_SOA_RECORDS = 2


class TransferKind(enum.Enum):
    """What a transfer carried (decided by the primary, seen by the secondary)."""

    UP_TO_DATE = "up-to-date"  # one SOA: the client has the current serial
    INCREMENTAL = "incremental"  # IXFR format: journal steps
    FULL = "full"  # AXFR format: the whole zone


# -- requests ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TransferRequest:
    """A validated TRANSFER query: zone, AXFR or IXFR, the client's serial."""

    origin: Name
    rtype: int
    serial: int | None  # IXFR only: the serial of the client's copy


def make_transfer_query(origin: Name, rtype: int, soa: Record | None = None, *,
                        serial: int | None = None, msg_id: int | None = None) -> Message:
    """A TRANSFER query; IXFR carries the client's current `soa` in authority
    (RFC 1995 3), AXFR carries nothing. An IXFR client that knows only its
    `serial` gives that instead: the SOA sent carries it and zeros, since
    only the serial matters to the server (RFC 1995 3)."""
    if rtype not in TRANSFER_TYPES:
        raise ValueError(f"transfer type must be AXFR or IXFR, not {rtype}")
    if serial is not None:
        if soa is not None:
            raise ValueError("give the current SOA or its serial, not both")
        soa = Record(origin, RType.SOA, 0, SOA(origin, Name(origin.labels, "hostmaster"),
                                               serial, 0, 0, 0, 0))
    query = Message(id=secrets.randbits(16) if msg_id is None else msg_id,
                    opcode=Opcode.TRANSFER, question=Question(origin, rtype))
    if rtype == RType.IXFR:
        if soa is None or soa.rtype != RType.SOA or soa.name != origin:
            raise ValueError("an IXFR query needs the zone's current SOA record")
        query.authority.append(soa)
    elif soa is not None:
        raise ValueError("an AXFR query carries no SOA")
    return query


def parse_request(query: Message) -> TransferRequest:
    """Validate a TRANSFER query; raises FormError when it is malformed.

    Whether the zone is served and the client allowed is the caller's
    decision (REFUSED or NOTAUTH).
    """
    if query.opcode != Opcode.TRANSFER or query.qr:
        raise FormError("not a TRANSFER query")
    question = query.question
    if question is None:
        raise FormError("TRANSFER without a question")
    if question.rtype not in TRANSFER_TYPES:
        raise FormError(f"TRANSFER question type must be AXFR or IXFR, not {question.rtype}")
    if question.name.is_mailbox:
        raise FormError(f"a mailbox is not a zone: {question.name}")
    if query.answer or query.additional:
        raise FormError("TRANSFER query with records in answer or additional")
    if question.rtype == RType.AXFR:
        if query.authority:
            raise FormError("AXFR query with records in authority")
        return TransferRequest(question.name, RType.AXFR, None)
    # RFC 1995 3: the authority section holds the SOA of the client's version.
    if len(query.authority) != 1:
        raise FormError("IXFR query must carry exactly one SOA in authority")
    soa = query.authority[0]
    if soa.rtype != RType.SOA or soa.name != question.name:
        raise FormError("IXFR authority record must be the zone's SOA")
    return TransferRequest(question.name, RType.IXFR, soa_serial(soa))


# -- diffs ---------------------------------------------------------------------
def _rrsets(records: Iterable[Record], what: str
            ) -> Iterator[tuple[tuple[bytes, int], list[Record]]]:
    """Group a store-ordered record stream into ((key, type), records) runs."""
    current: tuple[bytes, int] | None = None
    group: list[Record] = []
    for record in records:
        key = (record.name.store_key(), record.rtype)
        if key != current:
            if current is not None:
                if key < current:
                    raise ValueError(f"{what} records are not in store order at {record.name}")
                yield current, group
            current, group = key, []
        group.append(record)
    if current is not None:
        yield current, group


def diff_records(old_sorted: Iterable[Record],
                 new_sorted: Iterable[Record]) -> tuple[list[Record], list[Record]]:
    """(removed, added): the records only in the old and only in the new stream.

    Both streams must be in store order (owner key, then type; ValueError
    otherwise); the records of one RRset may come in any order. A merge-join
    over RRsets: memory grows with the difference and the largest RRset, not
    with the zone. Records are equal when name, type, TTL and rdata are, so a
    TTL change shows as a removal and an addition.
    """
    removed: list[Record] = []
    added: list[Record] = []
    old_iter = _rrsets(old_sorted, "old")
    new_iter = _rrsets(new_sorted, "new")
    old = next(old_iter, None)
    new = next(new_iter, None)
    while old is not None or new is not None:
        if old is not None and (new is None or old[0] < new[0]):
            removed.extend(old[1])
            old = next(old_iter, None)
        elif new is not None and (old is None or new[0] < old[0]):
            added.extend(new[1])
            new = next(new_iter, None)
        elif old is not None and new is not None:  # the same RRset key
            old_set, new_set = set(old[1]), set(new[1])
            removed.extend(r for r in dict.fromkeys(old[1]) if r not in new_set)
            added.extend(r for r in dict.fromkeys(new[1]) if r not in old_set)
            old = next(old_iter, None)
            new = next(new_iter, None)
    return removed, added


# -- the data a primary sends from -----------------------------------------------
class JournalStep(Protocol):
    """One change of a zone from `old_soa`'s serial to `new_soa`'s."""

    old_soa: Record
    new_soa: Record

    @property
    def removed_count(self) -> int:
        """Records removed (SOA not counted)."""

    @property
    def added_count(self) -> int:
        """Records added (SOA not counted)."""

    def iter_removed(self) -> Iterator[Record]:
        """The removed records, store order, SOA excluded."""

    def iter_added(self) -> Iterator[Record]:
        """The added records, store order, SOA excluded."""


@dataclass(frozen=True, slots=True)
class Delta:
    """A `JournalStep` held in memory."""

    old_soa: Record
    new_soa: Record
    removed: tuple[Record, ...] = ()
    added: tuple[Record, ...] = ()

    @property
    def removed_count(self) -> int:
        return len(self.removed)

    @property
    def added_count(self) -> int:
        return len(self.added)

    def iter_removed(self) -> Iterator[Record]:
        return iter(self.removed)

    def iter_added(self) -> Iterator[Record]:
        return iter(self.added)


class TransferSource(Protocol):
    """One version of a zone and its journal (an `LmdbZoneView` is one)."""

    origin: Name

    @property
    def soa(self) -> Record:
        """The apex SOA."""

    @property
    def record_count(self) -> int:
        """Records in the zone, SOA included."""

    def records(self) -> Iterator[Record]:
        """Every record, SOA included, in store order."""

    def packed_records(self) -> Iterator[bytes]:
        """Every record but the apex SOA, in store order, each packed as
        msgpack.packb(record.to_wire()) would pack it (what a full transfer sends)."""

    def journal_steps(self, from_serial: int) -> Sequence[JournalStep] | None:
        """Steps from `from_serial` to the current serial, or None."""


def step_chain(steps: Sequence[JournalStep], from_serial: int) -> Sequence[JournalStep] | None:
    """The suffix of `steps` (oldest first) that leads from `from_serial` to
    the last step's serial, or None if no step starts there or the chain has
    a gap."""
    for index, step in enumerate(steps):
        if soa_serial(step.old_soa) == from_serial:
            chain_ = steps[index:]
            for before, after in zip(chain_, chain_[1:]):
                if soa_serial(before.new_soa) != soa_serial(after.old_soa):
                    return None
            return chain_
    return None


@dataclass
class MemorySource:
    """A `TransferSource` over an in-memory `Zone` and a list of steps
    (oldest first; the last one must end at the zone's serial)."""

    zone: Zone
    steps: Sequence[JournalStep] = ()

    @property
    def origin(self) -> Name:
        return self.zone.origin

    @property
    def soa(self) -> Record:
        return self.zone.soa

    @property
    def record_count(self) -> int:
        return len(self.zone)

    def records(self) -> Iterator[Record]:
        return self.zone.records()

    def packed_records(self) -> Iterator[bytes]:
        return _pack_body(self.zone.records(), self.zone.soa)

    def journal_steps(self, from_serial: int) -> Sequence[JournalStep] | None:
        found = step_chain(self.steps, from_serial)
        if found and soa_serial(found[-1].new_soa) != self.zone.serial:
            return None
        return found


# -- the primary's side: response messages ---------------------------------------
class _Batcher:
    """Packs records greedily into responses of at most `max_size` bytes."""

    def __init__(self, query: Message, max_size: int) -> None:
        self.query = query
        empty = self.message([])
        # An answer array of 16..65535 records has a 3-byte header, not 1.
        self.budget = max_size - len(empty.encode_unsigned()) - 2
        if self.budget <= 0:
            raise ValueError(f"max_size {max_size} leaves no room for records")

    def message(self, packed: list[bytes]) -> Message:
        query = self.query
        return Message(id=query.id, opcode=Opcode.TRANSFER, qr=True, aa=True, rd=query.rd,
                       question=query.question, packed_answer=packed)

    def run(self, packed_records: Iterable[bytes]) -> Iterator[Message]:
        """Messages of the packed records, in order."""
        batch: list[bytes] = []
        size = 0
        budget = self.budget
        for packed in packed_records:
            length = len(packed)
            if length > budget:
                raise ServerFailure(f"record {_owner_of(packed)} does not fit a transfer message")
            if batch and (size + length > budget or len(batch) == MAX_RECORDS):
                yield self.message(batch)
                batch, size = [], 0
            batch.append(packed)
            size += length
        if batch:
            yield self.message(batch)


def _owner_of(packed: bytes) -> str:
    """The owner name of a packed record, for messages."""
    try:
        return str(msgpack.unpackb(packed)[0])
    except (ValueError, TypeError, IndexError, msgpack.UnpackException):
        return "?"


def _pack_records(records: Iterable[Record]) -> Iterator[bytes]:
    pack = msgpack.Packer().pack
    return (pack(record.to_wire()) for record in records)


def _pack_body(records: Iterable[Record], soa: Record) -> Iterator[bytes]:
    """`records` but the apex SOA `soa`, packed."""
    return _pack_records(r for r in records if not (r.rtype == RType.SOA and r.name == soa.name))


def _check_apex_soa(soa: Record) -> None:
    if soa.rtype != RType.SOA:
        raise ValueError("the zone's SOA record is not an SOA")


def outbound_axfr(query: Message, soa: Record, records: Iterable[Record], *,
                  max_size: int = MAX_XFR_MESSAGE) -> Iterator[Message]:
    """The AXFR-format response (RFC 5936 2.2): SOA, every other record of
    `records` (which yields the SOA too: skipped), SOA again.

    Lazy: records are pulled from `records` as messages are taken, so a
    stream from one LMDB snapshot keeps memory flat.
    """
    return _axfr_messages(query, soa, _pack_body(records, soa), max_size)


def _axfr_messages(query: Message, soa: Record, packed_body: Iterable[bytes],
                   max_size: int) -> Iterator[Message]:
    _check_apex_soa(soa)
    packed_soa = msgpack.packb(soa.to_wire())
    return _Batcher(query, max_size).run(chain((packed_soa,), packed_body, (packed_soa,)))


def outbound_ixfr(query: Message, soa: Record, steps: Sequence[JournalStep], *,
                  max_size: int = MAX_XFR_MESSAGE) -> Iterator[Message]:
    """The IXFR-format response (RFC 1995 4): new SOA, then per step the old
    SOA, removals, the step's new SOA, additions; the new SOA to end.
    With no steps it is the single-SOA "up to date" response."""
    _check_apex_soa(soa)
    if not steps:
        return iter([_Batcher(query, max_size).message([msgpack.packb(soa.to_wire())])])
    parts: list[Iterable[Record]] = [(soa,)]
    for step in steps:
        parts += [(step.old_soa,), _LazyIter(step.iter_removed),
                  (step.new_soa,), _LazyIter(step.iter_added)]
    parts.append((soa,))
    return _Batcher(query, max_size).run(_pack_records(chain.from_iterable(parts)))


class _LazyIter:
    """Calls `factory` only when iterated (journal steps load on demand)."""

    def __init__(self, factory: Callable[[], Iterable[Record]]) -> None:
        self._factory = factory

    def __iter__(self) -> Iterator[Record]:
        return iter(self._factory())


def chain_size(steps: Sequence[JournalStep]) -> int:
    """Records an IXFR of `steps` sends, besides its first and last SOA."""
    return sum(STEP_SOA_RECORDS + s.removed_count + s.added_count for s in steps)


class OutboundTransfer:
    """The response to one TRANSFER query: decides the kind, yields messages.

    RFC 1995 2/4: an IXFR from the current serial, or from a serial newer
    than ours, gets the single SOA; from an older one covered by the
    journal, the steps; otherwise (no journal, a gap, serials 2**31 apart,
    or steps holding more records than the zone) the full zone in AXFR
    format. Iterate while the source (the snapshot) stays open.
    """

    def __init__(self, query: Message, source: TransferSource, *,
                 max_size: int = MAX_XFR_MESSAGE) -> None:
        """Plan the response; raises FormError for a malformed query."""
        self.request = parse_request(query)
        if self.request.origin != source.origin:
            raise ValueError(f"source holds {source.origin}, query asks {self.request.origin}")
        self.query = query
        self.source = source
        self.max_size = max_size
        self.soa = source.soa
        self.serial = soa_serial(self.soa)
        self.steps: Sequence[JournalStep] = ()
        self.kind = TransferKind.FULL
        if self.request.rtype == RType.IXFR:
            assert self.request.serial is not None
            order = serial_compare(self.request.serial, self.serial)
            if order in (0, 1):
                self.kind = TransferKind.UP_TO_DATE
            elif order == -1:
                steps = source.journal_steps(self.request.serial)
                if (steps and soa_serial(steps[0].old_soa) == self.request.serial
                        and soa_serial(steps[-1].new_soa) == self.serial
                        and chain_size(steps) <= source.record_count):
                    self.kind = TransferKind.INCREMENTAL
                    self.steps = steps

    def __iter__(self) -> Iterator[Message]:
        """The response messages, built as they are taken."""
        if self.kind == TransferKind.FULL:
            return _axfr_messages(self.query, self.soa, self.source.packed_records(),
                                  self.max_size)
        return outbound_ixfr(self.query, self.soa, self.steps, max_size=self.max_size)


# -- the secondary's side: applying a transfer -------------------------------------
class TransferWriter(Protocol):
    """Where `Inbound` applies a transfer. Calls come in one of these orders:

    full:  begin_full, add*, commit(soa)
    delta: (begin_delta(old_soa), delete*, begin_additions(new_soa), add*)+, commit(soa)

    and abort() at any point after a begin (also after a failed commit). No
    SOA ever passes through delete/add: commit sets the apex SOA. delete and
    add raise FormError when a delta does not apply (see `node_delete`).

    A writer may also have ``add_packed_keys(items)``: `add` of KEY records
    at mailboxes, each given as (its owner's store key relative to the
    origin (`Name.store_key`), its TTL, its rdata as msgpack packs
    `Record.to_wire`'s), in order. `Inbound` then hands it a full transfer's
    mailbox KEY records (see `KeyPacker`) without making objects.
    """

    def begin_full(self) -> None:
        """Start replacing the whole zone (nothing of the old zone is kept)."""

    def begin_delta(self, old_soa: Record) -> None:
        """Start one IXFR step from `old_soa` (its deletions follow)."""

    def begin_additions(self, new_soa: Record) -> None:
        """The current step's deletions are done; its additions lead to `new_soa`."""

    def delete(self, record: Record) -> None:
        """Remove one record (delta only)."""

    def add(self, record: Record) -> None:
        """Add one record."""

    def commit(self, soa: Record) -> None:
        """Make everything visible atomically, with `soa` as the apex SOA."""

    def abort(self) -> None:
        """Drop everything since the begin; the old zone stays. Idempotent."""


_KEY = int(RType.KEY)
#: Mailbox domains a `KeyPacker` remembers (a zone's mailboxes use few).
MAX_PACKER_DOMAINS = 4096


class KeyPacker:
    """The fast path of a full transfer: turns a record as msgpack decoded it
    into `add_packed_key`'s arguments when it is a mailbox's KEY record
    inside `origin` in canonical form, with flags 0; None for anything else
    (`Record.from_wire` then decodes it, strictly, as before). Whatever it
    takes, `Record.from_wire` would have taken with the same result."""

    def __init__(self, origin: Name) -> None:
        self._origin_key = origin.store_key()
        self._domains: dict[str, bytes | None] = {}  # domain -> relative key + b"@", None

    def __call__(self, fields: Any) -> tuple[bytes, int, bytes] | None:
        try:
            name, rtype, ttl, (algorithm, usage, flags, key) = fields
        except (TypeError, ValueError):
            return None
        # type checks first: True == 1, 1.0 == 1
        if (type(rtype) is not int or rtype != _KEY or type(ttl) is not int
                or not 0 <= ttl <= MAX_TTL or type(algorithm) is not int
                or type(usage) is not int or type(flags) is not int or flags
                or type(key) is not bytes or type(name) is not str
                or type(fields) is not tuple):
            return None
        head = KEY_RDATA_HEADS.get((algorithm, usage))
        if head is None or len(key) != head[1]:
            return None
        local, at, domain = name.partition("@")
        if not at or len(local) > MAX_LOCAL or not LOCAL_RE.match(local):
            return None  # not a mailbox, or a local part not in canonical form
        prefix = self._domains.get(domain, b"")
        if prefix == b"":
            prefix = self._domain(domain)
            if len(self._domains) < MAX_PACKER_DOMAINS:
                self._domains[domain] = prefix
        if prefix is None:
            return None
        return prefix + local.encode(), ttl, head[0] + key

    def _domain(self, domain: str) -> bytes | None:
        """A mailbox domain's key relative to the origin, + b"@"; None when
        `Name.from_wire` would not take it as one inside the zone."""
        if "@" in domain or domain == "." or not domain.endswith("."):
            return None
        try:
            key = Name.from_text(domain).store_key()
        except FormError:
            return None
        if not key.startswith(self._origin_key):
            return None
        return key[len(self._origin_key):] + b"@"


def node_delete(node: Node, record: Record) -> None:
    """Remove `record`'s rdata from its RRset in `node` (the TTL is not
    compared: an RRset has one TTL, RFC 2181 5.2). FormError if absent:
    the delta was made against other data than ours."""
    rrset = node.get(record.rtype)
    if rrset is None or record.rdata not in rrset.rdatas:
        raise FormError(f"delta removes a record we do not have: {record.to_text()}")
    rdatas = tuple(rd for rd in rrset.rdatas if rd != record.rdata)
    if rdatas:
        node[record.rtype] = RRset(rrset.ttl, rdatas)
    else:
        del node[record.rtype]


def node_add(node: Node, record: Record, *, strict: bool) -> bool:
    """Add `record`'s rdata to `node`; the RRset takes the record's TTL
    (RFC 2181 5.2: one TTL per RRset, the latest wins). An rdata already
    present is FormError when `strict` (a delta), else ignored (a full
    transfer repeating a record). True if the node changed."""
    rrset = node.get(record.rtype)
    if rrset is None:
        node[record.rtype] = RRset(record.ttl, (record.rdata,))
        return True
    if record.rdata in rrset.rdatas:
        if strict:
            raise FormError(f"delta adds a record we already have: {record.to_text()}")
        if rrset.ttl != record.ttl:
            node[record.rtype] = RRset(record.ttl, rrset.rdatas)
        return False
    node[record.rtype] = RRset(record.ttl, rrset.rdatas + (record.rdata,))
    return True


class MemoryWriter:
    """A `TransferWriter` building a new in-memory `Zone` from `zone` (the
    secondary's current copy, None for none). After commit, `zone` is the new
    zone and `steps` the deltas applied (empty after a full transfer)."""

    def __init__(self, zone: Zone | None = None) -> None:
        self.zone = zone
        self.steps: list[Delta] = []
        self.commits = 0
        self._nodes: dict[Name, Node] | None = None
        self._strict = False
        #: [old_soa, new_soa, removed, added] of the delta being read: a mixed row.
        self._step: list[Any] = []
        self._pending: list[Delta] = []

    def begin_full(self) -> None:
        self._nodes, self._strict, self._pending, self._step = {}, False, [], []

    def begin_delta(self, old_soa: Record) -> None:
        if self._nodes is None:
            if self.zone is None:
                raise FormError("delta for a zone we do not have")
            if self.zone.serial != soa_serial(old_soa):
                raise FormError(f"delta starts at serial {soa_serial(old_soa)}, "
                                f"we have {self.zone.serial}")
            self._nodes = {name: dict(node) for name, node in self.zone.nodes.items()}
            self._strict, self._pending = True, []
        self._end_step()
        self._step = [old_soa, None, [], []]

    def begin_additions(self, new_soa: Record) -> None:
        self._step[1] = new_soa

    def _node(self, record: Record) -> Node:
        assert self._nodes is not None, "no transfer begun"
        if record.rtype == RType.SOA:  # (`Inbound` never passes one: our misuse)
            raise StoreError("SOA records are set by commit, not added or removed")
        return self._nodes.setdefault(record.name, {})

    def delete(self, record: Record) -> None:
        node = self._node(record)
        try:
            node_delete(node, record)
        finally:
            if not node:
                assert self._nodes is not None
                del self._nodes[record.name]
        self._step[2].append(record)

    def add(self, record: Record) -> None:
        node_add(self._node(record), record, strict=self._strict)
        if self._strict:
            self._step[3].append(record)

    def _end_step(self) -> None:
        if self._step:
            old, new, removed, added = self._step
            self._pending.append(Delta(old, new, tuple(removed), tuple(added)))
            self._step = []

    def commit(self, soa: Record) -> None:
        assert self._nodes is not None, "no transfer begun"
        self._end_step()
        apex = self._nodes.setdefault(soa.name, {})
        apex[RType.SOA] = RRset(soa.ttl, (soa.rdata,))
        self.zone = Zone(soa.name, self._nodes)
        self.steps = self._pending
        self.commits += 1
        self._nodes = None

    def abort(self) -> None:
        self._nodes, self._step, self._pending = None, [], []


class _State(enum.Enum):
    FIRST = "first SOA"
    SECOND = "second record"
    FULL = "zone records"
    DELETE = "deletions"
    ADD = "additions"
    END = "final SOA seen"  # committed once the rest of its message checks out
    DONE = "done"


@dataclass
class Inbound:
    """Applies one transfer response stream to a `TransferWriter`.

    Feed each decoded (and verified) message to `process_message`; it
    returns True once the transfer is complete and committed. On any error
    the writer is aborted and the error raised: FormError for a malformed or
    inconsistent stream, PeerError for an error rcode. If the stream ends
    before `process_message` returned True, call `abort()`: nothing is
    committed without the final SOA.

    `serial_from` is the secondary's serial for IXFR (what its query's
    authority SOA said) and must be None for AXFR. `query_id`, if given, is
    checked against every message.
    """

    origin: Name
    rtype: int
    serial_from: int | None
    writer: TransferWriter
    query_id: int | None = None
    #: What the primary sent; None until the stream says.
    kind: TransferKind | None = field(default=None, init=False)
    #: The zone's serial after the transfer (set once complete).
    serial: int | None = field(default=None, init=False)
    messages: int = field(default=0, init=False)
    records: int = field(default=0, init=False)
    _state: _State = field(default=_State.FIRST, init=False)
    _first: Record | None = field(default=None, init=False)
    _step_old: Record | None = field(default=None, init=False)
    _step_new: Record | None = field(default=None, init=False)
    _begun: bool = field(default=False, init=False)
    _failed: bool = field(default=False, init=False)
    _packer: KeyPacker | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.rtype not in TRANSFER_TYPES:
            raise ValueError("rtype must be AXFR or IXFR")
        if (self.rtype == RType.IXFR) != (self.serial_from is not None):
            raise ValueError("serial_from is required for IXFR and not allowed for AXFR")
        if self.origin.is_mailbox:
            raise ValueError("a mailbox is not a zone")
        if hasattr(self.writer, "add_packed_keys"):
            self._packer = KeyPacker(self.origin)

    @property
    def done(self) -> bool:
        """True once the transfer completed."""
        return self._state == _State.DONE

    def abort(self) -> None:
        """The stream broke off: drop whatever was written. Idempotent."""
        if self.done:
            return
        self._failed = True
        if self._begun:
            self._begun = False
            self.writer.abort()

    def process_message(self, msg: Message) -> bool:
        """Apply one response message; True when the transfer is complete."""
        if self._failed:
            raise FormError("transfer already failed or aborted")
        try:
            self._check_message(msg)
            if msg.raw_answer is None:
                for record in msg.answer:
                    self._record(record)
            else:
                self._raw_records(msg.raw_answer)
            self.messages += 1
            if self._state == _State.SECOND and self.kind == TransferKind.UP_TO_DATE:
                self._state = _State.DONE  # the single-SOA answer (RFC 1995 2)
            elif self._state == _State.END:
                assert self._first is not None
                self.writer.commit(self._first)
                self.serial = soa_serial(self._first)
                self._state = _State.DONE
            return self.done
        except BaseException:
            self.abort()
            raise

    def _check_message(self, msg: Message) -> None:
        if not msg.qr or msg.opcode != Opcode.TRANSFER:
            raise FormError("not a TRANSFER response")
        if self.query_id is not None and msg.id != self.query_id:
            raise FormError(f"response id {msg.id} does not match query id {self.query_id}")
        if msg.rcode != Rcode.NOERROR:
            raise PeerError(msg.rcode)
        if self.done:
            raise FormError("message after the transfer's final SOA")
        # RFC 5936 2.2.1: later messages may leave the question out.
        if msg.question is not None or self.messages == 0:
            if msg.question != Question(self.origin, self.rtype):
                raise FormError(f"response question {msg.question} does not match the query")
        if msg.tc:
            raise FormError("truncated transfer message")
        if msg.authority or msg.additional:
            raise FormError("transfer records belong in the answer section")

    def _raw_records(self, section: WireFields) -> None:
        """The records of an answer section decoded with ``raw_answer``."""
        pack = self._packer
        packed: list[tuple[bytes, int, bytes]] = []  # mailbox KEY records not yet handed on
        for fields in section:
            if pack is not None and self._state is _State.FULL:
                item = pack(fields)
                if item is not None:
                    packed.append(item)
                    continue
            if packed:
                self._add_packed(packed)
                packed = []
            self._record(Record.from_wire(fields, Name.from_wire_uncached))
        if packed:
            self._add_packed(packed)

    def _add_packed(self, items: list[tuple[bytes, int, bytes]]) -> None:
        self.records += len(items)
        self.writer.add_packed_keys(items)  # type: ignore[attr-defined]

    def _record(self, record: Record) -> None:
        if not record.name.is_subdomain(self.origin):
            raise FormError(f"record {record.name} is outside zone {self.origin}")
        is_soa = record.rtype == RType.SOA
        if is_soa and record.name != self.origin:
            raise FormError(f"SOA record at {record.name}, not at the apex")
        self.records += 1
        state = self._state
        if state == _State.FIRST:
            if not is_soa:
                raise FormError("a transfer must start with the zone's SOA")
            self._first = record
            serial = soa_serial(record)
            if (self.rtype == RType.IXFR and self.serial_from is not None
                    and not serial_gt(serial, self.serial_from)):
                self.kind = TransferKind.UP_TO_DATE  # ours is current or newer
                self.serial = self.serial_from
            self._state = _State.SECOND
        elif state == _State.SECOND:
            if self.kind == TransferKind.UP_TO_DATE:
                assert self._first is not None
                if soa_serial(self._first) == self.serial_from:
                    raise FormError("records after an up-to-date SOA")
                # Not newer than ours (older, or 2**31 away) yet more follows:
                # only the whole zone in AXFR format can (RFC 1995 4).
                if is_soa and record.rdata != self._first.rdata:
                    raise FormError("IXFR format from a serial not newer than ours")
                self.kind = None
            self._second(record, is_soa)
        elif state == _State.FULL:
            if is_soa:
                self._finish(record)
            else:
                self.writer.add(record)
        elif state == _State.DELETE:
            if is_soa:
                assert self._step_old is not None
                if not serial_gt(soa_serial(record), soa_serial(self._step_old)):
                    raise FormError(f"IXFR step from serial {soa_serial(self._step_old)} to "
                                    f"{soa_serial(record)} does not increase it (RFC 1982)")
                self._step_new = record
                self.writer.begin_additions(record)
                self._state = _State.ADD
            else:
                self.writer.delete(record)
        elif state == _State.ADD:
            if is_soa:
                self._next_step(record)
            else:
                self.writer.add(record)
        else:
            raise FormError("record after the transfer's final SOA")

    def _second(self, record: Record, is_soa: bool) -> None:
        first = self._first
        assert first is not None
        if is_soa and record.rdata == first.rdata:
            # AXFR format of a zone holding only its SOA.
            self.kind = TransferKind.FULL
            self._begin(self.writer.begin_full)
            self._finish(record)
        elif is_soa:
            if self.rtype != RType.IXFR:
                raise FormError("second SOA of an AXFR differs from the first")
            # RFC 1995 4: IXFR format; the first step starts at our serial.
            if soa_serial(record) != self.serial_from:
                raise FormError(f"IXFR starts at serial {soa_serial(record)}, "
                                f"ours is {self.serial_from}")
            self.kind = TransferKind.INCREMENTAL
            self._step_old = record
            self._begin(lambda: self.writer.begin_delta(record))
            self._state = _State.DELETE
        else:
            # RFC 1995 4: "the response may be a full transfer" (AXFR format).
            self.kind = TransferKind.FULL
            self._begin(self.writer.begin_full)
            self._state = _State.FULL
            self.writer.add(record)

    def _begin(self, start: Callable[[], None]) -> None:
        self._begun = True
        start()

    def _next_step(self, record: Record) -> None:
        first, new = self._first, self._step_new
        assert first is not None and new is not None
        if soa_serial(new) == soa_serial(first):
            if new.rdata != first.rdata:
                raise FormError("last IXFR step's SOA differs from the first SOA")
            self._finish(record)
            return
        # The next step starts where this one ended.
        if record.rdata != new.rdata:
            raise FormError(f"IXFR step starts at serial {soa_serial(record)}, "
                            f"the previous one ended at {soa_serial(new)}")
        self._step_old = record
        self.writer.begin_delta(record)
        self._state = _State.DELETE

    def _finish(self, record: Record) -> None:
        first = self._first
        assert first is not None
        if record.rdata != first.rdata:
            raise FormError("the final SOA differs from the first")
        self._state = _State.END


# -- NOTIFY (RFC 1996) -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Notify:
    """A validated NOTIFY: the zone, and the new serial if the primary sent one."""

    origin: Name
    serial: int | None


def make_notify(origin: Name, soa: Record | None = None, *,
                msg_id: int | None = None) -> Message:
    """A NOTIFY for `origin` (RFC 1996 3.7: AA set, question [zone, SOA]),
    with the new `soa` in the answer section as a hint if given."""
    if soa is not None and (soa.rtype != RType.SOA or soa.name != origin):
        raise ValueError("the NOTIFY hint must be the zone's SOA")
    return Message(id=secrets.randbits(16) if msg_id is None else msg_id, opcode=Opcode.NOTIFY,
                   aa=True, question=Question(origin, RType.SOA),
                   answer=[] if soa is None else [soa])


def validate_notify(msg: Message) -> Notify:
    """Validate a NOTIFY request; raises FormError. The serial hint is only
    a hint (RFC 1996 3.11): the secondary still asks its primary."""
    if msg.opcode != Opcode.NOTIFY or msg.qr:
        raise FormError("not a NOTIFY request")
    question = msg.question
    if question is None or question.rtype != RType.SOA or question.name.is_mailbox:
        raise FormError("NOTIFY question must be [zone, SOA]")
    if msg.authority or msg.additional or len(msg.answer) > 1:
        raise FormError("NOTIFY carries at most one SOA, in the answer section")
    serial = None
    if msg.answer:
        record = msg.answer[0]
        if record.rtype != RType.SOA or record.name != question.name:
            raise FormError("NOTIFY answer must be the zone's SOA")
        serial = soa_serial(record)
    return Notify(question.name, serial)


def notify_response(query: Message) -> Message:
    """The acknowledgement (RFC 1996 4.7): same id and question, QR and AA set."""
    return Message(id=query.id, opcode=Opcode.NOTIFY, qr=True, aa=True,
                   question=query.question)


def check_notify_response(response: Message, query: Message) -> None:
    """Check the acknowledgement of our NOTIFY `query`: FormError if it does
    not answer it, PeerError if it carries an error rcode."""
    if (not response.qr or response.opcode != Opcode.NOTIFY or response.id != query.id
            or response.question != query.question):
        raise FormError("response does not answer our NOTIFY")
    if response.rcode != Rcode.NOERROR:
        raise PeerError(response.rcode)


__all__ = ["Delta", "Inbound", "JournalStep", "MAX_XFR_MESSAGE", "MemorySource", "MemoryWriter",
           "Notify", "OutboundTransfer", "STEP_SOA_RECORDS", "TRANSFER_TYPES", "TransferKind",
           "TransferRequest", "TransferSource", "TransferWriter", "UDP_TRANSFER_RCODE",
           "chain_size", "check_notify_response", "diff_records", "make_notify",
           "make_transfer_query", "node_add", "node_delete", "notify_response", "outbound_axfr",
           "outbound_ixfr", "parse_request", "step_chain", "validate_notify"]
