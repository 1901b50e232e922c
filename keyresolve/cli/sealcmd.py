"""`keyresolve seal`, `open`, `sign`, `verify` and `keyring refresh`
(docs/sealing.md): files and streams, prompts, exit statuses. The format is
keyresolve.client.seal's and envelope's, the key lookup client.lookup's.

Data is read and written in pieces of `READ_SIZE`, so memory stays flat
whatever the size. ``-o OUT`` is written to a temporary file beside OUT and
renamed onto it only once the whole input was handled (for `open`: the
message authenticated); on any failure the temporary file is removed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import click

from . import exitcodes
from ..protocol.errors import CorruptMessage, KeyresolveError, NoKey

#: Bytes read from the input at a time: 16 chunks of the format (1 MiB), so
#: the per-read cost vanishes and memory stays a few MiB.
READ_SIZE = 16 * 64 * 1024
#: Largest detached signature file `verify` reads: the format's maximum
#: (5 + 2 + 255 + 8 + 64 bytes).
MAX_SIGNATURE_FILE = 5 + 2 + 255 + 8 + 64


class ClientFailure(KeyresolveError):
    """Ends a client command with one line on stderr and exit status `code`."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def exit_code(exc: KeyresolveError) -> int:
    """The exit status of a command that failed with `exc` (exitcodes):
    the lookup's outcomes, then `exitcodes.status_for`."""
    from ..client.lookup import KeyChanged, NoKeyPublished, NoSuchAddress, ServersUnreachable

    if isinstance(exc, ClientFailure):
        return exc.code
    for kind, code in ((NoSuchAddress, exitcodes.EXIT_NO_SUCH_ADDRESS),
                       (NoKeyPublished, exitcodes.EXIT_NO_KEY),
                       (ServersUnreachable, exitcodes.EXIT_UNREACHABLE),
                       (KeyChanged, exitcodes.EXIT_KEY_CHANGED)):
        if isinstance(exc, kind):
            return code
    return exitcodes.status_for(exc)


