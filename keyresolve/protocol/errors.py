"""The one exception hierarchy of keyresolve.

Every protocol error carries the rcode a server answers it with, so a server
turns any exception into a response in one place.

Every error is also of one side, as h11 splits LocalProtocolError from
RemoteProtocolError: `remote` is False for an error of our own side (a bad
name typed on the command line, a bad config or zone file, our own misuse of
an API, a failure of ours) and True for one a peer caused or reported (a
malformed message received, a request it may not make, a bad signature on a
message received, an error rcode it answered: `PeerError`). Each class states
its side; a name or record that is invalid is ours when we read it from text
and the peer's when it came in a message, so the decoders of received bytes
(`Name.from_wire`, `rdata_from_wire`, `Message.from_wire`) mark what they
raise with `from_peer`.
"""

from __future__ import annotations

from typing import TypeVar

from .codes import Rcode


class KeyresolveError(Exception):
    """Root of every error raised by keyresolve."""

    #: Whether a peer caused or reported this error (h11's RemoteProtocolError)
    #: rather than our own side (LocalProtocolError). The class states the
    #: usual side; `from_peer` marks one instance as a peer's.
    remote: bool = False


_E = TypeVar("_E", bound=KeyresolveError)


def from_peer(exc: _E) -> _E:
    """Mark `exc` as caused by a peer (raised while decoding bytes a peer
    sent) and return it, for the decoders' ``except InvalidName as exc:
    from_peer(exc); raise``."""
    exc.remote = True
    return exc


class ProtocolError(KeyresolveError):
    """A message or request that breaks the protocol; `rcode` is the answer."""

    rcode: Rcode = Rcode.SERVFAIL


class FormError(ProtocolError):
    """A malformed message: FORMERR."""

    rcode = Rcode.FORMERR
    remote = True


class BadVersion(ProtocolError):
    """A protocol version we do not speak: BADVERS."""

    rcode = Rcode.BADVERS
    remote = True


class NotImplementedOpcode(ProtocolError):
    """An opcode or request kind we do not implement: NOTIMP."""

    rcode = Rcode.NOTIMP
    remote = True


class Refused(ProtocolError):
    """Policy refuses the request (not our zone, not allowed): REFUSED."""

    rcode = Rcode.REFUSED
    remote = True


class NotAuth(ProtocolError):
    """Not authorized or not authoritative: NOTAUTH."""

    rcode = Rcode.NOTAUTH
    remote = True


class ServerFailure(ProtocolError):
    """We could not answer (expired zone, failed resolution): SERVFAIL."""

    rcode = Rcode.SERVFAIL


class BadSignature(ProtocolError):
    """The HMAC did not verify: BADSIG."""

    rcode = Rcode.BADSIG
    remote = True


class BadKey(ProtocolError):
    """Unknown key name or algorithm: BADKEY."""

    rcode = Rcode.BADKEY
    remote = True


class BadTime(ProtocolError):
    """Signature time outside the fudge window: BADTIME."""

    rcode = Rcode.BADTIME
    remote = True


class InvalidName(FormError):
    """A domain or mailbox name that breaks the syntax or length limits: ours
    where we read it from text (a command line, a config, a zone file), the
    peer's (`from_peer`) where it came in a message."""

    remote = False


class InvalidRecord(FormError):
    """Record data that fails validation (bad key length, port, ...): ours
    where we read it from text, the peer's (`from_peer`) where it came in a
    message."""

    remote = False


#: Most characters of one input token an error message quotes: enough to
#: recognise it in its file:line, too few to copy a line of someone else's
#: file out through an error or a log (a zone file may $INCLUDE the wrong
#: file; /etc/shadow lines are ~100 characters, BIND quotes tokens whole).
MAX_EXCERPT = 40
#: Most characters of a file name (a $INCLUDE path) an error message quotes:
#: absolute paths run long and are named whole up to this; a path is not
#: data read from a file.
MAX_PATH_EXCERPT = 200


def excerpt(text: str, limit: int = MAX_EXCERPT) -> str:
    """`text` as an error message quotes it: its repr, or the repr of its
    first `limit` characters followed by ``...`` and its length."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def cut(text: str, limit: int = MAX_EXCERPT) -> str:
    """As `excerpt`, unquoted: for tokens of a known alphabet (digits, units)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


class ZoneFileError(KeyresolveError):
    """An error in a zone file, located as file:line."""

    def __init__(self, filename: str, line: int, message: str) -> None:
        super().__init__(f"{filename}:{line}: {message}")
        self.filename = filename
        self.line = line
        self.message = message


class ZoneErrors(KeyresolveError):
    """Every error found in one zone file (a checker reports them all)."""

    def __init__(self, errors: list[ZoneFileError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class ConfigError(KeyresolveError):
    """A configuration file that is missing, unreadable or invalid."""


class StoreError(KeyresolveError):
    """The LMDB store failed or holds data we cannot read, or a zone store or
    transfer writer was misused (an SOA added, a name outside the zone)."""


class NetworkError(KeyresolveError):
    """A local transport failure: refused connection, unreachable, reset."""


class QueryTimeout(NetworkError):
    """No answer arrived within the time allowed."""


class PeerError(KeyresolveError):
    """A peer answered with an error rcode; `rcode` holds what it said."""

    remote = True

    def __init__(self, rcode: int, message: str = "") -> None:
        from .codes import rcode_to_text

        super().__init__(message or f"peer answered {rcode_to_text(rcode)}")
        self.rcode = rcode


class StreamAborted(KeyresolveError):
    """A multi-message reply (a zone transfer) cut short because its peer
    took it too slowly; the message says which bound it broke. The TCP
    server throws it into the reply's generator at the message it stopped
    at, so the generator can log what it was sending and release what it
    holds (its LMDB snapshot)."""

    remote = True


class SealError(KeyresolveError):
    """A sealed message or detached signature that cannot be opened or checked
    (docs/seal-format.md). Messages name what failed, never key material.
    The peer's side: the message is its sender's."""

    remote = True


class UnsupportedMessage(SealError):
    """Not a sealed message or signature of a format version we read."""


class NotARecipient(SealError):
    """No stanza of the message opens with any of the keys given."""


class CorruptMessage(SealError):
    """The header, a stanza or a payload chunk fails to authenticate or parse."""


class TruncatedMessage(CorruptMessage):
    """The message ends before its final chunk."""


class BadMessageSignature(SealError):
    """A signature that does not verify with the signer's key."""


class KeyFileError(KeyresolveError):
    """A private key file (docs/key-files.md) that is malformed, of a version
    or KDF we do not read, or with parameters out of bounds. Messages name
    the file and what is wrong, never key material or a passphrase."""


class WrongPassphrase(KeyresolveError):
    """An encrypted private key file did not open with the passphrase given
    (or was altered: the two cannot be told apart). Names no secret."""


class NoKey(KeyresolveError):
    """No key where one is needed: no private key in a key directory, or no
    public key for an address."""
