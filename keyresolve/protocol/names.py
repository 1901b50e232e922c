"""Domain names and mailbox names.

A `Name` is either a domain (``example.com.``) or a mailbox
(``first.last+tag@example.com.``): a local part attached to a domain. The
mailbox's domain decides which zone holds it.

Canonical form (docs/protocol.md, "Names"):
- domain labels are lower-cased ASCII letters, digits, ``-`` and ``_``;
  a label does not start or end with ``-``;
- the local part is an RFC 5322 dot-atom, lower-cased (as OpenPGP WKD does,
  so ``Alice@`` and ``alice@`` find the same key);
- the absolute text form ends with ``.``; the root is ``.``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from .errors import InvalidName, excerpt, from_peer
from .grammar import LABEL_RE, LOCAL_RE

#: `grammar`'s patterns under this module's names, as the per-name checks
#: read them (measured faster in the compile than the imported names).
_LABEL_RE = LABEL_RE
_LOCAL_RE = LOCAL_RE

#: RFC 1035 2.3.4: a label is at most 63 octets.
MAX_LABEL = 63
#: RFC 1035 2.3.4: a domain name is at most 255 octets in DNS wire form
#: (each label plus its length byte, plus the root's zero byte).
MAX_NAME = 255
#: RFC 5321 4.5.3.1.1: a local part is at most 64 octets.
MAX_LOCAL = 64



class Name:
    """An immutable, canonical domain or mailbox name."""

    __slots__ = ("labels", "local", "_hash")

    labels: tuple[str, ...]
    local: str | None
    _hash: int

    def __init__(self, labels: tuple[str, ...], local: str | None = None) -> None:
        """Build from already-validated parts; use `from_text` for input."""
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "local", local)
        object.__setattr__(self, "_hash", hash((labels, local)))

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("Name is immutable")

    # -- parsing -----------------------------------------------------------
    @classmethod
    def from_text(cls, text: str, origin: Name | None = None) -> Name:
        """Parse a name; relative names are completed with `origin`.

        ``@`` alone is the origin, ``alice@`` is a mailbox at the origin,
        ``bob@eng`` is a mailbox at ``eng.<origin>``. Without an origin,
        relative names are taken as relative to the root.
        """
        if origin is not None and origin.local is not None:
            raise InvalidName(f"origin {origin} is a mailbox")
        if text == "@":
            if origin is None:
                raise InvalidName("'@' needs an origin")
            return origin
        local: str | None = None
        domain = text
        if "@" in text:
            local, _, domain = text.partition("@")
            local = canonical_local(local)
            if domain == "":
                if origin is None:
                    raise InvalidName(f"mailbox {excerpt(text)} has no domain")
                return _with_local(origin, local)
        labels = _parse_domain(domain, origin)
        return _make(labels, local)

    @classmethod
    def from_wire(cls, text: str) -> Name:
        """Parse an absolute name as carried in messages (trailing dot).

        Results are cached (queries repeat names); `from_wire_uncached` is for
        bulk data such as zone transfers, whose names would only evict them.
        An invalid name is the peer's error (`errors.from_peer`).
        """
        try:
            return _from_wire_cached(text)
        except InvalidName as exc:
            from_peer(exc)
            raise

    @classmethod
    def from_wire_uncached(cls, text: str) -> Name:
        """`from_wire` without the cache."""
        try:
            return _from_wire(text)
        except InvalidName as exc:
            from_peer(exc)
            raise

    # -- properties --------------------------------------------------------
    @property
    def is_mailbox(self) -> bool:
        """True for ``local@domain`` names."""
        return self.local is not None

    @property
    def domain(self) -> Name:
        """The domain of a mailbox, or the name itself for a domain."""
        return self if self.local is None else Name(self.labels)

    def parent(self) -> Name:
        """The mailbox's domain, or the domain one label up."""
        if self.local is not None:
            return Name(self.labels)
        if not self.labels:
            raise InvalidName("the root has no parent")
        return Name(self.labels[1:])

    def is_subdomain(self, other: Name) -> bool:
        """True if this name is at or below the domain `other`."""
        n = len(other.labels)
        if other.local is not None:
            return self == other
        return n <= len(self.labels) and (n == 0 or self.labels[-n:] == other.labels)

    def ancestors(self) -> Iterator[Name]:
        """The domain of this name, then each enclosing domain up to the root."""
        labels = self.labels
        for i in range(len(labels) + 1):
            yield Name(labels[i:])

    def store_key(self) -> bytes:
        """Store key: labels from the root down, so a subtree shares a prefix.

        ``example.com.`` -> ``b"com\\0example\\0"``; a mailbox appends
        ``@`` and the local part. Every name below a domain D starts with
        ``D.store_key()``.
        """
        labels = self.labels
        out = "\0".join(labels[::-1]) + "\0" if labels else ""
        if self.local is not None:
            out += "@" + self.local
        return out.encode("ascii")

    @classmethod
    def from_store_key(cls, key: bytes) -> Name:
        """Inverse of `key`."""
        text = key.decode("ascii")
        local: str | None = None
        if "@" in text:
            text, _, local = text.partition("@")
        labels = tuple(reversed(text.split("\0")[:-1]))
        return Name(labels, local)

    # -- output ------------------------------------------------------------
    def to_text(self, origin: Name | None = None) -> str:
        """Absolute text form, or relative to `origin` when below it."""
        if origin is not None and origin.local is None and self.is_subdomain(origin):
            rel = self.labels[: len(self.labels) - len(origin.labels)]
            domain = ".".join(rel)
            if self.local is not None:
                return f"{self.local}@{domain}"
            return domain or "@"
        labels = self.labels
        domain = ".".join(labels) + "." if labels else "."
        if self.local is not None:
            return f"{self.local}@{domain}"
        return domain

    def to_wire(self) -> str:
        """The form carried in messages: absolute text."""
        return self.to_text()

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"Name({self.to_text()!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Name):
            return NotImplemented
        return self.labels == other.labels and self.local == other.local

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: Name) -> bool:
        return self.store_key() < other.store_key()

    # pickling for multi-process use
    def __reduce__(self) -> tuple[type[Name], tuple[tuple[str, ...], str | None]]:
        return (Name, (self.labels, self.local))


