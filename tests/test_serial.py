"""RFC 1982 serial number arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyresolve.protocol.serial import (HALF, MAX_SERIAL_INCREMENT, SERIAL_MODULUS, SerialNotIncreased,
                               next_serial, serial_add, serial_compare, serial_gt, serial_le,
                               serial_lt)

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


# -- serial policies (next_serial) ----------------------------------------------------
NOW = 1_800_000_000.7


@pytest.mark.parametrize("policy", ["keep", "increment", "unixtime"])
@pytest.mark.parametrize("changed", [False, True])
def test_a_first_load_or_a_higher_serial_is_taken_as_it_is(policy, changed):
    assert next_serial(policy, None, 7, changed, NOW) == 7
    assert next_serial(policy, 7, 8, changed, NOW) == 8
    assert next_serial(policy, TOP, 0, changed, NOW) == 0  # RFC 1982: 0 follows 2**32 - 1
    assert next_serial(policy, 1, 1 + MAX_SERIAL_INCREMENT, changed, NOW) == 1 + HALF - 1


@pytest.mark.parametrize("policy", ["keep", "increment", "unixtime"])
def test_the_same_serial_and_contents_keep_the_served_serial(policy):
    assert next_serial(policy, 5, 5, False, NOW) == 5


#: (served, proposed): a serial that did not go up: same, lower, 2**31 away, wrapped back.
NOT_HIGHER = [(5, 5), (5, 4), (5, 5 + HALF), (0, TOP), (2026112201, 1)]


@pytest.mark.parametrize("served, proposed", NOT_HIGHER)
def test_keep_refuses_a_change_without_a_higher_serial_naming_both(served, proposed):
    with pytest.raises(SerialNotIncreased) as info:
        next_serial("keep", served, proposed, True, NOW)
    assert f"serial {proposed} " in str(info.value)
    assert f"served serial {served} " in str(info.value)
    assert (info.value.served, info.value.proposed) == (served, proposed)


@pytest.mark.parametrize("served, proposed", [p for p in NOT_HIGHER if p[0] != p[1]])
def test_keep_refuses_a_lower_serial_even_for_the_same_records(served, proposed):
    with pytest.raises(SerialNotIncreased):
        next_serial("keep", served, proposed, False, NOW)


@pytest.mark.parametrize("served, proposed", NOT_HIGHER)
def test_increment_serves_the_served_serial_plus_one(served, proposed):
    assert next_serial("increment", served, proposed, True, NOW) == (served + 1) % SERIAL_MODULUS


@pytest.mark.parametrize("served, proposed", [p for p in NOT_HIGHER if p[0] != p[1]])
@pytest.mark.parametrize("policy", ["increment", "unixtime"])
def test_a_lower_file_serial_with_the_same_records_changes_nothing(policy, served, proposed):
    assert next_serial(policy, served, proposed, False, NOW) == served


def test_unixtime_serves_the_time_or_the_served_serial_plus_one():
    assert next_serial("unixtime", 5, 5, True, NOW) == int(NOW)
    assert next_serial("unixtime", 5, 1, True, NOW) == int(NOW)
    later = int(NOW) + 100  # a serial already past the clock: one more
    assert next_serial("unixtime", later, 3, True, NOW) == later + 1
    assert next_serial("unixtime", int(NOW), 3, True, NOW) == int(NOW) + 1
    # the clock is 2**31 away from the served serial (undefined): one more
    opposite = (int(NOW) + HALF) % SERIAL_MODULUS
    assert next_serial("unixtime", opposite, opposite, True, NOW) == opposite + 1


def test_an_unknown_policy_or_a_bad_serial_is_refused():
    with pytest.raises(ValueError, match="serial policy 'date'"):
        next_serial("date", 1, 2, True, NOW)
    with pytest.raises(ValueError):
        next_serial("keep", 1, SERIAL_MODULUS, True, NOW)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["keep", "increment", "unixtime"]), st.integers(0, TOP),
       st.integers(0, TOP), st.booleans(), st.floats(0, 2**33))
def test_a_changed_zone_is_never_served_without_a_higher_serial(policy, served, proposed,
                                                                  changed, now):
    try:
        serial = next_serial(policy, served, proposed, changed, now)
    except SerialNotIncreased:
        assert policy == "keep" and (changed or proposed != served)
        return
    if changed:
        assert serial_gt(serial, served)
    else:
        assert serial == served or serial_gt(serial, served)
