"""The wire answer cache on its own (sans-IO); tests/test_resolver.py checks
it against the handler's full path."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from keyresolve.resolver.answercache import AnswerCache, _last_second
from keyresolve.resolver.cache import Cache, Rank
from keyresolve.protocol.codes import Rcode, RType
from keyresolve.protocol.message import Message, Question
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import KEY, KeyAlgorithm, KeyUsage, Record

T0 = 1_000_000.0
NAME = Name.from_text("alice@example.com")
QUERY = Message(id=7, rd=True, question=Question(NAME, RType.KEY)).to_wire()


def _record(ttl: int) -> Record:
    return Record(NAME, RType.KEY, ttl, KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, b"k" * 32))


def _cached(ttl: int = 300) -> tuple[AnswerCache, list, Message]:
    """An answer cache, the lookups of a cache hit at T0 and its response."""
    cache = Cache()
    answers = AnswerCache(cache)
    cache.put([_record(ttl)], Rank.AUTH_ANSWER, T0)
    with cache.recording() as lookups:
        found = cache.get(NAME, RType.KEY, T0)
    response = Message(id=7, qr=True, rd=True, ra=True, question=Question(NAME, RType.KEY),
                       answer=found)
    return answers, lookups, response


@given(st.floats(1.0, 1e9), st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 86_400))
def test_last_second_keeps_the_ttl_up_to_the_second_boundary(base, fraction, ttl):
    expires = base + ttl + fraction
    built = expires - ttl - fraction  # a moment with int(expires - t) == ttl
    if not (built < expires and int(expires - built) == ttl):
        return
    renew = _last_second(expires, ttl)
    # int(expires - t) only falls as t grows: equal at both ends, equal between.
    assert built <= renew <= expires and int(expires - renew) == ttl
    # ... and the boundary is the second's, to rounding.
    assert expires - ttl - 4 * math.ulp(expires) <= renew <= expires - ttl


def test_a_hit_patches_the_id_and_counts_down():
    answers, lookups, response = _cached(ttl=300)
    assert answers.add(QUERY, response, response.to_wire(), lookups, T0)
    other_id = b"\x12\x34" + QUERY[2:]
    hit = answers.answer(other_id, T0 + 1.5)
    assert hit[:2] == b"\x12\x34"
    assert Message.from_wire(hit).answer[0].ttl == 298
    assert answers.answer(QUERY, T0 + 300) is None and len(answers) == 0


def test_declined_answers():
    answers, lookups, response = _cached()
    wire = response.to_wire()
    wrong_ttl = Message(id=7, qr=True, rd=True, ra=True, question=response.question,
                        answer=[_record(299)])
    servfail = Message(id=7, qr=True, rcode=Rcode.SERVFAIL, question=response.question)
    assert not answers.add(QUERY, wrong_ttl, wrong_ttl.to_wire(), lookups, T0)
    assert not answers.add(QUERY, response, wire, [], T0)  # no entry behind it
    assert not answers.add(QUERY, servfail, servfail.to_wire(), lookups, T0)
    assert not answers.add(QUERY, response, response.to_wire(max_size=60), lookups, T0)  # TC
    assert not answers.add(b"\x00\x09" + QUERY[2:], response, wire, lookups, T0)  # other id
    assert len(answers) == 0
