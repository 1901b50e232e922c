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


__all__ = ["HALF", "MAX_SERIAL_INCREMENT", "SERIAL_BITS", "SERIAL_MODULUS", "serial_add",
           "serial_compare", "serial_gt", "serial_le", "serial_lt"]
