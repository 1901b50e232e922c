"""The registry's UPDATE payloads, challenges, mail tokens and update-log
entries: their wire forms, sealing and signatures (sans-IO).

docs/protocol.md section 8E is the specification, with test vectors that
tests/test_registry_messages.py checks both ways. In short:

- An UPDATE request carries one ``UPDATE_DATA`` record whose rdata is
  ``[envelope]``: msgpack ``[recipient key id, enc || ciphertext]``, HPKE
  (`protocol.hpke`) sealed to the registry's X25519 key under `INFO_REQUEST`. The
  plaintext is ``[body, signature]``: `body` the msgpack bytes of ``[kind,
  zone, time, nonce, fields]``, `signature` Ed25519 over `CONTEXT_REQUEST`
  || body (or nil for the kinds that need none).
- A challenge (the confirmation mail's attachment) is the same envelope
  sealed to the owner's encryption key under `INFO_CHALLENGE`, its body
  signed by the registry's Ed25519 key: with the X25519 suite for an X25519
  key, with MLKEM768-X25519 (`hpke.seal_hybrid`) for an mlkem768x25519 one.
- An answer is ``[body, signature]`` in clear, signed by the registry; its
  body names the SHA-256 of the request envelope it answers.

Every decoder raises only `FormError` (malformed), `NotAuth` (a seal that
does not open, a signature that does not verify), `NotImplementedOpcode`
(an unknown request kind) or `Refused` (a key of an algorithm the registry
does not take): each carries its rcode.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..protocol import hpke
from ..protocol.codes import Opcode, Rcode, RType
from ..protocol.errors import FormError, InvalidName, InvalidRecord, NotAuth, NotImplementedOpcode, Refused
from ..protocol.message import Message, Question, make_response, strict_unpack_limits, unpack_strict
from ..protocol.names import Name
from ..protocol.records import (ADDR, KEY, KEY_ID_SIZE, MAX_U32, KeyAlgorithm, KeyUsage, Opaque,
                                 Record, Wire, WireFields, make_key_id)
from ..protocol.signatures import SIGNATURE_SIZE, ed25519_verifies
from ..protocol.tsig import MAX_TIME  # requests carry a 48-bit time, as signatures (8.1)

#: The record type carrying a registry payload in an UPDATE request or
#: answer: in DNS's private-use range (RFC 6895 3.1) next to
#: `codes.CONTROL_RESULT`, so no data type will ever take it.
UPDATE_DATA = 65281
#: Bytes of a request id: 128 bits, unguessable (as a session id, OWASP).
REQUEST_ID_SIZE = 16
#: Bytes of a challenge or mail token: 128 bits, unguessable.
TOKEN_SIZE = 16
#: Bytes of a request's nonce, unique per request (the replay memory's key).
NONCE_SIZE = 16
#: Largest backup the registry keeps for an owner: two sealed private keys
#: and the scrypt parameters take about 300 bytes; 4 KiB leaves room for
#: larger keys and stays far below a message.
MAX_BACKUP = 4096
#: Largest envelope, challenge or answer: a register request with the
#: largest backup is about 4.5 KiB.
MAX_PAYLOAD = 8192
#: Most key ids a challenge or an answer lists (an address has at most two
#: keys; a few more allowed for a later version with more usages).
MAX_KEY_IDS = 8
#: Longest withdrawal reason in an update-log entry (they are short words).
MAX_REASON = 64
#: The encryption key algorithms an owner may register: those the registry
#: can seal a challenge to (docs/protocol.md 8E.3).
ENCRYPT_ALGORITHMS = (KeyAlgorithm.X25519, KeyAlgorithm.MLKEM768X25519)
#: A private key an envelope opens with: X25519, or the hybrid's.
OpenerKey = X25519PrivateKey | hpke.HybridPrivateKey

#: HPKE `info` of each sealed kind (RFC 9180 5.1: binds a ciphertext to its use).
INFO_REQUEST = b"keyresolve registry v1 request"
INFO_CHALLENGE = b"keyresolve registry v1 challenge"
INFO_RECOVERY = b"keyresolve registry v1 recovery"
#: Prefixes of what each Ed25519 signature covers, so a signature made for
#: one use is never valid for another (RFC 8032 8.3 domain separation).
CONTEXT_REQUEST = b"keyresolve registry v1 request\0"
CONTEXT_CHALLENGE = b"keyresolve registry v1 challenge\0"
CONTEXT_ANSWER = b"keyresolve registry v1 answer\0"

_UNPACK_LIMITS = strict_unpack_limits(MAX_PAYLOAD, 64)


class Kind(enum.IntEnum):
    """What a request asks (the first element of its body)."""

    REGISTER = 1  # publish these keys at this address (signed by the sign key)
    CONFIRM = 2  # answer a registration's challenge (signed by the new sign key)
    RENEW = 3  # answer a re-verification challenge (signed by the registered key)
    UNREGISTER = 4  # withdraw the keys (signed by the registered sign key)
    UNREGISTER_MAIL = 5  # withdraw by a token mailed to the address (unsigned)
    UNREGISTER_CONFIRM = 6  # the mailed token (unsigned)
    RECOVER = 7  # mail a token to fetch the backup (unsigned)
    RECOVER_CONFIRM = 8  # the mailed token and a key to seal the backup to (unsigned)


#: Kinds whose body is signed by the owner's Ed25519 key; the others carry nil.
SIGNED_KINDS = frozenset({Kind.REGISTER, Kind.CONFIRM, Kind.RENEW, Kind.UNREGISTER})
#: Kinds whose fields are ``[request id, token]`` (and a reply key for recovery).
TOKEN_KINDS = frozenset({Kind.CONFIRM, Kind.RENEW, Kind.UNREGISTER_CONFIRM,
                         Kind.RECOVER_CONFIRM})
#: Kinds whose fields are ``[address]``.
ADDRESS_KINDS = frozenset({Kind.UNREGISTER, Kind.UNREGISTER_MAIL, Kind.RECOVER})


class AnswerKind(enum.IntEnum):
    """What a registry's answer says (the first element of its body)."""

    ACCEPTED = 1  # a mail goes to the address if the request is valid for it
    PUBLISHED = 2  # the keys are in the zone at this serial
    RENEWED = 3  # the keys stay; the next re-verification is due at this time
    WITHDRAWN = 4  # the keys are out of the zone at this serial
    RECOVERED = 5  # the backup, sealed to the request's reply key


