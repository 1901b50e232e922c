"""Zone contents in memory and the read interface authoritative answering uses.

`ZoneView` is what `keyresolve.authority.answer` reads: the in-memory `Zone` here and
the LMDB view in `keyresolve.store.zones` both provide it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ..protocol.codes import RType
from ..protocol.names import Name
from ..protocol.records import SOA, Rdata, Record


@dataclass(frozen=True, slots=True)
class RRset:
    """The records of one owner and type: one TTL, several rdatas."""

    ttl: int
    rdatas: tuple[Rdata, ...]

    def records(self, name: Name, rtype: int) -> list[Record]:
        """Expand into `Record`s owned by `name`."""
        return [Record(name, rtype, self.ttl, rd) for rd in self.rdatas]


#: The records at one owner name, by type.
Node = dict[int, RRset]


class ZoneView(Protocol):
    """Read access to one zone's data."""

    origin: Name

    def get_node(self, name: Name) -> Node | None:
        """The records owned by `name`, or None if it owns none."""

    def has_descendants(self, name: Name) -> bool:
        """True if some name strictly below `name` owns records (RFC 8020: an
        empty non-terminal exists, so it is NODATA, not NXDOMAIN)."""

    @property
    def soa(self) -> Record:
        """The apex SOA record."""


@dataclass
class Zone:
    """A whole zone in memory: origin and nodes keyed by owner name."""

    origin: Name
    nodes: dict[Name, Node] = field(default_factory=dict)

    @classmethod
    def from_records(cls, origin: Name, records: Iterable[Record]) -> Zone:
        """Group records into RRsets. Within an RRset the first TTL wins
        (callers that care, like the zone-file parser, check TTLs agree)."""
        grouped: dict[Name, dict[int, tuple[int, list[Rdata]]]] = {}
        for rec in records:
            node = grouped.setdefault(rec.name, {})
            ttl, rdatas = node.setdefault(rec.rtype, (rec.ttl, []))
            if rec.rdata not in rdatas:
                rdatas.append(rec.rdata)
        zone = cls(origin)
        for name, node in grouped.items():
            zone.nodes[name] = {t: RRset(ttl, tuple(rds)) for t, (ttl, rds) in node.items()}
        return zone

    def get_node(self, name: Name) -> Node | None:
        return self.nodes.get(name)

    def has_descendants(self, name: Name) -> bool:
        if name.is_mailbox:
            return False  # nothing lives below a mailbox ("alic@" prefixes "alice@")
        prefix = name.store_key()
        return any(n != name and n.store_key().startswith(prefix) for n in self.nodes)

    @property
    def soa(self) -> Record:
        rrset = self.nodes[self.origin][RType.SOA]
        return Record(self.origin, RType.SOA, rrset.ttl, rrset.rdatas[0])

    @property
    def serial(self) -> int:
        rdata = self.soa.rdata
        assert isinstance(rdata, SOA)
        return rdata.serial

    def iter_nodes(self) -> Iterator[tuple[Name, Node]]:
        """Nodes in store-key order (the order transfers and LMDB use)."""
        for name in sorted(self.nodes, key=Name.store_key):
            yield name, self.nodes[name]

    def records(self) -> Iterator[Record]:
        """Every record, in store-key order, types ascending within a node."""
        for name, node in self.iter_nodes():
            for rtype in sorted(node):
                yield from node[rtype].records(name, rtype)

    def __len__(self) -> int:
        return sum(len(rrset.rdatas) for node in self.nodes.values() for rrset in node.values())
