"""The owner's commands of the key registry (issue #20, docs/registry.md):
``register``, ``register confirm``, ``register renew``, ``unregister`` and
``recover``.

Each sends one registry request (docs/protocol.md 8E) in an UPDATE over TCP
to the primary of the address's zone, found as DNS UPDATE finds it (RFC 2136
4.3): the SOA of the address through the resolver gives the zone and its
MNAME, whose ADDR is the primary. The registry's keys are the zone apex's
``x25519 encrypt`` and ``ed25519 sign`` KEYs, resolved the same way (or
asked of ``--server`` when one is given): requests are sealed to the first,
mails and answers must be signed by the second.

Every failure ends the command with one line on stderr and an exit status of
its own (`EXIT_*`); no private key or passphrase is ever printed.
"""

from __future__ import annotations

import hashlib
import secrets
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import click
import msgpack
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..client import backup as backups
from ..client import keyfile
from ..client.seal import hybrid_seed_to_pem
from ..net.client import NoReply, query
from ..protocol import hpke
from ..protocol.codes import Rcode, RType, rcode_to_text
from ..protocol.errors import (FormError, KeyresolveError, NetworkError, NotAuth, ProtocolError,
                               WrongPassphrase)
from ..protocol.message import Message, make_query
from ..protocol.names import Name
from ..protocol.records import ADDR, KEY, SOA, KeyAlgorithm, KeyUsage
from ..protocol.transport import Endpoint, format_endpoint, parse_endpoint
from ..registry import messages as m
from ..registry.mails import MAX_MAIL_BYTES, MailError, attachment_from_mail
from . import exitcodes
from .commands import main, run_trio
from .privatekeys import PassphraseSource, key_files, load_keys, read_passphrase_file

# -- exit statuses (cli/exitcodes.py, shared with the other client commands) --------
EXIT_ERROR = exitcodes.EXIT_ERROR
EXIT_USAGE = exitcodes.EXIT_USAGE
#: The passphrase of the key files, or the recovery passphrase, is wrong.
EXIT_PASSPHRASE = exitcodes.EXIT_WRONG_PASSPHRASE
#: The key directory holds no usable encryption (X25519 or mlkem768x25519)
#: and Ed25519 private keys.
EXIT_KEYS = exitcodes.EXIT_NO_KEY
#: The mail is for other keys than those in the key directory.
EXIT_OTHER_KEYS = exitcodes.EXIT_NOT_RECIPIENT
#: A forged mail or answer: not signed by the registry's published key.
EXIT_FORGED = exitcodes.EXIT_BAD_SIGNATURE
#: An altered mail or answer: it does not open, or is malformed.
EXIT_ALTERED = exitcodes.EXIT_CORRUPT
EXIT_UNREACHABLE = exitcodes.EXIT_UNREACHABLE
EXIT_INTERNAL = exitcodes.EXIT_INTERNAL
EXIT_NOT_FOUND = exitcodes.EXIT_NO_REGISTRY
EXIT_REFUSED = exitcodes.EXIT_REFUSED
EXIT_NOTAUTH = exitcodes.EXIT_NOTAUTH
EXIT_FORMERR = exitcodes.EXIT_FORMERR
EXIT_SERVER_ERROR = exitcodes.EXIT_SERVER_ERROR
EXIT_EXPIRED = exitcodes.EXIT_EXPIRED
EXIT_MAIL = exitcodes.EXIT_BAD_MAIL

#: Seconds to wait for the registry's answer: it queues a mail or commits a
#: zone change first (fsyncs), so longer than a query's 2 s.
UPDATE_TIMEOUT = 10.0
#: Bytes read of a mail file: one more than `attachment_from_mail` takes, so
#: that it says the mail is too large.
MAX_MAIL_READ = MAX_MAIL_BYTES + 1
#: Seconds to wait for each reply of the resolver, as dig's default.
QUERY_TIMEOUT = 2.0

#: What each rcode means for each request kind (the first failing check of
#: docs/protocol.md 8E.7 decides it).
_MEANINGS: dict[Rcode, dict[m.Kind | None, str]] = {
    Rcode.REFUSED: {
        None: "the registry refused the request",
        m.Kind.REGISTER: "the address may not register here, too many requests are "
                         "pending for it, or the registry is full: try later",
        m.Kind.CONFIRM: "a key got registered at another address since",
        m.Kind.RENEW: "the address has no registered keys any more",
        m.Kind.UNREGISTER_MAIL: "too many requests are pending for the address: try later",
        m.Kind.UNREGISTER_CONFIRM: "the address has no registered keys any more",
        m.Kind.RECOVER: "too many requests are pending for the address: try later",
        m.Kind.RECOVER_CONFIRM: "the address has no registered keys or no backup any more",
    },
    Rcode.NOTAUTH: {
        None: "the server is not the registry of this zone, or the request was "
              "out of time or a replay (check the clock)",
        m.Kind.CONFIRM: "the challenge is unknown, expired or already answered, or the "
                        "keys are not the ones registered",
        m.Kind.RENEW: "the challenge is unknown, expired or already answered, or the "
                      "keys are not the registered ones",
        m.Kind.UNREGISTER: "not signed by the registered key (or nothing is registered)",
        m.Kind.UNREGISTER_CONFIRM: "the token is unknown, expired or already used",
        m.Kind.RECOVER_CONFIRM: "the token is unknown, expired or already used",
    },
    Rcode.FORMERR: {None: "the server found the request malformed"},
    Rcode.NOTIMP: {None: "the server takes no registrations (UPDATE not implemented)"},
}
_EXIT_BY_RCODE = {Rcode.REFUSED: EXIT_REFUSED, Rcode.NOTAUTH: EXIT_NOTAUTH,
                  Rcode.FORMERR: EXIT_FORMERR}


