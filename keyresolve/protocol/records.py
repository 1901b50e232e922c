"""Record types and their data (rdata): validation, wire, text and JSON forms.

Each rdata class has:
- ``from_wire(fields)`` / ``to_wire()``: the msgpack array of docs/protocol.md;
- ``from_text(tokens, origin)`` / ``to_text(origin)``: the zone-file form;
- ``to_json()``: the object `keyresolve dig --json` prints as ``data``.
Invalid data raises `InvalidRecord` (or `InvalidName`), both FORMERR.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import ipaddress
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, ClassVar, Self, TypeVar, final

from .codes import RType
from .errors import InvalidName, InvalidRecord, KeyresolveError, cut, excerpt, from_peer
from .names import Name

#: A msgpack array as decoded: untrusted values, which each decoder checks.
WireFields = tuple[Any, ...]
#: A value `to_wire` returns, for msgpack to pack.
Wire = int | str | bytes | None | list["Wire"] | tuple["Wire", ...]

#: Types that are only asked about, never held in a record.
QUERY_ONLY_TYPES = frozenset({RType.IXFR, RType.AXFR, RType.ANY})

#: RFC 2181 8: TTLs are 31-bit unsigned.
MAX_TTL = 2**31 - 1
#: RFC 1982: serials and SOA timers are 32-bit unsigned.
MAX_U32 = 2**32 - 1


class KeyAlgorithm(enum.IntEnum):
    """KEY algorithms; the value is what the wire carries."""

    X25519 = 1
    ED25519 = 2
    X448 = 3
    ED448 = 4
    MLKEM768X25519 = 5


class KeyUsage(enum.IntEnum):
    """What a KEY is for."""

    ENCRYPT = 1
    SIGN = 2


#: Public key length and the one usage each algorithm allows (RFC 7748, RFC 8032;
#: MLKEM768X25519 is the hybrid KEM of draft-ietf-hpke-pq / X-Wing: the ML-KEM-768
#: encapsulation key of FIPS 203, 1,184 bytes, then the X25519 key, 32 bytes).
KEY_ALGORITHMS: dict[KeyAlgorithm, tuple[int, KeyUsage]] = {
    KeyAlgorithm.X25519: (32, KeyUsage.ENCRYPT),
    KeyAlgorithm.ED25519: (32, KeyUsage.SIGN),
    KeyAlgorithm.X448: (56, KeyUsage.ENCRYPT),
    KeyAlgorithm.ED448: (57, KeyUsage.SIGN),
    KeyAlgorithm.MLKEM768X25519: (1184 + 32, KeyUsage.ENCRYPT),
}

#: Bytes of a binary key id (docs/protocol.md 6.4); its text form is twice as many hex digits.
KEY_ID_SIZE = 8


def make_key_id(algorithm: int, key: bytes) -> bytes:
    """The key id of a public key (docs/protocol.md 6.4): the first 8 bytes of
    SHA-256 over the algorithm byte followed by the raw key."""
    return hashlib.sha256(bytes([algorithm]) + key).digest()[:KEY_ID_SIZE]


class KeyFlag(enum.IntFlag):
    """KEY flag bits (docs/protocol.md 6.4, its registry in 12.3). Bits not
    defined here are carried unchanged, never rejected."""

    #: Published through the registry: the owner proved the mailbox and
    #: possession of the keys (docs/protocol.md 8E).
    REGISTERED = 0x0001
    #: Made by the domain's server for a recipient that has none (reserved:
    #: the interim-key issue defines its use).
    INTERIM = 0x0002


#: The 16 bits of KEY flags.
MAX_KEY_FLAGS = 0xFFFF
#: Flag bits with a name, by their zone-file spelling.
KEY_FLAG_NAMES = {flag.name.lower(): flag for flag in KeyFlag if flag.name}
#: The zone-file token carrying flags starts with this (``flags=registered``).
FLAGS_PREFIX = "flags="


def key_flags_to_text(flags: int) -> str:
    """Flags as the zone file writes them: the names of the defined bits,
    lowest first, then the other bits as one decimal number
    (``registered,interim``, ``registered,256``); "0" for none."""
    names = [name for name, flag in KEY_FLAG_NAMES.items() if flags & flag]
    rest = flags & ~sum(KEY_FLAG_NAMES.values()) & MAX_KEY_FLAGS
    if rest or not names:
        names.append(str(rest))
    return ",".join(names)


def key_flags_from_text(text: str) -> int:
    """Inverse of `key_flags_to_text`: comma-separated flag names (any case)
    and decimal numbers 0..65535, OR-ed together; raises InvalidRecord."""
    flags = 0
    for item in text.split(","):
        flag: int | None = KEY_FLAG_NAMES.get(item.lower()) if item.isascii() else None
        if flag is None:
            if not item.isascii() or not item.isdigit():
                choices = ", ".join(KEY_FLAG_NAMES)
                raise InvalidRecord(f"unknown key flag {excerpt(item)} (one of {choices}, "
                                    "or a number)")
            flag = _text_int(item, "key flags", MAX_KEY_FLAGS)
        flags |= int(flag)
    return flags


def key_id(algorithm: int, key: bytes) -> str:
    """The key id of docs/protocol.md 6.4: the first 8 bytes of
    SHA-256(algorithm byte || key), as 16 lower-case hex digits. Display
    and log only; flags are not part of it."""
    return make_key_id(int(algorithm), key).hex()


#: Seconds per BIND TTL unit (w d h m s), case-insensitive.
TTL_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_MAX_TTL_DIGITS = len(str(MAX_TTL))  # longer digit runs overflow; checked before int()


def parse_ttl(text: str) -> int:
    """Parse a TTL: seconds (``3600``) or BIND units (``1h30m``, ``2d``, ``1w``).

    Raises `InvalidRecord` for bad syntax or a value above `MAX_TTL` (RFC 2181 8).
    """
    if not text:
        raise InvalidRecord("empty TTL")
    if text.isdigit() and text.isascii():
        if len(text) > _MAX_TTL_DIGITS or int(text) > MAX_TTL:
            raise InvalidRecord(f"TTL {cut(text)} is larger than {MAX_TTL}")
        return int(text)
    total = 0
    digits = ""
    for ch in text.lower():
        if "0" <= ch <= "9":
            digits += ch
            if len(digits) > _MAX_TTL_DIGITS:
                raise InvalidRecord(f"TTL {cut(text)} is larger than {MAX_TTL}")
        elif ch in TTL_UNITS and digits:
            total += int(digits) * TTL_UNITS[ch]
            digits = ""
        else:
            raise InvalidRecord(
                f"bad TTL {excerpt(text)} (seconds, or units like 1h30m, 2d, 1w)")
    if digits:  # as BIND: once units are used, every number needs one
        raise InvalidRecord(f"bad TTL {excerpt(text)}: {digits} has no unit")
    if total > MAX_TTL:
        raise InvalidRecord(f"TTL {cut(text)} is larger than {MAX_TTL}")
    return total


def _u32(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_U32:
        raise InvalidRecord(f"{what} must be an integer 0..{MAX_U32}")
    return value


#: Digits in the longest number a zone file may hold (2^32 - 1 has 10); checked
#: before int() so a hostile file cannot make us convert a huge digit string.
MAX_DIGITS = 10


def _text_int(token: str, what: str, maximum: int = MAX_U32) -> int:
    if not token.isascii() or not token.isdigit():
        raise InvalidRecord(f"{what} must be a number, not {excerpt(token)}")
    if len(token) > MAX_DIGITS:
        raise InvalidRecord(f"{what} {cut(token)} is larger than {maximum}")
    value = int(token)
    if value > maximum:
        raise InvalidRecord(f"{what} {value} is larger than {maximum}")
    return value


def _wire_name(value: Any, what: str) -> Name:
    if type(value) is not str:
        raise InvalidRecord(f"{what} must be a name string")
    return Name.from_wire(value)


def _want(tokens: list[str], count: int, rtype: str) -> None:
    if len(tokens) != count:
        raise InvalidRecord(f"{rtype} takes {count} fields, got {len(tokens)}")


@dataclass(frozen=True, slots=True)
class SOA:
    """Start of authority: the zone's primary, contact, serial and timers."""

    mname: Name
    rname: Name
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int

    rtype: ClassVar[RType] = RType.SOA

    @classmethod
    def from_wire(cls, fields: WireFields) -> SOA:
        if len(fields) != 7:
            raise InvalidRecord("SOA rdata must have 7 fields")
        mname = _wire_name(fields[0], "SOA primary")
        rname = _wire_name(fields[1], "SOA contact")
        if mname.is_mailbox or not rname.is_mailbox:
            raise InvalidRecord("SOA needs a server name and a contact mailbox")
        values = [_u32(v, "SOA field") for v in fields[2:]]
        return cls(mname, rname, *values)

    def to_wire(self) -> list[Wire]:
        return [self.mname.to_wire(), self.rname.to_wire(), self.serial,
                self.refresh, self.retry, self.expire, self.minimum]

    @classmethod
    def from_text(cls, tokens: list[str], origin: Name | None) -> SOA:
        _want(tokens, 7, "SOA")
        mname = Name.from_text(tokens[0], origin)
        rname = Name.from_text(tokens[1], origin)
        if mname.is_mailbox:
            raise InvalidRecord(f"SOA primary {excerpt(tokens[0])} must be a server name")
        if not rname.is_mailbox:
            raise InvalidRecord(f"SOA contact {excerpt(tokens[1])} must be a mailbox")
        names = ("serial", "refresh", "retry", "expire", "minimum")
        values = [_text_int(t, n) for t, n in zip(tokens[2:], names)]
        return cls(mname, rname, *values)

    def to_text(self, origin: Name | None = None) -> str:
        return (f"{self.mname.to_text(origin)} {self.rname.to_text(origin)} "
                f"{self.serial} {self.refresh} {self.retry} {self.expire} {self.minimum}")

    def to_json(self) -> dict[str, object]:
        return {"mname": str(self.mname), "rname": str(self.rname), "serial": self.serial,
                "refresh": self.refresh, "retry": self.retry, "expire": self.expire,
                "minimum": self.minimum}


