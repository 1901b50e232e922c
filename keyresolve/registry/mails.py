"""The registry's mails (issue #20): build them, and find their attachment in
a mail as received.

A registry mail is a real RFC 5322 message, ``multipart/mixed``: a
``text/plain`` part for the person (what is asked, the key ids concerned,
the command that answers) and one attachment for the tool, of media type
`MEDIA_TYPE`, whose bytes the caller gives (an opaque, signed or sealed
blob; its format is the registry protocol's, not this module's). Headers:
From, To, Subject, Date, Message-ID and ``Auto-Submitted: auto-generated``
(RFC 3834 5: an automatic mail, which no vacation responder answers).

`attachment_from_mail` reads a mail the way it arrives after a mail client
saved it: CRLF or LF line ends, base64 re-wrapped, headers added by relays,
nested in further ``multipart`` or forwarded as ``message/rfc822``. Every
failure is one `MailError` with a one-line message.

Pure: no clock (the Date is passed in), no randomness (the Message-ID's
unique part is passed in), no I/O.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import enum
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime

from ..protocol.errors import cut, excerpt
from ..protocol.grammar import CONTROL_RE
from .addresses import MailError, validate_address
from .messages import MAX_KEY_IDS as MESSAGE_MAX_KEY_IDS

#: The attachment's media type (a vendor tree type, RFC 6838 3.2).
MEDIA_TYPE = "application/vnd.keyresolve.registry"
#: A mail client that re-types an attachment it does not know sends it as
#: this type; it is still ours if its file name is (`ATTACHMENT_NAME`).
GENERIC_TYPE = "application/octet-stream"
#: The attachment's file name: ``keyresolve-<kind>.bin``.
ATTACHMENT_NAME = "keyresolve-{kind}.bin"
_ATTACHMENT_NAME_RE = re.compile(r"keyresolve-[a-z]{1,20}\.bin\Z")

#: Largest mail `attachment_from_mail` reads. Ours are a few KiB; relays add
#: Received headers and forwarding nests it, yet 1 MiB is far beyond that
#: (Postfix's message_size_limit, 10 MB, bounds what can reach a mailbox).
MAX_MAIL_BYTES = 1 << 20
#: Largest attachment, decoded: room for post-quantum keys and signatures
#: (an ML-DSA-87 signature is 4,627 bytes, an ML-KEM-1024 ciphertext 1,568)
#: many times over; the blobs made today are below 2 KiB.
MAX_ATTACHMENT_BYTES = 64 * 1024
#: Most MIME parts walked in one mail (every part, containers included).
MAX_PARTS = 64
#: Deepest nesting of multiparts and forwarded messages walked, as
#: zonefile.MAX_INCLUDE_DEPTH: a mail forwarded a few times over is 3 or 4.
MAX_DEPTH = 8
#: Longest subject, in characters: one line in any mail client (RFC 5322
#: 2.1.1 asks for lines below 78 characters; a subject folds beyond that).
MAX_SUBJECT = 200
#: Key ids a mail lists per list (registered, replaced): as many as a
#: challenge carries (`messages.MAX_KEY_IDS`).
MAX_KEY_IDS = MESSAGE_MAX_KEY_IDS
#: Longest key id (a fingerprint in base64 or hex, with a prefix).
MAX_KEY_ID = 100
#: The Message-ID's unique part: at least 16 characters (64 bits as hex),
#: so two mails of one registry never share one (RFC 5322 3.6.4).
MIN_UNIQUE = 16
MAX_UNIQUE = 128

_KEY_ID_RE = re.compile(r"[A-Za-z0-9+/=:._-]+\Z")
_UNIQUE_RE = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\Z")  # dot-atom-text
#: Longest MIME boundary (RFC 2046 5.1.1).
_MAX_BOUNDARY = 70
#: The transfer encodings a mail carries (RFC 2045 6.1).
_ENCODINGS = frozenset({"base64", "quoted-printable", "7bit", "8bit", "binary"})


class MailKind(enum.StrEnum):
    """What a registry mail is about."""

    #: Confirm a registration, or the replacement of registered keys.
    CONFIRM = "confirm"
    #: Re-verification: do the registered keys still hold?
    REVERIFY = "reverify"
    #: Notice: keys withdrawn (re-verification unanswered).
    WITHDRAWN = "withdrawn"
    #: A removal asked by mail (the owner lost the keys): its token.
    REMOVAL = "removal"
    #: Recovery of backed-up keys: its token.
    RECOVERY = "recovery"


#: The command that answers each kind (None: a notice, nothing to answer).
#: ``{address}`` is the address the mail is about.
COMMANDS: dict[MailKind, str | None] = {
    MailKind.CONFIRM: "keyresolve register confirm --keys DIR MAILFILE",
    MailKind.REVERIFY: "keyresolve register renew --keys DIR MAILFILE",
    MailKind.WITHDRAWN: None,
    MailKind.REMOVAL: "keyresolve unregister {address} --by-mail --confirm MAILFILE",
    MailKind.RECOVERY: "keyresolve recover {address} --confirm MAILFILE",
}

_SUBJECTS = {
    MailKind.CONFIRM: "keyresolve: confirm the keys for {address}",
    MailKind.REVERIFY: "keyresolve: do the keys for {address} still hold?",
    MailKind.WITHDRAWN: "keyresolve: the keys for {address} were withdrawn",
    MailKind.REMOVAL: "keyresolve: confirm the removal of the keys for {address}",
    MailKind.RECOVERY: "keyresolve: recover the keys for {address}",
}


def validate_subject(text: object) -> str:
    """`text` if it fits on a Subject line: a string of at most
    `MAX_SUBJECT` characters and no control characters (no CR or LF)."""
    if not isinstance(text, str):
        raise MailError("subject: must be a string")
    if len(text) > MAX_SUBJECT:
        raise MailError(f"subject: longer than {MAX_SUBJECT} characters")
    if CONTROL_RE.search(text):
        raise MailError(f"subject: {excerpt(text)} holds a control character (CR, LF, ...)")
    return text


def _key_ids(values: Sequence[str], what: str) -> list[str]:
    if isinstance(values, (str, bytes)):
        raise MailError(f"{what}: must be a list of key ids")
    values = list(values)
    if len(values) > MAX_KEY_IDS:
        raise MailError(f"{what}: more than {MAX_KEY_IDS} key ids")
    for value in values:
        if not (isinstance(value, str) and 0 < len(value) <= MAX_KEY_ID
                and _KEY_ID_RE.match(value)):
            shown = excerpt(value) if isinstance(value, str) else type(value).__name__
            raise MailError(f"{what}: {shown} is not a key id (at most {MAX_KEY_ID} "
                            "letters, digits and +/=:._-)")
    return values


def _utc(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise MailError(f"{what}: must be a datetime with a time zone")
    return moment.astimezone(timezone.utc)


def _body(kind: MailKind, address: str, registry: str, key_ids: list[str],
          replaced: list[str], expires: datetime | None, filename: str) -> str:
    lines: list[str] = []

    def ids(items: list[str]) -> None:
        lines.extend(f"    {item}" for item in items)
        lines.append("")

    when = None if expires is None else expires.strftime("%Y-%m-%d %H:%M UTC")
    if kind is MailKind.CONFIRM:
        lines += [f"Someone asked the key registry {registry} to publish these keys",
                  f"for {address}:", ""]
        ids(key_ids)
        if replaced:
            lines += ["They replace the keys published for it now:", ""]
            ids(replaced)
        lines += ["If it was you, confirm with the keys you registered:"]
    elif kind is MailKind.REVERIFY:
        lines += [f"The key registry {registry} asks whether the keys published",
                  f"for {address} still hold:", ""]
        ids(key_ids)
        lines += ["If they do, answer with those keys:"]
    elif kind is MailKind.WITHDRAWN:
        lines += [f"The key registry {registry} withdrew the keys published for",
                  f"{address}: no answer came to its re-verification mail in time.", ""]
        ids(key_ids)
        lines += ["To publish keys again, register them anew:", "",
                  f"    keyresolve register {address} --keys DIR", ""]
    elif kind is MailKind.REMOVAL:
        lines += [f"Someone asked the key registry {registry} to remove the keys",
                  f"published for {address} (a removal asked by mail, for an owner",
                  "who lost the keys):", ""]
        ids(key_ids)
        lines += ["If it was you, confirm the removal:"]
    elif kind is MailKind.RECOVERY:
        lines += [f"Someone asked the key registry {registry} for the backup of the",
                  f"keys of {address}:", ""]
        ids(key_ids)
        lines += ["If it was you, recover them (with the recovery passphrase, which",
                  "the registry never saw):"]
    command = COMMANDS[kind]
    if command is not None:
        lines += ["", "    " + command.format(address=address), "",
                  "MAILFILE is this mail saved as received (or - to read it from",
                  "standard input)."]
        if when is not None:
            lines.append(f"The request expires at {when}.")
        if kind is not MailKind.REVERIFY:
            lines.append("If it was not you, ignore this mail: nothing happens without "
                         "the answer.")
        else:
            lines.append("Keys whose owner does not answer in time are withdrawn.")
        lines.append("")
    if filename:
        lines += [f"The attachment {filename} is for the keyresolve tool."]
    return "\n".join(lines) + "\n"


def make_mail(kind: MailKind, *, sender: str, recipient: str, date: datetime, unique: str,
              attachment: bytes | None, key_ids: Sequence[str] = (),
              replaced: Sequence[str] = (), expires: datetime | None = None,
              subject: str | None = None) -> bytes:
    """The registry mail `kind` to `recipient`, as the bytes SMTP sends
    (CRLF line ends, RFC 5322).

    `sender` is the From address (the registry's), `date` the Date (aware),
    `unique` the Message-ID's unique part (``<unique@sender's domain>``; the
    caller draws it at random), `attachment` the tool's blob (None only for
    a WITHDRAWN notice), `key_ids` the keys concerned and `replaced` those a
    confirmation replaces, `expires` when the request ends. `subject`
    overrides the kind's subject. Raises `MailError` for an address,
    subject, key id or unique part that would not make a valid message (a
    CR or LF anywhere in a header among them)."""
    kind = MailKind(kind)
    validate_address(sender, "from")
    validate_address(recipient, "to")
    subject = validate_subject(_SUBJECTS[kind].format(address=recipient)
                               if subject is None else subject)
    if not (isinstance(unique, str) and MIN_UNIQUE <= len(unique) <= MAX_UNIQUE
            and _UNIQUE_RE.match(unique)):
        raise MailError(f"message id: the unique part must be {MIN_UNIQUE} to {MAX_UNIQUE} "
                        "letters, digits and _- in dot-separated words")
    key_ids = _key_ids(key_ids, "key ids")
    replaced = _key_ids(replaced, "replaced key ids")
    date = _utc(date, "date")
    if expires is not None:
        expires = _utc(expires, "expires")
    if attachment is None:
        if kind is not MailKind.WITHDRAWN:
            raise MailError(f"attachment: a {kind} mail needs one")
    elif not isinstance(attachment, (bytes, bytearray)) or not attachment:
        raise MailError("attachment: must be non-empty bytes")
    elif len(attachment) > MAX_ATTACHMENT_BYTES:
        raise MailError(f"attachment: larger than {MAX_ATTACHMENT_BYTES} bytes")

    filename = "" if attachment is None else ATTACHMENT_NAME.format(kind=kind)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = f"<{unique}@{sender.rpartition('@')[2]}>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(_body(kind, recipient, sender, key_ids, replaced, expires, filename))
    if attachment is not None:
        maintype, _, subtype = MEDIA_TYPE.partition("/")
        message.add_attachment(bytes(attachment), maintype=maintype, subtype=subtype,
                               filename=filename)
        # The generator would draw a boundary at random; this one is fixed
        # by `unique`, so a mail is a function of its arguments. No line of
        # the text or of base64 starts with "--".
        message.set_boundary(f"keyresolve-{unique}"[:_MAX_BOUNDARY])
    return message.as_bytes()


def attachment_from_mail(raw: bytes) -> bytes:
    """The registry attachment of the mail `raw`, as received (any line ends,
    headers added, re-encoded, nested in multiparts or forwarded), decoded.

    The attachment is the one part of type `MEDIA_TYPE`, or of type
    ``application/octet-stream`` named like ours. Raises `MailError` (one
    line) for a mail larger than `MAX_MAIL_BYTES`, with more than `MAX_PARTS`
    parts or nested deeper than `MAX_DEPTH`, that cannot be parsed, holds
    no attachment or more than one, or one that is empty, larger than
    `MAX_ATTACHMENT_BYTES` or not validly encoded."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise MailError("a mail is bytes")
    if len(raw) > MAX_MAIL_BYTES:
        raise MailError(f"the mail is {len(raw)} bytes; at most {MAX_MAIL_BYTES} are read")
    try:
        message = BytesParser(policy=email.policy.compat32).parsebytes(bytes(raw))
        found = _find_parts(message)
        if not found:
            raise MailError(f"the mail holds no keyresolve attachment ({MEDIA_TYPE})")
        if len(found) > 1:
            raise MailError(f"the mail holds {len(found)} keyresolve attachments; "
                            "one is expected")
        data = _decode(found[0])
    except MailError:
        raise
    except Exception:  # the stdlib parser on hostile input (RecursionError, ...)
        raise MailError("the mail cannot be parsed") from None
    if not data:
        raise MailError("the keyresolve attachment is empty")
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise MailError(f"the keyresolve attachment is larger than "
                        f"{MAX_ATTACHMENT_BYTES} bytes")
    return data


