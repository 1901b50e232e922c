"""Shared-secret message authentication in the manner of TSIG (RFC 8945), sans-IO.

A signed message is the header and body with the SG flag set, followed by a
msgpack signature trailer (`keyresolve.protocol.message.Signature`)::

    [key_name, algorithm, time_signed, fudge, mac, original_id, error, other]

The MAC is an HMAC over a byte string (`mac_input`), built from three parts:

    prior     msgpack bin of the MAC this message answers or follows
              (empty for a request)
    message   header + body exactly as sent, SG set, bytes 0-1 (the id)
              replaced by `original_id` (RFC 8945 5.2: a forwarder may change
              the id; the MAC covers the signer's id)
    variables msgpack [key_name, algorithm, time_signed, fudge, error, other]
              or, for the second and later messages of a TCP stream,
              msgpack [time_signed, fudge] (RFC 8945 5.3.1)

docs/protocol.md ("Signatures") is the specification, with a worked example
that tests/test_tsig.py checks byte for byte. Every error raised here carries
a `key_name` attribute (a `Name`, or None) for the log.

Nothing here reads a clock: `now` (seconds since the epoch) is passed in.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field

import msgpack

from .codes import Opcode, Rcode, rcode_to_text
from .errors import (BadKey, BadSignature, BadTime, ConfigError, KeyresolveError, NotAuth,
                     PeerError, ProtocolError, Refused)
from .message import (MAX_MESSAGE, MAX_SIG_BYTES, MAX_SIG_NAME, Message, Signature,
                      make_response)
from .names import Name

#: HMAC algorithms by their wire name, with their digest constructors.
ALGORITHMS: dict[str, Callable[[], hashlib._Hash]] = {
    "hmac-sha256": hashlib.sha256,
    "hmac-sha512": hashlib.sha512,
}
#: The algorithm used when none is named (RFC 8945 6: HMAC-SHA256 is mandatory).
DEFAULT_ALGORITHM = "hmac-sha256"
#: Full MAC length of each algorithm. Only full-length MACs are accepted: the
#: truncation RFC 8945 5.2.2.1 allows is not part of this protocol.
MAC_SIZES: dict[str, int] = {name: ctor().digest_size for name, ctor in ALGORITHMS.items()}
#: Shortest secret accepted: 128 bits (RFC 2104 3 discourages keys shorter
#: than the hash output; below 16 bytes a secret is guessable offline).
MIN_SECRET = 16
#: Seconds of clock difference allowed by default (RFC 8945 10 recommends 300).
DEFAULT_FUDGE = 300
#: Largest window a server allows by default, whatever fudge a request states
#: (RFC 8945 5.2.3 leaves the window to local policy; without a cap a request
#: stating fudge 65535 could be replayed for 18 hours).
DEFAULT_MAX_FUDGE = 300
#: Opcodes that change a server's state: a signed request with one of these
#: is accepted once (`ReplayGuard`). UPDATE is listed for when it exists.
STATE_CHANGING = frozenset({Opcode.NOTIFY, Opcode.UPDATE, Opcode.CONTROL})
#: Most signed state-changing requests a `ReplayGuard` remembers at once.
#: An entry lives at most 2 * max_fudge (a request may be signed up to the
#: window ahead of the server's clock), so at the default 300 s this allows a
#: sustained 160 such requests a second, far above real use (a NOTIFY per
#: zone change, CONTROL from an operator), in about 33 MB (330 bytes an
#: entry, measured). TSIG (RFC 8945) does not require detecting replays
#: inside the window and sets no size; this bound keeps a flood from growing it.
MAX_REPLAY_ENTRIES = 100_000
#: time_signed is a 48-bit unsigned integer (RFC 8945 4.2).
MAX_TIME = 2**48 - 1
#: Length of the server time carried in a BADTIME error's `other` (RFC 8945 5.2.3).
BADTIME_OTHER_SIZE = 6
#: Errors a server reports in an unsigned trailer (RFC 8945 5.3.2): it could
#: not authenticate the request, so it cannot sign for it.
UNSIGNED_ERRORS = frozenset({Rcode.BADKEY, Rcode.BADSIG})

SharedKeys = Mapping[Name, "SharedKey"]


@dataclass(frozen=True, slots=True)
class SharedKey:
    """A shared secret: its name, HMAC algorithm and secret bytes."""

    name: Name
    algorithm: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"key {self.name}: unknown algorithm {self.algorithm!r} "
                              f"(one of {', '.join(ALGORITHMS)})")
        if len(self.secret) < MIN_SECRET:
            raise ConfigError(f"key {self.name}: secret is {len(self.secret)} bytes, "
                              f"at least {MIN_SECRET} are needed")

    @property
    def mac_size(self) -> int:
        """Length of this key's MACs."""
        return MAC_SIZES[self.algorithm]

    def mac(self, data: bytes) -> bytes:
        """HMAC of `data` under this key."""
        return hmac.new(self.secret, data, ALGORITHMS[self.algorithm]).digest()


