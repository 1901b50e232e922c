"""The zone-file, name and mail-address grammar as named regular-expression
pieces (sans-IO).

The reference parsers (`names`, `zonefile.ZoneReader`, `records`) and the
fast ones (`zonefile.CompileReader`, `bulkcompile`'s line regex, `fastpath`'s
query regex, the transfer `xfr.KeyPacker`) build their patterns from these
pieces, so a fast parser cannot accept a spelling the reference rejects.
Each piece is a `str` pattern without anchors; a bytes pattern is built with
``piece.encode("ascii")``. Names are in canonical (lower-case) form here:
upper case goes through the reference parser, which lower-cases it. A mail
address as people write it (`registry.mails.validate_address`) and a host
name in a config are matched in any case (`MAIL_LOCAL_RE`, `HOST_RE`).
"""

from __future__ import annotations

import re

from .codes import RType

#: One character of an atom of a mailbox's local part: RFC 5322 3.2.3 atext,
#: lower case.
ATOM_CHAR = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]"
#: An atom of a local part.
ATOM = ATOM_CHAR + "+"
#: A mailbox's local part, dot-atom form (RFC 5322 3.4.1), lower case.
LOCAL = rf"{ATOM}(?:\.{ATOM})*"
#: A domain label, lower case: letters, digits, "_" and inner "-", at most
#: 63 characters (RFC 1035 2.3.4, with "_" as in service labels).
LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
#: A character of a canonical domain in text (a label's, or the dot between).
DOMAIN_CHAR = r"[a-z0-9_.-]"
#: A whole canonical local part / label.
LOCAL_RE = re.compile(LOCAL + r"\Z")
LABEL_RE = re.compile(LABEL + r"\Z")
#: A host name's label, lower case (RFC 1123 2.1: letters, digits and inner
#: "-", at most 63 characters; no "_", unlike `LABEL`): a mail domain, a
#: server to connect to.
HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
#: A host name: labels separated by dots.
HOST = rf"{HOST_LABEL}(?:\.{HOST_LABEL})*"
#: A whole local part and host name as written in a mail address or a
#: config, in any case (ASCII only: ``re.ASCII`` keeps ``[a-z]`` from
#: matching the Kelvin sign or a dotless i under IGNORECASE).
MAIL_LOCAL_RE = re.compile(LOCAL + r"\Z", re.IGNORECASE | re.ASCII)
HOST_RE = re.compile(HOST + r"\Z", re.IGNORECASE | re.ASCII)
#: A control character (C0 or DEL): a CR or LF in a mail header or SMTP
#: command would inject another.
CONTROL_CHAR = r"[\x00-\x1f\x7f]"
CONTROL_RE = re.compile(CONTROL_CHAR)

#: A blank between the fields of a zone-file line.
BLANK = r"[ \t]"
#: A character of base64 text, and its padding: what
#: ``base64.b64decode(validate=True)`` (`records.KEY.from_text`) accepts.
BASE64_CHAR = r"[A-Za-z0-9+/]"
BASE64_PAD = r"={0,2}"
#: Base64 text, whole.
BASE64 = BASE64_CHAR + "*" + BASE64_PAD
#: A TTL token: a digit first, then digits and unit letters (`zonefile.parse_ttl`
#: decides what they mean). `TTL_FIRST` is the first character as a set: how
#: the token parsers (`zonefile.ZoneReader`, `zonefile.CompileReader`) tell a
#: TTL from a class or type; `TTL_START` is the same as a pattern.
TTL_FIRST = frozenset("0123456789")
TTL_START = "[" + "".join(sorted(TTL_FIRST)) + "]"
TTL_CHAR = "[0-9A-Za-z]"
#: The class and type tokens of a KEY line (``[ttl] [IN] KEY algorithm usage
#: base64``; the algorithm and usage tokens are `zonefile.KEY_HEADS_BY_TEXT`'s).
CLASS_IN = "IN"
TYPE_KEY = RType.KEY.name

__all__ = ["ATOM", "ATOM_CHAR", "BASE64", "BASE64_CHAR", "BASE64_PAD", "BLANK", "CLASS_IN",
           "CONTROL_CHAR", "CONTROL_RE", "DOMAIN_CHAR", "HOST", "HOST_LABEL", "HOST_RE", "LABEL",
           "LABEL_RE", "LOCAL", "LOCAL_RE", "MAIL_LOCAL_RE", "TTL_CHAR", "TTL_FIRST", "TTL_START",
           "TYPE_KEY"]
