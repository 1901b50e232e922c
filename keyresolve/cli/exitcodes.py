"""Exit statuses of the client commands (keygen, keyring, seal, open, sign,
verify, and the registry's register, unregister, recover): one per outcome a script may want to tell apart. docs/client.md
lists them; keep the two in step.
"""

from __future__ import annotations

#: Success (for open and verify: the signature verified, or there was none).
EXIT_OK = 0
#: Any other error: a file that cannot be read, bad input, a store failure.
EXIT_ERROR = 1
#: The command line was not understood (click's own status for usage errors).
EXIT_USAGE = 2
#: A private key file did not open with the passphrase given.
EXIT_WRONG_PASSPHRASE = 3
#: No key: no private key in the key directory, or no public key for an
#: address (it exists and publishes none; no such address is
#: EXIT_NO_SUCH_ADDRESS).
EXIT_NO_KEY = 4
#: A signature that does not verify with the signer's key.
EXIT_BAD_SIGNATURE = 5
#: A signature by an address whose key cannot be found.
EXIT_UNKNOWN_SIGNER = 6
#: A sealed message that is corrupt, truncated or altered (nothing is kept).
EXIT_CORRUPT = 7
#: A fetched key differs from the one the key ring holds and --strict
#: refuses it until `keyring accept`.
EXIT_KEY_CHANGED = 8
#: No server answered (timeout, refused): the status BIND's dig uses, as
#: `keyresolve dig` does.
EXIT_UNREACHABLE = 9
#: A bug: an exception we did not expect (as `keyresolve dig`).
EXIT_INTERNAL = 10
#: None of the private keys given opens the message (or the registry mail).
EXIT_NOT_RECIPIENT = 11
#: An address the servers say does not exist (NXDOMAIN): told apart from
#: EXIT_NO_KEY (it exists, without a key), since a typo is fixed otherwise.
EXIT_NO_SUCH_ADDRESS = 12
#: An option that names something not available yet (`seal --if-no-key
#: request-interim`, until interim keys exist).
EXIT_NOT_AVAILABLE = 13
#: The registry commands (register, unregister, recover; docs/registry.md):
#: the address's zone, its primary or the registry's keys cannot be found.
EXIT_NO_REGISTRY = 14
#: The registry answered REFUSED, NOTAUTH, FORMERR, or another error rcode.
EXIT_REFUSED = 15
EXIT_NOTAUTH = 16
EXIT_FORMERR = 17
EXIT_SERVER_ERROR = 18
#: The registry mail's challenge expired.
EXIT_EXPIRED = 19
#: The mail cannot be read or holds no registry attachment.
EXIT_BAD_MAIL = 20

__all__ = ["EXIT_BAD_MAIL", "EXIT_BAD_SIGNATURE", "EXIT_CORRUPT", "EXIT_ERROR", "EXIT_EXPIRED",
           "EXIT_FORMERR", "EXIT_INTERNAL", "EXIT_KEY_CHANGED", "EXIT_NOTAUTH",
           "EXIT_NOT_AVAILABLE", "EXIT_NOT_RECIPIENT", "EXIT_NO_KEY", "EXIT_NO_REGISTRY",
           "EXIT_NO_SUCH_ADDRESS", "EXIT_OK", "EXIT_REFUSED", "EXIT_SERVER_ERROR",
           "EXIT_UNKNOWN_SIGNER", "EXIT_UNREACHABLE", "EXIT_USAGE", "EXIT_WRONG_PASSPHRASE",
           "status_for"]


def status_for(exc: BaseException) -> int:
    """The exit status for one of our errors (EXIT_ERROR for any other)."""
    from ..protocol.errors import (BadMessageSignature, CorruptMessage, NetworkError, NoKey,
                                   NotARecipient, UnsupportedMessage, WrongPassphrase)

    for kind, status in ((WrongPassphrase, EXIT_WRONG_PASSPHRASE), (NoKey, EXIT_NO_KEY),
                         (BadMessageSignature, EXIT_BAD_SIGNATURE),
                         (NotARecipient, EXIT_NOT_RECIPIENT),
                         (CorruptMessage, EXIT_CORRUPT), (UnsupportedMessage, EXIT_CORRUPT),
                         (NetworkError, EXIT_UNREACHABLE)):
        if isinstance(exc, kind):
            return status
    return EXIT_ERROR