# -- MAC input -------------------------------------------------------------------
def mac_input(message: bytes, sig: Signature, prior_mac: bytes | None = None, *,
              timers_only: bool = False) -> bytes:
    """The bytes a MAC is computed over (docs/protocol.md, "MAC input").

    `message` is header + body with SG set; its id is replaced by
    `sig.original_id`. `prior_mac` is the request MAC (for a response) or the
    previous message's MAC (in a stream); `timers_only` selects the short
    variables of a stream's later messages.
    """
    prefix = b"" if prior_mac is None else msgpack.packb(prior_mac)
    if timers_only:
        variables = msgpack.packb([sig.time_signed, sig.fudge])
    else:
        variables = msgpack.packb([sig.key_name.to_wire(), sig.algorithm, sig.time_signed,
                                   sig.fudge, sig.error, sig.other])
    return b"".join((prefix, sig.original_id.to_bytes(2, "big"), message[2:], variables))


# -- signing ---------------------------------------------------------------------
def sign(msg: Message, key: SharedKey, now: int, *, request_mac: bytes | None = None,
         fudge: int = DEFAULT_FUDGE, error: int = 0, other: bytes = b"",
         max_size: int = MAX_MESSAGE) -> bytes:
    """Sign `msg` with `key` at time `now`; return the wire bytes.

    Pass `request_mac` when `msg` answers a signed request. If the signed
    message would exceed `max_size`, `msg.truncated()` is signed instead (TC
    set, sections empty), so the client retries over TCP. Sets `msg.signature`
    (its `mac` is what a response or the next stream message must cover).
    """
    return _sign(msg, key, now, fudge, request_mac, error, other, max_size, False)


def _check_time(value: int) -> None:
    if type(value) is not int or not 0 <= value <= MAX_TIME:
        raise ValueError(f"time {value!r} is not a 48-bit unsigned integer")


def _sign(msg: Message, key: SharedKey, time_signed: int, fudge: int, prior_mac: bytes | None,
          error: int, other: bytes, max_size: int, timers_only: bool) -> bytes:
    _check_time(time_signed)
    if not 0 <= fudge <= 0xFFFF or not 0 <= error <= 0xFFF or len(other) > MAX_SIG_BYTES:
        raise ValueError("fudge, error or other out of range for a signature trailer")
    data = msg.encode_unsigned(signed=True)
    # The MAC's length is fixed by the algorithm, so the trailer's size is
    # known before the MAC is computed.
    sig = Signature(key.name, key.algorithm, time_signed, fudge, bytes(key.mac_size),
                    msg.id, error, other)
    trailer_size = len(msgpack.packb(sig.to_wire()))
    if len(data) + trailer_size > max_size:
        data = msg.truncated().encode_unsigned(signed=True)
        if len(data) + trailer_size > max_size:
            raise KeyresolveError(f"signed message cannot fit in {max_size} bytes "
                                  "even truncated")
    mac = key.mac(mac_input(data, sig, prior_mac, timers_only=timers_only))
    sig = Signature(key.name, key.algorithm, time_signed, fudge, mac, msg.id, error, other)
    msg.signature = sig
    return data + msgpack.packb(sig.to_wire())


