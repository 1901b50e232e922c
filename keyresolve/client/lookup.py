"""Finding an address's public keys: the key ring first, then the key
servers (docs/sealing.md, "Finding keys"). Decisions only: the ring, the
sources and the clock are passed in.

The order is GnuPG's ``--auto-key-locate local,wkd``: the ring answers when
it holds keys for the address that are still fresh (added by hand, or
fetched less than their TTL ago); otherwise each source is asked in turn
(the resolver today; outside directories can slot in after it). What a
source fetched is stored in the ring, except keys with the INTERIM flag:
those are used for this message and never kept.

When what the servers publish differs from the keys the ring accepted, the
ring keeps the new keys pending (not accepted) and the user is told both key
ids. Without `strict` the new keys are used (trust on first use took the
first keys from the same servers, so a rotation they publish is taken on the
same trust, with a warning each time until the user decides); with `strict`
they are refused until ``keyring accept ADDRESS``, as ssh's
StrictHostKeyChecking refuses a changed host key.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..protocol.errors import KeyresolveError
from ..protocol.records import KEY, KeyAlgorithm, KeyFlag, KeyUsage

#: The ring entry source of keys fetched from the key servers (the ones
#: that expire after their TTL and are refreshed).
FETCHED = "fetched"


class KeyLookupError(KeyresolveError):
    """No usable key for `address`; the message says why in one line."""

    def __init__(self, address: str, message: str) -> None:
        super().__init__(message)
        self.address = address


class NoSuchAddress(KeyLookupError):
    """The servers say the address does not exist (NXDOMAIN)."""

    remote = True


class NoKeyPublished(KeyLookupError):
    """The address exists but publishes no key of the usage asked (NODATA)."""

    remote = True


class ServersUnreachable(KeyLookupError):
    """No source could be asked, and the ring holds no key for the address."""


class KeyChanged(KeyLookupError):
    """With `strict`: the servers publish other keys than the ring accepted."""

    def __init__(self, address: str, change: KeyChange) -> None:
        super().__init__(address, f"{address}: {change.describe()}; refusing the new key "
                                  f"(--strict) until `keyresolve keyring accept {address}`")
        self.change = change


class Outcome(enum.Enum):
    """What a source said about an address."""

    FOUND = "found"
    NO_SUCH_ADDRESS = "no such address"
    NO_KEY = "no key"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class SourceAnswer:
    """A source's answer: its outcome, the keys (every usage), who answered
    (``ip:port``), the TTL of the keys, when (epoch seconds), and for a
    failure a short reason (``no reply from 127.0.0.1:5353 within 2 s``)."""

    outcome: Outcome
    keys: tuple[KEY, ...] = ()
    server: str = ""
    ttl: int = 0
    fetched_at: float = 0.0
    detail: str = ""


class KeySource(Protocol):
    """A place keys are fetched from, asked after the ring."""

    #: Shown to the user ("resolver 127.0.0.1:5353").
    name: str

    def ask(self, address: str) -> SourceAnswer:
        """What this source knows about `address` (never raises for a
        source that cannot be reached: that is `Outcome.UNREACHABLE`)."""


class HeldKey(Protocol):
    """A key the ring holds (keyresolve.store.keyring.RingEntry has these)."""

    key: KEY
    source: str
    fetched_at: float | None
    ttl: int | None
    accepted: bool


class Ring(Protocol):
    """The key ring as the lookup uses it."""

    def held(self, address: str) -> Sequence[HeldKey]:
        """Every key held for `address`, accepted and pending."""

    def store_fetched(self, address: str, keys: Sequence[KEY], server: str,
                      fetched_at: float, ttl: int) -> None:
        """Keep keys fetched for `address`: a key already accepted is
        refreshed, the first keys of an address are accepted, other keys are
        kept pending until accepted."""


def key_ids(keys: Sequence[KEY]) -> tuple[str, ...]:
    """The key ids of `keys`, sorted, without repeats."""
    return tuple(sorted({k.key_id for k in keys}))


@dataclass(frozen=True)
class KeyChange:
    """The servers publish `new_ids` where the ring accepted `old_ids`."""

    address: str
    old_ids: tuple[str, ...]
    new_ids: tuple[str, ...]

    def describe(self) -> str:
        """One phrase naming both sets of key ids."""
        return (f"key changed: the ring accepted {', '.join(self.old_ids)}, the servers now "
                f"publish {', '.join(self.new_ids) or 'none'}")


@dataclass(frozen=True)
class Resolved:
    """The keys to use for an address, of the usage asked.

    `source` is "ring" or the source's name; `interim` says the keys carry
    the INTERIM flag (used, not stored); `change` is set when they differ
    from the keys the ring accepted; `notes` are the lines to show the user."""

    address: str
    keys: tuple[KEY, ...]
    source: str
    server: str = ""
    interim: bool = False
    change: KeyChange | None = None
    notes: tuple[str, ...] = field(default=())


def _is_interim(key: KEY) -> bool:
    return bool(key.flags & KeyFlag.INTERIM)


#: The algorithms each usage takes, best first: seal prefers the
#: post-quantum hybrid when an address publishes both (either opens, so one
#: stanza is enough); signatures are Ed25519 (docs/seal-format.md 6).
PREFERRED = {
    KeyUsage.ENCRYPT: (KeyAlgorithm.MLKEM768X25519, KeyAlgorithm.X25519),
    KeyUsage.SIGN: (KeyAlgorithm.ED25519,),
}


def pick(keys: Sequence[KEY], usage: KeyUsage) -> KEY | None:
    """The one key of `usage` to use among an address's `keys`, or None:
    the ring holds one key per address and usage. Registered keys first,
    then the algorithm `PREFERRED`, then the smallest key id (any order the
    servers send, the same choice)."""
    ranks = PREFERRED[usage]
    usable = [k for k in keys if k.usage == usage and k.algorithm in ranks]
    if not usable:
        return None
    return min(usable, key=lambda k: (not k.flags & KeyFlag.REGISTERED,
                                      ranks.index(k.algorithm), k.key_id))


class KeyLookup:
    """Find keys by address: the ring, then `sources` in order (module doc).

    `now()` gives epoch seconds; `strict` refuses changed keys."""

    def __init__(self, ring: Ring, sources: Sequence[KeySource], *,
                 now: Callable[[], float], strict: bool = False) -> None:
        self.ring = ring
        self.sources = list(sources)
        self.now = now
        self.strict = strict

    def find(self, address: str, usage: KeyUsage = KeyUsage.ENCRYPT,
             key_id: str | None = None) -> Resolved:
        """The keys of `usage` to use for `address`. With `key_id` (the key a
        signature names), the ring answers with that key if it holds it,
        accepted or pending (the latter told as a change); else the sources
        are asked. Raises NoSuchAddress, NoKeyPublished, ServersUnreachable,
        or KeyChanged (strict)."""
        held = [h for h in self.ring.held(address) if h.key.usage == usage]
        accepted = [h.key for h in held if h.accepted]
        pending = [h for h in held if not h.accepted]
        current = pending or [h for h in held if h.accepted]
        if key_id is not None:  # the key a signature names: accepted, or pending (a change)
            named = [h for h in held if h.key.key_id == key_id and self._fresh(h)]
            if named:
                keys: tuple[KEY, ...] = (named[0].key,)
                if named[0].accepted:
                    return Resolved(address, keys, "ring")
                return self._decide(address, keys, accepted, "ring", "", False, ())
        elif current and all(self._fresh(h) for h in current):
            keys = tuple(h.key for h in current)
            return self._decide(address, keys, accepted, "ring", "", False, ())
        return self._fetch(address, usage, accepted, [h.key for h in current])

    def _fresh(self, held: HeldKey) -> bool:
        if held.source != FETCHED:
            return True  # added by hand, or the user's own: kept until removed
        if held.fetched_at is None or held.ttl is None:
            return False
        return self.now() < held.fetched_at + held.ttl

    def _fetch(self, address: str, usage: KeyUsage, accepted: list[KEY],
               stale: list[KEY]) -> Resolved:
        negative: KeyLookupError | None = None
        unreachable: list[str] = []
        for source in self.sources:
            answer = source.ask(address)
            if answer.outcome == Outcome.FOUND:
                kept = self._store(address, answer)
                chosen = pick(kept, usage)
                interim = chosen is None
                if interim:
                    chosen = pick([k for k in answer.keys if _is_interim(k)], usage)
                if chosen is None:
                    negative = negative or NoKeyPublished(
                        address, f"{address}: no key: it publishes no {_usage(usage)} key "
                                 f"that can be used ({source.name})")
                    continue
                usable = [chosen]
                notes = ((f"{address}: using the interim key {', '.join(key_ids(usable))} "
                          "made by the domain's server; it is not kept in the key ring",)
                         if interim else ())
                return self._decide(address, tuple(usable), accepted, source.name,
                                    answer.server, interim, notes)
            if answer.outcome == Outcome.NO_SUCH_ADDRESS:
                negative = negative or NoSuchAddress(
                    address, f"{address}: no such address ({source.name}: NXDOMAIN)")
            elif answer.outcome == Outcome.NO_KEY:
                negative = negative or NoKeyPublished(
                    address, f"{address}: no key: the address publishes none ({source.name})")
            else:
                unreachable.append(f"{source.name}: {answer.detail or 'unreachable'}")
        if negative is not None:
            raise negative
        why = "; ".join(unreachable) or "no key server is configured"
        if stale:
            note = (f"{address}: the key servers cannot be reached ({why}); using the key "
                    f"ring's {', '.join(key_ids(stale))}, older than its TTL")
            return self._decide(address, tuple(stale), accepted, "ring", "", False, (note,))
        raise ServersUnreachable(address, f"{address}: key servers unreachable ({why}) and the "
                                          "key ring holds no key for it")

    def _store(self, address: str, answer: SourceAnswer) -> list[KEY]:
        """Keep the picked non-interim key of each usage; return them."""
        plain = [k for k in answer.keys if not _is_interim(k)]
        kept = [k for k in (pick(plain, usage) for usage in KeyUsage) if k is not None]
        if kept:
            self.ring.store_fetched(address, kept, answer.server, answer.fetched_at, answer.ttl)
        return kept

    def _decide(self, address: str, keys: tuple[KEY, ...], accepted: list[KEY], source: str,
                server: str, interim: bool, notes: tuple[str, ...]) -> Resolved:
        change = None
        if accepted and key_ids(keys) != key_ids(accepted):
            change = KeyChange(address, key_ids(accepted), key_ids(keys))
            if self.strict:
                raise KeyChanged(address, change)
            notes += (f"warning: {address}: {change.describe()}; using the new key. "
                      f"`keyresolve keyring accept {address}` accepts it, --strict refuses it",)
        return Resolved(address, keys, source, server, interim, change, notes)

    def refresh(self, address: str) -> tuple[SourceAnswer, KeyChange | None]:
        """Ask the sources for `address` whatever the ring holds (``keyring
        refresh``): store what the first that found keys fetched (interim
        keys excepted) and return its answer and the change of the
        encryption or signing keys against the ones accepted, if any. When
        no source found keys: the first negative answer, else the last
        unreachable one (the ring is left as it was)."""
        held = self.ring.held(address)
        last = SourceAnswer(Outcome.UNREACHABLE, detail="no key server is configured")
        negative = None
        for source in self.sources:
            answer = source.ask(address)
            if answer.outcome != Outcome.FOUND:
                if answer.outcome != Outcome.UNREACHABLE:
                    negative = negative or answer
                last = answer
                continue
            kept = self._store(address, answer)
            for usage in KeyUsage:
                old = [h.key for h in held if h.accepted and h.key.usage == usage]
                new = [k for k in kept if k.usage == usage]
                if old and key_ids(old) != key_ids(new):
                    return answer, KeyChange(address, key_ids(old), key_ids(new))
            return answer, None
        return negative or last, None


def _usage(usage: KeyUsage) -> str:
    return "encryption" if usage == KeyUsage.ENCRYPT else "signing"


__all__ = ["FETCHED", "PREFERRED", "HeldKey", "KeyChange", "KeyChanged", "KeyLookup", "KeyLookupError",
           "KeySource", "NoKeyPublished", "NoSuchAddress", "Outcome", "Resolved", "Ring",
           "ServersUnreachable", "SourceAnswer", "key_ids", "pick"]