class Failure(KeyresolveError):
    """Ends a registry command: `message` on one line, exit status `code`."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _fail(exc: Failure) -> None:
    click.echo(f"keyresolve: {exc}", err=True)
    sys.exit(exc.code)


def _run(function, *args) -> None:
    """Run the command's body; a `Failure` (or any error) ends it on one line."""
    try:
        function(*args)
    except Failure as exc:
        _fail(exc)
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit,
            BrokenPipeError):
        raise
    except KeyboardInterrupt:
        _fail(Failure("interrupted", 130))
    except WrongPassphrase as exc:
        _fail(Failure(str(exc), EXIT_PASSPHRASE))
    except KeyresolveError as exc:  # a file that cannot be read or written, ...
        _fail(Failure(str(exc), EXIT_ERROR))
    except Exception as exc:  # never a traceback: the error's class and message
        _fail(Failure(f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL))


# -- the owner's keys ----------------------------------------------------------------
@dataclass(frozen=True)
class OwnerKeys:
    """The owner's encryption (X25519, or the hybrid mlkem768x25519) and
    Ed25519 signing private keys."""

    encrypt_private: X25519PrivateKey | hpke.HybridPrivateKey
    sign_private: Ed25519PrivateKey

    @property
    def encrypt(self) -> KEY:
        """The public KEY of the encryption key."""
        return m.opener_key(self.encrypt_private)

    @property
    def sign(self) -> KEY:
        """The public KEY of the signing key."""
        return KEY(KeyAlgorithm.ED25519, KeyUsage.SIGN,
                   self.sign_private.public_key().public_bytes_raw())


def _passphrase(path: Path | None, what: str, *, confirm: bool = False) -> str:
    """A passphrase from the 0600 file `path`, else asked on the terminal
    (never echoed; twice with `confirm`)."""
    if path is not None:
        return read_passphrase_file(path)
    if not sys.stdin.isatty():
        raise Failure(f"the {what} is needed: give a file holding it (no terminal to ask on)",
                      EXIT_USAGE)
    return click.prompt(what.capitalize(), hide_input=True, confirmation_prompt=confirm,
                        err=True)


def load_owner_keys(keys_dir: Path, address: Name | None = None,
                    passphrase: PassphraseSource | None = None) -> OwnerKeys:
    """The encryption and Ed25519 private keys in `keys_dir` as `keyresolve
    keygen` writes them (``ADDRESS.x25519.pem`` or, from ``keygen --pq``,
    ``ADDRESS.mlkem768x25519.pem``; ``ADDRESS.ed25519.pem``; encrypted or
    not: docs/key-files.md), those of `address` if given, loaded by
    `privatekeys.load_keys` as seal and open load them (the passphrase asked
    once for the directory, 0600 files, one warning for files not
    encrypted). `Failure` EXIT_KEYS without them or with both encryption
    keys (which one to register would be a guess), checked before any
    passphrase is asked; otherwise load_keys' message with its exit status
    (EXIT_PASSPHRASE for a wrong passphrase)."""
    keys_dir = Path(keys_dir)
    owner = None if address is None else _plain(address)
    if keys_dir.is_dir():
        _check_owner_files(keys_dir, owner)
    try:  # a missing directory too: load_keys says so
        own = load_keys(keys_dir, passphrase or PassphraseSource(), address=owner)
    except KeyresolveError as exc:
        raise Failure(str(exc), exitcodes.status_for(exc)) from None
    if len(own.identities) != 1 or own.signing is None:  # files changed since the check
        raise Failure(f"the key files in {keys_dir} changed while read: try again", EXIT_KEYS)
    return OwnerKeys(own.identities[0].private_key, own.signing.private_key)


