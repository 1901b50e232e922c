"""Signed envelopes: data in clear wrapped with a detached signature
(docs/seal-format.md 10), what `seal --if-no-key sign-only` writes for a
recipient without a key. Sans-IO and streaming, as `seal`.

    envelope = "KRCLEAR" || u8 version=1 || u8 length || address[length]
               || data || detached signature (section 7) of data

The header names the signer so a reader knows the signature's size (79 +
length) and holds back that many bytes; the signature is the one `sign`
makes over the data, so it can be cut off and checked with `verify`.
"""

from __future__ import annotations

from .seal import (SIGNATURE_MAGIC, VERSION, DetachedSignature, SigningKey, data_digest,
                   sign_detached)
from ..protocol.errors import CorruptMessage, TruncatedMessage, UnsupportedMessage
from ..protocol.records import KEY_ID_SIZE

#: First bytes of a signed envelope, then the version byte.
ENVELOPE_MAGIC = b"KRCLEAR"
#: Ed25519 signature bytes (RFC 8032).
_SIGNATURE_SIZE = 64


def signature_size(address_length: int) -> int:
    """Bytes of the detached signature of a signer address of that length."""
    return len(SIGNATURE_MAGIC) + 2 + address_length + KEY_ID_SIZE + _SIGNATURE_SIZE


def _header(address: str) -> bytes:
    raw = address.encode("utf-8")
    return ENVELOPE_MAGIC + bytes([VERSION, len(raw)]) + raw


class EnvelopeWriter:
    """Write `header`, then each piece of data as given (it is in clear;
    `update` only hashes it), then what `finish` returns."""

    def __init__(self, signer: SigningKey) -> None:
        self.signer = signer  # (SigningKey checked its address)
        self.header = _header(signer.address)
        self._digest = data_digest()

    def update(self, data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
        """`data` itself, hashed on the way."""
        self._digest.update(data)
        return data

    def finish(self) -> bytes:
        """The detached signature over everything passed to `update`."""
        return sign_detached(self.signer, self._digest.digest()).to_wire()


def make_envelope(data: bytes, signer: SigningKey) -> bytes:
    """A whole envelope (for small data; `EnvelopeWriter` streams)."""
    writer = EnvelopeWriter(signer)
    return writer.header + bytes(writer.update(data)) + writer.finish()


class EnvelopeReader:
    """Read an envelope: `update` returns the data as it arrives (all but
    the bytes that may be the signature); `finish` returns the signature and
    the data's SHA-256 for `DetachedSignature.verify`. The data is in clear
    and unauthenticated until the signature verified."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.address: str | None = None
        self._tail = 0
        self._digest = data_digest()
        self.finished = False

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """The data bytes `data` released (maybe none)."""
        self._buf += data
        if self.address is None and not self._parse_header():
            return b""
        out = len(self._buf) - self._tail
        if out <= 0:
            return b""
        released = bytes(self._buf[:out])
        del self._buf[:out]
        self._digest.update(released)
        return released

    def _parse_header(self) -> bool:
        fixed = len(ENVELOPE_MAGIC) + 2
        prefix = bytes(self._buf[:len(ENVELOPE_MAGIC)])
        if not ENVELOPE_MAGIC.startswith(prefix):
            raise UnsupportedMessage("not a signed envelope (no KRCLEAR magic)")
        if len(self._buf) < fixed:
            return False
        if self._buf[len(ENVELOPE_MAGIC)] != VERSION:
            raise UnsupportedMessage(f"envelope version {self._buf[len(ENVELOPE_MAGIC)]} is "
                                     f"not supported (this reads version {VERSION})")
        length = self._buf[fixed - 1]
        if length == 0:
            raise CorruptMessage("the envelope's signer address is empty")
        if len(self._buf) < fixed + length:
            return False
        try:
            self.address = bytes(self._buf[fixed:fixed + length]).decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptMessage("the envelope's signer address is not UTF-8") from None
        self._tail = signature_size(length)
        del self._buf[:fixed + length]
        return True

    def finish(self) -> tuple[DetachedSignature, bytes]:
        """The signature and the data's SHA-256; TruncatedMessage or
        CorruptMessage when the envelope ends early or the signature is not
        the header's signer's."""
        if self.address is None or len(self._buf) != self._tail:
            raise TruncatedMessage("the envelope ends before its signature")
        try:
            signature = DetachedSignature.from_wire(bytes(self._buf))
        except UnsupportedMessage as exc:  # (the envelope's version said what it holds)
            raise CorruptMessage(f"the envelope's signature is malformed: {exc}") from None
        if signature.address != self.address:
            raise CorruptMessage(f"the envelope names {self.address} but the signature "
                                 f"{signature.address}")
        self.finished = True
        return signature, self._digest.digest()


__all__ = ["ENVELOPE_MAGIC", "EnvelopeReader", "EnvelopeWriter", "make_envelope",
           "signature_size"]
