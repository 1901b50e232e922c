"""The transfer journal and the update log.

The transfer journal (sub-DB ``journal``) holds the changes incremental
transfers (IXFR) send, per zone: the zone prefix -> msgpack
``[first_serial, last_serial, entries, bytes, records]``, and zone prefix +
serial_from (4 bytes, big-endian) -> msgpack ``[serial_to, old_soa,
new_soa, [removed...], [added...]]`` (record wire forms, SOAs not repeated
in the lists). The entries form one chain first_serial -> ... ->
last_serial, the zone's current serial; the oldest are evicted past
`MAX_JOURNAL_ENTRIES`, `MAX_JOURNAL_BYTES` or more records than the zone.

The update log (sub-DB ``updatelog``) is the second kind of journal: the
entries a registry writes with the zone changes they cause (opaque bytes,
in the registry's format), per zone: zone prefix + sequence number (8
bytes, big-endian, from 0) -> entry, and the zone prefix -> the next
sequence number. It is the source of truth of registrations: nothing trims
it (not the transfer journal's eviction, not a reload, not a transfer).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from ..authority.xfr import STEP_SOA_RECORDS
from ..protocol.codes import RType
from ..protocol.errors import KeyresolveError, StoreError
from ..protocol.names import Name
from ..protocol.records import Record, soa_serial
from ..protocol.serial import serial_gt
from .diff import DiffCollector
from .env import Txn, delete_prefix
from .keys import zone_prefix

#: Journal entries kept per zone: bounds a chain lookup (one get per entry);
#: 100 reloads cover days of hourly changes, older secondaries get an AXFR.
MAX_JOURNAL_ENTRIES = 100
#: Encoded journal bytes kept per zone: bounds the disk a busy zone's history
#: takes. (Entries are also evicted once the journal holds more records than
#: the zone: an IXFR that long is answered with AXFR anyway.)
MAX_JOURNAL_BYTES = 64 << 20

_SERIAL = 4  # bytes of a serial in a journal key


def journal_key(origin: Name, serial_from: int) -> bytes:
    """The `journal` key of the entry leading away from `serial_from`."""
    return zone_prefix(origin) + serial_from.to_bytes(_SERIAL, "big")


@dataclass(frozen=True, slots=True)
class JournalInfo:
    """The journal of one zone: a chain of `entries` changes from serial
    `first` to `last` (the zone's current serial)."""

    first: int
    last: int
    entries: int
    bytes: int
    #: Records an IXFR of the whole chain sends (both SOAs of each step included).
    records: int


def decode_journal_info(value: bytes) -> JournalInfo:
    try:
        first, last, entries, size, records = msgpack.unpackb(value)
        return JournalInfo(int(first), int(last), int(entries), int(size), int(records))
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StoreError(f"corrupt journal metadata: {exc}") from exc


def _entry_unpacker(value: bytes) -> msgpack.Unpacker:
    """A streaming reader positioned inside a journal entry's outer array."""
    unpacker = msgpack.Unpacker(raw=False, use_list=False, max_buffer_size=max(len(value), 1))
    unpacker.feed(value)
    if unpacker.read_array_header() != 5:
        raise StoreError("corrupt journal entry: not an array of 5")
    return unpacker


class JournalEntry:
    """One stored change (implements `keyresolve.authority.xfr.JournalStep`).

    The header is decoded at once; the record lists only when iterated,
    from `fetch` (which re-reads the entry from its snapshot), so a chain of
    steps costs memory for one entry at a time.
    """

    def __init__(self, serial_from: int, value: bytes, fetch: Callable[[], bytes]) -> None:
        """Decode the header of the stored `value` (use `Snapshot.journal_steps`)."""
        self.serial_from = serial_from
        self._fetch = fetch
        try:
            unpacker = _entry_unpacker(value)
            serial_to = unpacker.unpack()
            self.old_soa = Record.from_wire(unpacker.unpack())
            self.new_soa = Record.from_wire(unpacker.unpack())
            self.removed_count = unpacker.read_array_header()
            for _ in range(self.removed_count):
                unpacker.skip()
            self.added_count = unpacker.read_array_header()
        except StoreError:
            raise
        except (KeyresolveError, ValueError, TypeError, msgpack.UnpackException) as exc:
            raise StoreError(f"corrupt journal entry: {exc}") from exc
        if (type(serial_to) is not int or self.old_soa.rtype != RType.SOA
                or self.new_soa.rtype != RType.SOA or soa_serial(self.old_soa) != serial_from
                or soa_serial(self.new_soa) != serial_to):
            raise StoreError("corrupt journal entry: serials do not match its SOAs")
        self.serial_to: int = serial_to

    def _records(self, added: bool) -> Iterator[Record]:
        try:
            unpacker = _entry_unpacker(self._fetch())
            for _ in range(3):
                unpacker.skip()
            count = unpacker.read_array_header()
            if added:
                for _ in range(count):
                    unpacker.skip()
                count = unpacker.read_array_header()
            for _ in range(count):
                yield Record.from_wire(unpacker.unpack())
        except StoreError:
            raise
        except (KeyresolveError, ValueError, TypeError, msgpack.UnpackException) as exc:
            raise StoreError(f"corrupt journal entry: {exc}") from exc

    def iter_removed(self) -> Iterator[Record]:
        """The records removed, in store order (the SOA is `old_soa`)."""
        return self._records(False)

    def iter_added(self) -> Iterator[Record]:
        """The records added, in store order (the SOA is `new_soa`)."""
        return self._records(True)

    def __repr__(self) -> str:
        return (f"JournalEntry({self.serial_from}->{self.serial_to}, "
                f"-{self.removed_count} +{self.added_count})")


def journal_walk(get: Callable[[bytes], bytes | None], origin: Name, zone_serial: int,
                  from_serial: int, keep: bool) -> list[JournalEntry] | None:
    """The entries from `from_serial` to the zone's current serial, or None."""
    if from_serial == zone_serial:
        return []
    prefix = zone_prefix(origin)
    meta = get(prefix)
    if meta is None:
        return None
    info = decode_journal_info(meta)
    if info.last != zone_serial:
        return None  # stale (never written that way; defensive)
    steps: list[JournalEntry] = []
    serial = from_serial
    while serial != info.last:
        if len(steps) >= info.entries:
            raise StoreError(f"journal of {origin} loops")
        key = prefix + serial.to_bytes(_SERIAL, "big")
        value = get(key)
        if value is None:
            return None
        fetch = (lambda v=value: v) if keep else functools.partial(_must_get, get, key)
        entry = JournalEntry(serial, value, fetch)
        steps.append(entry)
        serial = entry.serial_to
    return steps


def _must_get(get: Callable[[bytes], bytes | None], key: bytes) -> bytes:
    value = get(key)
    if value is None:
        raise StoreError("journal entry vanished")
    return value


def journal_clear(txn: Txn, db: Any, origin: Name) -> None:
    delete_prefix(txn.cursor(db=db), zone_prefix(origin))


#: Suffix of the journal key holding a zone's *barrier*: the serial whose
#: contents changed without the serial increasing. A step from it would
#: only hold the difference from its last version, and a secondary holding
#: an earlier version of that serial would miss the rest: none is journaled.
_BARRIER = b"B"


def journal_barrier(txn: Txn, db: Any, origin: Name, serial: int) -> None:
    """Clear the zone's journal; no step may start at `serial` (see `_BARRIER`)."""
    journal_clear(txn, db, origin)
    txn.put(zone_prefix(origin) + _BARRIER, serial.to_bytes(_SERIAL, "big"), db=db)


def journal_append(txn: Txn, db: Any, origin: Name, old_soa: Record,
                    new_soa: Record, removed: list[Record], added: list[Record],
                    zone_records: int) -> bool:
    """Append one change to the zone's journal and evict the oldest entries
    beyond the bounds; False (journal cleared) if the change cannot be kept."""
    prefix = zone_prefix(origin)
    serial_from, serial_to = soa_serial(old_soa), soa_serial(new_soa)
    barrier = txn.pop(prefix + _BARRIER, db=db)
    if barrier is not None and int.from_bytes(barrier, "big") == serial_from:
        journal_clear(txn, db, origin)
        return False
    meta = txn.get(prefix, db=db)
    info = None if meta is None else decode_journal_info(meta)
    key = prefix + serial_from.to_bytes(_SERIAL, "big")
    # A chain that does not end where this change starts, or serials that
    # came round the circle (RFC 1982) to one already journaled: start over.
    if info is not None and (info.last != serial_from or txn.get(key, db=db) is not None):
        journal_clear(txn, db, origin)
        info = None
    records = STEP_SOA_RECORDS + len(removed) + len(added)
    value = msgpack.packb([serial_to, old_soa.to_wire(), new_soa.to_wire(),
                           [r.to_wire() for r in removed], [r.to_wire() for r in added]])
    if records > zone_records or len(value) > MAX_JOURNAL_BYTES:
        journal_clear(txn, db, origin)
        return False
    txn.put(key, value, db=db)
    if info is None:
        first, entries, size, total = serial_from, 1, len(value), records
    else:
        first, entries = info.first, info.entries + 1
        size, total = info.bytes + len(value), info.records + records
    while (entries > MAX_JOURNAL_ENTRIES or size > MAX_JOURNAL_BYTES
           or total > zone_records):
        old_key = prefix + first.to_bytes(_SERIAL, "big")
        old_value = txn.get(old_key, db=db)
        if old_value is None:
            raise StoreError(f"journal of {origin} lost its entry for serial {first}")
        oldest = JournalEntry(first, old_value, lambda v=old_value: v)
        txn.delete(old_key, db=db)
        first, entries = oldest.serial_to, entries - 1
        size -= len(old_value)
        total -= STEP_SOA_RECORDS + oldest.removed_count + oldest.added_count
    txn.put(prefix, msgpack.packb([first, serial_to, entries, size, total]), db=db)
    return True


@dataclass(frozen=True, slots=True)
class ChangeStep:
    """One change of a zone from `old_soa` to `new_soa`: the records
    removed and added (SOAs not in the lists), as a journal entry holds it."""

    old_soa: Record
    new_soa: Record
    removed: tuple[Record, ...]
    added: tuple[Record, ...]


def journal_update(txn: Txn, db: Any, origin: Name, diff: DiffCollector | None,
                   zone_records: int, serial: int | None = None
                   ) -> tuple[ChangeStep, ...] | None:
    """Record a zone's change in its journal, or clear the journal when the
    change cannot be expressed as a step (see `Store.replace_zone_reference`);
    a change without a higher serial also bars steps from the new serial
    (`_BARRIER`). `serial`: the zone's new serial, if known. Returns the
    change as steps (none: unchanged), None where it is no step."""
    if diff is None or diff.overflow:
        journal_clear(txn, db, origin)
        return None
    if not diff.removed and not diff.added:
        return ()  # unchanged: the journal still ends at the current serial
    old_soa, new_soa = diff.split_soa()
    if new_soa is None:  # the contents changed, not the SOA
        if serial is None:
            journal_clear(txn, db, origin)
        else:
            journal_barrier(txn, db, origin, serial)
        return None
    if old_soa is None or not serial_gt(soa_serial(new_soa), soa_serial(old_soa)):
        journal_barrier(txn, db, origin, soa_serial(new_soa))
        return None
    journal_append(txn, db, origin, old_soa, new_soa, diff.removed, diff.added, zone_records)
    return (ChangeStep(old_soa, new_soa, tuple(diff.removed), tuple(diff.added)),)


def journal_steps_append(txn: Txn, db: Any, origin: Name, steps: list[ChangeStep],
                         zone_records: int) -> None:
    """Append `steps` (a chain) to the zone's journal; clear it instead where
    the steps hold more records than the zone (an IXFR that long is answered
    with AXFR anyway) or where one cannot be kept."""
    total = sum(STEP_SOA_RECORDS + len(s.removed) + len(s.added) for s in steps)
    if total > zone_records:
        journal_clear(txn, db, origin)
        return
    for step in steps:
        if not journal_append(txn, db, origin, step.old_soa, step.new_soa,
                              list(step.removed), list(step.added), zone_records):
            return


# -- the update log -------------------------------------------------------------
_SEQUENCE = 8  # bytes of an update-log sequence number


def update_log_append(txn: Txn, db: Any, origin: Name, entries: Iterable[bytes]) -> None:
    """Append `entries` to the zone's update log, in order, in `txn`."""
    prefix = zone_prefix(origin)
    value = txn.get(prefix, db=db)
    sequence = 0 if value is None else int.from_bytes(value, "big")
    for entry in entries:
        if not isinstance(entry, bytes):
            raise StoreError("an update-log entry is bytes")
        txn.put(prefix + sequence.to_bytes(_SEQUENCE, "big"), entry, db=db)
        sequence += 1
    txn.put(prefix, sequence.to_bytes(_SEQUENCE, "big"), db=db)


def update_log_read(txn: Txn, db: Any, origin: Name, start: int = 0) -> Iterator[bytes]:
    """The zone's update-log entries from sequence number `start`, in order."""
    prefix = zone_prefix(origin)
    cursor = txn.cursor(db=db)
    if not cursor.set_range(prefix + start.to_bytes(_SEQUENCE, "big")):
        return
    for key, value in cursor:
        if len(key) != len(prefix) + _SEQUENCE or not key.startswith(prefix):
            return
        yield value