# -- verification ----------------------------------------------------------------
def _fail(cls: type[ProtocolError], key_name: Name | None, text: str) -> ProtocolError:
    exc = cls(f"key {key_name}: {text}" if key_name is not None else text)
    exc.key_name = key_name  # type: ignore[attr-defined]
    return exc


def _signed_part(msg: Message) -> bytes:
    # Messages decoded from the wire carry the exact bytes the peer signed.
    return msg.signed_bytes if msg.signed_bytes is not None else msg.encode_unsigned(True)


def _check(msg: Message, sig: Signature, key: SharedKey, now: int, prior_mac: bytes | None,
           timers_only: bool, max_fudge: int | None) -> None:
    """MAC, then time (RFC 8945 5.2.2, 5.2.3); the key is already matched."""
    now = int(now)
    if len(sig.mac) != key.mac_size:
        # Full-length MAC rule: RFC 8945 5.2.2.1 truncation is not accepted.
        raise _fail(BadSignature, sig.key_name,
                    f"MAC is {len(sig.mac)} bytes, {key.algorithm} needs {key.mac_size} "
                    "(truncated MACs are not accepted)")
    expected = key.mac(mac_input(_signed_part(msg), sig, prior_mac, timers_only=timers_only))
    if not hmac.compare_digest(expected, sig.mac):
        raise _fail(BadSignature, sig.key_name, "MAC does not verify")
    allowed = window(sig.fudge, max_fudge)
    if abs(now - sig.time_signed) > allowed:
        raise _fail(BadTime, sig.key_name,
                    f"signed at {sig.time_signed}, now {now}: "
                    f"{now - sig.time_signed:+d} s is outside the {allowed} s window")


def window(fudge: int, max_fudge: int | None) -> int:
    """Seconds of clock difference a verifier allows: the signer's `fudge`,
    capped by the local `max_fudge` (None: uncapped). A server signs its
    response with this fudge."""
    return fudge if max_fudge is None else min(fudge, max_fudge)


def _match_key(sig: Signature, key: SharedKey | None) -> SharedKey:
    if key is None or key.name != sig.key_name:
        raise _fail(BadKey, sig.key_name, "unknown key")
    if sig.algorithm not in ALGORITHMS:
        raise _fail(BadKey, sig.key_name, f"unknown algorithm {sig.algorithm[:40]!r}")
    if sig.algorithm != key.algorithm:
        raise _fail(BadKey, sig.key_name,
                    f"algorithm {sig.algorithm} does not match the key's {key.algorithm}")
    return key


def verify(msg: Message, keyring: SharedKeys, now: int, *, request_mac: bytes | None = None,
           max_fudge: int | None = None) -> SharedKey:
    """Authenticate a signed message (a request, or a response given `request_mac`).

    Order (RFC 8945 5.2): key name known and algorithm matching (BadKey),
    MAC of full length and correct (BadSignature), then |now - time_signed|
    within the fudge (BadTime); `max_fudge` caps the signer's fudge. Returns
    the key. An unsigned message raises BadSignature. The trailer's `error` is
    not interpreted here (see `verify_response`).
    """
    sig = msg.signature
    if sig is None:
        raise _fail(BadSignature, None, "message is not signed")
    key = _match_key(sig, keyring.get(sig.key_name))
    _check(msg, sig, key, now, request_mac, False, max_fudge)
    return key


def verify_response(response: Message, key: SharedKey, request_mac: bytes, now: int, *,
                    max_fudge: int | None = None) -> None:
    """Client side: accept only a response signed by `key` over `request_mac`.

    Raises BadSignature for an unsigned or wrongly signed reply, BadKey for
    another key or algorithm, BadTime outside the window, and PeerError
    (rcode = the trailer's error) when the server reports BADKEY, BADSIG or
    BADTIME. An unsigned BADKEY/BADSIG report is not authenticated; it is
    raised as PeerError all the same, since the answer is unusable either way.
    """
    sig = response.signature
    if sig is None:
        raise _fail(BadSignature, key.name, "response is not signed")
    if sig.key_name != key.name:
        raise _fail(BadKey, sig.key_name, f"response signed with another key (we used {key.name})")
    if sig.error in UNSIGNED_ERRORS and not sig.mac:
        raise _peer_error(sig, now, authenticated=False)
    _match_key(sig, key)
    _check(response, sig, key, now, request_mac, False, max_fudge)
    if sig.error:
        raise _peer_error(sig, now, authenticated=True)


