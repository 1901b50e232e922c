"""Keys of the zone store and the zone metadata they lead to.

The zone prefix is ``origin.store_key() + b"\\x01"``: the key of the zone in
`zones`, `journal` and the update log. A node's key is the node prefix (the
origin key + an area byte, 1 or 2) + the owner's key relative to the origin
(see `keyresolve.store.zones` for the layout).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from ..protocol.errors import StoreError
from ..protocol.names import Name

#: Ends a zone's key in `zones` and `journal` (and is area 1's byte in `nodes`).
ZONE_SEP = b"\x01"
#: The two node areas of a zone (see the module docstring).
NODE_AREAS = (1, 2)


def zone_prefix(origin: Name) -> bytes:
    """The key prefix of every node of the zone at `origin` (and its `zones` key)."""
    return origin.store_key() + ZONE_SEP


def node_prefix(origin: Name, area: int = NODE_AREAS[0]) -> bytes:
    """The key prefix of the zone's nodes stored in `area`."""
    return origin.store_key() + bytes((area,))


def node_key(origin: Name, name: Name, area: int = NODE_AREAS[0]) -> bytes:
    """The `nodes` key of owner `name` in the zone at `origin`, in `area`."""
    origin_key = origin.store_key()
    return origin_key + bytes((area,)) + name.store_key()[len(origin_key):]


@dataclass(frozen=True, slots=True)
class ZoneInfo:
    """Metadata of one stored zone."""

    origin: Name
    serial: int
    records: int
    loaded_at: float
    sources: tuple[tuple[str, bytes], ...]
    #: The primary a secondary copy was transferred from (None: compiled here).
    primary: str | None = None
    #: When that transfer was committed (seconds since the epoch).
    transferred_at: float | None = None
    #: When a secondary last found its primary's serial no newer than ours.
    checked_at: float | None = None
    #: Which node area holds the zone's nodes (see the module docstring).
    area: int = NODE_AREAS[0]

    @property
    def node_prefix(self) -> bytes:
        """The key prefix of the zone's nodes."""
        return node_prefix(self.origin, self.area)

    @property
    def last_success(self) -> float | None:
        """The last successful refresh of a secondary copy (transfer or check)."""
        times = [t for t in (self.transferred_at, self.checked_at) if t is not None]
        return max(times) if times else None


def decode_info(origin: Name, value: bytes) -> ZoneInfo:
    try:
        meta = msgpack.unpackb(value, raw=False)
        sources = tuple((str(path), bytes(digest)) for path, digest in meta["sources"])
        primary = meta.get("primary")
        transferred_at = meta.get("transferred_at")
        checked_at = meta.get("checked_at")
        return ZoneInfo(origin, int(meta["serial"]), int(meta["records"]),
                        float(meta["loaded_at"]), sources,
                        None if primary is None else str(primary),
                        None if transferred_at is None else float(transferred_at),
                        None if checked_at is None else float(checked_at),
                        meta_area(meta))
    except (KeyError, ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StoreError(f"corrupt metadata of zone {origin}: {exc}") from exc


def meta_area(meta: dict) -> int:
    area = meta.get("area", NODE_AREAS[0])
    if area not in NODE_AREAS:
        raise ValueError(f"node area {area!r}")
    return area


def area_of(value: bytes) -> int:
    """The node area recorded in a zone's stored metadata."""
    try:
        return meta_area(msgpack.unpackb(value, raw=False))
    except (ValueError, TypeError, AttributeError, msgpack.UnpackException) as exc:
        raise StoreError(f"corrupt zone metadata: {exc}") from exc


def origin_from_prefix(key: bytes) -> Name:
    try:
        return Name.from_store_key(key[:-len(ZONE_SEP)])
    except (UnicodeDecodeError, ValueError) as exc:
        raise StoreError(f"corrupt zone key {key!r}") from exc

