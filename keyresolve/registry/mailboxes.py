"""The operator's `mailboxes` file (sans-IO): which local parts may register.

The grammar (docs/registry.md, "Who may register"), one entry a line:

- blank lines, and lines whose first non-blank character is ``#``, are
  ignored; an entry may be followed by blanks and a ``#`` comment;
- an entry is a local part (``alice``, ``first.last``), matched in any case
  (local parts are canonical lower case: `names.canonical_local`);
- or a local part's beginning followed by ``*`` (``team-*``, ``ops.*``): the
  local parts that begin with it (``team-`` itself included); ``*`` alone
  allows every local part. ``*`` anywhere else is an error.

The policy is about local parts, in every registration zone alike. Only
REGISTER asks it (`state.Registry.allowed`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol.errors import ConfigError, InvalidName, excerpt
from ..protocol.names import Name, canonical_local

#: The wildcard: a last character matching any rest (none included).
WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class MailboxPolicy:
    """The local parts that may register: `exact` ones, and those beginning
    with one of `prefixes` ("" for ``*``)."""

    exact: frozenset[str]
    prefixes: frozenset[str]

    def allows(self, address: Name) -> bool:
        """Whether the mailbox `address` may register (a domain may not)."""
        local = address.local
        if local is None:
            return False
        if local in self.exact:
            return True
        prefixes = self.prefixes
        # at most 65 lookups (a local part is at most 64 octets), whatever the file's size
        return bool(prefixes) and any(local[:end] in prefixes for end in range(len(local) + 1))

    def __repr__(self) -> str:  # a file may hold a million entries
        return f"MailboxPolicy({len(self.exact)} local parts, {len(self.prefixes)} patterns)"


def parse_entry(text: str) -> tuple[str, bool]:
    """One entry (no blanks, no comment) as (canonical text, is a prefix);
    ValueError with a one-line reason."""
    prefix = text.endswith(WILDCARD)
    body = text[:-1] if prefix else text
    if WILDCARD in body:
        raise ValueError(f"{excerpt(text)}: '*' only as the last character")
    if prefix and not body:
        return "", True
    try:
        # a prefix is the beginning of a local part: with one more atom
        # character (and a dot's atom) it must be one
        checked = canonical_local(body + "x" if prefix else body)
    except InvalidName as exc:
        raise ValueError(f"{excerpt(text)}: not a local part ({exc})") from None
    return (checked[:-1] if prefix else checked), prefix


def parse_mailboxes(text: str, where: str) -> MailboxPolicy:
    """The policy of a `mailboxes` file's `text`; ConfigError naming
    ``where:LINE`` for the first invalid line. An empty file allows nobody."""
    exact: set[str] = set()
    prefixes: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) > 1 and not fields[1].startswith("#"):
            raise ConfigError(f"{where}:{number}: one local part a line, not "
                              f"{excerpt(line.strip())}")
        try:
            entry, prefix = parse_entry(fields[0])
        except ValueError as exc:
            raise ConfigError(f"{where}:{number}: {exc}") from None
        (prefixes if prefix else exact).add(entry)
    return MailboxPolicy(frozenset(exact), frozenset(prefixes))


__all__ = ["MailboxPolicy", "WILDCARD", "parse_entry", "parse_mailboxes"]