def _check_owner_files(keys_dir: Path, owner: str | None) -> None:
    """`Failure` EXIT_KEYS unless the directory's key files are those of one
    address (`owner` if given), with one encryption and one Ed25519 key."""
    by_address = key_files(keys_dir)
    if owner is not None:
        by_address = {a: f for a, f in by_address.items() if a == owner.lower()}
    if not by_address:
        whose = "" if owner is None else f" of {owner}"
        raise Failure(f"{keys_dir} holds no private keys{whose} (keyresolve keygen ADDRESS "
                      "--out DIR makes them)", EXIT_KEYS)
    if len(by_address) > 1:
        raise Failure(f"{keys_dir} holds the private keys of several addresses "
                      f"({', '.join(sorted(by_address))}): keep one address's in the "
                      "directory", EXIT_KEYS)
    [(address, files)] = by_address.items()
    held = {algorithm for algorithm, _ in files}
    encryption = [a for a in m.ENCRYPT_ALGORITHMS if a in held]
    if len(encryption) > 1:
        raise Failure(f"{keys_dir} holds both an x25519 and an mlkem768x25519 private key of "
                      f"{address}: keep the one to register in the directory", EXIT_KEYS)
    for algorithm in (encryption[0] if encryption else KeyAlgorithm.X25519,
                      KeyAlgorithm.ED25519):
        if algorithm not in held:
            raise Failure(f"{keys_dir} holds no {algorithm.name.lower()} private key of "
                          f"{address}", EXIT_KEYS)


def _plain(address: Name) -> str:
    return address.to_text().rstrip(".")


def _ids(ids) -> str:
    return ", ".join(item.hex() for item in ids) or "none"


# -- finding the registry ---------------------------------------------------------
@dataclass(frozen=True)
class RegistryKeys:
    """The registry's keys published at its zone apex."""

    encrypt: KEY
    sign: tuple[KEY, ...]


@dataclass(frozen=True)
class Target:
    """Where a request goes: the zone, its primary, the registry's keys."""

    zone: Name
    server: Endpoint
    keys: RegistryKeys


async def _ask(server: Endpoint, name: Name, rtype: int, *, rd: bool, what: str) -> Message:
    message = make_query(name, rtype, rd=rd)
    try:
        exchange = await query(server, message, timeout=QUERY_TIMEOUT)
    except NoReply:
        raise Failure(f"no reply from the {what} {format_endpoint(server)}",
                      EXIT_UNREACHABLE) from None
    except NetworkError as exc:
        raise Failure(f"the {what} cannot be reached: {exc}", EXIT_UNREACHABLE) from None
    except ProtocolError as exc:
        raise Failure(f"bad reply from the {what} {format_endpoint(server)}: {exc}",
                      EXIT_UNREACHABLE) from None
    return exchange.response


async def find_zone(address: Name, server: Endpoint, *, rd: bool,
                    what: str) -> tuple[Name, SOA]:
    """The zone holding `address` and its SOA: the SOA record in the answer
    or the authority section of a SOA query (RFC 2136 4.3)."""
    response = await _ask(server, address, RType.SOA, rd=rd, what=what)
    if response.rcode not in (Rcode.NOERROR, Rcode.NXDOMAIN):
        raise Failure(f"the {what} {format_endpoint(server)} answered "
                      f"{rcode_to_text(response.rcode)} for the zone of {_plain(address)}",
                      EXIT_NOT_FOUND)
    for record in (*response.answer, *response.authority):
        if isinstance(record.rdata, SOA) and (address == record.name
                                              or address.is_subdomain(record.name)):
            return record.name, record.rdata
    raise Failure(f"the {what} {format_endpoint(server)} gave no SOA for "
                  f"{_plain(address)}: no zone holds it there", EXIT_NOT_FOUND)


async def find_primary(address: Name, resolver: Endpoint) -> tuple[Name, Endpoint]:
    """The zone of `address` and its primary (the SOA MNAME's ADDR), through
    `resolver`, as DNS UPDATE finds where to send an update (RFC 2136 4.3)."""
    zone, soa = await find_zone(address, resolver, rd=True, what="resolver")
    response = await _ask(resolver, soa.mname, RType.ADDR, rd=True, what="resolver")
    addrs = [r.rdata for r in response.answer if isinstance(r.rdata, ADDR)
             and r.name == soa.mname]
    if response.rcode != Rcode.NOERROR or not addrs:
        raise Failure(f"the primary of {zone.to_text()}, {soa.mname.to_text()}, has no "
                      f"address (ADDR: {rcode_to_text(response.rcode)})", EXIT_NOT_FOUND)
    return zone, (addrs[0].host, addrs[0].port)


async def registry_keys(zone: Name, server: Endpoint, *, rd: bool, what: str) -> RegistryKeys:
    """The registry's KEYs at the apex of `zone`, asked of `server`."""
    response = await _ask(server, zone, RType.KEY, rd=rd, what=what)
    keys = [r.rdata for r in response.answer if isinstance(r.rdata, KEY) and r.name == zone]
    encrypt = [k for k in keys if k.algorithm == KeyAlgorithm.X25519]
    sign = tuple(k for k in keys if k.algorithm == KeyAlgorithm.ED25519)
    if not encrypt or not sign:
        raise Failure(f"{zone.to_text()} publishes no registry keys (an x25519 encrypt and an "
                      f"ed25519 sign KEY at its apex, asked of the {what} "
                      f"{format_endpoint(server)}): it takes no registrations", EXIT_NOT_FOUND)
    return RegistryKeys(encrypt[0], sign)