# -- strict msgpack ----------------------------------------------------------------
def _unpack(data: Any, what: str) -> Any:
    if type(data) is not bytes:
        raise FormError(f"{what} must be bytes")
    if len(data) > MAX_PAYLOAD:
        raise FormError(f"{what} longer than {MAX_PAYLOAD} bytes")
    return unpack_strict(data, _UNPACK_LIMITS, what)


def _array(value: Any, length: int, what: str) -> WireFields:
    if type(value) is not tuple or len(value) != length:
        raise FormError(f"{what} must be an array of {length}")
    return value


def _bin(value: Any, what: str, size: int | None = None, maximum: int = MAX_PAYLOAD) -> bytes:
    if type(value) is not bytes:
        raise FormError(f"{what} must be bytes")
    if size is not None and len(value) != size:
        raise FormError(f"{what} must be {size} bytes")
    if len(value) > maximum:
        raise FormError(f"{what} longer than {maximum} bytes")
    return value


def _uint(value: Any, what: str, maximum: int) -> int:
    if type(value) is not int or not 0 <= value <= maximum:
        raise FormError(f"{what} must be an integer 0..{maximum}")
    return value


def _name(value: Any, what: str, mailbox: bool) -> Name:
    if type(value) is not str:
        raise FormError(f"{what} must be a name string")
    try:
        name = Name.from_wire(value)
    except InvalidName as exc:
        raise FormError(f"{what}: {exc}") from None
    if name.is_mailbox != mailbox:
        raise FormError(f"{what} must be {'a mailbox' if mailbox else 'a domain'}")
    return name


