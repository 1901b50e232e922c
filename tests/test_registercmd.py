"""The owner's commands (keyresolve register, register confirm/renew,
unregister, recover) against real daemons: a root and an example.com
`serve`, a `resolver`, and a registry primary answering UPDATE with the
registry's state machine (registry.state.Registry) on a real TCP socket,
whose mails the tests write to files as a mail client saves them."""

from __future__ import annotations

import base64
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from keyresolve.cli import registercmd as rc
from keyresolve.cli.commands import main
from keyresolve.client import backup
from keyresolve.protocol.errors import ProtocolError
from keyresolve.protocol.message import FrameReader, Message, frame
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import ADDR
from keyresolve.registry import messages as m
from keyresolve.registry.mails import COMMANDS, MailKind, make_mail
from keyresolve.registry.state import ChallengeMail, Limits, Registry, TokenMail

from .conftest import keyresolve_cmd
from .registry_fixtures import REGISTRY, STRANGER
from .test_resolver_e2e import endpoint, start_auth, start_resolver

ZONE = Name.from_text("example.com.")
#: Re-verification period of the test registry: a test moves its clock by it.
REVERIFY = 100


class RegistryPrimary:
    """The registry side of a primary: UPDATE over TCP, answered by a
    `Registry` with the fixed registry keys; changes committed at once (a
    serial counting up); mails kept in `mails` for the test to deliver."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()[:2]
        self.offset = 0  # seconds added to the registry's clock
        self.serial = 1
        self.mails: list = []
        self.lock = threading.Lock()
        self.registry = Registry(zones=[ZONE], private=REGISTRY.x, signer=REGISTRY.ed,
                                 server=ADDR.parse(endpoint(self.address)),
                                 clock=lambda: int(time.time()) + self.offset,
                                 random=secrets.token_bytes,
                                 limits=Limits(reverify_every=REVERIFY))
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                reader = FrameReader()
                while (data := reader.next_frame()) is None:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    reader.receive_data(chunk)
                if data is not None:
                    conn.sendall(frame(self._answer(Message.from_wire(data)).to_wire()))

    def _answer(self, msg: Message) -> Message:
        with self.lock:
            try:
                zone, envelope = m.update_payload(msg)
                outcome = self.registry.handle(zone, envelope)
            except ProtocolError as exc:
                return m.make_update_answer(msg, None, exc.rcode)
            if outcome.mail is not None:
                self.mails.append(outcome.mail)
            if outcome.change is not None:
                if outcome.change.op is not m.LogOp.RENEW:
                    self.serial += 1
                self.registry.apply(outcome.change.log_entry(self.serial))
            answer = outcome.finish(self.serial)
            return m.make_update_answer(msg, m.make_answer(answer, REGISTRY.ed))

    def due(self) -> None:
        """Move the clock one re-verification period on; queue what is due."""
        with self.lock:
            self.offset += REVERIFY
            for action in self.registry.due():
                if action.mail is not None:
                    self.mails.append(action.mail)
                if action.change is not None:
                    self.serial += 1
                    self.registry.apply(action.change.log_entry(self.serial))

    def stop(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


def mail_file(path: Path, mail, *, lf: bool = True) -> Path:
    """The registry's mail `mail` as a mail client saves it (LF line ends)."""
    if isinstance(mail, ChallengeMail):
        kind = MailKind.CONFIRM if mail.purpose == m.Kind.CONFIRM else MailKind.REVERIFY
        attachment = mail.attachment
        ids = [i.hex() for i in mail.added]
    else:
        assert isinstance(mail, TokenMail)
        kind = MailKind.REMOVAL if mail.purpose == m.Kind.UNREGISTER_CONFIRM else MailKind.RECOVERY
        attachment, ids = mail.token.encode(), []
    raw = make_mail(kind, sender="keys@example.com", recipient=mail.address.to_text()[:-1],
                    date=datetime.now(timezone.utc), unique="0123456789abcdef" + str(time.time_ns()),
                    attachment=attachment, key_ids=ids,
                    expires=datetime.fromtimestamp(mail.expires, timezone.utc))
    path.write_bytes(raw.replace(b"\r\n", b"\n") if lf else raw)
    return path


