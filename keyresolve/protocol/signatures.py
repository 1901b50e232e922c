"""Ed25519 signature checks (sans-IO): the one owner of checking a
signature by a raw public key.

Every signature of a keyresolve format covers a message that starts with a
context naming the format, its version and the use (RFC 8032 8.3: domain
separation), so a signature made for one use is never valid for another.
The formats (`registry.messages`, `client.seal`) build that message, sign
it with ``Ed25519PrivateKey.sign`` and say which error a failed check raises.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

#: Bytes of an Ed25519 signature (RFC 8032 5.1.6).
SIGNATURE_SIZE = 64


def ed25519_verifies(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether `signature` is the Ed25519 signature of `message` by the raw
    public key `public_key` (False too for a key or a signature of the
    wrong size, or a key that is not a curve point)."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


__all__ = ["SIGNATURE_SIZE", "ed25519_verifies"]