def _key_ids(value: Any, what: str) -> tuple[bytes, ...]:
    if type(value) is not tuple or len(value) > MAX_KEY_IDS:
        raise FormError(f"{what} must be an array of at most {MAX_KEY_IDS} key ids")
    return tuple(_bin(item, what, KEY_ID_SIZE) for item in value)


def _key(value: Any, usage: KeyUsage) -> KEY:
    """A KEY rdata array of a registered key: one of `ENCRYPT_ALGORITHMS` to
    encrypt, Ed25519 to sign."""
    if type(value) is not tuple:
        raise FormError("a key must be a KEY rdata array")
    try:
        key = KEY.from_wire(value)
    except InvalidRecord as exc:
        raise FormError(f"bad key: {exc}") from None
    wanted = ENCRYPT_ALGORITHMS if usage == KeyUsage.ENCRYPT else (KeyAlgorithm.ED25519,)
    if key.usage != usage:
        raise FormError(f"the {usage.name.lower()} key has usage {key.usage.name.lower()}")
    if key.algorithm not in wanted:
        names = " or ".join(algorithm.name.lower() for algorithm in wanted)
        raise Refused(f"the registry takes {names} {usage.name.lower()} keys, "
                      f"not {key.algorithm.name.lower()}")
    if key.algorithm == KeyAlgorithm.MLKEM768X25519:
        hpke.hybrid_public_key(key.key)  # FormError now, not when a challenge is sealed
    return KEY(key.algorithm, key.usage, key.key)  # flags are the registry's to set


def key_id_bytes(key: KEY) -> bytes:
    """The key id of `key` (docs/protocol.md 6.4) as the 8 bytes the wire carries."""
    return make_key_id(key.algorithm, key.key)


def verify_signature(key: KEY, context: bytes, body: bytes, signature: bytes | None) -> None:
    """Check an Ed25519 `signature` by `key` over `context` || `body`;
    NotAuth if it is missing or does not verify."""
    if signature is None or key.algorithm != KeyAlgorithm.ED25519:
        raise NotAuth("request not signed by the registered key")
    if not ed25519_verifies(key.key, signature, context + body):
        raise NotAuth("signature does not verify")


# -- requests -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Request:
    """A decoded request. `fields` by kind:

    - REGISTER: `address`, `encrypt`, `sign`, `backup` (the signature is
      checked with `sign` when decoded);
    - CONFIRM, RENEW, UNREGISTER_CONFIRM: `request_id`, `token`;
      RECOVER_CONFIRM also `reply_key` (raw X25519 public key);
    - UNREGISTER, UNREGISTER_MAIL, RECOVER: `address`.

    `body` and `signature` are as received: `verify` checks the signature
    with the key the registry holds for the request (CONFIRM, RENEW,
    UNREGISTER). `digest` is the SHA-256 of the envelope, which the answer names.
    """

    kind: Kind
    zone: Name
    time: int
    nonce: bytes
    body: bytes
    signature: bytes | None
    digest: bytes
    address: Name | None = None
    encrypt: KEY | None = None
    sign: KEY | None = None
    backup: bytes | None = None
    request_id: bytes | None = None
    token: bytes | None = None
    reply_key: bytes | None = None

    def verify(self, key: KEY) -> None:
        """NotAuth unless the request is signed by `key` (an Ed25519 KEY)."""
        verify_signature(key, CONTEXT_REQUEST, self.body, self.signature)


def request_body(kind: Kind, zone: Name, time: int, nonce: bytes, fields: list[Wire]) -> bytes:
    """The msgpack body ``[kind, zone, time, nonce, fields]`` a request signs."""
    return msgpack.packb([int(kind), zone.to_wire(), time, nonce, fields])


def register_fields(address: Name, encrypt: KEY, sign: KEY,
                    backup: bytes | None = None) -> list[Wire]:
    """The fields of a REGISTER request."""
    return [address.to_wire(), encrypt.to_wire(), sign.to_wire(), backup]