def start_root(start_daemon, directory: Path, example):
    """The root zone (delegating example.com, and publishing a stranger's
    keys at its apex: a parent zone that is not the address's registry) and
    the zone plain. (no registry keys), served by one daemon."""
    directory.mkdir()
    zones = {"root.zone": f"""$ORIGIN .
$TTL 3600
@ SOA a.root-servers. hostmaster@root-servers. 1 3600 600 86400 60
@ NS a.root-servers.
@ KEY x25519 encrypt {base64.b64encode(STRANGER.encrypt.key).decode()}
@ KEY ed25519 sign {base64.b64encode(STRANGER.sign.key).decode()}
a.root-servers. ADDR {{self}}
example.com. NS ns1.example.com.
ns1.example.com. ADDR {endpoint(example)}
plain. NS a.root-servers.
""", "plain.zone": """$ORIGIN plain.
$TTL 3600
@ SOA a.root-servers. hostmaster@root-servers. 1 3600 600 86400 60
@ NS a.root-servers.
"""}
    for name, text in zones.items():
        (directory / name).write_text(text.replace("{self}", "127.0.0.1:9"))
    (directory / "serve.toml").write_text(
        'listen = ["127.0.0.1:0"]\ndata_dir = "data"\n'
        '[[zones]]\nname = "."\nfile = "root.zone"\nserial_policy = "increment"\n'
        '[[zones]]\nname = "plain"\nfile = "plain.zone"\n')
    daemon = start_daemon("serve", "--config", str(directory / "serve.toml"), cwd=directory)
    (directory / "root.zone").write_text(zones["root.zone"].replace("{self}",
                                                                    endpoint(daemon.address)))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(r"zone \. loaded: serial 2")
    return daemon


@pytest.fixture
def world(tmp_path, start_daemon):
    """root -> example.com (registry keys at its apex, SOA MNAME primary.example.com
    whose ADDR is the registry primary), a resolver, and the registry primary."""
    primary = RegistryPrimary()
    example = start_auth(start_daemon, tmp_path / "example", "example.com", f"""$ORIGIN example.com.
$TTL 3600
@ SOA primary hostmaster@ 1 3600 600 86400 60
@ NS ns1
@ KEY x25519 encrypt {base64.b64encode(REGISTRY.encrypt.key).decode()}
@ KEY ed25519 sign {base64.b64encode(REGISTRY.sign.key).decode()}
ns1 ADDR {{self}}
primary ADDR {endpoint(primary.address)}
""")
    root = start_root(start_daemon, tmp_path / "root", example.address)
    resolver = start_resolver(start_daemon, tmp_path / "resolver",
                              [("a.root-servers.", root.address)])

    class World:
        pass

    w = World()
    w.primary, w.example, w.resolver, w.dir = primary, example, resolver, tmp_path
    w.at = endpoint(resolver.address)
    yield w
    primary.stop()


def cli(*args: str, input: bytes | None = None):
    """Run the CLI in this process (fast); returns click's Result."""
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


#: The line every command prints for key files not encrypted (the tests'
#: keys mostly are not); `said` leaves it out of what an error printed.
UNENCRYPTED = re.compile(r"keyresolve: warning: \d+ private key files? (is|are) not encrypted in ")


def said(output: str) -> list[str]:
    """The lines of `output` other than the unencrypted-keys warning."""
    return [line for line in output.splitlines() if not UNENCRYPTED.match(line)]


def keygen(directory: Path, address: str, *args: str) -> Path:
    """The pair an address registers, as `keyresolve keygen` makes it."""
    result = cli("keygen", address, "--out", str(directory), *args)
    assert result.exit_code == 0, result.output
    return directory


def secret_file(path: Path, text: str) -> Path:
    """A passphrase file, 0600 as the commands require."""
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


# -- primary discovery ----------------------------------------------------------------
def test_the_primary_is_the_soa_mname_address_through_the_resolver(world):
    for text in ("alice@example.com.", "nobody.yet@example.com."):  # exists or not
        zone, server = trio.run(rc.find_primary, Name.from_text(text), world.resolver.address)
        assert (zone, server) == (ZONE, world.primary.address)
    target = trio.run(rc.locate, Name.from_text("alice@example.com."), None,
                      world.resolver.address)
    assert target.server == world.primary.address
    assert (target.keys.encrypt, target.keys.sign) == (REGISTRY.encrypt, (REGISTRY.sign,))


def test_with_server_the_zone_and_keys_are_asked_of_it(world):
    target = trio.run(rc.locate, Name.from_text("alice@example.com."), world.example.address,
                      world.resolver.address)
    assert (target.zone, target.server) == (ZONE, world.example.address)
    assert target.keys.encrypt == REGISTRY.encrypt


def test_a_zone_without_registry_keys_and_an_unreachable_resolver(world, tmp_path):
    keys = keygen(tmp_path / "keys", "someone@plain")
    out = cli("register", "someone@plain", "--keys", str(keys), "--resolver", world.at)
    assert out.exit_code == rc.EXIT_NOT_FOUND
    assert len(said(out.output)) == 1 and "publishes no registry keys" in out.output
    out = cli("register", "someone@plain", "--keys", str(keys), "--server",
              endpoint(world.example.address))
    assert out.exit_code == rc.EXIT_NOT_FOUND and "answered REFUSED" in out.output, out.output
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    out = cli("register", "someone@plain", "--keys", str(keys), "--resolver", f"127.0.0.1:{port}")
    assert out.exit_code == rc.EXIT_UNREACHABLE and len(said(out.output)) == 1
    out = cli("register", "someone@plain", "--keys", str(keys), "--server", f"127.0.0.1:{port}")
    assert out.exit_code == rc.EXIT_UNREACHABLE and "server cannot be reached" in out.output
    world.primary.stop()  # found through the resolver, but down
    keys = keygen(tmp_path / "alice", "alice@example.com")
    out = cli("register", "alice@example.com", "--keys", str(keys), "--resolver", world.at)
    assert out.exit_code == rc.EXIT_UNREACHABLE, out.output
    assert "registry cannot be reached" in out.output and len(said(out.output)) == 1