async def locate(address: Name, server: Endpoint | None, resolver: Endpoint) -> Target:
    """Where a request about `address` goes: `server` if given (asked for
    the zone and the registry's keys itself), else the zone's primary."""
    if server is not None:
        zone, _ = await find_zone(address, server, rd=False, what="server")
        return Target(zone, server, await registry_keys(zone, server, rd=False, what="server"))
    zone, primary = await find_primary(address, resolver)
    return Target(zone, primary, await registry_keys(zone, resolver, rd=True, what="resolver"))


# -- one request ------------------------------------------------------------------------
async def send(target: Target, kind: m.Kind, fields: list,
               signer: Ed25519PrivateKey | None = None) -> m.Answer:
    """Seal and sign a `kind` request, send it to the target's primary over
    TCP (once: a retry would be a replay) and return the registry's checked
    answer; `Failure` for an error rcode or an answer not the registry's."""
    envelope = m.make_request(kind, target.zone, fields, registry_key=target.keys.encrypt,
                              time=int(time.time()), signer=signer, random=secrets.token_bytes)
    message = m.make_update(target.zone, envelope, msg_id=secrets.randbits(16))
    where = format_endpoint(target.server)
    try:
        exchange = await query(target.server, message, timeout=UPDATE_TIMEOUT, retries=0,
                               tcp=True)
    except NoReply:
        raise Failure(f"no answer from the registry {where} within {UPDATE_TIMEOUT:g} s",
                      EXIT_UNREACHABLE) from None
    except NetworkError as exc:
        raise Failure(f"the registry cannot be reached: {exc}", EXIT_UNREACHABLE) from None
    except ProtocolError as exc:
        raise Failure(f"bad reply from the registry {where}: {exc}", EXIT_ALTERED) from None
    response = exchange.response
    if response.rcode != Rcode.NOERROR:
        meanings = _MEANINGS.get(response.rcode, {})
        meaning = meanings.get(kind, meanings.get(None, "the request failed"))
        raise Failure(f"the registry {where} answered {rcode_to_text(response.rcode)}: "
                      f"{meaning}", _EXIT_BY_RCODE.get(response.rcode, EXIT_SERVER_ERROR))
    digest = hashlib.sha256(envelope).digest()
    try:
        _, payload = m.update_payload(response)
    except FormError as exc:
        raise Failure(f"the registry {where} sent no answer: {exc}", EXIT_ALTERED) from None
    return _read_answer(payload, target.keys, digest, where)


def _read_answer(payload: bytes, keys: RegistryKeys, digest: bytes, where: str) -> m.Answer:
    problem = "it is not signed by the registry's key"
    for key in keys.sign:
        try:
            return m.read_answer(payload, key, digest)
        except NotAuth as exc:
            problem = str(exc)
        except FormError as exc:
            raise Failure(f"the answer from {where} is malformed: {exc}", EXIT_ALTERED) from None
    raise Failure(f"the answer from {where} is not the registry's: {problem}", EXIT_FORGED)


# -- mails --------------------------------------------------------------------------
def _read_mail(mailfile: str) -> bytes:
    """The registry attachment of the mail in `mailfile` (``-``: stdin)."""
    try:
        if mailfile == "-":
            raw = sys.stdin.buffer.read(MAX_MAIL_READ)
        else:
            with open(mailfile, "rb") as f:
                raw = f.read(MAX_MAIL_READ)
    except OSError as exc:
        raise Failure(f"cannot read {mailfile}: {exc.strerror}", EXIT_MAIL) from None
    try:
        return attachment_from_mail(raw)
    except MailError as exc:
        raise Failure(f"{'standard input' if mailfile == '-' else mailfile}: {exc}",
                      EXIT_MAIL) from None


def challenge_zone(attachment: bytes, keys: OwnerKeys) -> Name:
    """The zone a challenge names, read before its signature can be checked
    (the zone says whose key to check it with); `Failure` if it is for other
    keys, does not open or is malformed."""
    try:
        recipient = msgpack.unpackb(attachment, raw=False)[0]
    except Exception:
        raise Failure("the mail's attachment is not a registry challenge", EXIT_ALTERED) from None
    own = keys.encrypt.key_id
    if isinstance(recipient, bytes) and recipient.hex() != own:
        raise Failure(f"the mail is for the key {recipient.hex()}, not for the keys in the "
                      f"directory (encryption key {own})", EXIT_OTHER_KEYS)
    try:
        plaintext = m.open_envelope(keys.encrypt_private, m.INFO_CHALLENGE, attachment,
                                    "challenge")
        body = msgpack.unpackb(plaintext, raw=False)[0]
        return Name.from_wire(msgpack.unpackb(body, raw=False)[3])
    except NotAuth:
        raise Failure("the mail's challenge does not open: altered, or not the "
                      "registry's", EXIT_ALTERED) from None
    except Exception:
        raise Failure("the mail's challenge is malformed: altered, or not the registry's",
                      EXIT_ALTERED) from None


def open_challenge(attachment: bytes, keys: OwnerKeys, registry: RegistryKeys) -> m.Challenge:
    for key in registry.sign:
        try:
            return m.open_challenge(attachment, keys.encrypt_private, key)
        except NotAuth:
            continue
        except FormError as exc:
            raise Failure(f"the mail's challenge is malformed: {exc}", EXIT_ALTERED) from None
    raise Failure("the mail is forged or altered: its challenge is not signed by the "
                  "registry's published key", EXIT_FORGED)