def run_client(body: Callable[[], int]) -> None:
    """Run a command body; exit with what it returns, or with one line on
    stderr and the status of the error (never a traceback)."""
    try:
        code = body()
    except KeyresolveError as exc:
        click.echo(f"keyresolve: {exc}", err=True)
        sys.exit(exit_code(exc))
    except (KeyboardInterrupt, click.exceptions.Exit, click.ClickException):
        raise
    except BrokenPipeError:
        sys.exit(exitcodes.EXIT_ERROR)  # the reader went away
    except Exception as exc:  # a bug: one line, never a traceback
        click.echo(f"keyresolve: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(exitcodes.EXIT_INTERNAL)
    sys.exit(code)


def say(line: str) -> None:
    """One line on stderr, as every message of these commands."""
    click.echo(f"keyresolve: {line}", err=True)


# -- input and output ------------------------------------------------------------------
def open_input(path: str) -> BinaryIO:
    """The file `path`, or standard input for "-"."""
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")  # noqa: SIM115 (closed by the caller)
    except OSError as exc:
        raise ClientFailure(f"cannot read {path}: {exc.strerror}", exitcodes.EXIT_ERROR) from None


def pieces(stream: BinaryIO, first: bytes = b"") -> Iterator[bytes]:
    """`first`, then the rest of `stream` in pieces of READ_SIZE."""
    if first:
        yield first
    while True:
        try:
            data = stream.read(READ_SIZE)
        except OSError as exc:
            raise ClientFailure(f"cannot read the input: {exc.strerror}",
                                exitcodes.EXIT_ERROR) from None
        if not data:
            return
        yield data


class Output:
    """Standard output, or the file OUT written as a temporary file in its
    directory (mode 0600) that `commit` renames onto OUT; leaving the
    `with` block without `commit` (an error) removes it. With `binary`,
    standard output may not be a terminal (as age refuses)."""

    def __init__(self, path: str | None, *, binary: bool = False) -> None:
        self.path = None if path in (None, "-") else Path(path)
        self._tmp: str | None = None
        if self.path is None:
            if binary and sys.stdout.isatty():
                raise ClientFailure("refusing to write binary output to a terminal: use "
                                    "-o OUT or a pipe", exitcodes.EXIT_USAGE)
            self.stream: BinaryIO = sys.stdout.buffer
            return
        directory = self.path.parent
        try:
            fd, self._tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.",
                                             suffix=".part")
        except OSError as exc:
            raise ClientFailure(f"cannot write in {directory}: {exc.strerror}",
                                exitcodes.EXIT_ERROR) from None
        self.stream = os.fdopen(fd, "wb")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write `data` (to the temporary file when OUT was given)."""
        if data:
            try:
                self.stream.write(data)
            except BrokenPipeError:
                raise
            except OSError as exc:
                raise ClientFailure(f"cannot write {self.path or 'the output'}: "
                                    f"{exc.strerror}", exitcodes.EXIT_ERROR) from None

    def commit(self) -> None:
        """Make OUT appear, whole (or flush standard output)."""
        if self._tmp is None:
            self.stream.flush()
            return
        try:
            self.stream.flush()
            os.fsync(self.stream.fileno())
            self.stream.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            raise ClientFailure(f"cannot write {self.path}: {exc.strerror}",
                                exitcodes.EXIT_ERROR) from None
        self._tmp = None

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._tmp is not None:
            self.stream.close()
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None


# -- shared options --------------------------------------------------------------------
def client_options(command):
    """--keyring, --resolver and --passphrase-file, which every command here takes."""
    command = click.option("--passphrase-file", type=click.Path(dir_okay=False), default=None,
                           help="Read the passphrase of encrypted private keys from the "
                                "first line of this file (0600); default: ask.")(command)
    command = click.option("--resolver", "resolver_text", metavar="HOST:PORT", default=None,
                           callback=_check_resolver,
                           help="The resolver to fetch keys from (default: resolver in "
                                "client.toml, else its server, else 127.0.0.1:5353).")(command)
    command = click.option("--keyring", "keyring_path", type=click.Path(file_okay=False),
                           default=None,
                           help="The key ring directory (default: "
                                "$XDG_DATA_HOME/keyresolve/keyring).")(command)
    return command


def _check_resolver(ctx, param, text: str | None) -> str | None:
    """Refuse a bad --resolver before anything is done (a usage error)."""
    if text is not None:
        _resolver(text)
    return text


def _resolver(text: str | None):
    from ..protocol.transport import parse_endpoint
    from .clientconfig import client_config_path, client_resolver, load_client_config

    if text is not None:
        try:
            return parse_endpoint(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--resolver") from None
    return client_resolver(load_client_config(client_config_path()))


def _ring_path(path: str | None) -> Path:
    from .keyringcmd import default_keyring_dir

    return Path(path) if path is not None else default_keyring_dir()


def _lookup(ring, resolver_text: str | None, strict: bool = False):
    from .commands import run_trio
    from .keysources import make_lookup

    return make_lookup(ring, _resolver(resolver_text), run_trio, strict=strict)


def _address(text: str, option: str) -> str:
    from ..protocol.names import Name

    try:
        name = Name.from_text(text)
    except KeyresolveError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
    if not name.is_mailbox:
        raise click.BadParameter(f"{text!r} is not an address (user@domain)", param_hint=option)
    return name.to_text().rstrip(".")


def _signing_key(keys_dir: str, sign_as: str | None, passphrase_file: str | None):
    from .privatekeys import PassphraseSource, load_keys

    own = load_keys(Path(keys_dir), PassphraseSource.from_option(passphrase_file),
                    address=sign_as, warn=say)
    if own.signing is None:
        raise NoKey(f"no ed25519 signing key for {own.address} in {keys_dir} "
                    "(keyresolve keygen --algorithm ed25519 makes one)")
    return own.signing


def _identities(keys_dir: str, passphrase_file: str | None) -> list:
    """Every encryption identity of every address in `keys_dir`."""
    from .privatekeys import PassphraseSource, key_files, load_keys

    directory = Path(keys_dir)
    if not directory.is_dir():
        raise NoKey(f"no key directory {keys_dir}")
    passphrase = PassphraseSource.from_option(passphrase_file)
    identities = []
    for address in key_files(directory):
        identities += load_keys(directory, passphrase, address=address, warn=say).identities
    if not identities:
        raise NoKey(f"no x25519 or mlkem768x25519 private key in {keys_dir}")
    return identities


# -- signer verification ---------------------------------------------------------------
class UnknownSigner(ClientFailure):
    """The signer's key cannot be found (or is not the one that signed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exitcodes.EXIT_UNKNOWN_SIGNER)


