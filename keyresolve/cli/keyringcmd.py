"""`keyresolve keyring ...`: the user's key ring (docs/client.md).

`keyring_option` and `open_keyring` are shared with the commands that look
keys up (seal, open, verify).
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import click

from ..protocol.codes import RType
from ..protocol.errors import KeyresolveError, NoKey, ZoneErrors, ZoneFileError
from ..protocol.names import Name
from ..protocol.records import KEY, key_flags_to_text
from ..store.keyring import KeyRing, RingEntry, normalize_address
from .exitcodes import EXIT_ERROR, EXIT_NO_KEY, status_for
from .privatekeys import PassphraseSource, load_keys

#: Largest file `keyring add` reads: a zone file of KEY lines for one
#: address is a few KB; 1 MiB is a whole zone's worth.
MAX_ADD_FILE = 1 << 20
#: TTL assumed for KEY lines `keyring add` reads without one (not kept).
ADDED_TTL = 3600
#: Why `keyring add FILE` refuses an $INCLUDE in FILE (it reads that one
#: file, never another a line in it names), ending the error's one line.
INCLUDE_REFUSED = ("keyring add reads only the file given, not its includes: "
                   "add the included file itself")
#: The ring's directory under the XDG data directory.
KEYRING_SUBDIR = Path("keyresolve") / "keyring"


def default_keyring_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_DATA_HOME/keyresolve/keyring``, or ``~/.local/share/...`` when
    XDG_DATA_HOME is unset, empty or relative (the XDG Base Directory spec
    says to ignore a relative one)."""
    data = environ.get("XDG_DATA_HOME", "")
    if not data or not os.path.isabs(data):
        home = environ.get("HOME") or os.path.expanduser("~")
        data = os.path.join(home, ".local", "share")
    return Path(data) / KEYRING_SUBDIR


def keyring_option(function):
    """The ``--keyring DIR`` option (as `keyring_dir`)."""
    return click.option("--keyring", "keyring_dir", type=click.Path(file_okay=False),
                        default=None,
                        help="The key ring directory (default: "
                             "$XDG_DATA_HOME/keyresolve/keyring).")(function)


def open_keyring(keyring_dir: str | None) -> KeyRing:
    """The key ring of ``--keyring`` (None: the default), created if missing."""
    return KeyRing(Path(keyring_dir) if keyring_dir else default_keyring_dir())


def fail(exc: KeyresolveError | str, status: int | None = None) -> None:
    """One line on stderr, then exit with `status` (default: the error's)."""
    click.echo(f"keyresolve: {exc}", err=True)
    sys.exit(status if status is not None else
             status_for(exc) if isinstance(exc, BaseException) else EXIT_ERROR)


# -- formatting ----------------------------------------------------------------------------
def _time(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def entry_line(entry: RingEntry) -> str:
    """One line per key, as gpg --list-keys: usage, algorithm, key id, source,
    flags, and for a fetched key where from, when and its TTL."""
    parts = [f"{entry.key.usage.name.lower():<8}", f"{entry.key.algorithm.name.lower():<15}",
             entry.key_id, entry.source if entry.accepted else f"PENDING {entry.source}"]
    if entry.flags:
        parts.append(f"[{key_flags_to_text(entry.flags)}]")
    if entry.source == "fetched":
        if entry.server:
            parts.append(f"from {entry.server}")
        if entry.fetched_at is not None:
            parts.append(f"at {_time(entry.fetched_at)}")
        if entry.ttl is not None:
            parts.append(f"ttl {entry.ttl}")
    return "  ".join(parts)


def _print_address(address: str, entries: list[RingEntry]) -> None:
    click.echo(address)
    for entry in entries:
        click.echo(f"  {entry_line(entry)}")
    if any(not e.accepted for e in entries):
        click.echo(f"  (a fetched key differs from the one held: "
                   f"keyresolve keyring accept {address} takes it)")


# -- the commands ----------------------------------------------------------------------------
@click.group("keyring")
def keyring() -> None:
    """The key ring: the public keys you hold, by address."""


@keyring.command("add")
@click.argument("address")
@click.argument("source")
@keyring_option
@click.option("--passphrase-file", type=click.Path(dir_okay=False), default=None,
              help="For a key directory whose files are encrypted: the passphrase's file.")
def keyring_add(address: str, source: str, keyring_dir: str | None,
                passphrase_file: str | None) -> None:
    """Add the keys of ADDRESS from SOURCE: a KEY zone-file line, a file of
    such lines, or a key directory from keygen (your own keys)."""
    try:
        mailbox = _mailbox(address)
        if os.path.isdir(source):
            own = load_keys(Path(source), PassphraseSource.from_option(passphrase_file),
                            address=address)
            keys, origin = own.keys, "own"
        else:
            keys, origin = _keys_from_text(mailbox, source), "added"
        with open_keyring(keyring_dir) as ring:
            for key in keys:
                done = ring.put(RingEntry(normalize_address(address), key, origin,
                                          flags=key.flags))
                click.echo(f"{normalize_address(address)}: {key.usage.name.lower()} "
                           f"{key.algorithm.name.lower()} {key.key_id}: "
                           f"{'unchanged' if done == 'same' else done}")
    except ZoneErrors as exc:
        for error in exc.errors:
            click.echo(f"keyresolve: {error}", err=True)
        sys.exit(EXIT_ERROR)
    except (KeyresolveError, ValueError) as exc:
        fail(exc if isinstance(exc, KeyresolveError) else str(exc))


def _mailbox(address: str) -> Name:
    try:
        name = Name.from_text(address if address.endswith(".") else address + ".")
    except KeyresolveError as exc:
        raise KeyresolveError(f"{address}: {exc}") from None
    if not name.is_mailbox:
        raise KeyresolveError(f"{address} is not a mailbox (expected user@domain)")
    return name


def _keys_from_text(mailbox: Name, source: str) -> list[KEY]:
    """The KEY records of `mailbox` in the file `source`, else in the text
    `source` itself, as given: a zone-file line, or bare KEY data
    (``x25519 encrypt ...``). The text is kept as a string: a `Path` folds
    the "//" base64 may hold, and its `is_file` raises ENAMETOOLONG for a
    key longer than a file name may be."""
    from ..zonedata.zonefile import ZoneReader

    if os.path.isfile(source):
        path = Path(source)
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_ADD_FILE + 1)
        except OSError as exc:
            raise KeyresolveError(f"cannot read {path}: {exc.strerror}") from None
        if len(data) > MAX_ADD_FILE:
            raise KeyresolveError(f"{path} is larger than {MAX_ADD_FILE} bytes")
        text, filename = data.decode("utf-8", "replace"), str(path)
    else:
        text, filename = source, "the KEY line"
        tokens = text.split()
        if "key" not in (t.lower() for t in tokens):
            text = f"{mailbox.to_text()} KEY {text}"
    domain = Name.from_text(mailbox.to_text().split("@", 1)[1])
    # A $TTL so lines without one parse (keygen prints none); the ring keeps no TTL
    # for added keys. Its line is taken off the line numbers of errors.
    reader = ZoneReader(None, domain, text=f"$TTL {ADDED_TTL} " + "\n" + text + "\n",
                        filename=filename, no_access=INCLUDE_REFUSED)
    records = [record for record, _, _ in reader]
    if reader.errors:
        raise ZoneErrors([ZoneFileError(e.filename, e.line - 1, e.message)
                          for e in reader.errors])
    keys = [r.rdata for r in records if r.rtype == RType.KEY and r.name == mailbox]
    if not keys:
        others = sorted({r.name.to_text() for r in records if r.rtype == RType.KEY})
        also = f" (it has keys of {', '.join(others[:5])})" if others else ""
        raise NoKey(f"{filename} holds no KEY of {mailbox.to_text().rstrip('.')}{also}")
    return keys