# -- argument errors (no daemon) ------------------------------------------------------
@pytest.mark.parametrize("args, code, says", [
    (["register", "alice@example.com", "--keys", "{missing}"], rc.EXIT_KEYS, "no key directory"),
    (["register", "alice@example.com", "--keys", "{empty}"], rc.EXIT_KEYS, "no private keys"),
    (["register", "alice.example.com", "--keys", "{empty}"], rc.EXIT_USAGE, "not an address"),
    (["register", "alice@example.com", "--keys", "{empty}", "--server", "nowhere"],
     rc.EXIT_USAGE, "--server"),
    (["register", "alice@example.com", "--keys", "{empty}", "--resolver", "1.2.3.4"],
     rc.EXIT_USAGE, "--resolver"),
    (["register", "alice@example.com", "--keys", "{empty}", "--recovery-passphrase-file",
      "{empty}/p"], rc.EXIT_USAGE, "goes with --backup"),
    (["unregister", "alice@example.com"], rc.EXIT_USAGE, "--keys DIR, or --by-mail"),
    (["unregister", "alice@example.com", "--keys", "{empty}", "--by-mail"], rc.EXIT_USAGE,
     "--keys DIR, or --by-mail"),
    (["unregister", "alice@example.com", "--keys", "{empty}", "--confirm", "x"], rc.EXIT_USAGE,
     "--confirm goes with --by-mail"),
    (["recover", "alice@example.com", "--out", "x"], rc.EXIT_USAGE, "goes with --confirm"),
    (["register", "confirm", "--keys", "{empty}", "{missing}"], rc.EXIT_MAIL, "cannot read"),
    (["register", "confirm", "--keys", "{empty}", "{notmail}"], rc.EXIT_MAIL,
     "no keyresolve attachment"),
])
def test_argument_errors_are_one_line_with_their_status(tmp_path, args, code, says):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notmail").write_text("Subject: hello\n\nnot a registry mail\n")
    args = [a.format(missing=tmp_path / "missing", empty=tmp_path / "empty",
                     notmail=tmp_path / "notmail") for a in args]
    out = cli(*args)
    assert out.exit_code == code, out.output
    assert says in out.output and len(said(out.output)) == 1
    assert "Traceback" not in out.output


def test_encrypted_key_files_need_the_right_passphrase(tmp_path):
    right = secret_file(tmp_path / "right", "right horse battery")
    wrong = secret_file(tmp_path / "wrong", "wrong horse battery")
    keys = keygen(tmp_path / "keys", "alice@example.com", "--passphrase-file", str(right))
    out = cli("register", "alice@example.com", "--keys", str(keys), "--passphrase-file",
              str(wrong))
    assert out.exit_code == rc.EXIT_PASSPHRASE and "wrong passphrase" in out.output
    assert "horse" not in out.output and len(said(out.output)) == 1
    loaded = rc.load_owner_keys(keys, Name.from_text("alice@example.com."),
                                rc.PassphraseSource(right))
    listed = cli("keygen", "bob@example.com", "--out", str(tmp_path / "bob")).output
    assert loaded.encrypt.key_id != rc.load_owner_keys(tmp_path / "bob").encrypt.key_id
    assert "bob@example.com" in listed


