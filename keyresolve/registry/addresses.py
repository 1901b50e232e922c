"""Mail addresses as the registry takes them (pure, no MIME): the one check
the configuration and the mails both use, and the error of a registry mail.

Kept apart from `mails` so that reading a configuration does not load the
standard library's email package.
"""

from __future__ import annotations

from ..protocol.errors import KeyresolveError, excerpt
from ..protocol.grammar import HOST_RE, MAIL_LOCAL_RE
from ..protocol.names import MAX_LOCAL

#: Longest address (RFC 5321 4.5.3.1.3: a path is 256 octets with its angle
#: brackets; RFC 3696 erratum 1690).
MAX_ADDRESS = 254
#: Longest local part and domain (RFC 5321 4.5.3.1.1 and 4.5.3.1.2; the
#: local part's is `names.MAX_LOCAL`).
MAX_LOCAL_PART = MAX_LOCAL
MAX_DOMAIN = 255


class MailError(KeyresolveError):
    """A registry mail that cannot be built (a bad address, subject or key
    id) or read (no attachment, two, oversized, unparseable)."""

    remote = True  # mostly a mail received (attachment_from_mail); our inputs are checked at config time


def validate_address(text: object, what: str = "address") -> str:
    """`text` if it is a plain mail address (``local@domain``, a dot-atom
    local part of ASCII characters, a host name as domain), else `MailError`
    naming `what`. Quoted local parts, comments, display names and any
    control character (a CR or LF would inject a header) are refused."""
    if not isinstance(text, str):
        raise MailError(f"{what}: must be a string")
    if len(text) > MAX_ADDRESS:
        raise MailError(f"{what}: longer than {MAX_ADDRESS} characters")
    local, sep, domain = text.rpartition("@")
    if not sep or not local or not domain:
        raise MailError(f"{what}: {excerpt(text)} is not an address local@domain")
    if len(local) > MAX_LOCAL_PART or len(domain) > MAX_DOMAIN:
        raise MailError(f"{what}: {excerpt(text)}: local part longer than {MAX_LOCAL_PART} "
                        f"or domain longer than {MAX_DOMAIN} characters")
    if not MAIL_LOCAL_RE.match(local) or not HOST_RE.match(domain):
        raise MailError(f"{what}: {excerpt(text)} is not a plain address (letters, digits "
                        "and !#$%&'*+/=?^_`{|}~- in dot-separated words, @, a host name)")
    return text


__all__ = ["MAX_ADDRESS", "MAX_DOMAIN", "MAX_LOCAL_PART", "MailError", "validate_address"]