@keyring.command("list")
@keyring_option
def keyring_list(keyring_dir: str | None) -> None:
    """Every address in the key ring and its keys."""
    try:
        with open_keyring(keyring_dir) as ring:
            for address in ring.addresses():
                _print_address(address, ring.get(address))
    except KeyresolveError as exc:
        fail(exc)


@keyring.command("show")
@click.argument("address")
@keyring_option
def keyring_show(address: str, keyring_dir: str | None) -> None:
    """The keys the key ring holds for ADDRESS, with their KEY lines."""
    try:
        with open_keyring(keyring_dir) as ring:
            entries = ring.get(address)
    except KeyresolveError as exc:
        fail(exc)
    if not entries:
        fail(f"no keys for {normalize_address(address)} in the key ring", EXIT_NO_KEY)
    _print_address(normalize_address(address), entries)
    for entry in entries:
        ttl = "" if entry.ttl is None else f"\t{entry.ttl}"
        pending = "" if entry.accepted else "\t; pending"
        click.echo(f"{entry.address}.{ttl}\tKEY\t{entry.key.to_text()}{pending}")


@keyring.command("find")
@click.argument("key_id")
@keyring_option
def keyring_find(key_id: str, keyring_dir: str | None) -> None:
    """The keys whose key id starts with KEY_ID (hex digits)."""
    try:
        with open_keyring(keyring_dir) as ring:
            found = ring.find(key_id)
    except ValueError as exc:
        fail(str(exc))
    except KeyresolveError as exc:
        fail(exc)
    if not found:
        fail(f"no key with id {key_id} in the key ring", EXIT_NO_KEY)
    for entry in found:
        click.echo(f"{entry.address}  {entry_line(entry)}")


@keyring.command("remove")
@click.argument("address")
@keyring_option
def keyring_remove(address: str, keyring_dir: str | None) -> None:
    """Drop every key of ADDRESS from the key ring."""
    try:
        with open_keyring(keyring_dir) as ring:
            removed = ring.remove(address)
    except KeyresolveError as exc:
        fail(exc)
    if not removed:
        fail(f"no keys for {normalize_address(address)} in the key ring", EXIT_NO_KEY)
    click.echo(f"removed the keys of {normalize_address(address)}")


@keyring.command("accept")
@click.argument("address")
@keyring_option
def keyring_accept(address: str, keyring_dir: str | None) -> None:
    """Use the fetched keys of ADDRESS that differ from those held."""
    try:
        with open_keyring(keyring_dir) as ring:
            held = ring.get(address)
            promoted = ring.accept(address)
    except KeyresolveError as exc:
        fail(exc)
    if not held:
        fail(f"no keys for {normalize_address(address)} in the key ring", EXIT_NO_KEY)
    if not promoted:
        fail(f"no pending key for {normalize_address(address)}: nothing to accept")
    was = {e.usage: e.key_id for e in held if e.accepted}
    for entry in promoted:
        old = f" (replacing {was[entry.usage]})" if entry.usage in was else ""
        click.echo(f"{entry.address}: accepted {entry.key.usage.name.lower()} "
                   f"{entry.key.algorithm.name.lower()} {entry.key_id}{old}")


__all__ = ["default_keyring_dir", "entry_line", "keyring", "keyring_option", "open_keyring"]