def signer_key(lookup, address: str, key_id: bytes) -> bytes:
    """The Ed25519 public key of `address` with `key_id`, resolved now
    (ring, then the servers); UnknownSigner when there is none."""
    from ..client.lookup import KeyLookupError
    from ..protocol.records import KeyUsage

    wanted = key_id.hex()
    try:
        found = lookup.find(address, KeyUsage.SIGN, wanted)
    except KeyLookupError as exc:
        raise UnknownSigner(f"unknown signer {address} (key {wanted}): {exc}") from None
    for note in found.notes:
        say(note)
    for key in found.keys:
        if key.key_id == wanted:
            return key.key
    published = ", ".join(k.key_id for k in found.keys)
    raise UnknownSigner(f"unknown signer key: {address} publishes {published}, not the "
                        f"key {wanted} that signed")


def _good(address: str, key_id: bytes) -> str:
    return f"good signature from {address} (key {key_id.hex()})"


# -- seal ------------------------------------------------------------------------------
@click.command("seal")
@click.argument("input_path", metavar="[FILE|-]", default="-")
@click.option("--to", "recipients", multiple=True, required=True, metavar="ADDRESS",
              help="A recipient; repeat for several.")
@click.option("--sign-as", default=None, metavar="ADDRESS",
              help="Sign as this address, with its ed25519 key from --keys.")
@click.option("--keys", "keys_dir", type=click.Path(file_okay=False), default=None,
              help="The directory of your private keys (for --sign-as).")
@click.option("--hide-recipients", is_flag=True,
              help="Keep the recipients' key ids out of the header (Bcc).")
@click.option("--strict", is_flag=True,
              help="Refuse a key that differs from the one the key ring accepted.")
@click.option("--if-no-key", type=click.Choice(["fail", "sign-only", "request-interim"]),
              default="fail", show_default=True,
              help="For a recipient that publishes no key: fail; write a signed "
                   "envelope in clear instead (needs --sign-as); or ask for an interim "
                   "key (not available yet).")
@click.option("-o", "--output", "out", default=None, metavar="OUT",
              help="Write here (whole, or not at all) instead of standard output.")
@client_options
def seal_command(input_path: str, recipients: tuple[str, ...], sign_as: str | None,
                 keys_dir: str | None, hide_recipients: bool, strict: bool, if_no_key: str,
                 out: str | None, keyring_path: str | None, resolver_text: str | None,
                 passphrase_file: str | None) -> None:
    """Encrypt FILE (default: standard input) to each --to ADDRESS, whose
    key is found in the key ring, else through the resolver."""
    addresses = list(dict.fromkeys(_address(a, "--to") for a in recipients))
    if (sign_as is None) != (keys_dir is None):
        raise click.UsageError("--sign-as and --keys go together")
    if sign_as is not None:
        sign_as = _address(sign_as, "--sign-as")
    run_client(lambda: _seal(input_path, addresses, sign_as, keys_dir, hide_recipients, strict,
                             if_no_key, out, keyring_path, resolver_text, passphrase_file))


def _seal(input_path, addresses, sign_as, keys_dir, hide_recipients, strict, if_no_key, out,
          keyring_path, resolver_text, passphrase_file) -> int:
    from ..client.envelope import EnvelopeWriter
    from ..client.lookup import NoKeyPublished
    from ..client.seal import Sealer, make_recipient
    from .keysources import open_ring

    if if_no_key == "request-interim":
        raise ClientFailure("--if-no-key request-interim is not available yet: interim keys "
                            "are not defined (their issue is open); use fail or sign-only",
                            exitcodes.EXIT_NOT_AVAILABLE)
    if if_no_key == "sign-only" and sign_as is None:
        raise click.UsageError("--if-no-key sign-only needs --sign-as and --keys: the "
                               "envelope is signed")
    signer = None if keys_dir is None else _signing_key(keys_dir, sign_as, passphrase_file)
    recipients, keyless = [], []
    with open_ring(_ring_path(keyring_path)) as ring:
        lookup = _lookup(ring, resolver_text, strict)
        for address in addresses:
            try:
                found = lookup.find(address)
            except NoKeyPublished as exc:
                if if_no_key != "sign-only":
                    raise
                say(f"{exc}: it gets a signed envelope in clear (--if-no-key sign-only)")
                keyless.append(address)
                continue
            for note in found.notes:
                say(note)
            recipients += [make_recipient(key) for key in found.keys]
    if keyless and recipients:
        raise ClientFailure(
            f"{', '.join(keyless)}: no key, and other recipients have one: a signed envelope "
            "in clear and a sealed message are two outputs; seal to each group separately",
            exitcodes.EXIT_NO_KEY)
    source = open_input(input_path)
    with Output(out, binary=True) as output:
        if keyless:
            writer = EnvelopeWriter(signer)
        else:
            writer = Sealer(recipients, signer=signer, hide_recipients=hide_recipients)
        output.write(writer.header)
        for data in pieces(source):
            output.write(writer.update(data))
        output.write(writer.finish())
        output.commit()
    return exitcodes.EXIT_OK