def test_encrypted_key_files_ask_the_passphrase_once_as_open_does(tmp_path):
    """keygen --passphrase encrypts both files: register and unregister ask
    the passphrase once for the directory, in the words open asks it for
    the same directory (one loader, privatekeys.load_keys), print no
    unencrypted-files warning, and take a wrong one typed as exit 3."""
    from keyresolve.cli.keygen import make_keys
    from keyresolve.client import keyfile
    from keyresolve.protocol.records import KeyAlgorithm

    right = secret_file(tmp_path / "right", "right horse battery")
    keys = tmp_path / "keys"  # as keygen --passphrase writes them, with a quick KDF
    make_keys(Name.from_text("alice@example.com"), (KeyAlgorithm.X25519, KeyAlgorithm.ED25519),
              keys, "right horse battery", keyfile.KdfParams(iterations=1, memory_kib=8, lanes=1))
    prompt = f"Passphrase for the keys of alice@example.com in {keys}"
    asked: list[str] = []
    loaded = rc.load_owner_keys(keys, None, rc.PassphraseSource(
        prompt=lambda text: asked.append(text) or "right horse battery"))
    assert asked == [prompt]
    again = rc.load_owner_keys(keys, None, rc.PassphraseSource(right))
    assert (loaded.encrypt, loaded.sign) == (again.encrypt, again.sign)

    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # keys load before sending
    closed.bind(("127.0.0.1", 0))
    server = f"127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    for command in (["register"], ["unregister"]):
        out = cli(*command, "alice@example.com", "--keys", str(keys), "--server", server,
                  input=b"right horse battery\n")
        assert out.exit_code == rc.EXIT_UNREACHABLE, out.output
        assert out.output.count("Passphrase for") == 1 and prompt in out.output
        assert "not encrypted" not in out.output and "horse" not in out.output
        out = cli(*command, "alice@example.com", "--keys", str(keys), "--server", server,
                  input=b"wrong horse battery\n")
        assert out.exit_code == rc.EXIT_PASSPHRASE, out.output
        assert out.output.count("Passphrase for") == 1
        assert said(out.output)[-1].startswith("keyresolve: wrong passphrase for ")

    ring = ["--keyring", str(tmp_path / "ring")]
    assert cli("keyring", "add", "alice@example.com", str(keys), "--passphrase-file",
               str(right), *ring).exit_code == 0
    (tmp_path / "hello").write_bytes(b"hello\n")
    assert cli("seal", str(tmp_path / "hello"), "--to", "alice@example.com", *ring, "-o",
               str(tmp_path / "sealed")).exit_code == 0
    out = cli("open", str(tmp_path / "sealed"), "--keys", str(keys), *ring, "-o",
              str(tmp_path / "opened"), input=b"right horse battery\n")
    assert out.exit_code == 0, out.output
    assert out.output.count("Passphrase for") == 1 and prompt in out.output

    (keys / "alice@example.com.ed25519.pem").chmod(0o640)  # refused as open refuses it
    out = cli("register", "alice@example.com", "--keys", str(keys), "--server", server,
              "--passphrase-file", str(right))
    opened = cli("open", str(tmp_path / "sealed"), "--keys", str(keys), *ring, "-o",
                 str(tmp_path / "opened2"), "--passphrase-file", str(right))
    assert out.exit_code == opened.exit_code == rc.EXIT_ERROR, out.output
    assert said(out.output) == said(opened.output) and "chmod 600" in out.output


def test_a_pq_key_directory_loads_encrypted_and_a_mixed_one_is_refused(tmp_path):
    """keygen --pq's pair loads (encrypted, with its passphrase) as the owner's
    keys, and through privatekeys.load_keys as seal and open use it; a
    directory holding both an x25519 and an mlkem768x25519 key is refused."""
    from keyresolve.cli.privatekeys import PassphraseSource, load_keys
    from keyresolve.protocol.records import KeyAlgorithm

    right = secret_file(tmp_path / "right", "right horse battery")
    keys = keygen(tmp_path / "keys", "alice@example.com", "--pq", "--passphrase-file",
                  str(right))
    loaded = rc.load_owner_keys(keys, None, rc.PassphraseSource(right))
    assert loaded.encrypt.algorithm == KeyAlgorithm.MLKEM768X25519
    assert len(loaded.encrypt.key) == 1216
    own = load_keys(keys, PassphraseSource(right))
    assert [k.algorithm for k in own.keys] == [KeyAlgorithm.ED25519, KeyAlgorithm.MLKEM768X25519]
    assert own.identities[0].public_key == loaded.encrypt.key
    assert "horse" not in repr(loaded) and repr(loaded.encrypt_private) == "HybridPrivateKey(...)"
    out = cli("keygen", "alice@example.com", "--algorithm", "x25519", "--out", str(keys))
    assert out.exit_code == 0, out.output
    out = cli("register", "alice@example.com", "--keys", str(keys), "--passphrase-file",
              str(right))
    assert out.exit_code == rc.EXIT_KEYS and "both an x25519 and an mlkem768x25519" in out.output
    assert len(said(out.output)) == 1
    out = cli("keygen", "bob@example.com", "--pq", "--algorithm", "x25519", "--out",
              str(tmp_path / "bob"))
    assert out.exit_code == 2 and "--pq or --algorithm" in out.output


# -- the whole flow -------------------------------------------------------------------
def _last_mail(world, kind):
    assert world.primary.mails, "the registry sent no mail"
    mail = world.primary.mails.pop()
    assert isinstance(mail, kind)
    return mail


