"""registry.state: the registration state machine, with a fake clock and
fixed randomness, through real sealed and signed requests (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from keyresolve.protocol.codes import Rcode
from keyresolve.protocol.errors import NotAuth, ProtocolError, Refused
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import KeyFlag
from keyresolve.registry import messages as m
from keyresolve.registry.messages import AnswerKind, Kind, LogOp
from keyresolve.registry.state import Action, ChallengeMail, Limits, NoticeMail, Outcome, TokenMail

from .registry_fixtures import (ALICE, BOB, HYBRID_OWNER, OTHER_ZONE, OWNER, OWNER2, REGISTRY,
                                STRANGER, T0, ZONE, Clock, HybridPair, Pair, make_registry,
                                request)

DAY = 86_400


class Env:
    """A registry with a fake clock, and an owner's side of the exchanges."""

    def __init__(self, limits: Limits = Limits(), **kwargs) -> None:
        self.clock = Clock()
        self.reg = make_registry(self.clock, limits, **kwargs)
        self.serial = 1

    def send(self, kind: Kind, fields: list, signer=None, *, zone: Name = ZONE,
             time: int | None = None) -> Outcome:
        return self.reg.handle(zone, request(kind, fields, signer, zone=zone, clock=self.clock,
                                             time=time))

    def commit(self, done: Outcome | Action) -> m.Answer | None:
        """Commit a change as the store would, then apply its log entry."""
        change = done.change
        assert change is not None
        if change.op is not LogOp.RENEW:
            self.serial += 1
        entry = change.log_entry(self.serial)
        self.reg.apply(m.LogEntry.from_wire(entry.to_wire()))  # as read back from the log
        return done.finish(self.serial) if isinstance(done, Outcome) else None

    def register(self, pair: Pair | HybridPair = OWNER, address: Name = ALICE, backup: bytes | None = None,
                 zone: Name = ZONE) -> Outcome:
        return self.send(Kind.REGISTER, m.register_fields(address, pair.encrypt, pair.sign,
                                                          backup), pair.ed, zone=zone)

    def challenge(self, outcome: Outcome | Action, pair: Pair | HybridPair = OWNER) -> m.Challenge:
        assert isinstance(outcome.mail, ChallengeMail)
        return m.open_challenge(outcome.mail.attachment, pair.x, REGISTRY.sign)

    def answer(self, challenge: m.Challenge, pair: Pair | HybridPair = OWNER, kind: Kind | None = None,
               token: bytes | None = None) -> Outcome:
        return self.send(kind or challenge.purpose,
                         m.token_fields(challenge.request_id, token or challenge.token), pair.ed)

    def registered(self, pair: Pair | HybridPair = OWNER, address: Name = ALICE,
                   backup: bytes | None = None) -> m.Answer:
        outcome = self.answer(self.challenge(self.register(pair, address, backup), pair), pair)
        answer = self.commit(outcome)
        assert answer is not None
        return answer


def rcode_of(call, *args, **kwargs) -> int:
    with pytest.raises(ProtocolError) as info:
        call(*args, **kwargs)
    return info.value.rcode


# -- register, confirm, publish -----------------------------------------------------
def test_register_mails_a_challenge_and_confirm_publishes() -> None:
    env = Env()
    outcome = env.register()
    assert outcome.change is None
    assert outcome.answer == m.Answer(AnswerKind.ACCEPTED, outcome.request.digest,
                                      expires_in=DAY)
    mail = outcome.mail
    assert isinstance(mail, ChallengeMail) and mail.address == ALICE
    ids = (m.key_id_bytes(OWNER.encrypt), m.key_id_bytes(OWNER.sign))
    assert mail.added == ids and mail.replaced == () and mail.expires == T0 + DAY
    challenge = env.challenge(outcome)
    assert (challenge.purpose, challenge.address, challenge.zone, challenge.added,
            challenge.expires) == (Kind.CONFIRM, ALICE, ZONE, ids, T0 + DAY)
    assert challenge.server.to_text() == "192.0.2.53:5300"
    assert ALICE not in env.reg.registrations  # nothing before the confirmation
    confirmed = env.answer(challenge)
    change = confirmed.change
    assert change is not None and change.op is LogOp.PUBLISH and change.replaced == ()
    assert [key.flags for key in change.keys] == [KeyFlag.REGISTERED] * 2
    assert [key.key for key in change.keys] == [OWNER.encrypt.key, OWNER.sign.key]
    answer = env.commit(confirmed)
    assert answer == m.Answer(AnswerKind.PUBLISHED, confirmed.request.digest, ALICE, ids, (), 2)
    registration = env.reg.registrations[ALICE]
    assert registration.keys == change.keys and registration.verified == T0