@dataclass(frozen=True, slots=True)
class _Target:
    """Rdata that is a single domain or mailbox name."""

    target: Name

    rtype: ClassVar[RType]
    mailbox_ok: ClassVar[bool] = False

    @classmethod
    def from_wire(cls, fields: WireFields) -> Self:
        if len(fields) != 1:
            raise InvalidRecord(f"{cls.rtype.name} rdata must have 1 field")
        return cls._checked(_wire_name(fields[0], f"{cls.rtype.name} target"))

    def to_wire(self) -> list[Wire]:
        return [self.target.to_wire()]

    @classmethod
    def from_text(cls, tokens: list[str], origin: Name | None) -> Self:
        _want(tokens, 1, cls.rtype.name)
        return cls._checked(Name.from_text(tokens[0], origin))

    @classmethod
    def _checked(cls, target: Name) -> Self:
        if target.is_mailbox and not cls.mailbox_ok:
            raise InvalidRecord(f"{cls.rtype.name} target {target} must be a server name")
        return cls(target)

    def to_text(self, origin: Name | None = None) -> str:
        return self.target.to_text(origin)

    def to_json(self) -> dict[str, object]:
        return {"target": str(self.target)}


@dataclass(frozen=True, slots=True)
class NS(_Target):
    """A name server of the zone at the owner name."""

    rtype: ClassVar[RType] = RType.NS