def test_register_confirm_unregister(world, tmp_path):
    keys = keygen(tmp_path / "keys", "alice@example.com")
    out = cli("register", "alice@example.com", "--keys", str(keys), "--resolver", world.at)
    assert out.exit_code == 0, out.output
    assert "accepted" in out.output and "confirmation mail was sent to alice@example.com if" \
        in out.output
    mail = mail_file(tmp_path / "confirm.eml", _last_mail(world, ChallengeMail))

    other = keygen(tmp_path / "other", "alice@example.com")  # not the keys registered
    out = cli("register", "confirm", "--keys", str(other), str(mail), "--resolver", world.at)
    assert out.exit_code == rc.EXIT_OTHER_KEYS and "not for the keys" in out.output

    out = cli("register", "renew", "--keys", str(keys), str(mail), "--resolver", world.at)
    assert out.exit_code == rc.EXIT_USAGE and "register confirm" in out.output, out.output

    out = cli("register", "confirm", "--keys", str(keys), str(mail), "--resolver", world.at)
    assert out.exit_code == 0, out.output
    assert re.search(r"published alice@example.com in example.com. at serial 2", out.output)
    registration = world.primary.registry.registrations[Name.from_text("alice@example.com.")]
    assert {k.hex() for k in registration.key_ids} <= set(re.findall(r"[0-9a-f]{16}",
                                                                     out.output))

    out = cli("register", "confirm", "--keys", str(keys), str(mail), "--resolver", world.at)
    assert out.exit_code == rc.EXIT_NOTAUTH and "already answered" in out.output  # replay

    out = cli("unregister", "alice@example.com", "--keys", str(other), "--resolver", world.at)
    assert out.exit_code == rc.EXIT_NOTAUTH and "registered key" in out.output
    out = cli("unregister", "alice@example.com", "--keys", str(keys), "--resolver", world.at)
    assert out.exit_code == 0, out.output
    assert "withdrew the keys of alice@example.com from example.com. at serial 3" in out.output
    assert Name.from_text("alice@example.com.") not in world.primary.registry.registrations