# -- open ------------------------------------------------------------------------------
@click.command("open")
@click.argument("input_path", metavar="[FILE|-]", default="-")
@click.option("--keys", "keys_dir", type=click.Path(file_okay=False), default=None,
              help="The directory of your private keys (every address in it is tried).")
@click.option("-o", "--output", "out", default=None, metavar="OUT",
              help="Write the plaintext here, only once the whole message authenticated.")
@client_options
def open_command(input_path: str, keys_dir: str | None, out: str | None,
                 keyring_path: str | None, resolver_text: str | None,
                 passphrase_file: str | None) -> None:
    """Decrypt a sealed message (or read a signed envelope) and check its
    signature against the sender's key as resolved now."""
    run_client(lambda: _open(input_path, keys_dir, out, keyring_path, resolver_text,
                             passphrase_file))


def _open(input_path, keys_dir, out, keyring_path, resolver_text, passphrase_file) -> int:
    from ..client.envelope import ENVELOPE_MAGIC

    source = open_input(input_path)
    first = b""
    while len(first) < len(ENVELOPE_MAGIC):
        more = source.read(READ_SIZE)
        if not more:
            break
        first += more
    if first.startswith(ENVELOPE_MAGIC):
        return _open_envelope(source, first, out, keyring_path, resolver_text)
    if keys_dir is None:
        raise NoKey("open needs --keys DIR, the directory of your private keys")
    return _open_sealed(source, first, keys_dir, out, keyring_path, resolver_text,
                        passphrase_file)


def _open_sealed(source, first, keys_dir, out, keyring_path, resolver_text,
                 passphrase_file) -> int:
    from ..client.seal import Opener
    from .keysources import open_ring

    opener = Opener(_identities(keys_dir, passphrase_file))
    with Output(out) as output:
        for data in pieces(source, first):
            output.write(opener.update(data))
        output.write(opener.finish())
        signature = opener.signature
        if signature is None:
            output.commit()
            say("the message opened whole; it is not signed (it says nothing about who "
                "wrote it)")
            return exitcodes.EXIT_OK
        try:
            with open_ring(_ring_path(keyring_path)) as ring:
                public = signer_key(_lookup(ring, resolver_text), signature.address,
                                    signature.key_id)
        except UnknownSigner as exc:
            output.commit()  # authentic as sealed; only who wrote it is unknown
            say(str(exc))
            return exc.code
        signature.verify(public)  # BadMessageSignature: OUT is not kept
        output.commit()
    say(_good(signature.address, signature.key_id))
    return exitcodes.EXIT_OK


def _open_envelope(source, first, out, keyring_path, resolver_text) -> int:
    from ..client.envelope import EnvelopeReader
    from .keysources import open_ring

    reader = EnvelopeReader()
    with Output(out) as output:
        for data in pieces(source, first):
            output.write(reader.update(data))
        signature, digest = reader.finish()
        say(f"not encrypted: a signed envelope in clear from {signature.address}")
        with open_ring(_ring_path(keyring_path)) as ring:
            public = signer_key(_lookup(ring, resolver_text), signature.address,
                                signature.key_id)
        signature.verify(public, digest)
        output.commit()
    say(_good(signature.address, signature.key_id))
    return exitcodes.EXIT_OK


# -- sign and verify -------------------------------------------------------------------
@click.command("sign")
@click.argument("input_path", metavar="[FILE|-]", default="-")
@click.option("--keys", "keys_dir", type=click.Path(file_okay=False), required=True,
              help="The directory of your private keys.")
@click.option("--sign-as", default=None, metavar="ADDRESS",
              help="Which address signs, when --keys holds several.")
@click.option("-o", "--output", "out", default=None, metavar="OUT",
              help="Write the signature here instead of standard output.")
