"""Numeric codes of the keyresolve protocol: opcodes, rcodes, record types.

The values are fixed by docs/protocol.md; never renumber one.
"""

from __future__ import annotations

import enum


class Opcode(enum.IntEnum):
    """Header opcode (4 bits)."""

    QUERY = 0
    NOTIFY = 4  # same value as DNS NOTIFY (RFC 1996)
    UPDATE = 5  # reserved for signed key registration; answered NOTIMP for now
    TRANSFER = 6  # zone transfer (full or incremental, chosen by the question type)
    CONTROL = 7  # operator control messages (cache flush, ...)


class ControlCommand(enum.IntEnum):
    """What a CONTROL message asks for, carried as its question type."""

    FLUSH_ALL = 1  # forget the whole cache (the question name is ignored)
    FLUSH_NAME = 2  # forget every entry owned by the question name
    # Authoritative server commands (`keyresolve ctl`, docs/protocol.md 8A):
    STATUS = 3  # version, uptime, zones, messages, workers (name ignored)
    RELOAD = 4  # re-read the config file and every zone file (name ignored)
    RELOAD_ZONE = 5  # recompile the zone named by the question name
    ZONE_STATUS = 6  # the named zone's serial, source, timers
    REFRESH = 7  # a secondary zone: check the primaries now
    RETRANSFER = 8  # a secondary zone: full transfer from a primary now
    NOTIFY = 9  # a zone: NOTIFY its notify targets now
    STOP = 10  # exit, as SIGTERM does (name ignored)
    ZONE_EXPORT = 11  # write the named zone as served to a zone file on the server
    MAIL_FLUSH = 12  # the registry retries every queued mail now (name ignored)


#: The record type of a CONTROL response's result (`keyresolve.protocol.control`): in
#: DNS's private-use range (RFC 6895 3.1), so no data type will ever take it.
CONTROL_RESULT = 65280


class Rcode(enum.IntEnum):
    """Response code (12 bits: 4 in the flags word, 8 in the extended byte)."""

    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    NOTAUTH = 9
    BADVERS = 16
    BADSIG = 17
    BADKEY = 18
    BADTIME = 19


class RType(enum.IntEnum):
    """Record types, and query-only types (>= 250)."""

    ADDR = 1
    NS = 2
    ALIAS = 5
    SOA = 6
    KEY = 25
    IXFR = 251  # query only: incremental transfer
    AXFR = 252  # query only: full transfer
    ANY = 255  # query only: every type at the name


#: Types that may appear in zone data.
DATA_TYPES = frozenset({RType.ADDR, RType.NS, RType.ALIAS, RType.SOA, RType.KEY})
#: The zone transfer types: asked with opcode TRANSFER, never in a QUERY.
TRANSFER_TYPES = frozenset({RType.AXFR, RType.IXFR})


def opcode_to_text(value: int) -> str:
    """The mnemonic of an opcode, or OPCODE<n> for one we do not know."""
    try:
        return Opcode(value).name
    except ValueError:
        return f"OPCODE{value}"


def rcode_to_text(value: int) -> str:
    """The mnemonic of an rcode, or RCODE<n> for one we do not know."""
    try:
        return Rcode(value).name
    except ValueError:
        return f"RCODE{value}"


def rtype_to_text(value: int) -> str:
    """The mnemonic of a type, or TYPE<n> for one we do not know."""
    try:
        return RType(value).name
    except ValueError:
        return f"TYPE{value}"


def rtype_from_text(text: str) -> int:
    """Parse a type mnemonic or TYPE<n>; raises ValueError."""
    upper = text.upper()
    if upper in RType.__members__:
        return RType[upper]
    if upper.startswith("TYPE") and upper[4:].isdigit():
        value = int(upper[4:])
        if 0 <= value <= 0xFFFF:
            return value
    raise ValueError(f"unknown record type {text!r}")