@dataclass(frozen=True, slots=True)
class ALIAS(_Target):
    """The owner's records live under `target` (a domain or mailbox)."""

    rtype: ClassVar[RType] = RType.ALIAS
    mailbox_ok: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class ADDR:
    """A server address: IPv4 or IPv6, with the port (servers share hosts)."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int

    rtype: ClassVar[RType] = RType.ADDR

    def __post_init__(self) -> None:
        if type(self.port) is not int or not 1 <= self.port <= 65535:
            raise InvalidRecord(f"port must be 1..65535, not {self.port!r}")

    @classmethod
    def from_wire(cls, fields: WireFields) -> ADDR:
        if len(fields) != 2 or type(fields[0]) is not bytes:
            raise InvalidRecord("ADDR rdata must be [address bytes, port]")
        raw = fields[0]
        if len(raw) == 4:
            return cls(ipaddress.IPv4Address(raw), fields[1])
        if len(raw) == 16:
            return cls(ipaddress.IPv6Address(raw), fields[1])
        raise InvalidRecord("ADDR address must be 4 or 16 bytes")

    def to_wire(self) -> list[Wire]:
        return [self.address.packed, self.port]

    @classmethod
    def from_text(cls, tokens: list[str], origin: Name | None = None) -> ADDR:
        _want(tokens, 1, "ADDR")
        return cls.parse(tokens[0])

    @classmethod
    def parse(cls, text: str) -> ADDR:
        """Parse ``ip:port`` or ``[ipv6]:port``."""
        bracketed = text.startswith("[")
        if bracketed:
            host, sep, port = text[1:].partition("]:")
            if not sep or ":" not in host:
                raise InvalidRecord(f"address {excerpt(text)} must be [ipv6]:port")
        else:
            host, sep, port = text.rpartition(":")
            if not sep:
                raise InvalidRecord(f"address {excerpt(text)} needs a port (ip:port)")
            if ":" in host:
                raise InvalidRecord(f"IPv6 address {excerpt(text)} must be written [ipv6]:port")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise InvalidRecord(f"invalid IP address {excerpt(host)}") from None
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            raise InvalidRecord("scoped IPv6 addresses are not allowed")
        return cls(address, _text_int(port, "port", 65535))

    def to_text(self, origin: Name | None = None) -> str:
        if self.address.version == 6:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"

    @property
    def host(self) -> str:
        """The address as a string, for sockets."""
        return str(self.address)

    def to_json(self) -> dict[str, object]:
        return {"address": self.to_text()}


@dataclass(frozen=True, slots=True)
class KEY:
    """A public key of the owner mailbox (or domain)."""

    algorithm: KeyAlgorithm
    usage: KeyUsage
    key: bytes
    flags: int = 0

    rtype: ClassVar[RType] = RType.KEY

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithm", _enum(KeyAlgorithm, self.algorithm, "key algorithm"))
        object.__setattr__(self, "usage", _enum(KeyUsage, self.usage, "key usage"))
        if type(self.key) is not bytes:
            raise InvalidRecord("key must be bytes")
        spec = KEY_ALGORITHMS[self.algorithm]
        length, usage = spec
        if self.usage != usage:
            raise InvalidRecord(
                f"{self.algorithm.name.lower()} keys are for {usage.name.lower()}, "
                f"not {KeyUsage(self.usage).name.lower()}")
        if len(self.key) != length:
            raise InvalidRecord(
                f"{self.algorithm.name.lower()} key must be {length} bytes, got {len(self.key)}")
        if type(self.flags) is KeyFlag:
            object.__setattr__(self, "flags", int(self.flags))
        if type(self.flags) is not int or not 0 <= self.flags <= MAX_KEY_FLAGS:
            raise InvalidRecord("key flags must be 0..65535")

    @property
    def key_id(self) -> str:
        """`key_id` of this key: first 8 bytes of SHA-256(algorithm byte || key), hex."""
        return key_id(self.algorithm, self.key)

    @classmethod
    def from_wire(cls, fields: WireFields) -> KEY:
        if len(fields) != 4:
            raise InvalidRecord("KEY rdata must be [algorithm, usage, flags, key]")
        algorithm, usage, flags, key = fields
        if type(key) is not bytes:
            raise InvalidRecord("KEY key must be bytes")
        return cls(_enum(KeyAlgorithm, algorithm, "key algorithm"),
                   _enum(KeyUsage, usage, "key usage"), key, flags)

    def to_wire(self) -> list[Wire]:
        return [int(self.algorithm), int(self.usage), self.flags, self.key]

    @classmethod
    def from_text(cls, tokens: list[str], origin: Name | None = None) -> KEY:
        """``algorithm usage [flags=F[,F...]] base64-key``; the base64 may be
        split across tokens. A flags token can never be base64 (an ``=``
        only pads the end), so the two cannot be confused."""
        if len(tokens) < 3:
            raise InvalidRecord("KEY takes: algorithm usage [flags=...] base64-key")
        algorithm = _enum_text(KeyAlgorithm, tokens[0], "key algorithm")
        usage = _enum_text(KeyUsage, tokens[1], "key usage")
        flags = 0
        rest = tokens[2:]
        if rest[0][:len(FLAGS_PREFIX)].lower() == FLAGS_PREFIX:
            flags = key_flags_from_text(rest[0][len(FLAGS_PREFIX):])
            rest = rest[1:]
            if not rest:
                raise InvalidRecord("KEY takes: algorithm usage [flags=...] base64-key")
        try:
            key = base64.b64decode("".join(rest), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRecord("KEY key is not valid base64") from None
        return cls(algorithm, usage, key, flags)

    def to_text(self, origin: Name | None = None) -> str:
        """The zone-file form; a ``flags=`` token only when flags are not 0."""
        flags = f"{FLAGS_PREFIX}{key_flags_to_text(self.flags)} " if self.flags else ""
        return (f"{self.algorithm.name.lower()} {self.usage.name.lower()} {flags}"
                f"{base64.b64encode(self.key).decode()}")

    def to_json(self) -> dict[str, object]:
        return {"algorithm": self.algorithm.name.lower(), "usage": self.usage.name.lower(),
                "key": base64.b64encode(self.key).decode(), "key_id": self.key_id,
                "flags": self.flags}


_E = TypeVar("_E", bound=enum.IntEnum)


def _enum(kind: type[_E], value: object, what: str) -> _E:
    if type(value) is kind:
        return value
    if type(value) is not int:
        raise InvalidRecord(f"{what} must be an integer")
    member: _E | None = _ENUM_MEMBERS[kind].get(value)
    if member is None:
        raise InvalidRecord(f"unknown {what} {value}")
    return member


#: value -> member of the enums rdata carries (a dict lookup is ~5x an Enum call).
#: Each kind maps to its own members, a link mypy cannot express: hence Any.
_ENUM_MEMBERS: dict[type[enum.IntEnum], dict[int, Any]] = {
    kind: {int(member): member for member in kind} for kind in (KeyAlgorithm, KeyUsage)}


def _enum_text(kind: type[_E], token: str, what: str) -> _E:
    try:
        if not token.isascii():
            raise KeyError(token)
        return kind[token.upper()]
    except KeyError:
        choices = ", ".join(m.name.lower() for m in kind)
        raise InvalidRecord(f"unknown {what} {excerpt(token)} (one of {choices})") from None


#: Nesting allowed inside opaque rdata (arrays within arrays).
MAX_OPAQUE_DEPTH = 4
_OPAQUE_SCALARS = (int, str, bytes, type(None))


@dataclass(frozen=True, slots=True)
class Opaque:
    """Rdata of a type this version does not know, carried unchanged.

    Like RFC 3597 for DNS: a later version can add record types without older
    servers, caches and clients rejecting the messages that hold them. Never
    valid in zone files.
    """

    type_code: int
    fields: WireFields

    @classmethod
    def from_wire(cls, rtype: int, fields: WireFields) -> Opaque:
        _check_opaque(fields, 0)
        return cls(rtype, fields)

    def to_wire(self) -> list[Wire]:
        return list(self.fields)

    def to_text(self, origin: Name | None = None) -> str:
        import msgpack

        data = msgpack.packb(list(self.fields))
        return f"\\# {len(data)} {data.hex()}"

    def to_json(self) -> dict[str, object]:
        import msgpack

        return {"opaque": msgpack.packb(list(self.fields)).hex()}


def _check_opaque(value: Any, depth: int) -> None:
    if type(value) in (tuple, list):
        if depth >= MAX_OPAQUE_DEPTH:
            raise InvalidRecord("opaque rdata nested too deeply")
        for item in value:
            _check_opaque(item, depth + 1)
    elif type(value) not in _OPAQUE_SCALARS:
        raise InvalidRecord("opaque rdata may hold only integers, strings, bytes, nil and arrays")


Rdata = SOA | NS | ALIAS | ADDR | KEY | Opaque

#: Rdata class of every data type.
RDATA_CLASSES: dict[int, type[SOA] | type[NS] | type[ALIAS] | type[ADDR] | type[KEY]] = {
    RType.SOA: SOA, RType.NS: NS, RType.ALIAS: ALIAS, RType.ADDR: ADDR, RType.KEY: KEY}


def rdata_from_wire(rtype: int, fields: Any) -> Rdata:
    """Decode the rdata array of a record of type `rtype`; what it raises
    is the peer's error (`errors.from_peer`)."""
    try:
        if type(fields) is not tuple and type(fields) is not list:
            raise InvalidRecord("rdata must be an array")
        cls = RDATA_CLASSES.get(rtype)
        if cls is None:
            if rtype in QUERY_ONLY_TYPES or not 1 <= rtype <= 0xFFFF:  # 0 is reserved
                raise InvalidRecord(f"type {rtype} cannot appear in a record")
            return Opaque.from_wire(rtype, tuple(fields))
        return cls.from_wire(tuple(fields))
    except KeyresolveError as exc:
        from_peer(exc)
        raise


