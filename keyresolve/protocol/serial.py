"""Serial number arithmetic (RFC 1982) for 32-bit zone serials (sans-IO).

Serials live on a circle of 2**32 values. ``s1 < s2`` when s2 lies less than
half the circle (2**31) ahead of s1. Two serials exactly 2**31 apart are
*incomparable* (RFC 1982 3.2 leaves the result undefined): here neither is
less nor greater than the other, and `serial_compare` returns None. A zone
whose serial jumps by exactly 2**31 is therefore never "newer": a secondary
does not transfer it and a primary does not journal it (the operator steps the
serial in two smaller increments instead, as RFC 1982 7 suggests for resets).
"""

from __future__ import annotations

from .errors import KeyresolveError

#: RFC 1982 2: SERIAL_BITS of a zone serial.
SERIAL_BITS = 32
#: Number of distinct serials (the size of the circle).
SERIAL_MODULUS = 1 << SERIAL_BITS
#: Half the circle: distances below it order serials; exactly it is undefined.
HALF = 1 << (SERIAL_BITS - 1)
#: RFC 1982 3.1: the largest amount that may be added in one step (2**31 - 1).
MAX_SERIAL_INCREMENT = HALF - 1


def _check(value: int) -> int:
    if type(value) is not int or not 0 <= value < SERIAL_MODULUS:
        raise ValueError(f"serial {value!r} is not an integer 0..{SERIAL_MODULUS - 1}")
    return value


def serial_compare(a: int, b: int) -> int | None:
    """-1 if a < b, 0 if equal, 1 if a > b (RFC 1982 3.2); None if they are
    exactly 2**31 apart (undefined)."""
    distance = (_check(b) - _check(a)) % SERIAL_MODULUS
    if distance == 0:
        return 0
    if distance == HALF:
        return None
    return -1 if distance < HALF else 1


def serial_lt(a: int, b: int) -> bool:
    """True if serial `a` is before `b` (False when undefined)."""
    return serial_compare(a, b) == -1


def serial_gt(a: int, b: int) -> bool:
    """True if serial `a` is after `b` (False when undefined)."""
    return serial_compare(a, b) == 1


def serial_le(a: int, b: int) -> bool:
    """True if `a` equals `b` or is before it (False when undefined)."""
    return serial_compare(a, b) in (-1, 0)


def serial_add(serial: int, increment: int) -> int:
    """`serial` + `increment` modulo 2**32; `increment` must be 0..2**31-1
    (RFC 1982 3.1: larger additions are undefined)."""
    _check(serial)
    if type(increment) is not int or not 0 <= increment <= MAX_SERIAL_INCREMENT:
        raise ValueError(f"serial increment {increment!r} is not 0..{MAX_SERIAL_INCREMENT}")
    return (serial + increment) % SERIAL_MODULUS


#: A zone's `serial_policy` (as Knot's ``serial-policy``): what a primary
#: does when a reload changes the zone but the file's serial is not higher
#: than the one served. "keep": refuse the reload (the file's serial is the
#: served one); "increment": serve the served serial + 1; "unixtime": serve
#: the current time in seconds, or the served serial + 1 if that is not higher.
SERIAL_POLICIES = ("keep", "increment", "unixtime")


class SerialNotIncreased(KeyresolveError):
    """A reload changed a zone without increasing its serial (policy "keep")."""

    def __init__(self, served: int, proposed: int) -> None:
        super().__init__(
            f"serial {proposed} of the zone file is not higher than the served serial "
            f"{served} (RFC 1982), and the zone changed: not loaded, serial {served} stays "
            f"served (raise the serial, or set serial_policy)")
        self.served = served
        self.proposed = proposed


def next_serial(policy: str, served: int | None, proposed: int, changed: bool,
                now: float) -> int:
    """The serial to serve after a reload, by `policy` (`SERIAL_POLICIES`).

    `served`: the serial served now (None: a first load); `proposed`: the
    zone file's; `changed`: whether anything but the SOA serial differs from
    the served zone; `now`: seconds since the epoch. A proposed serial higher
    than the served one (RFC 1982) is always taken. Raises
    SerialNotIncreased where "keep" refuses the reload: the contents changed,
    or the file's serial went down or 2**31 away.
    """
    if policy not in SERIAL_POLICIES:
        raise ValueError(f"serial policy {policy!r} is not one of {', '.join(SERIAL_POLICIES)}")
    _check(proposed)
    if served is None or serial_gt(proposed, served):
        return proposed
    if policy == "keep":
        if changed or proposed != served:
            raise SerialNotIncreased(served, proposed)
        return served
    if not changed:
        return served  # the served serial stays: nothing to publish
    if policy == "unixtime":
        stamp = int(now) % SERIAL_MODULUS
        if serial_gt(stamp, served):
            return stamp
    return serial_add(served, 1)


__all__ = ["HALF", "MAX_SERIAL_INCREMENT", "SERIAL_BITS", "SERIAL_MODULUS", "SERIAL_POLICIES",
           "SerialNotIncreased", "next_serial", "serial_add",
           "serial_compare", "serial_gt", "serial_le", "serial_lt"]