def token_fields(request_id: bytes, token: bytes, reply_key: bytes | None = None) -> list[Wire]:
    """The fields of CONFIRM, RENEW, UNREGISTER_CONFIRM (and, with
    `reply_key`, RECOVER_CONFIRM) requests."""
    return [request_id, token] if reply_key is None else [request_id, token, reply_key]


def address_fields(address: Name) -> list[Wire]:
    """The fields of UNREGISTER, UNREGISTER_MAIL and RECOVER requests."""
    return [address.to_wire()]


def seal_envelope(recipient: KEY, info: bytes, plaintext: bytes,
                  random: Callable[[int], bytes]) -> bytes:
    """msgpack ``[key id of recipient, enc || ciphertext]``: `plaintext`
    sealed to `recipient`, an X25519 KEY (HPKE's X25519 suite, the ephemeral
    key drawn from `random`: 32 bytes) or an mlkem768x25519 KEY (the hybrid
    suite, whose randomness is the operating system's: nothing is drawn).
    FormError for a key of another algorithm or an unusable one."""
    if recipient.algorithm == KeyAlgorithm.X25519:
        sealed = hpke.seal(recipient.key, info, plaintext, random(hpke.PRIVATE_SIZE))
    elif recipient.algorithm == KeyAlgorithm.MLKEM768X25519:
        sealed = hpke.seal_hybrid(recipient.key, info, plaintext)
    else:
        raise FormError(f"envelopes are not sealed to {recipient.algorithm.name.lower()} keys")
    return msgpack.packb([key_id_bytes(recipient), sealed])


def opener_key(private: OpenerKey) -> KEY:
    """The public encryption KEY of `private` (what an envelope names)."""
    if isinstance(private, hpke.HybridPrivateKey):
        return KEY(KeyAlgorithm.MLKEM768X25519, KeyUsage.ENCRYPT, private.public_key)
    return KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, private.public_key().public_bytes_raw())


def open_envelope(private: OpenerKey, info: bytes, data: Any, what: str, *,
                  key_id: bytes | None = None) -> bytes:
    """The plaintext of an envelope sealed to `private` (X25519 or hybrid);
    FormError if it is malformed, NotAuth if it is for another key or does
    not open. `key_id`, if given, is that of `private`'s public key (a
    caller opening many envelopes computes it once)."""
    recipient, sealed = _array(_unpack(data, what), 2, what)
    _bin(recipient, f"{what} key id", KEY_ID_SIZE)
    _bin(sealed, f"{what} sealed data")
    if recipient != (key_id or key_id_bytes(opener_key(private))):
        raise NotAuth(f"{what} is sealed to another key")
    if isinstance(private, hpke.HybridPrivateKey):
        return hpke.open_hybrid(private, info, sealed)
    return hpke.open_sealed(private, info, sealed)


def make_request(kind: Kind, zone: Name, fields: list[Wire], *, registry_key: KEY, time: int,
                 signer: Ed25519PrivateKey | None = None,
                 random: Callable[[int], bytes]) -> bytes:
    """A sealed request envelope: the body signed by `signer` (the kinds of
    `SIGNED_KINDS` need one; the others none), sealed to `registry_key`.
    `random` gives the nonce (16 bytes), then the ephemeral key (32)."""
    nonce = random(NONCE_SIZE)
    body = request_body(kind, zone, time, nonce, fields)
    if (signer is not None) != (kind in SIGNED_KINDS):
        raise ValueError(f"{kind.name} requests are {'' if kind in SIGNED_KINDS else 'not '}signed")
    signature = None if signer is None else signer.sign(CONTEXT_REQUEST + body)
    return seal_envelope(registry_key, INFO_REQUEST, msgpack.packb([body, signature]), random)


