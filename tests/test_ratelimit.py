"""The pure rate decisions: response rate limiting and log rate limiting,
with a fake clock (seconds passed in)."""

from __future__ import annotations

import ipaddress

import pytest

from keyresolve.authority import ratelimit
from keyresolve.protocol.codes import Rcode, RType
from keyresolve.protocol.message import Message, Question, make_query, make_response
from keyresolve.protocol.names import Name
from keyresolve.authority.ratelimit import (DROP, ERROR, NODATA, NXDOMAIN, POSITIVE, REFERRAL, SEND, SLIP,
                                  LogLimiter, ResponseRateLimiter)
from keyresolve.protocol.records import ADDR, NS, Record


def decisions(limiter, host, count, now, answer_class=POSITIVE):
    return [limiter.decide(host, answer_class, now) for _ in range(count)]


def test_under_the_rate_every_answer_is_sent():
    limiter = ResponseRateLimiter(5, slip=2)
    assert decisions(limiter, "192.0.2.1", 5, 100.0) == [SEND] * 5
    assert limiter.limited == [0] * 5


def test_over_the_rate_every_other_answer_slips_with_slip_2():
    limiter = ResponseRateLimiter(3, slip=2)
    assert decisions(limiter, "192.0.2.1", 9, 100.2) == [SEND] * 3 + [DROP, SLIP] * 3
    assert limiter.limited[POSITIVE] == 6


@pytest.mark.parametrize("slip, pattern", [
    (0, [DROP] * 6),  # slip 0: everything over the rate is dropped
    (1, [SLIP] * 6),  # slip 1: everything over the rate is truncated
    (3, [DROP, DROP, SLIP] * 2),
])
def test_slip_every_nth_limited_answer(slip, pattern):
    limiter = ResponseRateLimiter(2, slip=slip)
    assert decisions(limiter, "192.0.2.1", 8, 5.5) == [SEND, SEND] + pattern


def test_a_new_second_starts_the_count_over():
    limiter = ResponseRateLimiter(2, slip=0)
    assert decisions(limiter, "192.0.2.1", 3, 10.0) == [SEND, SEND, DROP]
    assert decisions(limiter, "192.0.2.1", 2, 10.999) == [DROP, DROP]
    assert decisions(limiter, "192.0.2.1", 3, 11.0) == [SEND, SEND, DROP]
    # a gap of many seconds too
    assert decisions(limiter, "192.0.2.1", 3, 500.3) == [SEND, SEND, DROP]


def test_addresses_of_one_ipv4_24_share_a_budget_other_prefixes_do_not():
    limiter = ResponseRateLimiter(2, slip=0)
    assert decisions(limiter, "198.51.100.1", 2, 1.0) == [SEND, SEND]
    assert limiter.decide("198.51.100.200", POSITIVE, 1.0) == DROP  # the same /24
    assert limiter.decide("198.51.101.1", POSITIVE, 1.0) == SEND    # another /24
    assert limiter.decide("10.0.0.1", POSITIVE, 1.0) == SEND


def test_ipv6_clients_are_grouped_by_56():
    limiter = ResponseRateLimiter(1, slip=0)
    assert limiter.decide("2001:db8:0:1200::1", POSITIVE, 1.0) == SEND
    # same /56 (2001:db8:0:12xx::/56), other spellings and hosts
    assert limiter.decide("2001:db8:0:12ff:1:2:3:4", POSITIVE, 1.0) == DROP
    assert limiter.decide("2001:0db8:0000:1234::", POSITIVE, 1.0) == DROP
    # the next /56
    assert limiter.decide("2001:db8:0:1300::1", POSITIVE, 1.0) == SEND
    # IPv4-mapped addresses count with their IPv4 /24
    assert limiter.decide("192.0.2.7", POSITIVE, 1.0) == SEND
    assert limiter.decide("::ffff:192.0.2.9", POSITIVE, 1.0) == DROP


def test_client_prefix():
    assert ratelimit.client_prefix("203.0.113.77") == "203.0.113"
    assert ratelimit.client_prefix("::ffff:203.0.113.1") == "203.0.113"
    network = ipaddress.IPv6Network("2001:db8:aa:bb00::/56")
    assert ratelimit.client_prefix("2001:db8:aa:bbcc::9") == network.network_address.packed[
        :7].hex()


def test_answer_classes_are_counted_apart():
    limiter = ResponseRateLimiter(1, slip=0)
    for answer_class in (POSITIVE, NODATA, NXDOMAIN, REFERRAL, ERROR):
        assert limiter.decide("192.0.2.1", answer_class, 1.0) == SEND
    for answer_class in (POSITIVE, NODATA, NXDOMAIN, REFERRAL, ERROR):
        assert limiter.decide("192.0.2.1", answer_class, 1.0) == DROP
    assert limiter.limited == [1] * 5


def test_the_table_stays_bounded_under_a_flood_of_prefixes():
    limiter = ResponseRateLimiter(1, slip=0, max_prefixes=100)
    limiter.decide("192.0.2.1", POSITIVE, 1.0)  # a victim, limited in second 1
    assert limiter.decide("192.0.2.1", POSITIVE, 1.0) == DROP
    sizes = []
    for i in range(1000):  # 1000 distinct /24s in second 2
        assert limiter.decide(f"10.{i // 256}.{i % 256}.1", POSITIVE, 2.0) == SEND
        sizes.append(len(limiter))
    assert max(sizes) <= 100
    assert len(limiter._hosts) <= 100


