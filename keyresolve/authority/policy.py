"""Who may do what (sans-IO): the opcode dispatch table and the one policy check.

Every server decides the fate of a request that decoded and whose signature
verified in the same order (docs/protocol.md 8D): opcode, transport, zone,
policy. This module holds the opcode step (`OPCODE_ACTIONS`, and the
actions each kind of server performs: `AUTHORITATIVE_OPCODES`,
`RESOLVER_OPCODES`), the transport step (`transport`) and the zone and
policy steps (`allowed`), so the daemons hold no access rule of their own:

- QUERY: anyone, except unsigned in a zone with ``require_signed``;
- TRANSFER: a key the zone lists in ``allow_transfer``;
- NOTIFY (a secondary zone): the zone's ``key`` or a key in ``allow_notify``;
  unsigned only for a zone with neither, from one of its primaries'
  addresses (8C.4), compared as addresses (`is_one_of`);
- CONTROL: a key in the server's ``control_keys``, or unsigned from a
  loopback address when ``control_loopback`` is on (8A);
- UPDATE: anyone, in a zone this server is the primary of and takes
  registrations for (``registration = true``): the registry checks each
  request itself (docs/protocol.md 8E.7); NOTAUTH for any other zone.

`serving` adds the one rule that is not about the sender: an expired
secondary zone answers SERVFAIL to queries and transfers, not to NOTIFY.

As Knot's ``NS_NEED_AUTH(qdata, action)``: the daemons call `allowed` with
the zone's settings, the action, the verified key's name and the peer, and
raise `Decision.error()` when it says no. The zone is anything with the
fields of `ZonePolicy` (a `config.ZoneConfig`; config is not imported, as
it pulls in the network layer's defaults).

The daemons' shells (`daemons.serve.AuthServer`, `daemons.resolver`) map
each action to a handler method once, at start, from these tables; a
worker process forwards the opcodes `daemons.workers.FORWARDED_OPCODES`
lists to the main process before any of this.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Collection, Iterable, Sequence
from typing import Protocol

from ..protocol.codes import Opcode, Rcode
from ..protocol.errors import NotAuth, NotImplementedOpcode, ProtocolError, Refused, ServerFailure
from ..protocol.names import Name

#: A socket address: (host, port), and IPv6's flow info and scope id when the
#: socket gives them.
Peer = tuple[str, int] | tuple[str, int, int, int]


class Action(enum.Enum):
    """What a request asks a server to do (Knot's ``ACL_ACTION_*``)."""

    QUERY = "query"
    TRANSFER = "transfer"
    NOTIFY = "notify"
    CONTROL = "control"
    UPDATE = "update"


#: The actions as plain globals: an Enum member read through its class costs
#: a lookup in the metaclass, on the full path of every query.
_QUERY, _TRANSFER, _NOTIFY, _CONTROL, _UPDATE = (Action.QUERY, Action.TRANSFER, Action.NOTIFY,
                                                 Action.CONTROL, Action.UPDATE)

#: The action each opcode asks for: every `Opcode` member has one.
OPCODE_ACTIONS: dict[Opcode, Action] = {
    Opcode.QUERY: Action.QUERY,
    Opcode.NOTIFY: Action.NOTIFY,
    Opcode.UPDATE: Action.UPDATE,
    Opcode.TRANSFER: Action.TRANSFER,
    Opcode.CONTROL: Action.CONTROL,
}
#: The dispatch table of an authoritative server: opcode -> the action it
#: performs, None for NOTIMP (8D step 3).
AUTHORITATIVE_OPCODES: dict[Opcode, Action | None] = {
    Opcode.QUERY: Action.QUERY,
    Opcode.NOTIFY: Action.NOTIFY,
    Opcode.UPDATE: Action.UPDATE,
    Opcode.TRANSFER: Action.TRANSFER,
    Opcode.CONTROL: Action.CONTROL,
}
#: The dispatch table of a resolver: it holds no zone, so it neither
#: transfers, nor is notified, nor takes registrations.
RESOLVER_OPCODES: dict[Opcode, Action | None] = {
    Opcode.QUERY: Action.QUERY,
    Opcode.NOTIFY: None,
    Opcode.UPDATE: None,
    Opcode.TRANSFER: None,
    Opcode.CONTROL: Action.CONTROL,
}


def dispatch_table(opcodes: dict[Opcode, Action | None], handlers: dict[Action, object]
                   ) -> dict[int, object]:
    """opcode -> handler, for the opcodes `opcodes` maps to an action (the
    others are NOTIMP: absent). ValueError when `handlers` lacks one of those
    actions or `opcodes` lacks an `Opcode` member: a server's table is whole."""
    missing = set(Opcode) - set(opcodes)
    if missing:
        raise ValueError(f"no entry for opcode(s) {', '.join(sorted(o.name for o in missing))}")
    unhandled = {a for a in opcodes.values() if a is not None} - set(handlers)
    if unhandled:
        raise ValueError(f"no handler for {', '.join(sorted(a.name for a in unhandled))}")
    return {int(opcode): handlers[action] for opcode, action in opcodes.items()
            if action is not None}


def not_implemented(opcode: int) -> NotImplementedOpcode:
    """The error for an opcode a server's table maps to no action (NOTIMP)."""
    return NotImplementedOpcode(f"opcode {int(opcode)} is not implemented")


class ZonePolicy(Protocol):
    """The settings of a zone that `allowed` reads (`config.ZoneConfig`'s)."""

    name: Name
    allow_transfer: Sequence[Name]
    allow_notify: Sequence[Name]
    require_signed: bool
    registration: bool
    primaries: Sequence[tuple[str, int]]
    tsig_key: Name | None


class Decision:
    """`allowed`'s answer: `ok`, or the refusal's rcode and the reason to log."""

    __slots__ = ("rcode", "reason", "ok")

    def __init__(self, rcode: Rcode = Rcode.NOERROR, reason: str = "") -> None:
        self.rcode = rcode
        self.reason = reason
        #: True when the request may be served (a plain attribute: it is
        #: read for every query the full path answers).
        self.ok = rcode == Rcode.NOERROR

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Decision)
                and (self.rcode, self.reason) == (other.rcode, other.reason))

    def __hash__(self) -> int:
        return hash((self.rcode, self.reason))

    def __repr__(self) -> str:
        return f"Decision({self.rcode.name}, {self.reason!r})"

    def error(self) -> ProtocolError:
        """The refusal as the error the daemons raise (REFUSED, NOTAUTH or SERVFAIL)."""
        return _ERRORS.get(self.rcode, Refused)(self.reason)