def mail_token(attachment: bytes) -> tuple[bytes, bytes]:
    """(request id, token) of a removal or recovery mail's attachment: the
    mail token text (docs/protocol.md 8E.6), or its 32 bytes."""
    try:
        return m.read_mail_token(attachment.decode("ascii"))
    except (UnicodeDecodeError, FormError):
        pass
    if len(attachment) == m.REQUEST_ID_SIZE + m.TOKEN_SIZE:
        return attachment[:m.REQUEST_ID_SIZE], attachment[m.REQUEST_ID_SIZE:]
    raise Failure("the mail's attachment is not a registry mail token", EXIT_MAIL)


# -- arguments -------------------------------------------------------------------------
def _address(text: str) -> Name:
    try:
        name = Name.from_text(text if text.endswith(".") else text + ".")
    except ProtocolError as exc:
        raise Failure(f"{text!r} is not an address: {exc}", EXIT_USAGE) from None
    if not name.is_mailbox:
        raise Failure(f"{text!r} is not an address (local@domain)", EXIT_USAGE)
    return name


def _endpoint(text: str | None, option: str) -> Endpoint | None:
    if text is None:
        return None
    try:
        return parse_endpoint(text)
    except ValueError as exc:
        raise Failure(f"{option}: {exc}", EXIT_USAGE) from None


def _resolver(text: str | None) -> Endpoint:
    """--resolver, else client.toml's server, else dig's default (the demo's resolver)."""
    from .clientconfig import client_config_path, load_client_config
    from .dig import DEFAULT_SERVER

    if text is not None:
        return _endpoint(text, "--resolver")  # type: ignore[return-value]
    try:
        config = load_client_config(client_config_path())
    except KeyresolveError as exc:
        raise Failure(str(exc), EXIT_USAGE) from None
    return config.server or DEFAULT_SERVER


def _trio(async_fn, *args):
    return run_trio(async_fn, *args)


def _when(seconds: int) -> str:
    """A duration as the config writes it: whole days, hours, minutes or seconds."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


_SERVER_HELP = ("The primary to send to, HOST:PORT (default: the SOA MNAME's ADDR of "
                "the address's zone, through the resolver).")
_RESOLVER_HELP = ("The resolver, HOST:PORT (default: server in client.toml, else "
                  "127.0.0.1:5353).")
_PASSPHRASE_HELP = ("0600 file whose first line is the passphrase of encrypted key files "
                    "(default: asked).")


def _keys_option(required: bool = True):
    return click.option("--keys", "keys_dir", required=required, default=None,
                        type=click.Path(file_okay=False, path_type=Path),
                        help="Directory of the owner's private keys (keyresolve keygen --out).")


def _common(function):
    for option in reversed([
            click.option("--server", default=None, metavar="HOST:PORT", help=_SERVER_HELP),
            click.option("--resolver", default=None, metavar="HOST:PORT", help=_RESOLVER_HELP),
            click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
                         default=None, help=_PASSPHRASE_HELP)]):
        function = option(function)
    return function


_EXIT_HELP = "\n\n\b\nExit status:\n" + "\n".join(f"  {code:<3} {text}" for code, text in (
    (0, "done"),
    (EXIT_ERROR, "another error (a file that cannot be read or written)"),
    (EXIT_USAGE, "usage error"),
    (EXIT_PASSPHRASE, "wrong passphrase (of the key files or of the backup)"),
    (EXIT_KEYS, "no X25519 and Ed25519 private keys in the key directory"),
    (EXIT_FORGED, "a forged mail or answer: not signed by the registry's published key"),
    (EXIT_ALTERED, "an altered mail or answer: it does not open or is malformed"),
    (EXIT_UNREACHABLE, "no reply from the resolver or the server"),
    (EXIT_INTERNAL, "internal error"),
    (EXIT_OTHER_KEYS, "the mail is for other keys than those in the key directory"),
    (EXIT_NOT_FOUND, "the zone, its primary or the registry's keys cannot be found"),
    (EXIT_REFUSED, "the registry answered REFUSED"),
    (EXIT_NOTAUTH, "the registry answered NOTAUTH"),
    (EXIT_FORMERR, "the registry answered FORMERR"),
    (EXIT_SERVER_ERROR, "the registry answered another error (NOTIMP, SERVFAIL)"),
    (EXIT_EXPIRED, "the mail's challenge expired"),
    (EXIT_MAIL, "the mail cannot be read or holds no registry attachment")))


# -- register ---------------------------------------------------------------------------
class _RegisterGroup(click.Group):
    """``register ADDRESS ...`` and ``register confirm|renew ...``: anything
    but a subcommand or --help goes to the hidden ``publish`` command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["publish", *args]
        return super().parse_args(ctx, args)


