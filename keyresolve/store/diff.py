"""Record-level differences between two versions of a zone's nodes (for the
transfer journal): node streams compared a batch at a time (`diff_sorted`),
nodes turned into record changes (`DiffCollector`)."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterator
from typing import Any

from ..authority.xfr import diff_records
from ..protocol.codes import RType
from ..protocol.errors import StoreError
from ..protocol.names import Name
from ..protocol.records import Record
from ..zonedata.nodes import decode_node
from .env import Cursor, Txn, count_under
from .keys import node_prefix, zone_prefix

#: Nodes read at a time when diffing two versions of a zone for its journal:
#: runs of equal nodes are compared a batch at a time; small enough that a
#: batch with one difference costs little more than the difference.
DIFF_BATCH = 256
#: A cursor item's key and value.
_KEY_OF = operator.itemgetter(0)
_VALUE_OF = operator.itemgetter(1)


class DiffCollector:
    """Record-level changes of the nodes that differ between two versions of
    a zone; gives up (overflow) past `cap` records, where the change would not
    be journaled anyway."""

    def __init__(self, origin: Name, cap: int) -> None:
        self.origin_key = origin.store_key()
        self.skip = len(zone_prefix(origin))
        self.cap = cap
        self.removed: list[Record] = []
        self.added: list[Record] = []
        self.overflow = False

    def node(self, key: bytes, old: bytes | None, new: bytes | None) -> None:
        """Account for the node at `key` going from `old` to `new` (stored forms)."""
        if self.overflow:
            return
        try:
            name = Name.from_store_key(self.origin_key + key[self.skip:])
        except (UnicodeDecodeError, ValueError) as exc:
            raise StoreError(f"corrupt node key {key!r}") from exc
        removed, added = diff_records(node_records(name, old), node_records(name, new))
        self.removed += removed
        self.added += added
        # Both SOAs are in these lists: their length is the step's size.
        if len(self.removed) + len(self.added) > self.cap:
            self.overflow = True
            self.removed, self.added = [], []

    def split_soa(self) -> tuple[Record | None, Record | None]:
        """Take the SOA records out of the change: (old SOA, new SOA)."""
        old = pop_soa(self.removed)
        new = pop_soa(self.added)
        return old, new


def diff_areas(txn: Txn, db: Any, origin: Name, old_area: int, new_area: int,
                cap: int) -> DiffCollector:
    """The record-level change from the zone's nodes in `old_area` to those in
    `new_area` (a `DiffCollector` giving up past `cap` records)."""
    diff = DiffCollector(origin, cap)
    before, after = node_prefix(origin, old_area), node_prefix(origin, new_area)
    old = suffix_batches(txn.cursor(db=db), before)
    new = suffix_batches(txn.cursor(db=db), after)
    for key, was, now in diff_sorted(old, new):
        diff.node(after + key, was, now)
        if diff.overflow:
            break  # not journaled: the rest changes nothing
    return diff


def pop_soa(records: list[Record]) -> Record | None:
    for index, record in enumerate(records):
        if record.rtype == RType.SOA:
            return records.pop(index)
    return None


def node_records(name: Name, value: bytes | None) -> list[Record]:
    if value is None:
        return []
    node = decode_node(value)
    return [rec for rtype in sorted(node) for rec in node[rtype].records(name, rtype)]



def suffix_batches(cursor: Cursor, prefix: bytes, size: int = DIFF_BATCH
                    ) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """The keys under `prefix` (without it) and their values, ascending, as
    lists of up to `size` (never empty)."""
    if not cursor.set_range(prefix):
        return
    items = cursor.iternext()
    strip = operator.itemgetter(slice(len(prefix), None))
    while True:
        batch = list(itertools.islice(items, size))
        last = len(batch) < size
        if batch and not batch[-1][0].startswith(prefix):  # the prefix ends in this batch
            del batch[count_under(list(map(_KEY_OF, batch)), prefix):]
            last = True
        if batch:
            yield list(map(strip, map(_KEY_OF, batch))), list(map(_VALUE_OF, batch))
        if last:
            return


def diff_sorted(old: Iterator[tuple[list[bytes], list[bytes]]],
                 new: Iterator[tuple[list[bytes], list[bytes]]]
                 ) -> Iterator[tuple[bytes, bytes | None, bytes | None]]:
    """(key, old value, new value) for every key whose value differs (None:
    absent) between two ascending streams of (keys, values) batches (as
    `suffix_batches`). Runs of equal items are compared a slice at a time,
    in C; only differences cost Python per item."""
    ka: list[bytes] = []
    va: list[bytes] = []
    kb: list[bytes] = []
    vb: list[bytes] = []
    i = j = 0
    while True:
        if i == len(ka):
            ka, va = next(old, ([], []))
            i = 0
        if j == len(kb):
            kb, vb = next(new, ([], []))
            j = 0
        if not ka or not kb:
            if ka:
                yield from zip(ka[i:], va[i:], itertools.repeat(None))
            elif kb:
                yield from zip(kb[j:], itertools.repeat(None), vb[j:])
            else:
                return
            i, j = len(ka), len(kb)
            continue
        x, y = ka[i], kb[j]
        if x == y and va[i] == vb[j]:
            m = min(len(ka) - i, len(kb) - j)
            if ka[i:i + m] == kb[j:j + m] and va[i:i + m] == vb[j:j + m]:
                i += m
                j += m
                continue
            lo, hi = 1, m  # the first lo items are equal, the first hi are not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if ka[i:i + mid] == kb[j:j + mid] and va[i:i + mid] == vb[j:j + mid]:
                    lo = mid
                else:
                    hi = mid
            i += lo
            j += lo
        elif x < y:
            yield x, va[i], None
            i += 1
        elif y < x:
            yield y, None, vb[j]
            j += 1
        else:
            yield x, va[i], vb[j]
            i += 1
            j += 1