def _find_parts(message: Message) -> list[Message]:
    """Our attachments among the parts of `message`, walked depth first."""
    found = []
    stack = [(message, 0)]
    parts = 0
    while stack:
        part, depth = stack.pop()
        parts += 1
        if parts > MAX_PARTS:
            raise MailError(f"the mail has more than {MAX_PARTS} parts")
        if part.is_multipart():
            if depth >= MAX_DEPTH:
                raise MailError(f"the mail nests parts deeper than {MAX_DEPTH} levels")
            payload = part.get_payload()
            if isinstance(payload, list):  # always, for a multipart part
                stack.extend((child, depth + 1) for child in reversed(payload)
                             if isinstance(child, Message))
        elif _is_ours(part):
            found.append(part)
    return found


def _is_ours(part: Message) -> bool:
    kind = part.get_content_type()
    if kind == MEDIA_TYPE:
        return True
    if kind != GENERIC_TYPE:
        return False
    filename = part.get_filename()
    return isinstance(filename, str) and bool(_ATTACHMENT_NAME_RE.match(filename))


def _decode(part: Message) -> bytes:
    """The decoded body of the part `part` (strict base64)."""
    encoding = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    if encoding not in _ENCODINGS:
        raise MailError(f"the keyresolve attachment has the unknown transfer encoding "
                        f"{cut(ascii(encoding))}")
    if encoding == "base64":
        text = part.get_payload()
        if not isinstance(text, str):
            raise MailError("the keyresolve attachment cannot be parsed")
        text = "".join(text.split())
        if len(text) > (MAX_ATTACHMENT_BYTES + 2) // 3 * 4:
            raise MailError(f"the keyresolve attachment is larger than "
                            f"{MAX_ATTACHMENT_BYTES} bytes")
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise MailError("the keyresolve attachment is not valid base64") from None
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        raise MailError("the keyresolve attachment cannot be parsed")
    return data