def test_a_hybrid_key_registers_renews_and_replaces_an_x25519_one() -> None:
    """An mlkem768x25519 encryption key: its challenges (confirmation and
    re-verification) open only with the hybrid key, it is published flagged
    REGISTERED, survives the update log, and replaces an X25519 key."""
    env = Env(Limits(reverify_every=100 * DAY, reverify_grace=10 * DAY))
    env.registered(OWNER)
    outcome = env.register(HYBRID_OWNER)
    with pytest.raises(NotAuth):  # the X25519 key in place does not open it
        env.challenge(outcome, OWNER)
    challenge = env.challenge(outcome, HYBRID_OWNER)
    ids = (m.key_id_bytes(HYBRID_OWNER.encrypt), m.key_id_bytes(HYBRID_OWNER.sign))
    assert challenge.added == ids
    assert challenge.replaced == (m.key_id_bytes(OWNER.encrypt), m.key_id_bytes(OWNER.sign))
    confirmed = env.answer(challenge, HYBRID_OWNER)
    assert confirmed.change is not None
    assert [(key.algorithm, key.key, key.flags) for key in confirmed.change.keys] == [
        (HYBRID_OWNER.encrypt.algorithm, HYBRID_OWNER.encrypt.key, KeyFlag.REGISTERED),
        (HYBRID_OWNER.sign.algorithm, HYBRID_OWNER.sign.key, KeyFlag.REGISTERED)]
    answer = env.commit(confirmed)  # through the update log's wire form
    assert answer is not None and answer.added == ids
    assert env.reg.registrations[ALICE].encrypt.key == HYBRID_OWNER.encrypt.key
    env.clock.now = T0 + 100 * DAY
    (action,) = env.reg.due()
    renewal = env.challenge(action, HYBRID_OWNER)
    assert renewal.purpose is Kind.RENEW and renewal.added == ids
    renewed = env.commit(env.answer(renewal, HYBRID_OWNER))
    assert renewed is not None and renewed.kind is AnswerKind.RENEWED


def test_confirm_signed_by_other_keys_publishes_nothing_and_keeps_the_challenge() -> None:
    env = Env()
    challenge = env.challenge(env.register())
    assert rcode_of(env.answer, challenge, STRANGER) == Rcode.NOTAUTH
    assert rcode_of(env.answer, challenge, OWNER, token=bytes(16)) == Rcode.NOTAUTH
    assert ALICE not in env.reg.registrations
    assert env.answer(challenge).change is not None  # the owner still can