def open_request(private: X25519PrivateKey, envelope: bytes, *,
                 key_id: bytes | None = None) -> Request:
    """Open and decode a request envelope sealed to the registry's key
    `private` (`key_id`: its public key's, if the caller holds it); a
    REGISTER's signature is checked with the key it carries."""
    digest = hashlib.sha256(envelope).digest() if type(envelope) is bytes else b""
    plaintext = open_envelope(private, INFO_REQUEST, envelope, "request", key_id=key_id)
    body, signature = _array(_unpack(plaintext, "request"), 2, "request")
    _bin(body, "request body")
    if signature is not None:
        _bin(signature, "request signature", SIGNATURE_SIZE)
    kind, zone, time, nonce, fields = _array(_unpack(body, "request body"), 5, "request body")
    _uint(kind, "request kind", 0xFF)
    if kind not in Kind._value2member_map_:
        raise NotImplementedOpcode(f"unknown request kind {kind}")
    kind = Kind(kind)
    if (signature is not None) != (kind in SIGNED_KINDS):
        raise FormError(f"{kind.name} requests are {'' if kind in SIGNED_KINDS else 'not '}"
                        "signed")
    common = dict(kind=kind, zone=_name(zone, "zone", False), time=_uint(time, "time", MAX_TIME),
                  nonce=_bin(nonce, "nonce", NONCE_SIZE), body=body, signature=signature,
                  digest=digest)
    if type(fields) is not tuple:
        raise FormError("request fields must be an array")
    if kind == Kind.REGISTER:
        address, encrypt, sign, backup = _array(fields, 4, "REGISTER fields")
        request = Request(**common, address=_name(address, "address", True),
                          encrypt=_key(encrypt, KeyUsage.ENCRYPT), sign=_key(sign, KeyUsage.SIGN),
                          backup=None if backup is None else _bin(backup, "backup",
                                                                 maximum=MAX_BACKUP))
        request.verify(request.sign)  # type: ignore[arg-type]
        return request
    if kind in ADDRESS_KINDS:
        (address,) = _array(fields, 1, f"{kind.name} fields")
        return Request(**common, address=_name(address, "address", True))
    if kind == Kind.RECOVER_CONFIRM:
        request_id, token, reply_key = _array(fields, 3, f"{kind.name} fields")
        reply_key = _bin(reply_key, "reply key", 32)
    else:
        request_id, token = _array(fields, 2, f"{kind.name} fields")
        reply_key = None
    return Request(**common, request_id=_bin(request_id, "request id", REQUEST_ID_SIZE),
                   token=_bin(token, "token", TOKEN_SIZE), reply_key=reply_key)


# -- the UPDATE message ----------------------------------------------------------------
def make_update(zone: Name, payload: bytes, msg_id: int) -> Message:
    """An UPDATE request for `zone` (question ``[zone, SOA]``, as DNS UPDATE's
    zone section) carrying `payload` (a request envelope) in its answer section."""
    return Message(id=msg_id, opcode=Opcode.UPDATE, question=Question(zone, RType.SOA),
                   answer=[_data_record(zone, payload)])


def make_update_answer(request: Message, payload: bytes | None,
                       rcode: int = Rcode.NOERROR) -> Message:
    """The response to an UPDATE: `payload` (an answer) in its answer
    section, or none for an error rcode."""
    response = make_response(request, rcode)
    if payload is not None and request.question is not None:
        response.answer.append(_data_record(request.question.name, payload))
    return response


def _data_record(owner: Name, payload: bytes) -> Record:
    return Record(owner, UPDATE_DATA, 0, Opaque(UPDATE_DATA, (payload,)))


def update_payload(msg: Message) -> tuple[Name, bytes]:
    """The zone and payload of an UPDATE request or answer; FormError unless
    the question is ``[zone, SOA]`` and the answer section is one
    ``UPDATE_DATA`` record at the zone holding one bin, the other sections empty."""
    question = msg.question
    if question is None or question.rtype != RType.SOA or question.name.is_mailbox:
        raise FormError("an UPDATE's question must be [zone, SOA]")
    if len(msg.answer) != 1 or msg.authority or msg.additional:
        raise FormError("an UPDATE carries one UPDATE_DATA record and nothing else")
    record = msg.answer[0]
    if (record.rtype != UPDATE_DATA or record.name != question.name
            or not isinstance(record.rdata, Opaque) or len(record.rdata.fields) != 1):
        raise FormError("an UPDATE's record must be [zone, UPDATE_DATA, ttl, [payload]]")
    return question.name, _bin(record.rdata.fields[0], "UPDATE payload")