def _peer_error(sig: Signature, now: int, authenticated: bool) -> PeerError:
    text = f"key {sig.key_name}: server reported {rcode_to_text(sig.error)}"
    if sig.error == Rcode.BADTIME and len(sig.other) == BADTIME_OTHER_SIZE:
        server_time = int.from_bytes(sig.other, "big")
        skew = server_time - int(now)
        text += f" (server time {server_time}, ours {int(now)}: skew {skew:+d} s)"
    if not authenticated:
        text += " in an unsigned reply"
    exc = PeerError(sig.error, text)
    exc.key_name = sig.key_name  # type: ignore[attr-defined]
    return exc


# -- error responses -------------------------------------------------------------
def make_error_response(query: Message, exc: ProtocolError, keyring: SharedKeys,
                        now: int) -> bytes:
    """Wire bytes of the NOTAUTH response to a query that failed `verify`.

    RFC 8945 5.3.2: BadKey and BadSignature get an unsigned trailer (empty
    MAC) naming the error; BadTime gets a trailer signed over the request MAC,
    with the request's time_signed and fudge (so the client's own time check
    passes) and the server's time as 6 bytes in `other`. A query without a
    signature gets a plain NOTAUTH response.
    """
    if not isinstance(exc, (BadKey, BadSignature, BadTime)):
        raise ValueError(f"not a signature error: {exc!r}")
    _check_time(now)
    response = make_response(query, Rcode.NOTAUTH)
    sig = query.signature
    if sig is None:
        return response.to_wire()
    key = keyring.get(sig.key_name)
    if isinstance(exc, BadTime) and key is not None and key.algorithm == sig.algorithm:
        return _sign(response, key, sig.time_signed, sig.fudge, sig.mac, Rcode.BADTIME,
                     now.to_bytes(BADTIME_OTHER_SIZE, "big"), MAX_MESSAGE, False)
    error = Rcode.BADSIG if isinstance(exc, BadSignature) else Rcode.BADKEY
    response.signature = Signature(sig.key_name, sig.algorithm[:MAX_SIG_NAME],
                                   now, sig.fudge, b"", response.id, error)
    return response.to_wire()


