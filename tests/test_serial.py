"""RFC 1982 serial number arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyresolve.serial import (HALF, MAX_SERIAL_INCREMENT, SERIAL_MODULUS, serial_add,
                               serial_compare, serial_gt, serial_le, serial_lt)

TOP = SERIAL_MODULUS - 1

#: (a, b, compare(a, b)): -1 a before b, 1 a after b, None undefined (RFC 1982 3.2).
VECTORS = [
    (0, 0, 0),
    (0, 1, -1),
    (1, 2, -1),
    (0, HALF - 1, -1),  # largest forward distance still ordered
    (0, HALF, None),  # exactly half the circle apart: undefined
    (0, HALF + 1, 1),  # more than half ahead means behind
    (TOP, 0, -1),  # wraparound: 4294967295 + 1 = 0
    (TOP, HALF - 2, -1),  # TOP + 2**31 - 1 wraps to 2**31 - 2
    (TOP, HALF - 1, None),
    (TOP, HALF, 1),
    (HALF, 0, None),
    (2024010101, 2024010102, -1),
    (2024010101, 1, 1),  # a reset to 1 from a date serial goes backwards
    (100, 100 + HALF - 1, -1),
    (HALF + 5, 4, -1),  # 4 is 2**31 - 1 ahead of 2**31 + 5
]


@pytest.mark.parametrize(("a", "b", "expected"), VECTORS)
def test_compare_vectors_both_ways(a, b, expected):
    assert serial_compare(a, b) == expected
    assert serial_compare(b, a) == (None if expected is None else -expected)
    assert serial_lt(a, b) == (expected == -1)
    assert serial_gt(a, b) == (expected == 1)
    assert serial_le(a, b) == (expected in (-1, 0))
    assert serial_gt(b, a) == (expected == -1)


@pytest.mark.parametrize(("serial", "increment", "expected"), [
    (0, 0, 0),
    (0, 1, 1),
    (TOP, 1, 0),
    (TOP, MAX_SERIAL_INCREMENT, HALF - 2),
    (HALF, MAX_SERIAL_INCREMENT, TOP),
    (2024010101, 1, 2024010102),
])
def test_add_vectors(serial, increment, expected):
    assert serial_add(serial, increment) == expected


@pytest.mark.parametrize(("serial", "increment"), [
    (0, HALF),  # RFC 1982 3.1: at most 2**31 - 1
    (0, -1),
    (SERIAL_MODULUS, 0),
    (-1, 0),
    (1.0, 1),
    (0, True),
])
def test_add_rejects_out_of_range(serial, increment):
    with pytest.raises(ValueError):
        serial_add(serial, increment)


@pytest.mark.parametrize("bad", [-1, SERIAL_MODULUS, "1", None])
def test_compare_rejects_non_serials(bad):
    with pytest.raises(ValueError):
        serial_compare(bad, 0)
    with pytest.raises(ValueError):
        serial_lt(0, bad)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, TOP), st.integers(1, MAX_SERIAL_INCREMENT))
def test_adding_makes_a_serial_greater(serial, increment):
    # RFC 1982 3.2: s + n > s for every allowed n > 0, across the wrap.
    later = serial_add(serial, increment)
    assert serial_gt(later, serial) and serial_lt(serial, later)
    assert serial_compare(later, serial) == 1


@settings(max_examples=300, deadline=None)
@given(st.integers(0, TOP), st.integers(0, TOP))
def test_compare_is_antisymmetric_and_matches_distance(a, b):
    forward = (b - a) % SERIAL_MODULUS
    result = serial_compare(a, b)
    if forward == 0:
        assert result == 0
    elif forward == HALF:
        assert result is None and serial_compare(b, a) is None
        assert not serial_lt(a, b) and not serial_gt(a, b)
    else:
        assert result == (-1 if forward < HALF else 1)
        assert serial_compare(b, a) == -result