# -- answers ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Answer:
    """A decoded answer. By kind: ACCEPTED `expires_in` (seconds a mailed
    challenge stays valid); PUBLISHED `address`, `added`, `replaced`,
    `serial`; RENEWED `address`, `added` (the keys kept), `next_check`;
    WITHDRAWN `address`, `replaced` (the keys removed), `serial`; RECOVERED
    `backup` (sealed to the request's reply key, `open_backup`)."""

    kind: AnswerKind
    request_digest: bytes
    address: Name | None = None
    added: tuple[bytes, ...] = ()
    replaced: tuple[bytes, ...] = ()
    serial: int | None = None
    expires_in: int | None = None
    next_check: int | None = None
    backup: bytes | None = None


def answer_fields(answer: Answer) -> list[Wire]:
    """The wire fields of `answer` (its kind decides which)."""
    kind = answer.kind
    if kind == AnswerKind.ACCEPTED:
        return [answer.expires_in]
    if kind == AnswerKind.RECOVERED:
        return [answer.backup]
    assert answer.address is not None
    if kind == AnswerKind.PUBLISHED:
        return [answer.address.to_wire(), list(answer.added), list(answer.replaced),
                answer.serial]
    if kind == AnswerKind.RENEWED:
        return [answer.address.to_wire(), list(answer.added), answer.next_check]
    return [answer.address.to_wire(), list(answer.replaced), answer.serial]


def make_answer(answer: Answer, registry: Ed25519PrivateKey) -> bytes:
    """``[body, signature]``: the body ``[kind, request digest, fields]``
    signed by the registry's key."""
    body = msgpack.packb([int(answer.kind), answer.request_digest, answer_fields(answer)])
    return msgpack.packb([body, registry.sign(CONTEXT_ANSWER + body)])


def read_answer(data: bytes, registry_key: KEY, request_digest: bytes) -> Answer:
    """Decode an answer and check it is signed by `registry_key` and
    answers the request whose envelope has SHA-256 `request_digest`."""
    body, signature = _array(_unpack(data, "answer"), 2, "answer")
    _bin(body, "answer body")
    verify_signature(registry_key, CONTEXT_ANSWER, body, _bin(signature, "answer signature",
                                                             SIGNATURE_SIZE))
    kind, digest, fields = _array(_unpack(body, "answer body"), 3, "answer body")
    _uint(kind, "answer kind", 0xFF)
    if kind not in AnswerKind._value2member_map_:
        raise FormError(f"unknown answer kind {kind}")
    kind = AnswerKind(kind)
    if _bin(digest, "request digest", 32) != request_digest:
        raise NotAuth("the answer is to another request")
    if type(fields) is not tuple:
        raise FormError("answer fields must be an array")
    if kind == AnswerKind.ACCEPTED:
        (expires_in,) = _array(fields, 1, "ACCEPTED fields")
        return Answer(kind, digest, expires_in=_uint(expires_in, "expiry", MAX_TIME))
    if kind == AnswerKind.RECOVERED:
        (backup,) = _array(fields, 1, "RECOVERED fields")
        return Answer(kind, digest, backup=_bin(backup, "backup"))
    if kind == AnswerKind.PUBLISHED:
        address, added, replaced, serial = _array(fields, 4, "PUBLISHED fields")
        return Answer(kind, digest, _name(address, "address", True), _key_ids(added, "added"),
                      _key_ids(replaced, "replaced"), _uint(serial, "serial", MAX_U32))
    if kind == AnswerKind.RENEWED:
        address, kept, next_check = _array(fields, 3, "RENEWED fields")
        return Answer(kind, digest, _name(address, "address", True), _key_ids(kept, "kept"),
                      next_check=_uint(next_check, "next check", MAX_TIME))
    address, removed, serial = _array(fields, 3, "WITHDRAWN fields")
    return Answer(kind, digest, _name(address, "address", True),
                  replaced=_key_ids(removed, "removed"), serial=_uint(serial, "serial", MAX_U32))


