"""The registration state machine (sans-IO: the clock and randomness are
passed in, nothing is stored here).

`Registry.handle` takes a request envelope for a zone and returns an
`Outcome`: the answer, a mail to queue, and a change to commit (publish,
renew, withdraw). The caller commits the change (one zone transaction and
one update-log entry, `Change.log_entry`), then tells the registry with
`Registry.apply`, and only then sends the answer (`Outcome.finish`).
`Registry.due` gives the re-verification challenges and the withdrawals
of keys whose owner did not answer. The registered state is plain data
(`Registry.registrations`, rebuilt from the update log with `apply`).

The rules (docs/protocol.md 8E): one encryption key (X25519 or
mlkem768x25519) and one Ed25519 signing key per address; a key at one address only, across every
zone of the registry; every challenge and token single-use and expiring;
pending requests bounded per address and in total; requests accepted once
within their time window; the same answer whether or not an address is
registered.
"""

from __future__ import annotations

import enum
import hmac
import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..protocol.errors import NotAuth, Refused
from ..protocol.names import Name
from ..protocol.records import ADDR, KEY, KeyAlgorithm, KeyFlag
from ..protocol.tsig import DEFAULT_FUDGE, ExpiringSet
from ..protocol.tsig import MAX_REPLAY_ENTRIES as TSIG_MAX_REPLAY_ENTRIES
from .defaults import DEFAULT_CONFIRM_WITHIN, DEFAULT_REVERIFY_EVERY, DEFAULT_REVERIFY_GRACE
from .messages import ENCRYPT_ALGORITHMS, REQUEST_ID_SIZE, TOKEN_SIZE, Answer, AnswerKind, Challenge, Kind, LogEntry, LogOp, Request, key_id_bytes, mail_token_text, make_challenge, open_request, opener_key, seal_backup

#: Pending requests (challenges and tokens not yet answered) of one address:
#: a few retries by the owner, while a flood for one address stays small.
MAX_PENDING_PER_ADDRESS = 4
#: Pending requests in total: at about 1 KB each (keys, backup, indexes),
#: 100,000 hold 100 MB at most; a flood of registrations for random
#: addresses is refused beyond, and the mail it could cause is bounded too.
MAX_PENDING = 100_000
#: Seconds a request's time may differ from the registry's clock: the fudge
#: of signed messages (`tsig.DEFAULT_FUDGE`: docs/protocol.md 8.4, RFC 8945 10).
REQUEST_WINDOW = DEFAULT_FUDGE
#: Requests remembered to refuse their replays: `tsig.MAX_REPLAY_ENTRIES`
#: (each is remembered 2 * `REQUEST_WINDOW` at most).
MAX_REPLAY_ENTRIES = TSIG_MAX_REPLAY_ENTRIES
#: Most actions one `Registry.due` call returns, so a daemon's timer task
#: does a bounded amount of work (and of mail) at a time.
MAX_DUE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Limits:
    """The registry's durations (seconds) and bounds."""

    confirm_within: int = DEFAULT_CONFIRM_WITHIN
    reverify_every: int = DEFAULT_REVERIFY_EVERY
    reverify_grace: int = DEFAULT_REVERIFY_GRACE
    max_pending_per_address: int = MAX_PENDING_PER_ADDRESS
    max_pending: int = MAX_PENDING
    request_window: int = REQUEST_WINDOW
    max_replay: int = MAX_REPLAY_ENTRIES


@dataclass(frozen=True, slots=True)
class Registration:
    """The keys registered at an address, with the time the owner last
    proved them (registration or re-verification) and their backup."""

    zone: Name
    address: Name
    encrypt: KEY
    sign: KEY
    verified: int
    backup: bytes | None = None

    @property
    def keys(self) -> tuple[KEY, KEY]:
        """The published KEY rdatas (flag REGISTERED set)."""
        return self.encrypt, self.sign

    @property
    def key_ids(self) -> tuple[bytes, ...]:
        """The key ids of `keys`, as the wire carries them."""
        return tuple(key_id_bytes(key) for key in self.keys)