@main.group(cls=_RegisterGroup, invoke_without_command=False,
            help="Publish keys for an address: keyresolve register ADDRESS --keys DIR "
                 "[--server HOST:PORT] [--backup]; then answer the mail with "
                 "keyresolve register confirm --keys DIR MAILFILE."
                 "\n\nThe request, signed by the signing key being registered and sealed to "
                 "the registry's key, goes to the primary of the address's zone; the "
                 "registry mails the address a challenge only the encryption key opens."
                 + _EXIT_HELP,
            short_help="Publish keys for an address (confirmed by mail).")
def register() -> None:
    pass


class _PublishCommand(click.Command):
    """``register ADDRESS``: its usage line without the hidden name."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        path = ctx.command_path.rsplit(" ", 1)[0]
        formatter.write_usage(path, "ADDRESS --keys DIR [OPTIONS]")


@register.command("publish", hidden=True, cls=_PublishCommand,
                  help="Ask the registry to publish the keys in DIR for ADDRESS." + _EXIT_HELP)
@click.argument("address")
@_keys_option()
@_common
@click.option("--backup", is_flag=True,
              help="Store the private keys on the server, sealed under a recovery passphrase "
                   "the server never sees (keyresolve recover gets them back).")
@click.option("--recovery-passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="File whose first line is the recovery passphrase "
                                 "(default: asked twice).")
def register_publish(address: str, keys_dir: Path, server: str | None, resolver: str | None,
                     passphrase_file: Path | None, backup: bool,
                     recovery_passphrase_file: Path | None) -> None:
    _run(_register, address, keys_dir, server, resolver, passphrase_file, backup,
         recovery_passphrase_file)


def _register(address_text, keys_dir, server_text, resolver_text, passphrase_file, backup,
              recovery_file) -> None:
    address = _address(address_text)
    server, resolver = _endpoint(server_text, "--server"), _resolver(resolver_text)
    if recovery_file is not None and not backup:
        raise Failure("--recovery-passphrase-file goes with --backup", EXIT_USAGE)
    keys = load_owner_keys(keys_dir, address, PassphraseSource(passphrase_file))
    sealed = None
    if backup:
        secret = _passphrase(recovery_file, "recovery passphrase", confirm=True)
        sealed = backups.seal_keys(backups.BackedUpKeys(address, keys.encrypt_private,
                                                        keys.sign_private), secret,
                                   secrets.token_bytes(keyfile.SALT_SIZE))
    target = _trio(locate, address, server, resolver)
    answer = _trio(send, target, m.Kind.REGISTER,
                   m.register_fields(address, keys.encrypt, keys.sign, sealed),
                   keys.sign_private)
    if answer.kind != m.AnswerKind.ACCEPTED:
        raise Failure(f"the registry answered {answer.kind.name}, not ACCEPTED", EXIT_SERVER_ERROR)
    plain = _plain(address)
    click.echo(f"registry {format_endpoint(target.server)} (zone {target.zone.to_text()}) "
               f"accepted the request for {plain}")
    click.echo(f"  encryption key {keys.encrypt.key_id}, signing key {keys.sign.key_id}"
               + (", with a backup" if backup else ""))
    click.echo(f"A confirmation mail was sent to {plain} if it may register these keys (the "
               "registry answers the same either way).")
    click.echo(f"Answer it within {_when(answer.expires_in or 0)}: "
               "keyresolve register confirm --keys DIR MAILFILE")


def _answer_mail(keys_dir: Path, mailfile: str, server_text: str | None,
                 resolver_text: str | None, passphrase_file: Path | None,
                 purpose: m.Kind) -> None:
    server, resolver = _endpoint(server_text, "--server"), _resolver(resolver_text)
    attachment = _read_mail(mailfile)
    keys = load_owner_keys(keys_dir, None, PassphraseSource(passphrase_file))
    zone = challenge_zone(attachment, keys)
    registry = (_trio(partial(registry_keys, rd=False, what="server"), zone, server) if server
                else _trio(partial(registry_keys, rd=True, what="resolver"), zone, resolver))
    challenge = open_challenge(attachment, keys, registry)
    if not challenge.address.is_subdomain(challenge.zone):
        raise Failure(f"the mail is forged: {_plain(challenge.address)} is not in the zone "
                      f"{challenge.zone.to_text()} it names", EXIT_FORGED)
    if server is None:  # the zone's keys checked the mail: is it the address's zone?
        found, _ = _trio(partial(find_zone, rd=True, what="resolver"), challenge.address,
                         resolver)
        if found != challenge.zone:
            raise Failure(f"the mail is forged: it names the zone {challenge.zone.to_text()}, "
                          f"but {_plain(challenge.address)} is in {found.to_text()}",
                          EXIT_FORGED)
    if challenge.purpose != purpose:
        command = "register renew" if challenge.purpose == m.Kind.RENEW else "register confirm"
        raise Failure(f"this mail is answered by keyresolve {command}", EXIT_USAGE)
    if challenge.expires < time.time():
        raise Failure(f"the challenge expired at {_utc(challenge.expires)}"
                      + ("; register again" if purpose == m.Kind.CONFIRM else ""), EXIT_EXPIRED)
    ours = {m.key_id_bytes(keys.encrypt), m.key_id_bytes(keys.sign)}
    if set(challenge.added) != ours:
        raise Failure(f"the mail is about the keys {_ids(challenge.added)}, not the keys in "
                      "the directory", EXIT_OTHER_KEYS)
    target = Target(challenge.zone, server or (challenge.server.host, challenge.server.port),
                    registry)
    answer = _trio(send, target, purpose, m.token_fields(challenge.request_id, challenge.token),
                   keys.sign_private)
    plain = _plain(challenge.address)
    if purpose == m.Kind.CONFIRM and answer.kind == m.AnswerKind.PUBLISHED:
        click.echo(f"published {plain} in {challenge.zone.to_text()} at serial {answer.serial}")
        click.echo(f"  keys {_ids(answer.added)}")
        if answer.replaced:
            click.echo(f"  replacing {_ids(answer.replaced)}")
    elif purpose == m.Kind.RENEW and answer.kind == m.AnswerKind.RENEWED:
        click.echo(f"renewed {plain}: keys {_ids(answer.added)} kept; next check after "
                   f"{_utc(answer.next_check or 0)}")
    else:
        raise Failure(f"the registry answered {answer.kind.name}", EXIT_SERVER_ERROR)


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


@register.command("confirm", help="Answer the confirmation mail: MAILFILE as received "
                                  "(- for standard input). The mail names the server to "
                                  "answer; --server overrides." + _EXIT_HELP)
@click.argument("mailfile")
@_keys_option()
@_common
def register_confirm(mailfile: str, keys_dir: Path, server: str | None, resolver: str | None,
                     passphrase_file: Path | None) -> None:
    _run(_answer_mail, keys_dir, mailfile, server, resolver, passphrase_file, m.Kind.CONFIRM)


@register.command("renew", help="Answer a re-verification mail (MAILFILE as received, - for "
                                "standard input) with the registered keys: they stay "
                                "published." + _EXIT_HELP)
@click.argument("mailfile")
@_keys_option()
@_common
def register_renew(mailfile: str, keys_dir: Path, server: str | None, resolver: str | None,
                   passphrase_file: Path | None) -> None:
    _run(_answer_mail, keys_dir, mailfile, server, resolver, passphrase_file, m.Kind.RENEW)


# -- unregister -----------------------------------------------------------------------
@main.command(help="Withdraw the keys of ADDRESS: signed with the registered key (--keys "
                   "DIR), or, for an owner who lost them, by mail: --by-mail asks for a "
                   "token, --by-mail --confirm MAILFILE sends it back." + _EXIT_HELP,
              short_help="Withdraw the keys of an address.")
@click.argument("address")
@_keys_option(required=False)
@_common
@click.option("--by-mail", is_flag=True, help="Without the keys: confirm by a mailed token.")
@click.option("--confirm", "mailfile", default=None, metavar="MAILFILE",
              help="With --by-mail: the removal mail as received (- for standard input).")
def unregister(address: str, keys_dir: Path | None, server: str | None, resolver: str | None,
               passphrase_file: Path | None, by_mail: bool, mailfile: str | None) -> None:
    _run(_unregister, address, keys_dir, server, resolver, passphrase_file, by_mail, mailfile)


def _unregister(address_text, keys_dir, server_text, resolver_text, passphrase_file, by_mail,
                mailfile) -> None:
    address = _address(address_text)
    if by_mail == (keys_dir is not None):
        raise Failure("give --keys DIR, or --by-mail (for an owner without the keys)",
                      EXIT_USAGE)
    if mailfile is not None and not by_mail:
        raise Failure("--confirm goes with --by-mail", EXIT_USAGE)
    server, resolver = _endpoint(server_text, "--server"), _resolver(resolver_text)
    plain = _plain(address)
    if by_mail and mailfile is None:
        target = _trio(locate, address, server, resolver)
        answer = _trio(send, target, m.Kind.UNREGISTER_MAIL, m.address_fields(address))
        _accepted(answer, target, plain, "a removal token",
                  f"keyresolve unregister {plain} --by-mail --confirm MAILFILE")
        return
    if by_mail:
        request_id, token = mail_token(_read_mail(mailfile))
        target = _trio(locate, address, server, resolver)
        answer = _trio(send, target, m.Kind.UNREGISTER_CONFIRM,
                       m.token_fields(request_id, token))
    else:
        keys = load_owner_keys(keys_dir, address, PassphraseSource(passphrase_file))
        target = _trio(locate, address, server, resolver)
        answer = _trio(send, target, m.Kind.UNREGISTER, m.address_fields(address),
                       keys.sign_private)
    if answer.kind != m.AnswerKind.WITHDRAWN:
        raise Failure(f"the registry answered {answer.kind.name}, not WITHDRAWN", EXIT_SERVER_ERROR)
    click.echo(f"withdrew the keys of {plain} from {target.zone.to_text()} at serial "
               f"{answer.serial}: {_ids(answer.replaced)}")


def _accepted(answer: m.Answer, target: Target, plain: str, what: str, command: str) -> None:
    if answer.kind != m.AnswerKind.ACCEPTED:
        raise Failure(f"the registry answered {answer.kind.name}, not ACCEPTED", EXIT_SERVER_ERROR)
    click.echo(f"registry {format_endpoint(target.server)} (zone {target.zone.to_text()}) "
               f"accepted the request for {plain}")
    click.echo(f"A mail with {what} was sent to {plain} if it has registered keys (the "
               "registry answers the same either way).")
    click.echo(f"Answer it within {_when(answer.expires_in or 0)}: {command}")


# -- recover ------------------------------------------------------------------------------
@main.command(help="Get back the private keys of ADDRESS backed up with register --backup: "
                   "first without --confirm (the registry mails a token), then with "
                   "--confirm MAILFILE --out DIR; the backup is opened here with the "
                   "recovery passphrase." + _EXIT_HELP,
              short_help="Recover backed-up keys by mail token.")
@click.argument("address")
@click.option("--server", default=None, metavar="HOST:PORT", help=_SERVER_HELP)
@click.option("--resolver", default=None, metavar="HOST:PORT", help=_RESOLVER_HELP)
@click.option("--confirm", "mailfile", default=None, metavar="MAILFILE",
              help="The recovery mail as received (- for standard input).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="With --confirm: directory to write the keys into, created "
                                 "0700 (default: the current one, as keygen's).")
@click.option("--recovery-passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="File whose first line is the recovery passphrase "
                                 "(default: asked).")
def recover(address: str, server: str | None, resolver: str | None, mailfile: str | None,
            out_dir: Path | None, recovery_passphrase_file: Path | None) -> None:
    _run(_recover, address, server, resolver, mailfile, out_dir, recovery_passphrase_file)


def _recover(address_text, server_text, resolver_text, mailfile, out_dir, recovery_file) -> None:
    address = _address(address_text)
    if mailfile is None and out_dir is not None:
        raise Failure("--out DIR goes with --confirm MAILFILE", EXIT_USAGE)
    out_dir = Path(".") if out_dir is None else out_dir  # as keygen's --out
    server, resolver = _endpoint(server_text, "--server"), _resolver(resolver_text)
    plain = _plain(address)
    if mailfile is None:
        target = _trio(locate, address, server, resolver)
        answer = _trio(send, target, m.Kind.RECOVER, m.address_fields(address))
        _accepted(answer, target, plain, "a recovery token",
                  f"keyresolve recover {plain} --confirm MAILFILE [--out DIR]")
        return
    from .keygen import key_path, make_key_dir, write_private_key

    request_id, token = mail_token(_read_mail(mailfile))
    secret = _passphrase(recovery_file, "recovery passphrase")
    reply = X25519PrivateKey.generate()
    target = _trio(locate, address, server, resolver)
    answer = _trio(send, target, m.Kind.RECOVER_CONFIRM,
                   m.token_fields(request_id, token, reply.public_key().public_bytes_raw()))
    if answer.kind != m.AnswerKind.RECOVERED or answer.backup is None:
        raise Failure(f"the registry answered {answer.kind.name}, not RECOVERED", EXIT_SERVER_ERROR)
    try:
        sealed = m.open_backup(reply, answer.backup)
    except ProtocolError:
        raise Failure("the backup in the answer does not open", EXIT_ALTERED) from None
    try:
        keys = backups.open_keys(sealed, secret)
    except WrongPassphrase:
        raise Failure("the recovery passphrase does not open the backup", EXIT_PASSPHRASE) from None
    except backups.BackupError as exc:
        raise Failure(f"the backup is damaged: {exc}", EXIT_ALTERED) from None
    if keys.address != address:
        raise Failure(f"the backup holds the keys of {_plain(keys.address)}", EXIT_ALTERED)
    written = []
    owner = OwnerKeys(keys.encrypt, keys.sign)
    for algorithm, private in ((owner.encrypt.algorithm, keys.encrypt),
                               (KeyAlgorithm.ED25519, keys.sign)):
        if isinstance(private, hpke.HybridPrivateKey):
            pem = hybrid_seed_to_pem(private.seed_bytes())
        else:
            pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        written.append((key_path(out_dir, plain, algorithm),
                        keyfile.encrypt(pem, secret, secrets.token_bytes(keyfile.SALT_SIZE))))
    for path, _ in written:
        if path.exists():
            raise Failure(f"{path} exists; refusing to overwrite a private key", EXIT_ERROR)
    make_key_dir(out_dir)
    for path, data in written:
        write_private_key(path, data)
    click.echo(f"recovered the keys of {plain}: encryption key {owner.encrypt.key_id}, "
               f"signing key {owner.sign.key_id}")
    click.echo(f"  written to {', '.join(str(path) for path, _ in written)}, encrypted under "
               "the recovery passphrase")


__all__ = ["Failure", "OwnerKeys", "RegistryKeys", "Target", "challenge_zone", "find_primary",
           "find_zone", "load_owner_keys", "locate", "mail_token", "open_challenge",
           "registry_keys", "send"]