def test_a_full_table_drops_prefixes_idle_this_second_first():
    limiter = ResponseRateLimiter(1, slip=0, max_prefixes=4)
    for i in range(3):
        limiter.decide(f"10.0.{i}.1", POSITIVE, 1.0)  # idle from second 2 on
    limiter.decide("192.0.2.1", POSITIVE, 2.0)
    limiter.decide("192.0.3.1", POSITIVE, 2.0)  # full: the three idle ones go
    assert len(limiter) == 2
    assert limiter.decide("192.0.2.1", POSITIVE, 2.0) == DROP  # its count was kept


def test_rate_and_slip_are_checked():
    with pytest.raises(ValueError):
        ResponseRateLimiter(0)
    with pytest.raises(ValueError):
        ResponseRateLimiter(5, slip=ratelimit.MAX_SLIP + 1)


ALICE = Name.from_text("alice@example.com.")
EXAMPLE = Name.from_text("example.com.")
NS1 = Name.from_text("ns1.example.com.")


@pytest.mark.parametrize("rcode, aa, answers, authority, expected", [
    (Rcode.NOERROR, True, 1, 0, POSITIVE),
    (Rcode.NOERROR, True, 0, 1, NODATA),
    (Rcode.NOERROR, False, 0, 1, REFERRAL),
    (Rcode.NXDOMAIN, True, 0, 1, NXDOMAIN),
    (Rcode.REFUSED, False, 0, 0, ERROR),
    (Rcode.FORMERR, False, 0, 0, ERROR),
    (Rcode.SERVFAIL, False, 0, 0, ERROR),
])
def test_classify(rcode, aa, answers, authority, expected):
    assert ratelimit.classify(rcode, aa, answers, authority) == expected


def _referral() -> Message:
    query = make_query(ALICE, RType.KEY, msg_id=4242, rd=True, udp_size=1400)
    response = make_response(query)
    response.authority = [Record(EXAMPLE, RType.NS, 86400, NS(NS1))]
    response.additional = [Record(NS1, RType.ADDR, 86400,
                                  ADDR(ipaddress.ip_address("192.0.2.53"), 53))]
    return response


def test_slipped_is_the_truncated_response_with_the_question_only():
    response = _referral()
    response.aa = True
    response.answer = [Record(ALICE, RType.ADDR, 60, ADDR(ipaddress.ip_address("192.0.2.1"), 1))]
    wire = response.to_wire()
    slip = ratelimit.slipped(wire)
    assert len(slip) < len(wire)
    assert slip == response.truncated().to_wire()  # what Message.to_wire truncates to
    decoded = Message.from_wire(slip)
    assert decoded.tc and decoded.qr and decoded.aa and decoded.rd and decoded.id == 4242
    assert decoded.question == Question(ALICE, RType.KEY)
    assert not (decoded.answer or decoded.authority or decoded.additional)


def test_slipped_of_a_response_without_a_question_and_of_garbage():
    bare = make_response(Message(id=7), Rcode.FORMERR)
    slip = Message.from_wire(ratelimit.slipped(bare.to_wire()))
    assert slip.tc and slip.rcode == Rcode.FORMERR and slip.question is None
    assert ratelimit.slipped(b"\x00\x01\x80") is None
    assert ratelimit.slipped(b"\x00\x01\x80\x00\x01\x00\xc1") is None


# -- the log limiter -----------------------------------------------------------

def test_log_limiter_allows_a_burst_then_holds_back_and_counts():
    limiter = LogLimiter(burst=3, period=60.0)
    allowed = [limiter.should_log("bad signature", 100.0 + i * 0.01) for i in range(10)]
    assert allowed == [True] * 3 + [False] * 7
    assert limiter.summaries(110.0) == []  # the period is not over
    assert limiter.summaries(160.0) == [("bad signature", 7, 60.0)]
    assert limiter.summaries(161.0) == []  # reported once
    assert limiter.should_log("bad signature", 161.0)  # a new period


def test_log_limiter_kinds_are_independent():
    limiter = LogLimiter(burst=1, period=10.0)
    assert limiter.should_log("a", 0.0)
    assert not limiter.should_log("a", 1.0)
    assert limiter.should_log("b", 1.0)
    assert not limiter.should_log("b", 2.0)
    assert sorted(limiter.summaries(20.0)) == [("a", 1, 20.0), ("b", 1, 19.0)]


def test_log_limiter_reports_a_period_that_ended_at_the_next_line():
    limiter = LogLimiter(burst=1, period=10.0)
    assert limiter.should_log("a", 0.0)
    assert not limiter.should_log("a", 5.0)
    assert not limiter.should_log("a", 6.0)
    assert limiter.should_log("a", 12.0)  # a new period; the old one's count is due
    assert limiter.summaries(12.0) == [("a", 2, 12.0)]


def test_log_limiter_final_summaries_report_periods_not_over():
    limiter = LogLimiter(burst=0, period=60.0)
    assert not limiter.should_log("a", 0.0)
    assert limiter.summaries(1.0) == []
    assert limiter.summaries(1.0, final=True) == [("a", 1, 1.0)]
    assert limiter.summaries(2.0, final=True) == []