def seal_backup(reply_key: bytes, backup: bytes,
                random: Callable[[int], bytes]) -> bytes:
    """A stored backup sealed to a RECOVER_CONFIRM's reply key (raw X25519)."""
    return hpke.seal(reply_key, INFO_RECOVERY, backup, random(hpke.PRIVATE_SIZE))


def open_backup(private: X25519PrivateKey, sealed: bytes) -> bytes:
    """The backup of a RECOVERED answer, with the reply key's private key."""
    return hpke.open_sealed(private, INFO_RECOVERY, sealed)


# -- challenges ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Challenge:
    """What a confirmation or re-verification mail's attachment holds.

    `purpose` is the request kind that answers it (CONFIRM or RENEW);
    `added` the key ids being registered (for RENEW: the registered ones),
    `replaced` the key ids a confirmation replaces; `expires` the time after
    which the answer is refused; `server` where to send the answer.
    """

    purpose: Kind
    request_id: bytes
    token: bytes
    zone: Name
    address: Name
    added: tuple[bytes, ...]
    replaced: tuple[bytes, ...]
    expires: int
    server: ADDR

    def to_body(self) -> bytes:
        """The msgpack body the registry signs."""
        return msgpack.packb([int(self.purpose), self.request_id, self.token,
                              self.zone.to_wire(), self.address.to_wire(), list(self.added),
                              list(self.replaced), self.expires, self.server.to_wire()])


def make_challenge(challenge: Challenge, owner_key: KEY, registry: Ed25519PrivateKey,
                   random: Callable[[int], bytes]) -> bytes:
    """The attachment: `challenge`'s body signed by the registry, sealed to
    the owner's encryption KEY `owner_key` (X25519 or mlkem768x25519,
    `seal_envelope`)."""
    body = challenge.to_body()
    plaintext = msgpack.packb([body, registry.sign(CONTEXT_CHALLENGE + body)])
    return seal_envelope(owner_key, INFO_CHALLENGE, plaintext, random)


def open_challenge(data: bytes, owner: OpenerKey, registry_key: KEY) -> Challenge:
    """Open an attachment with the owner's private encryption key (X25519 or
    hybrid) and check the registry's signature: NotAuth for a forged or
    altered one."""
    plaintext = open_envelope(owner, INFO_CHALLENGE, data, "challenge")
    body, signature = _array(_unpack(plaintext, "challenge"), 2, "challenge")
    _bin(body, "challenge body")
    verify_signature(registry_key, CONTEXT_CHALLENGE, body,
                     _bin(signature, "challenge signature", SIGNATURE_SIZE))
    (purpose, request_id, token, zone, address, added, replaced, expires,
     server) = _array(_unpack(body, "challenge body"), 9, "challenge body")
    if purpose not in (Kind.CONFIRM, Kind.RENEW) or type(purpose) is not int:
        raise FormError("challenge purpose must be CONFIRM or RENEW")
    if type(server) is not tuple:
        raise FormError("challenge server must be an ADDR rdata array")
    try:
        server = ADDR.from_wire(server)
    except InvalidRecord as exc:
        raise FormError(f"challenge server: {exc}") from None
    return Challenge(Kind(purpose), _bin(request_id, "request id", REQUEST_ID_SIZE),
                     _bin(token, "token", TOKEN_SIZE), _name(zone, "zone", False),
                     _name(address, "address", True), _key_ids(added, "added"),
                     _key_ids(replaced, "replaced"), _uint(expires, "expiry", MAX_TIME), server)


# -- mail tokens -----------------------------------------------------------------------
#: A mail token's text: the request id and token, RFC 4648 base32 in lower
#: case without padding (52 letters and digits; no 0/1/8/9 to misread).
MAIL_TOKEN_LENGTH = 52


def mail_token_text(request_id: bytes, token: bytes) -> str:
    """The token a removal or recovery mail shows, for the owner to paste."""
    return base64.b32encode(request_id + token).decode().rstrip("=").lower()