def test_confirm_reads_the_mail_from_stdin_in_a_real_process(world, tmp_path):
    keys = keygen(tmp_path / "keys", "carol@example.com")
    assert cli("register", "carol@example.com", "--keys", str(keys), "--resolver",
               world.at).exit_code == 0
    mail = mail_file(tmp_path / "m.eml", _last_mail(world, ChallengeMail), lf=False)
    done = subprocess.run(keyresolve_cmd("register", "confirm", "--keys", str(keys), "-",
                                         "--resolver", world.at),
                          input=mail.read_bytes(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert b"published carol@example.com" in done.stdout and not said(done.stderr.decode())


def _forge(attachment_of, tmp_path, world, keys) -> Path:
    """A confirmation mail whose attachment `attachment_of(challenge mail)` makes."""
    assert cli("register", "dave@example.com", "--keys", str(keys), "--resolver",
               world.at).exit_code == 0
    mail = _last_mail(world, ChallengeMail)
    forged = ChallengeMail(mail.zone, mail.address, mail.purpose, mail.added, mail.replaced,
                           mail.expires, attachment_of(mail))
    return mail_file(tmp_path / "forged.eml", forged)


def test_a_forged_mail_is_rejected(world, tmp_path):
    keys = keygen(tmp_path / "keys", "dave@example.com")
    owner = rc.load_owner_keys(keys)

    def signed_by_a_stranger(mail):
        challenge = m.Challenge(m.Kind.CONFIRM, bytes(16), bytes(16), ZONE, mail.address,
                                mail.added, (), mail.expires, ADDR.parse("127.0.0.1:9"))
        return m.make_challenge(challenge, owner.encrypt, STRANGER.ed, secrets.token_bytes)

    out = cli("register", "confirm", "--keys", str(keys),
              str(_forge(signed_by_a_stranger, tmp_path, world, keys)), "--resolver", world.at)
    assert out.exit_code == rc.EXIT_FORGED and "forged" in out.output
    assert len(said(out.output)) == 1


def test_a_mail_signed_by_another_zones_keys_is_rejected(world, tmp_path):
    """A parent zone's keys (the root publishes a stranger's) verify the
    mail's signature, but the address's zone is example.com: forged."""
    keys = keygen(tmp_path / "keys", "dave@example.com")
    owner = rc.load_owner_keys(keys)

    def signed_for_the_root(mail):
        challenge = m.Challenge(m.Kind.CONFIRM, bytes(16), bytes(16), Name.from_text("."),
                                mail.address, mail.added, (), mail.expires,
                                ADDR.parse("127.0.0.1:9"))
        return m.make_challenge(challenge, owner.encrypt, STRANGER.ed, secrets.token_bytes)

    out = cli("register", "confirm", "--keys", str(keys),
              str(_forge(signed_for_the_root, tmp_path, world, keys)), "--resolver", world.at)
    assert out.exit_code == rc.EXIT_FORGED, out.output
    assert "names the zone . but dave@example.com is in example.com." in out.output.replace(
        ",", "")


@pytest.mark.parametrize("where, code", [
    (-1, rc.EXIT_ALTERED),  # the AEAD tag
    (-40, rc.EXIT_ALTERED),  # the ciphertext
    (12, rc.EXIT_ALTERED),  # the length of the sealed bytes
    (5, rc.EXIT_OTHER_KEYS),  # the recipient key id: then it is for another key
])
def test_a_tampered_mail_is_rejected(world, tmp_path, where, code):
    keys = keygen(tmp_path / "keys", "dave@example.com")

    def flipped(mail):
        data = bytearray(mail.attachment)
        data[where] ^= 0x01
        return bytes(data)

    out = cli("register", "confirm", "--keys", str(keys), str(_forge(flipped, tmp_path, world,
                                                                     keys)),
              "--resolver", world.at)
    assert out.exit_code == code, out.output
    assert len(said(out.output)) == 1 and "Traceback" not in out.output
    assert not world.primary.registry.registrations


def test_an_expired_challenge_is_refused_before_sending(world, tmp_path):
    keys = keygen(tmp_path / "keys", "erin@example.com")
    owner = rc.load_owner_keys(keys)
    past = int(time.time()) - 10
    challenge = m.Challenge(m.Kind.CONFIRM, bytes(16), bytes(16), ZONE,
                            Name.from_text("erin@example.com."),
                            (m.key_id_bytes(owner.encrypt), m.key_id_bytes(owner.sign)), (),
                            past, ADDR.parse(endpoint(world.primary.address)))
    mail = ChallengeMail(ZONE, challenge.address, m.Kind.CONFIRM, challenge.added, (), past,
                         m.make_challenge(challenge, owner.encrypt, REGISTRY.ed, secrets.token_bytes))
    out = cli("register", "confirm", "--keys", str(keys), str(mail_file(tmp_path / "x", mail)),
              "--resolver", world.at)
    assert out.exit_code == rc.EXIT_EXPIRED and "expired" in out.output


def test_renew_answers_a_reverification(world, tmp_path):
    keys = keygen(tmp_path / "keys", "frank@example.com")
    assert cli("register", "frank@example.com", "--keys", str(keys), "--resolver",
               world.at).exit_code == 0
    confirm = mail_file(tmp_path / "c.eml", _last_mail(world, ChallengeMail))
    assert cli("register", "confirm", "--keys", str(keys), str(confirm), "--resolver",
               world.at).exit_code == 0
    world.primary.due()
    reverify = mail_file(tmp_path / "r.eml", _last_mail(world, ChallengeMail))
    out = cli("register", "renew", "--keys", str(keys), str(reverify), "--resolver", world.at)
    assert out.exit_code == 0, out.output
    assert "renewed frank@example.com" in out.output and "kept" in out.output


def test_removal_by_mail(world, tmp_path):
    keys = keygen(tmp_path / "keys", "gina@example.com")
    assert cli("register", "gina@example.com", "--keys", str(keys), "--resolver",
               world.at).exit_code == 0
    confirm = mail_file(tmp_path / "c.eml", _last_mail(world, ChallengeMail))
    assert cli("register", "confirm", "--keys", str(keys), str(confirm), "--resolver",
               world.at).exit_code == 0
    out = cli("unregister", "gina@example.com", "--by-mail", "--resolver", world.at)
    assert out.exit_code == 0, out.output
    assert "removal token was sent to gina@example.com if" in out.output
    removal = mail_file(tmp_path / "rm.eml", _last_mail(world, TokenMail))
    out = cli("unregister", "gina@example.com", "--by-mail", "--confirm", str(removal),
              "--resolver", world.at)
    assert out.exit_code == 0, out.output
    assert "withdrew the keys of gina@example.com" in out.output
    out = cli("unregister", "gina@example.com", "--by-mail", "--confirm", str(removal),
              "--resolver", world.at)
    assert out.exit_code == rc.EXIT_NOTAUTH and "token" in out.output


def test_recover_with_backup(world, tmp_path):
    keys = keygen(tmp_path / "keys", "hal@example.com")
    secret_file(tmp_path / "pass", "correct horse battery staple")
    secret_file(tmp_path / "wrong", "incorrect horse")
    out = cli("register", "hal@example.com", "--keys", str(keys), "--resolver", world.at,
              "--backup", "--recovery-passphrase-file", str(tmp_path / "pass"))
    assert out.exit_code == 0 and "with a backup" in out.output
    confirm = mail_file(tmp_path / "c.eml", _last_mail(world, ChallengeMail))
    assert cli("register", "confirm", "--keys", str(keys), str(confirm), "--resolver",
               world.at).exit_code == 0
    stored = world.primary.registry.registrations[Name.from_text("hal@example.com.")].backup
    from keyresolve.client import keyfile

    assert keyfile.is_encrypted(stored)  # the registry holds it sealed, not the keys

    out = cli("recover", "hal@example.com", "--resolver", world.at)
    assert out.exit_code == 0 and "recovery token" in out.output
    mail = mail_file(tmp_path / "rec.eml", _last_mail(world, TokenMail))
    out = cli("recover", "hal@example.com", "--confirm", str(mail), "--out",
              str(tmp_path / "back"), "--recovery-passphrase-file", str(tmp_path / "wrong"),
              "--resolver", world.at)
    assert out.exit_code == rc.EXIT_PASSPHRASE and "horse" not in out.output
    assert cli("recover", "hal@example.com", "--resolver", world.at).exit_code == 0
    mail = mail_file(tmp_path / "rec2.eml", _last_mail(world, TokenMail))
    out = cli("recover", "hal@example.com", "--confirm", str(mail), "--out",
              str(tmp_path / "back"), "--recovery-passphrase-file", str(tmp_path / "pass"),
              "--resolver", world.at)
    assert out.exit_code == 0, out.output
    assert "encrypted under the recovery passphrase" in out.output
    original = rc.load_owner_keys(keys)
    back = rc.load_owner_keys(tmp_path / "back", None, rc.PassphraseSource(tmp_path / "pass"))
    assert (back.encrypt, back.sign) == (original.encrypt, original.sign)
    for name in ("hal@example.com.x25519.pem", "hal@example.com.ed25519.pem"):
        assert (tmp_path / "back" / name).stat().st_mode & 0o777 == 0o600


# -- the backup format --------------------------------------------------------------------
def test_backup_round_trip_and_wrong_passphrase():
    from keyresolve.client.keyfile import KdfParams
    from keyresolve.protocol.errors import WrongPassphrase

    low = KdfParams(iterations=1, memory_kib=8, lanes=1)
    keys = backup.BackedUpKeys(Name.from_text("alice@example.com."), REGISTRY.x, REGISTRY.ed)
    sealed = backup.seal_keys(keys, "pass phrase", bytes(16), low)
    assert len(sealed) < m.MAX_BACKUP
    opened = backup.open_keys(sealed, "pass phrase")
    assert opened.address == keys.address
    assert opened.encrypt.private_bytes_raw() == REGISTRY.x.private_bytes_raw()
    assert opened.sign.private_bytes_raw() == REGISTRY.ed.private_bytes_raw()
    with pytest.raises(WrongPassphrase):
        backup.open_keys(sealed, "pass phrasE")
    for garbage in (b"", b"\x90", sealed[:-30], b"x" * 5000):
        with pytest.raises(backup.BackupError):
            backup.open_keys(garbage, "pass phrase")


def test_a_backup_of_a_hybrid_key_round_trips_and_strange_kinds_are_refused():
    import msgpack

    from keyresolve.client import keyfile
    from keyresolve.client.keyfile import KdfParams
    from keyresolve.protocol import hpke

    from .registry_fixtures import HYBRID_OWNER

    low = KdfParams(iterations=1, memory_kib=8, lanes=1)
    address = Name.from_text("alice@example.com.")
    sealed = backup.seal_keys(backup.BackedUpKeys(address, HYBRID_OWNER.x, HYBRID_OWNER.ed),
                              "pw", bytes(16), low)
    opened = backup.open_keys(sealed, "pw")
    assert isinstance(opened.encrypt, hpke.HybridPrivateKey)
    assert opened.encrypt.public_key == HYBRID_OWNER.x.public_key
    assert opened.sign.private_bytes_raw() == HYBRID_OWNER.ed.private_bytes_raw()
    seed, sign = HYBRID_OWNER.x.seed_bytes(), HYBRID_OWNER.ed.private_bytes_raw()
    for fields in ([backup.MAGIC, "alice@example.com.", seed, sign, "x448"],
                   [backup.MAGIC, "alice@example.com.", seed[:31], sign, backup.HYBRID],
                   [backup.MAGIC, "alice@example.com.", seed, sign, backup.HYBRID, 1],
                   [backup.MAGIC, "alice@example.com.", "seed", sign, backup.HYBRID]):
        strange = keyfile.encrypt(msgpack.packb(fields), "pw", bytes(16), low)
        with pytest.raises(backup.BackupError):
            backup.open_keys(strange, "pw")


def test_the_backup_vector_of_docs_registry_md_both_ways():
    from keyresolve.client.keyfile import KdfParams

    from .registry_fixtures import Pair

    doc = (Path(__file__).resolve().parent.parent / "docs" / "registry.md").read_text()
    vector = re.search(r"```backup-vector\n(.*?)```", doc, re.S).group(1).encode()
    owner = Pair.fixed(1)
    opened = backup.open_keys(vector, "correct horse battery staple")
    assert opened.address == Name.from_text("alice@example.com.")
    assert opened.encrypt.private_bytes_raw() == bytes(range(1, 33))
    assert opened.sign.private_bytes_raw() == bytes(range(101, 133))
    made = backup.seal_keys(backup.BackedUpKeys(opened.address, owner.x, owner.ed),
                            "correct horse battery staple", bytes(range(16)),
                            KdfParams(iterations=1, memory_kib=8, lanes=1))
    assert made == vector


# -- decoders, fuzzed --------------------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from keyresolve.protocol.errors import WrongPassphrase  # noqa: E402

_LOW_BACKUP = None


def _low_backup() -> bytes:
    global _LOW_BACKUP
    if _LOW_BACKUP is None:
        from keyresolve.client.keyfile import KdfParams

        keys = backup.BackedUpKeys(Name.from_text("alice@example.com."), REGISTRY.x,
                                   REGISTRY.ed)
        _LOW_BACKUP = backup.seal_keys(keys, "pw", bytes(16),
                                       KdfParams(iterations=1, memory_kib=8, lanes=1))
    return _LOW_BACKUP


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_open_keys_of_arbitrary_bytes_raises_only_its_errors(data):
    with pytest.raises((backup.BackupError, WrongPassphrase)):
        backup.open_keys(data, "pw")


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_backup_altered_anywhere_does_not_open(data):
    sealed = bytearray(_low_backup())
    where = data.draw(st.integers(0, len(sealed) - 1))
    sealed[where] ^= data.draw(st.integers(1, 255))
    try:
        opened = backup.open_keys(bytes(sealed), "pw")
    except (backup.BackupError, WrongPassphrase):
        return
    # base64 ignores some alterations (whitespace, the armour): the keys are intact
    assert opened.sign.private_bytes_raw() == REGISTRY.ed.private_bytes_raw()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=80).map(str.encode))
