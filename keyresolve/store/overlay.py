"""Records a compile adds to a zone file: the registry's (issue #20).

A registration zone serves its zone file plus its registrations. Every
compile of the file (`Store.load_zone_file(overlay=...)`) writes the
overlay's records into the new version of the zone, in the transaction that
switches the zone to it, so no reload or restart serves the zone without
them. A zone file holding a KEY at an address the overlay puts a KEY at (a
registered address) is a zone error naming both: the file:line of its KEY
and the registered address.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..authority.xfr import node_add
from ..files.local import LOCAL_FILES
from ..protocol.codes import RType
from ..protocol.errors import ZoneErrors, ZoneFileError
from ..protocol.names import Name
from ..protocol.records import Record
from ..zonedata.nodes import decode_node, encode_node
from ..zonedata.zonefile import ZoneReader


def apply_overlay(txn: Any, db: Any, origin: Name, prefix: bytes, overlay: Sequence[Record],
                  path: str, text: str | None = None,
                  include_dirs: Iterable[str] = ()) -> int:
    """Add `overlay` to the zone compiled under the node prefix `prefix`
    (in the LMDB write transaction `txn`, nodes DB `db`); returns the
    records added. ZoneErrors if the file puts a KEY at a mailbox the
    overlay puts a KEY at."""
    origin_key = origin.store_key()
    nodes: dict[bytes, tuple[Name, dict]] = {}
    conflicts: list[Name] = []
    for record in overlay:
        name_key = record.name.store_key()
        if not name_key.startswith(origin_key):
            raise ValueError(f"overlay record {record.name} is outside zone {origin}")
        key = prefix + name_key[len(origin_key):]
        if key not in nodes:
            value = txn.get(key, db=db)
            node = {} if value is None else decode_node(value)
            if record.name.is_mailbox and RType.KEY in node:
                conflicts.append(record.name)
            nodes[key] = (record.name, node)
        node_add(nodes[key][1], record, strict=False)
    if conflicts:
        raise ZoneErrors(_conflicts(conflicts, origin, path, text, include_dirs))
    for key, (_, node) in nodes.items():
        txn.put(key, encode_node(node), db=db)
    return len(overlay)


def _conflicts(names: list[Name], origin: Name, path: str, text: str | None,
               include_dirs: Iterable[str]) -> list[ZoneFileError]:
    """Each KEY line of the file at one of `names` (read again: the compile
    keeps no line numbers), as an error naming the registered address."""
    wanted = set(names)
    errors = []
    reader = ZoneReader(path, origin, files=LOCAL_FILES, text=text, include_dirs=include_dirs)
    for record, filename, line in reader:
        if record.rtype == RType.KEY and record.name in wanted:
            errors.append(ZoneFileError(
                filename, line, f"KEY at {record.name}, a registered address: its keys are "
                "the registry's (unregister them, or remove this line)"))
    return errors or [ZoneFileError(path, 0, f"KEY at the registered address {names[0]}")]


__all__ = ["apply_overlay"]