def read_mail_token(text: str) -> tuple[bytes, bytes]:
    """(request id, token) from a pasted mail token (blanks, dashes and case
    ignored); FormError for anything else."""
    if not isinstance(text, str) or not text.isascii():
        raise FormError("a mail token is 52 letters and digits")
    compact = "".join(text.split()).replace("-", "").upper()
    if len(compact) != MAIL_TOKEN_LENGTH:
        raise FormError("a mail token is 52 letters and digits")
    try:
        raw = base64.b32decode(compact + "====")
    except (binascii.Error, ValueError):
        raise FormError("a mail token is 52 letters and digits") from None
    return raw[:REQUEST_ID_SIZE], raw[REQUEST_ID_SIZE:]


# -- the update log ---------------------------------------------------------------------
class LogOp(enum.Enum):
    """What an update-log entry records."""

    PUBLISH = "publish"  # keys published at an address (replacing any it had)
    RENEW = "renew"  # the owner answered a re-verification: keys kept
    WITHDRAW = "withdraw"  # the address's keys removed


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One update-log record (docs/protocol.md 8E.7): `keys` published or
    withdrawn (for RENEW: those kept), the zone's `serial` after the change
    (unchanged for RENEW), `time` of the change, the owner's `backup`
    (PUBLISH only) and, for WITHDRAW, its `reason`."""

    op: LogOp
    zone: Name
    address: Name
    keys: tuple[KEY, ...]
    serial: int
    time: int
    backup: bytes | None = None
    reason: str = ""

    def to_wire(self) -> bytes:
        """msgpack ``[op, zone, address, [KEY rdata...], serial, time, backup, reason]``."""
        return msgpack.packb([self.op.value, self.zone.to_wire(), self.address.to_wire(),
                              [key.to_wire() for key in self.keys], self.serial, self.time,
                              self.backup, self.reason])

    @classmethod
    def from_wire(cls, data: bytes) -> LogEntry:
        """Inverse of `to_wire`; FormError on anything else."""
        (op, zone, address, keys, serial, time, backup,
         reason) = _array(_unpack(data, "log entry"), 8, "log entry")
        if op not in LogOp._value2member_map_ or type(op) is not str:
            raise FormError("log entry op must be publish, renew or withdraw")
        if (type(keys) is not tuple or len(keys) > MAX_KEY_IDS
                or any(type(key) is not tuple for key in keys)):
            raise FormError("log entry keys must be an array of KEY rdata")
        try:
            parsed = tuple(KEY.from_wire(key) for key in keys)
        except InvalidRecord as exc:
            raise FormError(f"log entry key: {exc}") from None
        if type(reason) is not str or len(reason) > MAX_REASON:
            raise FormError("log entry reason must be a short string")
        return cls(LogOp(op), _name(zone, "zone", False), _name(address, "address", True),
                   parsed, _uint(serial, "serial", MAX_U32), _uint(time, "time", MAX_TIME),
                   None if backup is None else _bin(backup, "backup", maximum=MAX_BACKUP),
                   reason)


__all__ = ["ADDRESS_KINDS", "Answer", "AnswerKind", "CONTEXT_ANSWER", "CONTEXT_CHALLENGE",
           "CONTEXT_REQUEST", "Challenge", "ENCRYPT_ALGORITHMS", "OpenerKey", "opener_key", "INFO_CHALLENGE", "INFO_RECOVERY", "INFO_REQUEST",
           "KEY_ID_SIZE", "Kind", "LogEntry", "LogOp", "MAIL_TOKEN_LENGTH", "MAX_BACKUP",
           "MAX_PAYLOAD", "NONCE_SIZE", "REQUEST_ID_SIZE", "Request", "SIGNED_KINDS",
           "TOKEN_KINDS", "TOKEN_SIZE", "UPDATE_DATA", "address_fields", "key_id_bytes",
           "make_answer", "make_challenge", "make_request", "make_update", "make_update_answer",
           "mail_token_text", "open_backup", "open_challenge", "open_envelope", "open_request",
           "read_answer", "read_mail_token", "register_fields", "request_body", "seal_backup",
           "seal_envelope", "token_fields", "update_payload", "verify_signature"]