def test_mail_token_of_arbitrary_attachments_is_a_token_or_one_failure(data):
    try:
        request_id, token = rc.mail_token(data)
    except rc.Failure as exc:
        assert exc.code == rc.EXIT_MAIL
    else:
        assert len(request_id) == m.REQUEST_ID_SIZE and len(token) == m.TOKEN_SIZE


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_challenge_zone_of_arbitrary_attachments_is_one_failure(data):
    from .registry_fixtures import OWNER

    owner = rc.OwnerKeys(OWNER.x, OWNER.ed)
    with pytest.raises(rc.Failure) as failed:
        rc.challenge_zone(data, owner)
    assert failed.value.code in (rc.EXIT_ALTERED, rc.EXIT_OTHER_KEYS)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_an_altered_challenge_never_passes_for_the_registrys(data):
    from .registry_fixtures import OWNER

    owner = rc.OwnerKeys(OWNER.x, OWNER.ed)
    challenge = m.Challenge(m.Kind.CONFIRM, bytes(16), bytes(16), ZONE,
                            Name.from_text("alice@example.com."), (), (), 2**40,
                            ADDR.parse("127.0.0.1:9"))
    sealed = bytearray(m.make_challenge(challenge, owner.encrypt, REGISTRY.ed, secrets.token_bytes))
    where = data.draw(st.integers(0, len(sealed) - 1))
    sealed[where] ^= data.draw(st.integers(1, 255))
    keys = rc.RegistryKeys(REGISTRY.encrypt, (REGISTRY.sign,))
    with pytest.raises(rc.Failure) as failed:
        rc.challenge_zone(bytes(sealed), owner)
        rc.open_challenge(bytes(sealed), owner, keys)
    assert failed.value.code in (rc.EXIT_ALTERED, rc.EXIT_OTHER_KEYS, rc.EXIT_FORGED)