def test_a_challenge_is_opened_only_by_the_key_registered_and_signed_by_the_registry() -> None:
    env = Env()
    outcome = env.register()
    attachment = outcome.mail.attachment  # type: ignore[union-attr]
    with pytest.raises(NotAuth):
        m.open_challenge(attachment, OWNER2.x, REGISTRY.sign)  # another encryption key
    with pytest.raises(NotAuth):
        m.open_challenge(attachment, OWNER.x, STRANGER.sign)  # not the registry's signature
    for at in (5, 20, len(attachment) // 2, len(attachment) - 1):
        tampered = bytearray(attachment)
        tampered[at] ^= 1
        with pytest.raises((NotAuth, m.FormError)):
            m.open_challenge(bytes(tampered), OWNER.x, REGISTRY.sign)


def test_a_confirmation_is_single_use() -> None:
    env = Env()
    challenge = env.challenge(env.register())
    envelope = request(Kind.CONFIRM, m.token_fields(challenge.request_id, challenge.token),
                       OWNER.ed, clock=env.clock)
    env.commit(env.reg.handle(ZONE, envelope))
    assert rcode_of(env.reg.handle, ZONE, envelope) == Rcode.NOTAUTH  # the same bytes
    assert rcode_of(env.answer, challenge) == Rcode.NOTAUTH  # signed again: used


def test_an_expired_challenge_publishes_nothing() -> None:
    env = Env()
    challenge = env.challenge(env.register())
    env.clock.now = challenge.expires + 1
    assert rcode_of(env.answer, challenge) == Rcode.NOTAUTH
    assert ALICE not in env.reg.registrations


def test_a_challenge_answers_until_its_expiry_second() -> None:
    env = Env()
    challenge = env.challenge(env.register())
    env.clock.now = challenge.expires
    assert env.answer(challenge).change is not None


def test_a_confirmation_of_one_zone_is_refused_in_another() -> None:
    env = Env()
    challenge = env.challenge(env.register())
    assert rcode_of(env.send, Kind.CONFIRM,
                    m.token_fields(challenge.request_id, challenge.token), OWNER.ed,
                    zone=OTHER_ZONE) == Rcode.NOTAUTH
    assert env.answer(challenge).change is not None


def test_the_answer_is_for_the_request_only() -> None:
    env = Env()
    outcome = env.register()
    wire = m.make_answer(outcome.answer, REGISTRY.ed)  # type: ignore[arg-type]
    assert m.read_answer(wire, REGISTRY.sign, outcome.request.digest) == outcome.answer
    with pytest.raises(NotAuth):
        m.read_answer(wire, REGISTRY.sign, bytes(32))
    with pytest.raises(NotAuth):
        m.read_answer(wire, STRANGER.sign, outcome.request.digest)


# -- replace ------------------------------------------------------------------------
def test_a_new_registration_replaces_the_keys_when_confirmed_never_before() -> None:
    env = Env()
    first = env.registered()
    outcome = env.register(OWNER2)
    assert outcome.mail.replaced == first.added  # type: ignore[union-attr]
    challenge = env.challenge(outcome, OWNER2)
    assert challenge.replaced == first.added
    assert env.reg.registrations[ALICE].encrypt.key == OWNER.encrypt.key  # not yet
    confirmed = env.answer(challenge, OWNER2)
    assert [key.key for key in confirmed.change.replaced] == [  # type: ignore[union-attr]
        OWNER.encrypt.key, OWNER.sign.key]
    answer = env.commit(confirmed)
    assert answer.replaced == first.added and answer.serial == 3  # type: ignore[union-attr]
    assert env.reg.registrations[ALICE].sign.key == OWNER2.sign.key
    # the old keys are free again: they may go to another address
    env.registered(OWNER, BOB)
    assert env.reg.registrations[BOB].sign.key == OWNER.sign.key


def test_a_key_is_registered_at_one_address_only() -> None:
    env = Env()
    env.registered()
    taken = env.register(OWNER, BOB)
    # the same answer as any registration, and no mail: nothing says where
    assert taken.mail is None and taken.answer.kind is AnswerKind.ACCEPTED  # type: ignore
    mixed = env.send(Kind.REGISTER, m.register_fields(BOB, OWNER.encrypt, STRANGER.sign),
                     STRANGER.ed)
    assert mixed.mail is None


def test_of_two_pending_registrations_of_one_key_the_second_confirmed_is_refused() -> None:
    env = Env()
    alice = env.challenge(env.register(OWNER, ALICE))
    bob = env.challenge(env.register(OWNER, BOB))
    env.commit(env.answer(alice))
    with pytest.raises(Refused):
        env.answer(bob)
    assert BOB not in env.reg.registrations


# -- unregister ------------------------------------------------------------------------
def test_unregister_needs_the_registered_signing_key() -> None:
    env = Env()
    env.registered()
    wrong = rcode_of(env.send, Kind.UNREGISTER, m.address_fields(ALICE), STRANGER.ed)
    unknown = rcode_of(env.send, Kind.UNREGISTER, m.address_fields(BOB), OWNER.ed)
    assert wrong == unknown == Rcode.NOTAUTH  # not registered looks like a wrong key
    outcome = env.send(Kind.UNREGISTER, m.address_fields(ALICE), OWNER.ed)
    assert outcome.change.op is LogOp.WITHDRAW  # type: ignore[union-attr]
    answer = env.commit(outcome)
    assert answer.kind is AnswerKind.WITHDRAWN and answer.serial == 3  # type: ignore
    assert ALICE not in env.reg.registrations


def _same_view(a: Outcome, b: Outcome) -> bool:
    """What the sender sees: the answer's kind and fields, apart from its digest."""
    return (a.answer.kind, a.answer.expires_in) == (b.answer.kind,  # type: ignore[union-attr]
                                                    b.answer.expires_in)  # type: ignore


def test_removal_by_mail() -> None:
    env = Env()
    env.registered()
    registered = env.send(Kind.UNREGISTER_MAIL, m.address_fields(ALICE))
    unknown = env.send(Kind.UNREGISTER_MAIL, m.address_fields(BOB))
    assert _same_view(registered, unknown) and unknown.mail is None
    mail = registered.mail
    assert isinstance(mail, TokenMail) and mail.purpose is Kind.UNREGISTER_CONFIRM
    request_id, token = m.read_mail_token(mail.token)
    assert rcode_of(env.send, Kind.UNREGISTER_CONFIRM,
                    m.token_fields(request_id, bytes(16))) == Rcode.NOTAUTH
    assert rcode_of(env.send, Kind.RECOVER_CONFIRM,
                    m.token_fields(request_id, token, bytes(32))) == Rcode.NOTAUTH
    outcome = env.send(Kind.UNREGISTER_CONFIRM, m.token_fields(request_id, token))
    assert outcome.change.reason == "removed by mail"  # type: ignore[union-attr]
    env.commit(outcome)
    assert ALICE not in env.reg.registrations
    assert rcode_of(env.send, Kind.UNREGISTER_CONFIRM,
                    m.token_fields(request_id, token)) == Rcode.NOTAUTH  # single-use


def test_recovery_by_mail_token() -> None:
    env = Env()
    env.registered(backup=b"sealed under a passphrase")
    assert env.send(Kind.RECOVER, m.address_fields(BOB)).mail is None
    mail = env.send(Kind.RECOVER, m.address_fields(ALICE)).mail
    assert isinstance(mail, TokenMail) and mail.purpose is Kind.RECOVER_CONFIRM
    request_id, token = m.read_mail_token(mail.token)
    reply = Pair.fixed(9)
    outcome = env.send(Kind.RECOVER_CONFIRM, m.token_fields(request_id, token,
                                                            reply.encrypt.key))
    assert outcome.change is None and outcome.answer.kind is AnswerKind.RECOVERED  # type: ignore
    assert m.open_backup(reply.x, outcome.answer.backup) == b"sealed under a passphrase"  # type: ignore
    with pytest.raises(NotAuth):
        m.open_backup(OWNER.x, outcome.answer.backup)  # type: ignore[union-attr, arg-type]


def test_no_recovery_mail_without_a_backup() -> None:
    env = Env()
    env.registered()
    assert env.send(Kind.RECOVER, m.address_fields(ALICE)).mail is None


# -- re-verification ---------------------------------------------------------------------
def test_reverification_answered_keeps_the_keys() -> None:
    env = Env(Limits(reverify_every=100 * DAY, reverify_grace=10 * DAY))
    published = env.registered()
    assert env.reg.next_due() == T0 + 100 * DAY
    env.clock.now = T0 + 100 * DAY - 1
    assert env.reg.due() == []
    env.clock.now = T0 + 100 * DAY
    (action,) = env.reg.due()
    assert action.change is None and isinstance(action.mail, ChallengeMail)
    assert env.reg.due() == []  # one challenge per period
    challenge = env.challenge(action)
    assert challenge.purpose is Kind.RENEW and challenge.added == published.added
    assert rcode_of(env.answer, challenge, STRANGER) == Rcode.NOTAUTH
    env.clock.now += 5 * DAY
    outcome = env.answer(challenge)
    assert outcome.change.op is LogOp.RENEW  # type: ignore[union-attr]
    answer = env.commit(outcome)
    assert answer.kind is AnswerKind.RENEWED and answer.next_check == env.clock.now + 100 * DAY
    assert env.serial == 2  # the zone is not changed
    env.clock.now += 20 * DAY  # past the old grace: nothing is withdrawn
    assert env.reg.due() == [] and ALICE in env.reg.registrations
    assert env.reg.next_due() == T0 + 105 * DAY + 100 * DAY


def test_reverification_unanswered_withdraws_and_tells_the_owner() -> None:
    env = Env(Limits(reverify_every=100 * DAY, reverify_grace=10 * DAY))
    published = env.registered()
    env.clock.now = T0 + 100 * DAY
    (action,) = env.reg.due()
    challenge = env.challenge(action)
    env.clock.now = challenge.expires
    assert env.reg.due() == []
    env.clock.now = challenge.expires + 1
    (withdraw,) = env.reg.due()
    assert isinstance(withdraw.mail, NoticeMail) and withdraw.mail.removed == published.added
    assert withdraw.change.op is LogOp.WITHDRAW  # type: ignore[union-attr]
    assert withdraw.change.reason == "unanswered"  # type: ignore[union-attr]
    env.commit(withdraw)
    assert ALICE not in env.reg.registrations and env.reg.due() == []
    assert rcode_of(env.answer, challenge) == Rcode.NOTAUTH


def test_a_withdrawal_found_while_handling_a_request_is_not_lost() -> None:
    env = Env(Limits(reverify_every=100 * DAY, reverify_grace=10 * DAY))
    env.registered()
    env.clock.now = T0 + 100 * DAY
    env.reg.due()
    env.clock.now += 11 * DAY
    env.register(OWNER2, BOB)  # expires the re-verification on the way
    assert env.reg.next_due() == env.clock.now
    (withdraw,) = env.reg.due()
    assert withdraw.change.address == ALICE  # type: ignore[union-attr]


def test_a_withdrawal_found_while_handling_is_dropped_if_the_keys_changed_since() -> None:
    env = Env(Limits(reverify_every=100 * DAY, reverify_grace=10 * DAY))
    env.registered()
    env.clock.now = T0 + 100 * DAY
    env.reg.due()
    env.clock.now += 11 * DAY
    outcome = env.register(OWNER2)  # finds the unanswered re-verification
    env.commit(env.answer(env.challenge(outcome, OWNER2), OWNER2))
    assert env.reg.due() == []
    assert env.reg.registrations[ALICE].sign.key == OWNER2.sign.key


def test_log_entries_about_keys_replaced_since_change_nothing() -> None:
    env = Env()
    env.registered()
    old = env.reg.registrations[ALICE]
    env.registered(OWNER2)
    new = env.reg.registrations[ALICE]
    for op in (LogOp.WITHDRAW, LogOp.RENEW):
        env.reg.apply(m.LogEntry(op, ZONE, ALICE, old.keys, 9, T0 + 5))
        env.reg.apply(m.LogEntry(op, ZONE, BOB, old.keys, 9, T0 + 5))
        assert env.reg.registrations == {ALICE: new}


def test_a_replacement_during_reverification_cancels_it() -> None:
    env = Env(Limits(reverify_every=100 * DAY, reverify_grace=10 * DAY))
    env.registered()
    env.clock.now = T0 + 100 * DAY
    (action,) = env.reg.due()
    env.registered(OWNER2)
    env.clock.now += 11 * DAY
    assert env.reg.due() == []
    assert rcode_of(env.answer, env.challenge(action)) == Rcode.NOTAUTH


def test_the_due_batch_is_bounded() -> None:
    env = Env(Limits(reverify_every=10))
    env.registered(OWNER, ALICE)
    env.registered(OWNER2, BOB)
    env.clock.now += 10
    assert len(env.reg.due(limit=1)) == 1 and len(env.reg.due(limit=1)) == 1
    assert env.reg.due() == []


# -- bounds, replays, zones, policy -------------------------------------------------
def test_pending_requests_are_bounded_per_address() -> None:
    env = Env(Limits(max_pending_per_address=2))
    env.register()
    env.register()
    assert rcode_of(env.register) == Rcode.REFUSED
    env.register(OWNER2, BOB)  # another address is not affected
    env.clock.now += DAY + 1
    env.register()  # expired ones free their place


def test_pending_requests_are_bounded_in_total() -> None:
    env = Env(Limits(max_pending=3))
    for local in ("a", "b", "c"):
        env.register(Pair.fixed(40 + ord(local)), Name.from_text(f"{local}@example.com."))
    assert rcode_of(env.register) == Rcode.REFUSED
    assert rcode_of(env.send, Kind.UNREGISTER_MAIL, m.address_fields(BOB)) == Rcode.REFUSED
    env.clock.now += DAY + 1
    env.register()


def test_removal_requests_count_the_same_whether_registered_or_not() -> None:
    env = Env(Limits(max_pending_per_address=2))
    env.registered()
    for address in (ALICE, BOB):
        env.send(Kind.UNREGISTER_MAIL, m.address_fields(address))
        env.send(Kind.UNREGISTER_MAIL, m.address_fields(address))
        assert rcode_of(env.send, Kind.UNREGISTER_MAIL, m.address_fields(address)) \
            == Rcode.REFUSED


def test_replays_and_stale_requests_are_refused() -> None:
    env = Env()
    envelope = request(Kind.UNREGISTER_MAIL, m.address_fields(ALICE), clock=env.clock)
    env.reg.handle(ZONE, envelope)
    assert rcode_of(env.reg.handle, ZONE, envelope) == Rcode.NOTAUTH
    assert rcode_of(env.send, Kind.UNREGISTER_MAIL, m.address_fields(ALICE),
                    time=T0 - 301) == Rcode.NOTAUTH
    assert rcode_of(env.send, Kind.UNREGISTER_MAIL, m.address_fields(ALICE),
                    time=T0 + 301) == Rcode.NOTAUTH
    env.send(Kind.UNREGISTER_MAIL, m.address_fields(BOB), time=T0 + 300)
    env.clock.now += 301
    assert rcode_of(env.reg.handle, ZONE, envelope) == Rcode.NOTAUTH  # now stale


def test_the_replay_memory_is_bounded() -> None:
    env = Env(Limits(max_replay=2))
    env.send(Kind.UNREGISTER_MAIL, m.address_fields(ALICE))
    env.send(Kind.UNREGISTER_MAIL, m.address_fields(BOB))
    assert rcode_of(env.send, Kind.RECOVER, m.address_fields(BOB)) == Rcode.REFUSED
    env.clock.now += 301
    env.send(Kind.RECOVER, m.address_fields(BOB))


def test_zones_and_mailbox_policy() -> None:
    env = Env(allowed=lambda address: address.local != "root")
    envelope = request(Kind.UNREGISTER_MAIL, m.address_fields(ALICE), clock=env.clock)
    assert rcode_of(env.reg.handle, Name.from_text("example.org."), envelope) == Rcode.NOTAUTH
    assert rcode_of(env.reg.handle, OTHER_ZONE, envelope) == Rcode.NOTAUTH  # sealed for another
    outside = Name.from_text("alice@example.org.")
    assert rcode_of(env.register, OWNER, outside) == Rcode.REFUSED
    assert rcode_of(env.register, OWNER, Name.from_text("root@example.com.")) == Rcode.REFUSED
    env.register(OWNER, Name.from_text("carol@sub.example.com."))  # below the apex
    # the policy is for registering: removal and recovery stay open
    env.send(Kind.UNREGISTER_MAIL, m.address_fields(Name.from_text("root@example.com.")))
    assert rcode_of(env.send, Kind.RECOVER, m.address_fields(outside)) == Rcode.REFUSED


def test_registration_answers_do_not_tell_whether_an_address_is_registered() -> None:
    env = Env()
    env.registered()
    assert _same_view(env.register(OWNER2, ALICE), env.register(STRANGER, BOB))


def test_the_registered_state_is_rebuilt_from_the_log() -> None:
    env = Env(Limits(reverify_every=100 * DAY))
    env.registered(backup=b"b")
    env.registered(OWNER2, BOB)
    entries = []
    original = env.reg.apply
    rebuilt = make_registry(env.clock, Limits(reverify_every=100 * DAY))

    def record(entry: m.LogEntry) -> None:
        entries.append(entry)
        original(entry)

    env.reg.apply = record  # type: ignore[method-assign]
    env.commit(env.send(Kind.UNREGISTER, m.address_fields(BOB), OWNER2.ed))
    env.registered(OWNER2, BOB)
    for entry in [m.LogEntry(LogOp.PUBLISH, ZONE, ALICE, env.reg.registrations[ALICE].keys, 2,
                             T0, b"b")] + entries:
        rebuilt.apply(entry)
    assert rebuilt.registrations == env.reg.registrations
    assert rebuilt.next_due() == env.reg.next_due()


# -- every state x input, as a model -------------------------------------------------
ADDRESSES = [ALICE, BOB]
PAIRS = [OWNER, OWNER2, STRANGER]


class RegistryMachine(RuleBasedStateMachine):
    """Random sequences of every request and clock step against a model:
    the registry publishes exactly when the model says, and its invariants
    hold in every state."""

    def __init__(self) -> None:
        super().__init__()
        self.env = Env(Limits(confirm_within=100, reverify_every=1000, reverify_grace=100,
                              max_pending_per_address=3, max_pending=5))
        self.challenges: list[tuple[m.Challenge, Pair]] = []
        self.tokens: list[tuple[bytes, bytes, Kind]] = []
        #: the model: address -> the pair registered there
        self.model: dict[Name, Pair] = {}

    @rule(pair=st.sampled_from(PAIRS), address=st.sampled_from(ADDRESSES))
    def register(self, pair: Pair, address: Name) -> None:
        try:
            outcome = self.env.register(pair, address)
        except Refused:
            return  # bounds
        taken = any(p == pair and a != address for a, p in self.model.items())
        assert (outcome.mail is None) == taken
        if outcome.mail is not None:
            self.challenges.append((self.env.challenge(outcome, pair), pair))

    @precondition(lambda self: self.challenges)
    @rule(data=st.data(), signer=st.sampled_from(PAIRS + [None]),
          tamper=st.booleans())
    def answer(self, data, signer: Pair | None, tamper: bool) -> None:
        challenge, pair = data.draw(st.sampled_from(self.challenges))
        signer = signer or pair
        token = bytes(16) if tamper else challenge.token
        try:
            outcome = self.env.answer(challenge, signer, token=token)
        except (NotAuth, Refused):
            return
        # accepted: the right key, the right token, in time, once
        assert signer == pair and not tamper
        assert self.env.clock.now <= challenge.expires
        self.challenges.remove((challenge, pair))
        self.env.commit(outcome)
        if challenge.purpose is Kind.CONFIRM:
            assert not any(p == pair and a != challenge.address for a, p in self.model.items())
            self.model[challenge.address] = pair
        else:
            assert self.model[challenge.address] == pair

    @rule(address=st.sampled_from(ADDRESSES), signer=st.sampled_from(PAIRS))
    def unregister(self, address: Name, signer: Pair) -> None:
        try:
            outcome = self.env.send(Kind.UNREGISTER, m.address_fields(address), signer.ed)
        except NotAuth:
            assert self.model.get(address) != signer
            return
        assert self.model.get(address) == signer
        self.env.commit(outcome)
        del self.model[address]

    @rule(address=st.sampled_from(ADDRESSES))
    def unregister_by_mail(self, address: Name) -> None:
        try:
            outcome = self.env.send(Kind.UNREGISTER_MAIL, m.address_fields(address))
        except Refused:
            return
        assert (outcome.mail is not None) == (address in self.model)
        if outcome.mail is not None:
            request_id, token = m.read_mail_token(outcome.mail.token)  # type: ignore[union-attr]
            self.tokens.append((request_id, token, Kind.UNREGISTER_CONFIRM))

    @precondition(lambda self: self.tokens)
    @rule(data=st.data())
    def confirm_token(self, data) -> None:
        request_id, token, kind = data.draw(st.sampled_from(self.tokens))
        self.tokens.remove((request_id, token, kind))
        try:
            outcome = self.env.send(kind, m.token_fields(request_id, token))
        except (NotAuth, Refused):
            return
        assert outcome.change is not None
        self.env.commit(outcome)
        del self.model[outcome.change.address]

    @rule(seconds=st.sampled_from([1, 50, 101, 500, 1001]))
    def wait(self, seconds: int) -> None:
        self.env.clock.now += seconds
        for action in self.env.reg.due():
            if action.change is not None:
                assert action.change.reason == "unanswered"
                self.env.commit(action)
                del self.model[action.change.address]
            else:
                address = action.mail.address  # type: ignore[union-attr]
                pair = self.model[address]
                self.challenges.append((self.env.challenge(action, pair), pair))

    @invariant()
    def registrations_match_the_model(self) -> None:
        reg = self.env.reg
        assert {a: r.sign.key for a, r in reg.registrations.items()} == {
            a: p.sign.key for a, p in self.model.items()}
        keys = [key.key for r in reg.registrations.values() for key in r.keys]
        assert len(keys) == len(set(keys))  # a key at one address only
        assert all(key.flags == KeyFlag.REGISTERED for r in reg.registrations.values()
                   for key in r.keys)

    @invariant()
    def pending_is_bounded(self) -> None:
        reg = self.env.reg
        requests = [p for p in reg.pending.values() if p.kind.name != "RENEW"]
        assert len(requests) <= 5
        for address in ADDRESSES:
            assert sum(p.address == address for p in requests) <= 3
        renewing = [p for p in reg.pending.values() if p.kind.name == "RENEW"]
        assert len(renewing) <= len(reg.registrations)


RegistryMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestRegistryMachine = RegistryMachine.TestCase
