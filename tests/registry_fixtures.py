"""Fixed keys, fixed randomness and a fake clock for the registry tests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keyresolve.protocol import hpke
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import ADDR, KEY, KeyAlgorithm, KeyUsage
from keyresolve.registry import messages as m
from keyresolve.registry.state import Limits, Registry

ZONE = Name.from_text("example.com.")
OTHER_ZONE = Name.from_text("example.net.")
ALICE = Name.from_text("alice@example.com.")
BOB = Name.from_text("bob@example.com.")
SERVER = ADDR.parse("192.0.2.53:5300")
T0 = 1_795_000_000


def seeded(seed: int) -> bytes:
    """32 bytes fixed by `seed`: seed, seed+1, ... (mod 256)."""
    return bytes((seed + i) % 256 for i in range(32))


@dataclass(frozen=True)
class Pair:
    """An X25519 and an Ed25519 key pair, with their KEY rdatas."""

    x: X25519PrivateKey
    ed: Ed25519PrivateKey

    @classmethod
    def fixed(cls, seed: int) -> Pair:
        return cls(X25519PrivateKey.from_private_bytes(seeded(seed)),
                   Ed25519PrivateKey.from_private_bytes(seeded(seed + 100)))

    @property
    def encrypt(self) -> KEY:
        return KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, self.x.public_key().public_bytes_raw())

    @property
    def sign(self) -> KEY:
        return KEY(KeyAlgorithm.ED25519, KeyUsage.SIGN, self.ed.public_key().public_bytes_raw())


@dataclass(frozen=True)
class HybridPair:
    """An owner with an mlkem768x25519 encryption key and an Ed25519 key;
    `x` opens challenges as `Pair.x` does."""

    x: hpke.HybridPrivateKey
    ed: Ed25519PrivateKey

    @classmethod
    def fixed(cls, seed: int) -> HybridPair:
        return cls(hpke.HybridPrivateKey(seeded(seed)),
                   Ed25519PrivateKey.from_private_bytes(seeded(seed + 100)))

    @property
    def encrypt(self) -> KEY:
        return KEY(KeyAlgorithm.MLKEM768X25519, KeyUsage.ENCRYPT, self.x.public_key)

    @property
    def sign(self) -> KEY:
        return KEY(KeyAlgorithm.ED25519, KeyUsage.SIGN, self.ed.public_key().public_bytes_raw())


REGISTRY = Pair.fixed(0)
OWNER = Pair.fixed(1)
OWNER2 = Pair.fixed(2)
STRANGER = Pair.fixed(3)
HYBRID_OWNER = HybridPair.fixed(4)


class Random:
    """Deterministic bytes: SHA-256 of a seed and a counter."""

    def __init__(self, seed: bytes = b"test") -> None:
        self.seed = seed
        self.count = 0

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self.count += 1
            out += hashlib.sha256(self.seed + self.count.to_bytes(8, "big")).digest()
        return out[:n]


class Clock:
    """A fake clock: `now` seconds, moved by hand."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def make_registry(clock: Clock, limits: Limits = Limits(), **kwargs) -> Registry:
    return Registry(zones=[ZONE, OTHER_ZONE], private=REGISTRY.x, signer=REGISTRY.ed,
                    server=SERVER, clock=clock, random=Random(b"registry"), limits=limits,
                    **kwargs)


def request(kind: m.Kind, fields: list, signer: Ed25519PrivateKey | None = None, *,
            zone: Name = ZONE, time: int | None = None, clock: Clock | None = None,
            random: Random | None = None) -> bytes:
    """A sealed request envelope to the fixed registry key."""
    if time is None:
        time = clock.now if clock is not None else T0
    return m.make_request(kind, zone, fields, registry_key=REGISTRY.encrypt, time=time,
                          signer=signer, random=random or _random)


_random = Random(b"client")