#: The one `Decision` that lets a request through.
ALLOW = Decision()
_ERRORS = {Rcode.NOTAUTH: NotAuth, Rcode.SERVFAIL: ServerFailure}

#: What an expired secondary zone no longer serves: its data (RFC 1034
#: 4.3.5: SERVFAIL until a primary answers). A NOTIFY still reaches it, so
#: it can come back at once.
EXPIRED_ZONE_REFUSES = frozenset({Action.QUERY, Action.TRANSFER})


def serving(zone: Name, action: Action, expired: bool) -> Decision:
    """SERVFAIL for `action` in the secondary zone `zone` while it is
    `expired` (`refresh.RefreshState.expired`: its expire timer ran out
    since the last success), if the action needs the zone's data."""
    if expired and action in EXPIRED_ZONE_REFUSES:
        return Decision(Rcode.SERVFAIL, f"zone {zone} has expired")
    return ALLOW


#: Actions served over TCP only, and the reason a datagram gets (8C.1: a
#: transfer's response is a stream of messages; RFC 1995's UDP IXFR is dropped).
TCP_ONLY: dict[Action, str] = {Action.TRANSFER: "zone transfers need TCP"}


def transport(action: Action, tcp: bool) -> Decision:
    """Step 4 of 8D: REFUSED for an action over a transport it may not use."""
    if not tcp and action in TCP_ONLY:
        return Decision(Rcode.REFUSED, TCP_ONLY[action])
    return ALLOW


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def canonical_address(host: str) -> IPAddress | None:
    """The address `host` (a peer's or a configured address text) stands
    for, in the form two texts of one address share: IPv6 in any spelling
    (``::1``, ``0:0:0:0:0:0:0:1``), an IPv4-mapped IPv6 address (an IPv4
    client of a dual-stack ``[::]`` socket: ``::ffff:127.0.0.1``) as its IPv4
    address, a scope (``%eth0``) dropped; None for what is no IP address (a
    name)."""
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(host: str) -> bool:
    """Whether `host` (a peer's address text) is a loopback address:
    127.0.0.0/8, ::1, or ::ffff:127.x.y.z (an IPv4 client of a dual-stack
    ``[::]`` socket); a scope (``%eth0``) is ignored, a name is not loopback."""
    address = canonical_address(host)
    return address is not None and address.is_loopback