# -- replay ----------------------------------------------------------------------
class ExpiringSet:
    """Keys remembered until their expiry time, at most `capacity` at once:
    the memory behind a replay check (`ReplayGuard`, the registry's
    requests). A key is forgotten once a call's `now` is past its expiry."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._expiry: dict[Hashable, int] = {}
        #: (expiry, order, key): the order breaks ties without comparing keys.
        self._heap: list[tuple[int, int, Hashable]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._expiry)

    def holds(self, key: Hashable, now: int) -> bool:
        """Whether `key` is remembered at `now` (forgetting what expired)."""
        heap = self._heap
        while heap and heap[0][0] < now:
            expiry, _, old = heapq.heappop(heap)
            if self._expiry.get(old) == expiry:
                del self._expiry[old]
        return key in self._expiry

    def add(self, key: Hashable, expiry: int) -> bool:
        """Remember `key` until `expiry`; False (nothing remembered) when
        `capacity` keys are remembered already."""
        if len(self._expiry) >= self.capacity:
            return False
        self._expiry[key] = expiry
        heapq.heappush(self._heap, (expiry, next(self._order), key))
        return True


class ReplayGuard:
    """Accepts each verified state-changing request once (docs/protocol.md 8.4).

    Remembers (key name, time signed, MAC) of every request it accepts until
    the request's window ends (time_signed + `window(fudge, max_fudge)`):
    after that a copy gets BADTIME from `verify`, so it needs no memory. A
    repeat inside the window raises NotAuth. With `capacity` entries alive, a
    new request raises Refused until some expire (at most 2 * max_fudge
    later): forgetting one instead would let its copy through, which is the
    attack; refusing locks out, for that time, only what a key holder could
    disrupt anyway.

    Consult it only after `verify`: the MACs it holds and is given are then
    authentic, so looking them up (not in constant time) reveals nothing a
    holder of them does not know.
    """

    def __init__(self, max_fudge: int | None, capacity: int = MAX_REPLAY_ENTRIES) -> None:
        self.max_fudge = max_fudge
        self.capacity = capacity
        self._seen = ExpiringSet(capacity)  # (key name, time signed, MAC)

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, sig: Signature, now: int) -> None:
        """Accept and remember the request signed with `sig` at time `now`,
        or raise NotAuth (a repeat) or Refused (the memory is full)."""
        now = int(now)
        entry = (sig.key_name, sig.time_signed, sig.mac)
        if self._seen.holds(entry, now):
            raise _fail(NotAuth, sig.key_name,
                        f"replay of a request signed at {sig.time_signed}")
        expiry = sig.time_signed + window(sig.fudge, self.max_fudge)
        if expiry < now:
            return  # outside its window: `verify` rejects every copy
        if not self._seen.add(entry, expiry):
            raise _fail(Refused, sig.key_name,
                        f"{self.capacity} signed requests remembered: refused until some "
                        "expire")


# -- TCP streams -----------------------------------------------------------------
class StreamSigner:
    """Signs the messages of one multi-message TCP response (a transfer).

    The first message is signed as a response to `request_mac`; each later
    one covers the previous message's MAC and only the timers (RFC 8945
    5.3.1). Every message is signed: the RFC's allowance for up to 99
    unsigned messages in between is not part of this protocol.
    """

    def __init__(self, key: SharedKey, request_mac: bytes, *, fudge: int = DEFAULT_FUDGE) -> None:
        self.key = key
        self.fudge = fudge
        self._prior = request_mac
        self._first = True

    def sign(self, msg: Message, now: int, *, max_size: int = MAX_MESSAGE) -> bytes:
        """Sign the next message of the stream; return its wire bytes."""
        wire = _sign(msg, self.key, now, self.fudge, self._prior, 0, b"", max_size,
                     not self._first)
        assert msg.signature is not None
        self._prior = msg.signature.mac
        self._first = False
        return wire


class StreamVerifier:
    """Verifies the messages of one multi-message TCP response, in order.

    The first message is checked as `verify_response` does; each later one
    must be signed by the same key, over the previous MAC and the timers.
    Fields a later message's MAC does not cover must hold fixed values:
    key name and algorithm of the stream's key, error 0, other empty.
    """

    def __init__(self, key: SharedKey, request_mac: bytes, *, max_fudge: int | None = None) -> None:
        self.key = key
        self.max_fudge = max_fudge
        self._prior = request_mac
        self._first = True

    def verify(self, msg: Message, now: int) -> None:
        """Verify the next message; raises as `verify_response` does."""
        sig = msg.signature
        if self._first:
            verify_response(msg, self.key, self._prior, now, max_fudge=self.max_fudge)
        else:
            if sig is None:
                raise _fail(BadSignature, self.key.name, "stream message is not signed")
            if sig.key_name != self.key.name or sig.algorithm != self.key.algorithm:
                raise _fail(BadKey, sig.key_name,
                            f"stream message signed with another key (stream uses "
                            f"{self.key.name} {self.key.algorithm})")
            if sig.error or sig.other:
                raise _fail(BadSignature, sig.key_name,
                            "stream message carries an error or other data")
            _check(msg, sig, self.key, now, self._prior, True, self.max_fudge)
        assert sig is not None
        self._prior = sig.mac
        self._first = False


__all__ = ["ALGORITHMS", "BADTIME_OTHER_SIZE", "DEFAULT_ALGORITHM", "DEFAULT_FUDGE",
           "DEFAULT_MAX_FUDGE", "ExpiringSet", "SharedKey", "SharedKeys", "MAC_SIZES", "MAX_REPLAY_ENTRIES", "MAX_TIME",
           "MIN_SECRET", "ReplayGuard", "STATE_CHANGING", "StreamSigner", "StreamVerifier",
           "UNSIGNED_ERRORS", "mac_input", "make_error_response", "sign", "verify",
           "verify_response", "window"]