# -- what the caller does ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ChallengeMail:
    """Mail `address` a challenge: the person reads `purpose`, `added`,
    `replaced` and `expires`; the tool reads `attachment` (sealed to the
    owner's encryption key, signed by the registry)."""

    zone: Name
    address: Name
    purpose: Kind
    added: tuple[bytes, ...]
    replaced: tuple[bytes, ...]
    expires: int
    attachment: bytes


@dataclass(frozen=True, slots=True)
class TokenMail:
    """Mail `address` a token to paste (`token`): removal (purpose
    UNREGISTER_CONFIRM) or recovery (RECOVER_CONFIRM) of its keys."""

    zone: Name
    address: Name
    purpose: Kind
    token: str
    expires: int


@dataclass(frozen=True, slots=True)
class NoticeMail:
    """Tell `address` its keys were withdrawn, and why (`reason`)."""

    zone: Name
    address: Name
    reason: str
    removed: tuple[bytes, ...]


Mail = ChallengeMail | TokenMail | NoticeMail


@dataclass(frozen=True, slots=True)
class Change:
    """A change to commit: `op` PUBLISH puts `keys` at `address` (removing
    `replaced`), WITHDRAW removes `keys`, RENEW keeps them. The caller makes
    it one zone transaction (none for RENEW) and one update-log entry."""

    op: LogOp
    zone: Name
    address: Name
    keys: tuple[KEY, ...]
    time: int
    replaced: tuple[KEY, ...] = ()
    backup: bytes | None = None
    reason: str = ""
    next_check: int = 0

    def log_entry(self, serial: int) -> LogEntry:
        """The update-log entry of this change, the zone at `serial` after it."""
        return LogEntry(self.op, self.zone, self.address, self.keys, serial, self.time,
                        self.backup, self.reason)

    def answer(self, digest: bytes, serial: int) -> Answer:
        """The answer to the request (envelope digest `digest`) that made it."""
        ids = tuple(key_id_bytes(key) for key in self.keys)
        if self.op is LogOp.PUBLISH:
            return Answer(AnswerKind.PUBLISHED, digest, self.address, ids,
                          tuple(key_id_bytes(key) for key in self.replaced), serial)
        if self.op is LogOp.RENEW:
            return Answer(AnswerKind.RENEWED, digest, self.address, ids,
                          next_check=self.next_check)
        return Answer(AnswerKind.WITHDRAWN, digest, self.address, replaced=ids, serial=serial)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do for one request: queue `mail` (if any) durably, commit
    `change` (if any), `Registry.apply` its log entry, then answer
    (`finish`). A request that is refused raises instead."""

    request: Request
    mail: Mail | None = None
    change: Change | None = None
    answer: Answer | None = None  # None when `change` decides it

    def finish(self, serial: int) -> Answer:
        """The answer, once `change` is committed with the zone at `serial`."""
        if self.answer is not None:
            return self.answer
        assert self.change is not None
        return self.change.answer(self.request.digest, serial)


@dataclass(frozen=True, slots=True)
class Action:
    """A re-verification step `Registry.due` decided: a mail, a change, or both."""

    mail: Mail | None = None
    change: Change | None = None


class PendingKind(enum.Enum):
    """What a pending request waits for."""

    REGISTER = Kind.CONFIRM
    RENEW = Kind.RENEW
    UNREGISTER = Kind.UNREGISTER_CONFIRM
    RECOVER = Kind.RECOVER_CONFIRM


@dataclass(slots=True)
class Pending:
    """A challenge or token sent and not yet answered."""

    kind: PendingKind
    request_id: bytes
    token: bytes
    zone: Name
    address: Name
    expires: int
    encrypt: KEY | None = None
    sign: KEY | None = None
    backup: bytes | None = None


# -- the registry -----------------------------------------------------------------------
class _Replay:
    """Nonces of accepted requests until their window ends (as `tsig.ReplayGuard`)."""

    def __init__(self, window: int, capacity: int) -> None:
        self.window = window
        self.capacity = capacity
        self.seen = ExpiringSet(capacity)

    def check(self, request: Request, now: int) -> None:
        if abs(now - request.time) > self.window:
            raise NotAuth(f"request time {request.time} is outside the window")
        if self.seen.holds(request.nonce, now):
            raise NotAuth("replay of an accepted request")
        if not self.seen.add(request.nonce, request.time + self.window):
            raise Refused(f"{self.capacity} requests remembered: refused until some expire")


class Registry:
    """The registration state of one server, across its registration zones.

    `zones` are the zones this server is the primary of and takes
    registrations for; `private` and `signer` the registry's own X25519 and
    Ed25519 keys; `server` the address owners answer challenges at;
    `allowed(address)` the operator's mailbox policy. `clock()` gives
    seconds since the epoch, `random(n)` n random bytes.
    """

    def __init__(self, *, zones: Iterable[Name], private: X25519PrivateKey,
                 signer: Ed25519PrivateKey, server: ADDR, clock: Callable[[], int],
                 random: Callable[[int], bytes],
                 limits: Limits = Limits(),
                 allowed: Callable[[Name], bool] = lambda address: True) -> None:
        self.zones = frozenset(zones)
        self.private = private
        #: The key id requests are sealed to (derived once, not per request).
        self._key_id = key_id_bytes(opener_key(private))
        self.signer = signer
        self.server = server
        self.clock = clock
        self.random = random
        self.limits = limits
        self.allowed = allowed
        #: address -> its registration: the state the update log rebuilds.
        self.registrations: dict[Name, Registration] = {}
        #: (algorithm, key bytes) -> the address it is registered at.
        self._owners: dict[tuple[int, bytes], Name] = {}
        self.pending: dict[bytes, Pending] = {}
        self._per_address: dict[Name, int] = {}  # pending requests (not RENEW) per address
        self._requested = 0  # pending requests that are not RENEW
        self._renewing: dict[Name, bytes] = {}  # address -> its RENEW request id
        self._expiries: list[tuple[int, bytes]] = []  # (expires, request id)
        self._checks: list[tuple[int, int, Name]] = []  # (due, order, address)
        self._order = itertools.count()
        self._replay = _Replay(limits.request_window, limits.max_replay)
        self._overdue: list[Action] = []  # withdrawals found while handling a request

    # -- requests ------------------------------------------------------------------
    def handle(self, zone: Name, envelope: bytes) -> Outcome:
        """Decide on the request `envelope` received for `zone`; raises the
        protocol error (with its rcode) of a request refused."""
        if zone not in self.zones:
            raise NotAuth(f"{zone} is not a registration zone of this server")
        request = open_request(self.private, envelope, key_id=self._key_id)
        if request.zone != zone:
            raise NotAuth("the request is sealed for another zone")
        now = self.clock()
        self._replay.check(request, now)
        self._overdue.extend(self._expire(now))  # frees the bounds; `due` returns these
        kind = request.kind
        if kind == Kind.REGISTER:
            return self._register(request, now)
        if kind in (Kind.UNREGISTER_MAIL, Kind.RECOVER):
            return self._mail_token(request, now)
        if kind == Kind.UNREGISTER:
            return self._unregister(request, now)
        return self._answer_token(request, now)

    def _register(self, request: Request, now: int) -> Outcome:
        address = request.address
        assert address is not None and request.encrypt and request.sign
        self._check_address(request.zone, address)
        accepted = Outcome(request, answer=Answer(AnswerKind.ACCEPTED, request.digest,
                                                  expires_in=self.limits.confirm_within))
        self._bound(address)
        current = self.registrations.get(address)
        replaced = () if current is None else current.key_ids
        pending = self._add(PendingKind.REGISTER, request.zone, address,
                            now + self.limits.confirm_within, request.encrypt, request.sign,
                            request.backup)
        if self._taken(address, (request.encrypt, request.sign)):
            # Pending as any other (the same bounds apply), but no mail: the
            # same answer, and nothing says where the key is registered.
            return accepted
        added = (key_id_bytes(request.encrypt), key_id_bytes(request.sign))
        return replace(accepted, mail=self._challenge(pending, request.encrypt, added, replaced))

    def _mail_token(self, request: Request, now: int) -> Outcome:
        address = request.address
        assert address is not None
        self._check_address(request.zone, address, policy=False)  # owners may always leave
        outcome = Outcome(request, answer=Answer(AnswerKind.ACCEPTED, request.digest,
                                                 expires_in=self.limits.confirm_within))
        self._bound(address)
        kind = (PendingKind.UNREGISTER if request.kind == Kind.UNREGISTER_MAIL
                else PendingKind.RECOVER)
        pending = self._add(kind, request.zone, address, now + self.limits.confirm_within)
        current = self.registrations.get(address)
        if (current is None or current.zone != request.zone
                or (request.kind == Kind.RECOVER and current.backup is None)):
            # Pending as for a registered address (the same bounds apply), but
            # no mail: the same answer, and no one ever holds the token.
            return outcome
        mail = TokenMail(request.zone, address, kind.value,
                         mail_token_text(pending.request_id, pending.token), pending.expires)
        return replace(outcome, mail=mail)

    def _unregister(self, request: Request, now: int) -> Outcome:
        address = request.address
        assert address is not None
        current = self.registrations.get(address)
        if current is None or current.zone != request.zone:
            # the answer a wrong key gets: nothing says whether it is registered
            raise NotAuth("request not signed by the registered key")
        request.verify(current.sign)
        return Outcome(request, change=Change(LogOp.WITHDRAW, current.zone, address,
                                              current.keys, now, reason="unregistered"))

    def _answer_token(self, request: Request, now: int) -> Outcome:
        pending = self.pending.get(request.request_id)  # type: ignore[arg-type]
        if (pending is None or pending.kind.value != request.kind or pending.zone != request.zone
                or pending.expires < now
                or not hmac.compare_digest(pending.token, request.token or b"")):
            raise NotAuth("no such challenge, or it expired or was answered")
        address = pending.address
        current = self.registrations.get(address)
        if pending.kind is PendingKind.REGISTER:
            assert pending.encrypt is not None and pending.sign is not None
            request.verify(pending.sign)
            self._drop(pending)
            if self._taken(address, (pending.encrypt, pending.sign)):
                raise Refused("a key is registered at another address")
            keys = (_registered(pending.encrypt), _registered(pending.sign))
            replaced = () if current is None else current.keys
            return Outcome(request, change=Change(LogOp.PUBLISH, pending.zone, address, keys, now,
                                                  replaced, pending.backup))
        if current is None:
            self._drop(pending)
            raise Refused(f"{address} has no registered keys")
        if pending.kind is PendingKind.RENEW:
            request.verify(current.sign)
            self._drop(pending)
            return Outcome(request, change=Change(LogOp.RENEW, current.zone, address,
                                                  current.keys, now,
                                                  next_check=now + self.limits.reverify_every))
        self._drop(pending)
        if pending.kind is PendingKind.UNREGISTER:
            return Outcome(request, change=Change(LogOp.WITHDRAW, current.zone, address,
                                                  current.keys, now, reason="removed by mail"))
        assert request.reply_key is not None
        if current.backup is None:
            raise Refused(f"{address} has no backup")
        sealed = seal_backup(request.reply_key, current.backup, self.random)
        return Outcome(request, answer=Answer(AnswerKind.RECOVERED, request.digest,
                                              backup=sealed))

    # -- re-verification -----------------------------------------------------------
    def due(self, limit: int = MAX_DUE_BATCH) -> list[Action]:
        """What is due now, at most `limit` actions: a challenge mail to each
        owner whose keys were last proved `reverify_every` ago, and the
        withdrawal (with a notice mail) of keys whose owner did not answer
        within `reverify_grace`. Expired pending requests are forgotten."""
        now = self.clock()
        actions = [action for action in self._overdue[:limit] if self._holds(action.change)]
        del self._overdue[:limit]
        actions += self._expire(now, limit - len(actions))
        checks = self._checks
        while checks and checks[0][0] <= now and len(actions) < limit:
            due, _, address = heapq.heappop(checks)
            if self._stale_check(due, address):
                continue
            current = self.registrations[address]
            pending = self._add(PendingKind.RENEW, current.zone, address,
                                now + self.limits.reverify_grace, current.encrypt, current.sign)
            actions.append(Action(mail=self._challenge(pending, current.encrypt,
                                                       current.key_ids, ())))
        return actions

    def next_due(self) -> int | None:
        """The earliest time `due` may have something to do, or None."""
        if self._overdue:
            return self.clock()
        expiries, checks = self._expiries, self._checks
        while expiries and self._stale_expiry(*expiries[0]):
            heapq.heappop(expiries)
        while checks and self._stale_check(checks[0][0], checks[0][2]):
            heapq.heappop(checks)
        times = [self._checks[0][0]] if self._checks else []
        if self._expiries:
            times.append(self._expiries[0][0] + 1)  # valid through its expiry second
        return min(times) if times else None

    def _expire(self, now: int, limit: int = MAX_DUE_BATCH) -> list[Action]:
        actions: list[Action] = []
        expiries = self._expiries
        while expiries and expiries[0][0] < now and len(actions) < limit:
            expires, request_id = heapq.heappop(expiries)
            if self._stale_expiry(expires, request_id):
                continue
            pending = self.pending[request_id]
            self._drop(pending)
            current = self.registrations.get(pending.address)
            if pending.kind is PendingKind.RENEW and current is not None:
                notice = NoticeMail(current.zone, current.address,
                                    "re-verification unanswered", current.key_ids)
                actions.append(Action(notice, Change(LogOp.WITHDRAW, current.zone,
                                                     current.address, current.keys, now,
                                                     reason="unanswered")))
        return actions

    def _holds(self, change: Change | None) -> bool:
        """Whether the keys `change` is about are still the address's."""
        current = None if change is None else self.registrations.get(change.address)
        return current is not None and _key_set(current.keys) == _key_set(change.keys)  # type: ignore[union-attr]

    def _stale_expiry(self, expires: int, request_id: bytes) -> bool:
        """An expiry entry of a request answered since."""
        pending = self.pending.get(request_id)
        return pending is None or pending.expires != expires

    def _stale_check(self, due: int, address: Name) -> bool:
        """A re-verification entry of keys replaced, renewed or withdrawn
        since, or being re-verified now."""
        current = self.registrations.get(address)
        return (current is None or current.verified + self.limits.reverify_every != due
                or address in self._renewing)

    # -- committed changes -------------------------------------------------------------
    def apply(self, entry: LogEntry) -> None:
        """Take a committed update-log entry into the registered state (also
        how the state is rebuilt from the log at start)."""
        address = entry.address
        current = self.registrations.get(address)
        if entry.op is not LogOp.PUBLISH and (current is None
                                              or _key_set(current.keys) != _key_set(entry.keys)):
            return  # about keys replaced or withdrawn since: nothing to change
        self.registrations.pop(address, None)
        renewing = self._renewing.get(address)
        if renewing is not None:
            self._drop(self.pending[renewing])
        if current is not None:
            for key in current.keys:
                self._owners.pop((int(key.algorithm), key.key), None)
        if entry.op is LogOp.WITHDRAW:
            return
        if entry.op is LogOp.RENEW:
            assert current is not None  # a renewal without one returned above
            registration = replace(current, verified=entry.time)
        else:
            encrypt, sign = _pair(entry.keys)
            registration = Registration(entry.zone, address, encrypt, sign, entry.time,
                                        entry.backup)
        self.registrations[address] = registration
        for key in registration.keys:
            self._owners[(int(key.algorithm), key.key)] = address
        heapq.heappush(self._checks, (entry.time + self.limits.reverify_every,
                                      next(self._order), address))

    # -- helpers ---------------------------------------------------------------------
    def _check_address(self, zone: Name, address: Name, policy: bool = True) -> None:
        if not address.is_subdomain(zone):
            raise Refused(f"{address} is not in the zone {zone}")
        if policy and not self.allowed(address):
            raise Refused(f"{address} may not register here")

    def _taken(self, address: Name, keys: tuple[KEY, ...]) -> bool:
        """Whether one of `keys` is registered at another address."""
        return any(self._owners.get((int(key.algorithm), key.key), address) != address
                   for key in keys)

    def _bound(self, address: Name) -> None:
        if self._requested >= self.limits.max_pending:
            raise Refused(f"{self._requested} requests pending: try later")
        if self._per_address.get(address, 0) >= self.limits.max_pending_per_address:
            raise Refused(f"{self.limits.max_pending_per_address} requests pending for "
                          f"{address}: answer or let them expire")

    def _add(self, kind: PendingKind, zone: Name, address: Name, expires: int,
             encrypt: KEY | None = None, sign: KEY | None = None,
             backup: bytes | None = None) -> Pending:
        request_id = self.random(REQUEST_ID_SIZE)
        while request_id in self.pending:  # only a broken `random` repeats 128 bits
            request_id = self.random(REQUEST_ID_SIZE)
        pending = Pending(kind, request_id, self.random(TOKEN_SIZE), zone, address, expires,
                          encrypt, sign, backup)
        self.pending[request_id] = pending
        if kind is PendingKind.RENEW:
            self._renewing[address] = request_id
        else:
            self._per_address[address] = self._per_address.get(address, 0) + 1
            self._requested += 1
        heapq.heappush(self._expiries, (expires, request_id))
        return pending

    def _drop(self, pending: Pending) -> None:
        if self.pending.pop(pending.request_id, None) is None:
            return
        address = pending.address
        if pending.kind is PendingKind.RENEW:
            self._renewing.pop(address, None)
            return
        self._requested -= 1
        left = self._per_address[address] - 1
        if left:
            self._per_address[address] = left
        else:
            del self._per_address[address]

    def _challenge(self, pending: Pending, owner: KEY, added: tuple[bytes, ...],
                   replaced: tuple[bytes, ...]) -> ChallengeMail:
        challenge = Challenge(pending.kind.value, pending.request_id, pending.token,
                              pending.zone, pending.address, added, replaced, pending.expires,
                              self.server)
        attachment = make_challenge(challenge, owner, self.signer, self.random)
        return ChallengeMail(pending.zone, pending.address, pending.kind.value, added, replaced,
                             pending.expires, attachment)