@client_options
def sign_command(input_path: str, keys_dir: str, sign_as: str | None, out: str | None,
                 keyring_path: str | None, resolver_text: str | None,
                 passphrase_file: str | None) -> None:
    """Write a detached signature of FILE (docs/seal-format.md 7)."""
    if sign_as is not None:
        sign_as = _address(sign_as, "--sign-as")
    run_client(lambda: _sign(input_path, keys_dir, sign_as, out, passphrase_file))


def _sign(input_path, keys_dir, sign_as, out, passphrase_file) -> int:
    from ..client.seal import data_digest, sign_detached

    signer = _signing_key(keys_dir, sign_as, passphrase_file)
    digest = data_digest()
    for data in pieces(open_input(input_path)):
        digest.update(data)
    with Output(out, binary=True) as output:
        output.write(sign_detached(signer, digest.digest()).to_wire())
        output.commit()
    return exitcodes.EXIT_OK


@click.command("verify")
@click.argument("input_path", metavar="[FILE|-]", default="-")
@click.option("--signature", "signature_path", type=click.Path(dir_okay=False),
              required=True, help="The detached signature file.")
@client_options
def verify_command(input_path: str, signature_path: str, keyring_path: str | None,
                   resolver_text: str | None, passphrase_file: str | None) -> None:
    """Check a detached signature of FILE against the signer's key as
    resolved now (key ring, then the resolver)."""
    run_client(lambda: _verify(input_path, signature_path, keyring_path, resolver_text))


def _verify(input_path, signature_path, keyring_path, resolver_text) -> int:
    from ..client.seal import DetachedSignature, data_digest
    from .keysources import open_ring

    try:
        with open(signature_path, "rb") as f:
            raw = f.read(MAX_SIGNATURE_FILE + 1)
    except OSError as exc:
        raise ClientFailure(f"cannot read {signature_path}: {exc.strerror}",
                            exitcodes.EXIT_ERROR) from None
    if len(raw) > MAX_SIGNATURE_FILE:
        raise CorruptMessage(f"{signature_path} is longer than any signature")
    signature = DetachedSignature.from_wire(raw)
    digest = data_digest()
    for data in pieces(open_input(input_path)):
        digest.update(data)
    with open_ring(_ring_path(keyring_path)) as ring:
        public = signer_key(_lookup(ring, resolver_text), signature.address, signature.key_id)
    signature.verify(public, digest.digest())
    say(_good(signature.address, signature.key_id))
    return exitcodes.EXIT_OK


# -- keyring refresh -------------------------------------------------------------------
@click.command("refresh")
@client_options
def keyring_refresh(keyring_path: str | None, resolver_text: str | None,
                    passphrase_file: str | None) -> None:
    """Fetch again every address the key ring holds fetched keys of, and
    say what changed (a changed key is kept pending until accepted)."""
    run_client(lambda: _refresh(keyring_path, resolver_text))


def _refresh(keyring_path, resolver_text) -> int:
    from ..client.lookup import FETCHED, Outcome
    from .keysources import open_ring

    unreachable = 0
    with open_ring(_ring_path(keyring_path)) as ring:
        lookup = _lookup(ring, resolver_text)
        for address in ring.addresses():
            if not any(e.source == FETCHED for e in ring.get(address)):
                continue
            answer, change = lookup.refresh(address)
            if change is not None:
                click.echo(f"{address}: {change.describe()}; kept pending: "
                           f"`keyresolve keyring accept {address}` accepts it")
            elif answer.outcome == Outcome.FOUND:
                click.echo(f"{address}: unchanged ({', '.join(k.key_id for k in answer.keys)})")
            elif answer.outcome == Outcome.UNREACHABLE:
                unreachable += 1
                click.echo(f"{address}: not refreshed: {answer.detail or 'unreachable'}")
            else:
                click.echo(f"{address}: the servers now say {answer.outcome.value}; the ring "
                           f"keeps its key (`keyresolve keyring remove {address}` drops it)")
    return exitcodes.EXIT_UNREACHABLE if unreachable else exitcodes.EXIT_OK


#: The commands `keyresolve` gains from this module (`keyring_refresh` joins
#: the keyring group).
COMMANDS = [seal_command, open_command, sign_command, verify_command]

__all__ = ["COMMANDS", "ClientFailure", "Output", "READ_SIZE", "exit_code", "keyring_refresh",
           "run_client", "signer_key"]