def rdata_from_text(rtype: int, tokens: list[str], origin: Name | None) -> Rdata:
    """Parse zone-file tokens of type `rtype`."""
    cls = RDATA_CLASSES.get(rtype)
    if cls is None:
        raise InvalidRecord(f"record type {rtype} cannot appear in zone data")
    return cls.from_text(tokens, origin)


@final  # never subclassed: `type(x) is Record` then narrows both ways
@dataclass(frozen=True, slots=True)
class Record:
    """One resource record: owner, type, TTL and data."""

    name: Name
    rtype: int
    ttl: int
    rdata: Rdata

    def to_wire(self) -> list[Wire]:
        """The msgpack array ``[name, type, ttl, rdata]``."""
        return [self.name.to_wire(), int(self.rtype), self.ttl, self.rdata.to_wire()]

    @classmethod
    def from_wire(cls, fields: Any, parse_name: Callable[[str], Name] = Name.from_wire
                  ) -> Record:
        """Decode ``[name, type, ttl, rdata]``; `parse_name` parses the owner
        (`Name.from_wire_uncached` for bulk data)."""
        if (type(fields) is not tuple and type(fields) is not list) or len(fields) != 4:
            raise InvalidRecord("record must be [name, type, ttl, rdata]")
        name, rtype, ttl, rdata = fields
        if type(rtype) is not int or type(ttl) is not int or not 0 <= ttl <= MAX_TTL:
            raise InvalidRecord("record type and ttl must be integers in range")
        if type(name) is not str:
            raise InvalidName("record owner must be a string")
        return cls(parse_name(name), rtype, ttl, rdata_from_wire(rtype, rdata))

    def to_text(self, origin: Name | None = None) -> str:
        """A zone-file line."""
        from .codes import rtype_to_text

        return (f"{self.name.to_text(origin)}\t{self.ttl}\t{rtype_to_text(self.rtype)}\t"
                f"{self.rdata.to_text(origin)}")

    def to_json(self) -> dict[str, object]:
        """The object `dig --json` prints for a record."""
        from .codes import rtype_to_text

        return {"name": str(self.name), "type": rtype_to_text(self.rtype), "ttl": self.ttl,
                "data": self.rdata.to_json()}


def soa_serial(record: Record) -> int:
    """The serial of an SOA record."""
    rdata = record.rdata
    assert isinstance(rdata, SOA)
    return rdata.serial


__all__ = ["TTL_UNITS", "parse_ttl", "ADDR", "ALIAS", "FLAGS_PREFIX", "KEY", "KEY_ALGORITHMS", "KEY_FLAG_NAMES", "KEY_ID_SIZE",
           "KeyAlgorithm", "KeyFlag", "KeyUsage", "MAX_KEY_FLAGS", "MAX_TTL", "NS", "Opaque",
           "RDATA_CLASSES", "Rdata", "Record", "SOA", "InvalidName", "InvalidRecord",
           "key_flags_from_text", "key_flags_to_text", "key_id", "make_key_id", "rdata_from_text",
           "rdata_from_wire", "soa_serial"]