def _key_set(keys: Iterable[KEY]) -> set[tuple[int, bytes]]:
    return {(int(key.algorithm), key.key) for key in keys}


def _registered(key: KEY) -> KEY:
    return KEY(key.algorithm, key.usage, key.key, key.flags | int(KeyFlag.REGISTERED))


def _pair(keys: tuple[KEY, ...]) -> tuple[KEY, KEY]:
    """The (encryption, Ed25519) pair of a PUBLISH entry."""
    encrypt = [key for key in keys if key.algorithm in ENCRYPT_ALGORITHMS]
    sign = [key for key in keys if key.algorithm == KeyAlgorithm.ED25519]
    if len(encrypt) != 1 or len(sign) != 1 or len(keys) != 2:
        raise Refused("a registration is one X25519 or mlkem768x25519 key and one Ed25519 key")
    return encrypt[0], sign[0]


__all__ = ["Action", "Change", "ChallengeMail", "DEFAULT_CONFIRM_WITHIN",
           "DEFAULT_REVERIFY_EVERY", "DEFAULT_REVERIFY_GRACE", "Limits", "MAX_DUE_BATCH",
           "MAX_PENDING", "MAX_PENDING_PER_ADDRESS", "MAX_REPLAY_ENTRIES", "Mail", "NoticeMail",
           "Outcome", "Pending", "PendingKind", "REQUEST_WINDOW", "Registration", "Registry",
           "TokenMail"]