def test_the_commands_the_mails_give_are_the_commands_here():
    """mails.COMMANDS tells owners what to run: each parses here (its MAILFILE
    missing, so each ends on reading it, not on its arguments)."""
    for kind, command in COMMANDS.items():
        if command is None:
            continue
        words = command.format(address="alice@example.com").split()[1:]
        words = ["/nonexistent/dir" if w == "DIR" else w for w in words]
        words = ["/nonexistent/mail.eml" if w == "MAILFILE" else w for w in words]
        out = cli(*words)
        assert out.exit_code == rc.EXIT_MAIL and "cannot read" in out.output, (kind, out.output)


def test_unencrypted_key_files_load_with_one_warning_and_encrypted_ones_without(tmp_path):
    plain = keygen(tmp_path / "plain", "alice@example.com")
    right = secret_file(tmp_path / "right", "right horse battery")
    sealed = keygen(tmp_path / "sealed", "alice@example.com", "--passphrase-file", str(right))
    out = cli("register", "alice@example.com", "--keys", str(plain), "--server", "127.0.0.1:1")
    warned = [line for line in out.output.splitlines() if UNENCRYPTED.match(line)]
    assert len(warned) == 1 and "2 private key files are not encrypted" in warned[0]
    out = cli("register", "alice@example.com", "--keys", str(sealed), "--passphrase-file",
              str(right), "--server", "127.0.0.1:1")
    assert not [line for line in out.output.splitlines() if UNENCRYPTED.match(line)], out.output