def is_one_of(host: str, hosts: Iterable[str]) -> bool:
    """Whether the address text `host` names the same address as one of
    `hosts`, compared as addresses (`canonical_address`), not as text; a
    name matches nothing."""
    address = canonical_address(host)
    return address is not None and any(canonical_address(h) == address for h in hosts)


def _who(what: str, key: Name | None) -> str:
    return f"an unsigned {what}" if key is None else f"key {key}"


def allowed(zone: ZonePolicy | None, action: Action, key: Name | None, peer: Peer, *,
            control_keys: Collection[Name] = (), control_loopback: bool = True) -> Decision:
    """May `peer` (``(host, port)``), signed with the key named `key` (None:
    unsigned; the signature verified), do `action` in `zone`? `zone` is the
    zone the request is about (None: no zone of this server; a NOTIFY's: the
    secondary zone), unused for CONTROL, which `control_keys` and
    `control_loopback` decide. A QUERY outside every zone is let through:
    the answer says REFUSED (section 7)."""
    if action is _QUERY:
        if zone is not None and key is None and zone.require_signed:
            return Decision(Rcode.REFUSED, f"zone {zone.name} requires signed queries")
        return ALLOW
    if action is _CONTROL:
        if key is not None:
            return ALLOW if key in control_keys else Decision(
                Rcode.REFUSED, f"key {key} is not in control_keys")
        if control_loopback and is_loopback(peer[0]):
            return ALLOW
        return Decision(Rcode.REFUSED, "unsigned")
    if action is _TRANSFER:
        return _listed(zone, key, peer, "allow_transfer", "transfer", "request")
    if action is _NOTIFY:
        if zone is None or not zone.primaries:
            return Decision(Rcode.NOTAUTH, "not a secondary zone here")
        if key is not None:
            ok = key == zone.tsig_key or key in zone.allow_notify
        else:  # unsigned: only when no key is configured, and only from a primary
            ok = (zone.tsig_key is None and not zone.allow_notify
                  and is_one_of(peer[0], (host for host, _ in zone.primaries)))
        if not ok:
            return Decision(Rcode.REFUSED, f"NOTIFY for {zone.name} refused to "
                                           f"{_who('NOTIFY', key)} from {peer[0]}")
        return ALLOW
    if action is _UPDATE:
        if zone is None or not zone.registration or zone.primaries:
            return Decision(Rcode.NOTAUTH, "not a registration zone of ours")
        return ALLOW  # the registry decides on the request (8E.7)
    raise ValueError(f"unknown action {action!r}")


def _listed(zone: ZonePolicy | None, key: Name | None, peer: Peer, keys: str, what: str,
            sender: str) -> Decision:
    """TRANSFER: NOTAUTH for a zone not served here, REFUSED unless signed
    with a key in the zone's `keys` list (allow_transfer)."""
    if zone is None:
        return Decision(Rcode.NOTAUTH, "not a zone of ours")
    if key is None or key not in getattr(zone, keys):
        return Decision(Rcode.REFUSED, f"{what} of {zone.name} refused to "
                                       f"{_who(sender, key)} from {peer[0]}")
    return ALLOW