ROOT = Name(())


def store_key_ancestors(key: bytes) -> list[bytes]:
    """The store keys (`Name.store_key`) of the domain whose key is `key` and of
    its ancestors, the root's (b"") first: every label of a key ends in \\0."""
    return [b""] + [key[:i + 1] for i, byte in enumerate(key) if byte == 0]


def canonical_local(local: str) -> str:
    """A mailbox local part in canonical (lower-case) form, checked as
    `Name.from_text` checks it; raises `InvalidName`. For bulk parsers that
    build store keys without making a `Name` per mailbox."""
    if not local:
        raise InvalidName("empty local part")
    if len(local) > MAX_LOCAL:
        raise InvalidName(f"local part longer than {MAX_LOCAL} octets")
    # isascii before lower(): U+212A KELVIN SIGN lower-cases to ASCII "k".
    if not local.isascii():
        raise InvalidName(f"invalid local part {excerpt(local)}")
    lowered = local.lower()
    if not _LOCAL_RE.match(lowered):
        raise InvalidName(f"invalid local part {excerpt(local)}")
    return lowered


def _parse_domain(domain: str, origin: Name | None) -> tuple[str, ...]:
    if domain == ".":
        return ()
    if not domain:
        raise InvalidName("empty name")
    absolute = domain.endswith(".")
    body = domain[:-1] if absolute else domain
    # isascii before lower(): U+212A KELVIN SIGN lower-cases to ASCII "k".
    if not body.isascii():
        raise InvalidName(f"non-ASCII name {excerpt(domain)} (use its xn-- form)")
    lowered = body.lower()
    labels = tuple(lowered.split("."))
    for label in labels:
        if not label:
            raise InvalidName(f"empty label in {excerpt(domain)}")
        if len(label) > MAX_LABEL:
            raise InvalidName(f"label longer than {MAX_LABEL} octets in {excerpt(domain)}")
        if not _LABEL_RE.match(label):
            raise InvalidName(f"invalid label {excerpt(label)} in {excerpt(domain)}")
    if not absolute and origin is not None:
        labels = labels + origin.labels
    return labels


def _make(labels: tuple[str, ...], local: str | None) -> Name:
    wire_len = sum(len(label) + 1 for label in labels) + 1
    if wire_len > MAX_NAME:
        raise InvalidName(f"name longer than {MAX_NAME} octets")
    return Name(labels, local)


def _with_local(origin: Name, local: str) -> Name:
    return Name(origin.labels, local)  # the origin's length was checked when it was made


def _from_wire(text: str) -> Name:
    if not isinstance(text, str):
        raise InvalidName("name is not a string")
    if not text.endswith("."):
        raise InvalidName(f"name {excerpt(text)} is not absolute")
    local, at, domain = text.partition("@")
    if at and local and "@" not in domain and domain != ".":
        # A mailbox: its domain is one of few, so parsed once (as from_text would).
        local = canonical_local(local)
        return Name(_wire_domain(domain).labels, local)  # the domain's length was checked
    return Name.from_text(text)


#: Names `Name.from_wire` keeps parsed: the working set of a busy server's
#: queries (~400 bytes each, ~27 MB when full).
FROM_WIRE_CACHE_SIZE = 65536
_from_wire_cached = functools.lru_cache(maxsize=FROM_WIRE_CACHE_SIZE)(_from_wire)
#: Mailbox domains `Name.from_wire_uncached` keeps parsed: the distinct
#: domains of a transfer's mailboxes are few.
WIRE_DOMAIN_CACHE_SIZE = 4096
_wire_domain = functools.lru_cache(maxsize=WIRE_DOMAIN_CACHE_SIZE)(Name.from_text)
