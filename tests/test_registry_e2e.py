"""The registry in `keyresolve serve`, end to end: real daemons (a primary
taking registrations, a secondary following it by NOTIFY and IXFR), a real
SMTP server (aiosmtpd, `smtp_server`), requests made with the pure builders
of `keyresolve.registry.messages` and sent over TCP, mails read back as a
mail client saved them (docs/protocol.md 8E, docs/registry.md)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keyresolve.protocol.codes import Opcode, Rcode, RType
from keyresolve.protocol.errors import NotAuth
from keyresolve.protocol.message import FrameReader, Message, frame, make_query
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import KEY, KeyAlgorithm, KeyFlag, KeyUsage
from keyresolve.registry import messages as m
from keyresolve.registry.mails import attachment_from_mail

from .conftest import ask, tcp_exchange, udp_exchange
from .test_xfr_e2e import KEYS, free_port, wait_until

ZONE = Name.from_text("example.com.")
ZONE_TEXT = """$ORIGIN example.com.
$TTL 60
@ SOA ns1 hostmaster@ 1 3600 1 3600 30
@ NS ns1
ns1 ADDR 127.0.0.1:9
carol@ KEY x25519 encrypt AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
"""
#: How long a mail may take to arrive (the outbox sends at once when woken).
MAIL_BOUND = 10.0


class Owner:
    """An address's X25519 and Ed25519 key pairs."""

    def __init__(self, address: str) -> None:
        self.address = Name.from_text(address)
        self.x = X25519PrivateKey.generate()
        self.ed = Ed25519PrivateKey.generate()
        self.encrypt = KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT,
                           self.x.public_key().public_bytes_raw())
        self.sign = KEY(KeyAlgorithm.ED25519, KeyUsage.SIGN,
                        self.ed.public_key().public_bytes_raw())

    @property
    def key_set(self) -> set[bytes]:
        return {self.encrypt.key, self.sign.key}


class Registry:
    """A primary taking registrations for example.com (and serving the
    plain zone example.org), optionally a secondary following it."""

    def __init__(self, tmp_path, start_daemon, smtp_server, *, registry_extra: str = "",
                 secondary: bool = False, top_extra: str = "") -> None:
        self.tmp = tmp_path
        self.start_daemon = start_daemon
        self.smtp = smtp_server
        self.pport = free_port()
        self.sport = free_port() if secondary else None
        self.pdir = tmp_path / "primary"
        self.pdir.mkdir()
        (self.pdir / "example.com.zone").write_text(ZONE_TEXT)
        (self.pdir / "example.org.zone").write_text(
            ZONE_TEXT.replace("example.com.", "example.org."))
        notify = f'notify = ["127.0.0.1:{self.sport}"]\n' if secondary else ""
        self.config = self.pdir / "serve.toml"
        self.config.write_text(
            f'listen = ["127.0.0.1:{self.pport}"]\ndata_dir = "data"\n{top_extra}{KEYS}'
            f'[registry]\nsmtp = "127.0.0.1:{smtp_server.port}"\nfrom = "keys@example.com"\n'
            f'mail_interval = "1s"\n{registry_extra}\n'
            f'[[zones]]\nname = "example.com"\nfile = "example.com.zone"\nregistration = true\n'
            f'allow_transfer = ["xfer"]\nkey = "xfer"\n{notify}'
            f'[[zones]]\nname = "example.org"\nfile = "example.org.zone"\n')
        self.primary = self.secondary = None
        self.ids = iter(range(1, 1 << 16))
        if secondary:
            self.sdir = tmp_path / "secondary"
            self.sdir.mkdir()
            (self.sdir / "serve.toml").write_text(
                f'listen = ["127.0.0.1:{self.sport}"]\ndata_dir = "data"\n{KEYS}'
                f'[[zones]]\nname = "example.com"\nprimaries = ["127.0.0.1:{self.pport}"]\n'
                f'key = "xfer"\n')

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.pport

    def start(self, **kwargs):
        self.primary = self.start_daemon("serve", "--config", str(self.config), cwd=self.pdir,
                                         **kwargs)
        self.registry_keys()
        return self.primary

    def start_secondary(self):
        self.secondary = self.start_daemon("serve", "--config", str(self.sdir / "serve.toml"),
                                           cwd=self.sdir)
        self.secondary.wait_for(r"transfer in example\.com\. .*full")
        return self.secondary

    def registry_keys(self) -> None:
        """The registry's KEYs, resolved at the zone apex."""
        reply = ask(self.address, make_query(ZONE, RType.KEY))
        keys = {r.rdata.algorithm: r.rdata for r in reply.answer if r.rtype == RType.KEY}
        self.encrypt_key = keys[KeyAlgorithm.X25519]
        self.sign_key = keys[KeyAlgorithm.ED25519]

    # -- requests --------------------------------------------------------------
    def envelope(self, kind: m.Kind, fields: list, signer=None, *, zone: Name = ZONE,
                 when: int | None = None) -> bytes:
        return m.make_request(kind, zone, fields, registry_key=self.encrypt_key,
                              time=int(time.time()) if when is None else when, signer=signer,
                              random=secrets.token_bytes)

    def send(self, envelope: bytes, *, zone: Name = ZONE,
             udp: bool = False) -> tuple[int, m.Answer | None]:
        """(rcode, the checked answer or None)."""
        query = m.make_update(zone, envelope, next(self.ids))
        exchange = udp_exchange if udp else tcp_exchange
        reply = Message.from_wire(exchange(self.address, query.to_wire()))
        assert reply.opcode == Opcode.UPDATE and reply.id == query.id
        if reply.rcode != Rcode.NOERROR:
            assert not reply.answer
            return reply.rcode, None
        _, payload = m.update_payload(reply)
        return reply.rcode, m.read_answer(payload, self.sign_key,
                                          hashlib.sha256(envelope).digest())

    def register(self, owner: Owner, signer=None) -> m.Answer:
        rcode, answer = self.send(self.envelope(
            m.Kind.REGISTER, m.register_fields(owner.address, owner.encrypt, owner.sign),
            signer or owner.ed))
        assert rcode == Rcode.NOERROR and answer.kind == m.AnswerKind.ACCEPTED
        return answer

    def answer_challenge(self, challenge: m.Challenge, signer) -> tuple[int, m.Answer | None]:
        return self.send(self.envelope(challenge.purpose,
                                       m.token_fields(challenge.request_id, challenge.token),
                                       signer))

    # -- mail ------------------------------------------------------------------
    def next_mail(self, count: int = 1, bound: float = MAIL_BOUND) -> bytes:
        """The content of the `count`-th mail received (waiting for it)."""
        wait_until(lambda: len(self.smtp.received) >= count, bound)
        return self.smtp.received[count - 1].content

    def challenge(self, mail: bytes, owner: Owner) -> m.Challenge:
        return m.open_challenge(attachment_from_mail(mail), owner.x, self.sign_key)

    def published(self, owner: Owner, port: int | None = None) -> set[bytes]:
        """The key bytes answered at the owner's address with the REGISTERED flag."""
        reply = ask(("127.0.0.1", port or self.pport), make_query(owner.address, RType.KEY))
        return {r.rdata.key for r in reply.answer
                if r.rtype == RType.KEY and r.rdata.flags & KeyFlag.REGISTERED}


@pytest.fixture
def registry(tmp_path, start_daemon, smtp_server):
    reg = Registry(tmp_path, start_daemon, smtp_server)
    reg.start()
    return reg


def confirm(reg: Registry, owner: Owner, count: int) -> m.Answer:
    """Register `owner`, read the `count`-th mail, confirm: the PUBLISHED answer."""
    reg.register(owner)
    challenge = reg.challenge(reg.next_mail(count), owner)
    assert challenge.purpose == m.Kind.CONFIRM and challenge.address == owner.address
    assert challenge.server.port == reg.pport
    rcode, answer = reg.answer_challenge(challenge, owner.ed)
    assert rcode == Rcode.NOERROR and answer.kind == m.AnswerKind.PUBLISHED, rcode
    return answer


# -- the flow ------------------------------------------------------------------------
def test_the_registry_key_pair_is_made_owner_only_and_published(registry):
    key_dir = registry.pdir / "registry-keys"
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    files = sorted(os.listdir(key_dir))
    assert files == ["registry.ed25519.pem", "registry.x25519.pem"]
    for name in files:
        assert stat.S_IMODE((key_dir / name).stat().st_mode) == 0o600
    assert "PRIVATE" not in registry.primary.log
    assert registry.encrypt_key.usage == KeyUsage.ENCRYPT


def test_register_confirm_publishes_at_the_primary_and_the_secondary(
        tmp_path, start_daemon, smtp_server):
    reg = Registry(tmp_path, start_daemon, smtp_server, secondary=True)
    reg.start()
    reg.start_secondary()
    alice = Owner("alice@example.com")
    answer = confirm(reg, alice, 1)
    mail = smtp_server.received[0]
    assert mail.rcpt_tos == ["alice@example.com"] and mail.mail_from == "keys@example.com"
    assert answer.address == alice.address and answer.serial > 1
    assert reg.published(alice) == alice.key_set
    wait_until(lambda: reg.published(alice, reg.sport) == alice.key_set)
    reg.secondary.wait_logged(r"transfer in example\.com\. .*incremental")
    # the challenge was used up: a replay of the confirmation gets NOTAUTH
    challenge = reg.challenge(reg.next_mail(1), alice)
    assert reg.answer_challenge(challenge, alice.ed)[0] == Rcode.NOTAUTH


def test_concurrent_confirmations_share_commits_and_all_reach_the_secondary(
        tmp_path, start_daemon, smtp_server):
    """Confirmations arriving together are committed as a group (one
    serial for several), and the secondary, NOTIFYed once per group at
    most, ends up serving every key."""
    reg = Registry(tmp_path, start_daemon, smtp_server, secondary=True)
    reg.start()
    reg.start_secondary()
    owners = [Owner(f"group{i}@example.com") for i in range(8)]
    envelopes = []
    for count, owner in enumerate(owners, 1):
        reg.register(owner)
        challenge = reg.challenge(reg.next_mail(count), owner)
        envelopes.append(reg.envelope(challenge.purpose, m.token_fields(
            challenge.request_id, challenge.token), owner.ed))
    conns = [socket.create_connection(reg.address, timeout=MAIL_BOUND) for _ in owners]
    try:
        for msg_id, (conn, envelope) in enumerate(zip(conns, envelopes), 1):
            conn.sendall(frame(m.make_update(ZONE, envelope, msg_id).to_wire()))
        serials = []
        for conn, envelope in zip(conns, envelopes):
            reader = FrameReader()
            while (data := reader.next_frame()) is None:
                chunk = conn.recv(65536)
                assert chunk, "the primary closed the connection"
                reader.receive_data(chunk)
            reply = Message.from_wire(data)
            assert reply.rcode == Rcode.NOERROR
            answer = m.read_answer(m.update_payload(reply)[1], reg.sign_key,
                                   hashlib.sha256(envelope).digest())
            assert answer.kind == m.AnswerKind.PUBLISHED
            serials.append(answer.serial)
    finally:
        for conn in conns:
            conn.close()
    assert len(set(serials)) < len(owners)  # grouped: fewer commits than confirmations
    for owner in owners:
        assert reg.published(owner) == owner.key_set
        wait_until(lambda owner=owner: reg.published(owner, reg.sport) == owner.key_set)


def test_a_confirmation_with_other_keys_or_a_forged_mail_publishes_nothing(registry):
    alice, mallory = Owner("alice@example.com"), Owner("mallory@example.com")
    registry.register(alice)
    mail = registry.next_mail(1)
    challenge = registry.challenge(mail, alice)
    # signed by another key: NOTAUTH, and the challenge stays for the owner
    assert registry.answer_challenge(challenge, mallory.ed)[0] == Rcode.NOTAUTH
    # a forged token
    forged = m.Challenge(challenge.purpose, challenge.request_id, bytes(16), challenge.zone,
                         challenge.address, challenge.added, challenge.replaced,
                         challenge.expires, challenge.server)
    assert registry.answer_challenge(forged, alice.ed)[0] == Rcode.NOTAUTH
    # a mail forged by someone else: its challenge does not verify for the tool
    fake = m.make_challenge(challenge, alice.encrypt, mallory.ed, secrets.token_bytes)
    with pytest.raises(NotAuth):
        m.open_challenge(fake, alice.x, registry.sign_key)
    assert registry.published(alice) == set()
    rcode, answer = registry.answer_challenge(challenge, alice.ed)
    assert rcode == Rcode.NOERROR and registry.published(alice) == alice.key_set


def test_a_replayed_request_is_refused(registry):
    alice = Owner("alice@example.com")
    envelope = registry.envelope(m.Kind.REGISTER,
                                 m.register_fields(alice.address, alice.encrypt, alice.sign),
                                 alice.ed)
    assert registry.send(envelope)[0] == Rcode.NOERROR
    assert registry.send(envelope)[0] == Rcode.NOTAUTH
    old = registry.envelope(m.Kind.REGISTER,
                            m.register_fields(alice.address, alice.encrypt, alice.sign),
                            alice.ed, when=int(time.time()) - 3600)
    assert registry.send(old)[0] == Rcode.NOTAUTH


def test_replace_then_unregister_with_the_wrong_then_the_right_key(registry):
    alice = Owner("alice@example.com")
    first = confirm(registry, alice, 1)
    new = Owner("alice@example.com")
    time.sleep(1.1)  # mail_interval = 1s: one mail per address per second
    registry.register(new)
    challenge = registry.challenge(registry.next_mail(2), new)
    assert set(challenge.replaced) == set(first.added)
    assert registry.published(alice) == alice.key_set  # never before the confirmation
    rcode, answer = registry.answer_challenge(challenge, new.ed)
    assert rcode == Rcode.NOERROR and set(answer.replaced) == set(first.added)
    assert registry.published(new) == new.key_set
    unregister = m.address_fields(new.address)
    assert registry.send(registry.envelope(m.Kind.UNREGISTER, unregister, alice.ed))[0] \
        == Rcode.NOTAUTH
    assert registry.published(new) == new.key_set
    rcode, answer = registry.send(registry.envelope(m.Kind.UNREGISTER, unregister, new.ed))
    assert rcode == Rcode.NOERROR and answer.kind == m.AnswerKind.WITHDRAWN
    assert answer.serial > first.serial
    assert registry.published(new) == set()


def test_the_challenge_names_the_public_address_and_is_answered_there(
        tmp_path, start_daemon, smtp_server):
    """`public_address` (here the second of two listen addresses) is what a
    challenge mail names, and where its answer publishes the keys."""
    reg = Registry(tmp_path, start_daemon, smtp_server)
    text = reg.config.read_text()
    reg.config.write_text(text.replace(
        f'listen = ["127.0.0.1:{reg.pport}"]',
        f'listen = ["127.0.0.1:{reg.pport}", "127.0.0.2:{reg.pport}"]').replace(
        'mail_interval = "1s"\n',
        f'mail_interval = "1s"\npublic_address = "127.0.0.2:{reg.pport}"\n'))
    reg.start()
    alice = Owner("alice@example.com")
    reg.register(alice)
    challenge = reg.challenge(reg.next_mail(), alice)
    assert (str(challenge.server.address), challenge.server.port) == ("127.0.0.2", reg.pport)
    envelope = reg.envelope(challenge.purpose, m.token_fields(challenge.request_id,
                                                             challenge.token), alice.ed)
    query = m.make_update(ZONE, envelope, 7)
    reply = Message.from_wire(tcp_exchange(("127.0.0.2", reg.pport), query.to_wire()))
    answer = m.read_answer(m.update_payload(reply)[1], reg.sign_key,
                           hashlib.sha256(envelope).digest())
    assert answer.kind == m.AnswerKind.PUBLISHED and reg.published(alice) == alice.key_set


def test_requests_for_other_zones_get_notauth(registry):
    alice = Owner("alice@example.org")
    for zone in (Name.from_text("example.org."), Name.from_text("example.net.")):
        envelope = registry.envelope(m.Kind.REGISTER,
                                     m.register_fields(alice.address, alice.encrypt,
                                                       alice.sign), alice.ed, zone=zone)
        assert registry.send(envelope, zone=zone)[0] == Rcode.NOTAUTH


def test_mutated_update_messages_never_end_the_daemon(registry):
    alice = Owner("alice@example.com")
    envelope = registry.envelope(m.Kind.REGISTER,
                                 m.register_fields(alice.address, alice.encrypt, alice.sign),
                                 alice.ed)
    wire = bytearray(m.make_update(ZONE, envelope, 7).to_wire())
    rng = random.Random(20)
    rcodes = set()
    for _ in range(200):
        mutated = bytearray(wire)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            reply = Message.from_wire(tcp_exchange(registry.address, bytes(mutated)))
        except (ConnectionError, OSError, TimeoutError):
            continue  # dropped: not a message
        rcodes.add(reply.rcode)
        assert reply.rcode == Rcode.NOERROR or not reply.answer
    assert rcodes <= {Rcode.NOERROR, Rcode.FORMERR, Rcode.NOTAUTH, Rcode.NOTIMP,
                      Rcode.REFUSED, Rcode.BADVERS}
    assert registry.published(alice) == set()  # and the daemon still answers


def test_a_flood_of_registrations_is_bounded(registry):
    from keyresolve.authority.ratelimit import UPDATE_BURST

    owner = Owner("x@example.com")
    rcodes = []
    for i in range(UPDATE_BURST + 20):
        address = Name.from_text(f"r{i}-{random.randrange(1 << 30)}@example.com")
        envelope = registry.envelope(m.Kind.REGISTER,
                                     m.register_fields(address, owner.encrypt, owner.sign),
                                     owner.ed)
        rcodes.append(registry.send(envelope)[0])
    accepted = rcodes.count(Rcode.NOERROR)
    assert UPDATE_BURST <= accepted <= UPDATE_BURST + 5  # refilled at 1 a second
    assert set(rcodes) == {Rcode.NOERROR, Rcode.REFUSED}
    # one key at one address: the same keys for many addresses are mailed once at most
    wait_until(lambda: len(registry.smtp.received) >= 1)
    time.sleep(0.5)
    assert len(registry.smtp.received) <= accepted
    status = control_status(registry)
    assert status["registry_pending"] == accepted  # bounded by the limit, not the flood
    assert status["registry_rate_limited"] == len(rcodes) - accepted
    assert status["registrations"] == 0
    assert status["mails_queued"] <= accepted


def control_status(registry: Registry) -> dict:
    from keyresolve.protocol.codes import ControlCommand
    from keyresolve.protocol.control import make_request, parse_result

    reply = Message.from_wire(tcp_exchange(registry.address,
                                           make_request(ControlCommand.STATUS).to_wire()))
    return dict(parse_result(reply))


# -- durability ----------------------------------------------------------------------
def test_restart_and_sighup_keep_every_registration(tmp_path, start_daemon, smtp_server):
    reg = Registry(tmp_path, start_daemon, smtp_server)
    reg.start()
    alice, bob = Owner("alice@example.com"), Owner("bob@example.com")
    confirm(reg, alice, 1)
    confirm(reg, bob, 2)
    # the zone file changes and is reloaded: the registrations stay
    (reg.pdir / "example.com.zone").write_text(
        ZONE_TEXT.replace(" 1 3600", " 2 3600") + "dave@ KEY x25519 encrypt "
        "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n")
    reg.primary.signal(signal.SIGHUP)
    reg.primary.wait_for(r"zone example\.com\. loaded")
    assert reg.published(alice) == alice.key_set and reg.published(bob) == bob.key_set
    assert reg.primary.stop() == 0
    reg.start()
    assert reg.published(alice) == alice.key_set and reg.published(bob) == bob.key_set
    reg.primary.wait_logged(r"registry: 2 registrations")
    # the rebuilt state knows the keys: unregistering works after the restart
    rcode, _ = reg.send(reg.envelope(m.Kind.UNREGISTER, m.address_fields(bob.address),
                                     bob.ed))
    assert rcode == Rcode.NOERROR and reg.published(bob) == set()


def test_a_zone_file_with_a_key_at_a_registered_address_is_a_reload_error(registry):
    alice = Owner("alice@example.com")
    confirm(registry, alice, 1)
    registry.primary.expect_error(r"zone example\.com\. not loaded: .*example\.com\.zone:7: "
                                  r"KEY at alice@example\.com\., a registered address")
    (registry.pdir / "example.com.zone").write_text(
        ZONE_TEXT.replace(" 1 3600", " 2 3600") + "alice@ KEY x25519 encrypt "
        "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n")
    registry.primary.signal(signal.SIGHUP)
    registry.primary.wait_for(r"zone example\.com\. not loaded")
    assert registry.published(alice) == alice.key_set


# -- mail ----------------------------------------------------------------------------
def registered_while_smtp_is_down(tmp_path, start_daemon, smtp_server,
                                  deferred: str = "") -> tuple[Registry, Owner]:
    """A registry whose SMTP server is down, and alice registered: her mail
    is queued and deferred (the log line matching `deferred` too)."""
    smtp_server.stop()
    reg = Registry(tmp_path, start_daemon, smtp_server)
    reg.start()
    alice = Owner("alice@example.com")
    reg.register(alice)  # answered: the mail is queued
    reg.primary.wait_for(r"mail 0 to alice@example\.com deferred" + deferred)
    return reg, alice


def test_the_mail_of_a_registration_made_while_smtp_was_down_arrives(
        tmp_path, start_daemon, smtp_server):
    reg, alice = registered_while_smtp_is_down(tmp_path, start_daemon, smtp_server)
    smtp_server.start()
    # a restart tries the queue at once (no mail is lost across it either)
    assert reg.primary.stop() == 0
    reg.start()
    reg.primary.wait_for(r"mail 0 to alice@example\.com sent")
    challenge = reg.challenge(reg.next_mail(1), alice)
    assert challenge.address == alice.address


def ctl_json(reg: Registry, *args: str) -> dict:
    """`keyresolve ctl --json ARGS` to the primary: the result fields."""
    done = subprocess.run([sys.executable, "-m", "keyresolve", "ctl", "--json", *args,
                           "--server", f"127.0.0.1:{reg.pport}"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)["result"]


def test_ctl_mail_flush_sends_the_mail_queued_while_smtp_was_down_without_a_restart(
        tmp_path, start_daemon, smtp_server):
    reg, alice = registered_while_smtp_is_down(tmp_path, start_daemon, smtp_server,
                                               deferred=r" .*next try in 60 s")
    assert ctl_json(reg, "status")["mails_queued"] == 1
    smtp_server.start()
    # the next try is a minute away: the flush makes it now
    assert ctl_json(reg, "mail-flush") == {"mails_queued": 1, "result": "trying them now"}
    challenge = reg.challenge(reg.next_mail(1), alice)
    assert challenge.address == alice.address
    reg.primary.wait_for(r"mail 0 to alice@example\.com sent")
    assert ctl_json(reg, "status")["mails_queued"] == 0
    assert ctl_json(reg, "mail-flush")["mails_queued"] == 0


# -- the mailboxes file ------------------------------------------------------------------
def test_the_mailboxes_file_restricts_who_registers_and_a_reload_changes_it(
        tmp_path, start_daemon, smtp_server):
    mailboxes = tmp_path / "primary" / "mailboxes"
    reg = Registry(tmp_path, start_daemon, smtp_server, registry_extra='mailboxes = "mailboxes"\n')
    mailboxes.write_text("# who may register\nalice\nteam-*\n")
    reg.start()
    reg.primary.wait_logged(r"registry: mailboxes .*mailboxes: 1 local parts and 1 patterns")
    alice, bob, ops = Owner("alice@example.com"), Owner("bob@example.com"), \
        Owner("team-ops@example.com")

    def register(owner: Owner) -> int:
        return reg.send(reg.envelope(m.Kind.REGISTER, m.register_fields(
            owner.address, owner.encrypt, owner.sign), owner.ed))[0]

    confirm(reg, alice, 1)
    assert register(bob) == Rcode.REFUSED  # no mail, nothing else said
    assert register(ops) == Rcode.NOERROR
    reg.next_mail(2)  # team-ops's: queued after bob's refusal, so bob's would be before it
    assert [r.rcpt_tos for r in smtp_server.received] == [["alice@example.com"],
                                                         ["team-ops@example.com"]]
    # a new file, read on SIGHUP: bob may, alice may not register any more
    mailboxes.write_text("bob\n")
    reg.primary.signal(signal.SIGHUP)
    reg.primary.wait_for(r"registry: mailboxes .*mailboxes: 1 local parts and 0 patterns")
    reg.primary.wait_for(r"reload done")
    assert register(bob) == Rcode.NOERROR
    assert reg.challenge(reg.next_mail(3), bob).address == bob.address
    assert register(alice) == Rcode.REFUSED and register(ops) == Rcode.REFUSED
    # a bad file on reload: one ERROR line, the running policy is kept
    reg.primary.expect_error(r"reload: .*registry\.mailboxes: .*mailboxes:2: one local part "
                             r"a line, .*; the running configuration is kept")
    mailboxes.write_text("carol\nbad line\n")
    reg.primary.signal(signal.SIGHUP)
    reg.primary.wait_for(r"reload: .*mailboxes:2: one local part a line")
    assert register(alice) == Rcode.REFUSED
    assert register(bob) == Rcode.NOERROR  # within mail_interval: answered, not mailed
    # a registered owner keeps the keys and may still remove them
    assert reg.published(alice) == alice.key_set
    rcode, _ = reg.send(reg.envelope(m.Kind.UNREGISTER, m.address_fields(alice.address),
                                     alice.ed))
    assert rcode == Rcode.NOERROR and reg.published(alice) == set()
    assert len(smtp_server.received) == 3


# -- re-verification -------------------------------------------------------------------
def test_reverification_answered_keeps_the_keys_unanswered_withdraws_them(
        tmp_path, start_daemon, smtp_server):
    reg = Registry(tmp_path, start_daemon, smtp_server,
                   registry_extra='reverify_every = "3s"\nreverify_grace = "2s"\n')
    reg.start()
    alice, bob = Owner("alice@example.com"), Owner("bob@example.com")
    confirm(reg, alice, 1)
    confirm(reg, bob, 2)
    # both are asked again within reverify_every; alice answers, bob does not
    wait_until(lambda: len(smtp_server.received) >= 4, 10)
    mails = {m_.rcpt_tos[0]: m_.content for m_ in smtp_server.received[2:4]}
    challenge = reg.challenge(mails["alice@example.com"], alice)
    assert challenge.purpose == m.Kind.RENEW
    rcode, answer = reg.answer_challenge(challenge, alice.ed)
    assert rcode == Rcode.NOERROR and answer.kind == m.AnswerKind.RENEWED
    reg.primary.wait_for(r"registry: withdraw bob@example\.com\.")
    assert reg.published(bob) == set() and reg.published(alice) == alice.key_set
    wait_until(lambda: any(b"were withdrawn" in r.content and r.rcpt_tos == ["bob@example.com"]
                           for r in smtp_server.received), 10)


def test_zone_export_writes_the_served_zone_with_its_registrations(registry):
    from keyresolve.zonedata.zonefile import parse_zone_text

    alice = Owner("alice@example.com")
    answer = confirm(registry, alice, 1)
    result = subprocess.run([sys.executable, "-m", "keyresolve", "ctl", "zone-export",
                             "example.com", "--server", f"127.0.0.1:{registry.pport}"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    path = registry.pdir / "data" / "export" / "example.com.zone"
    assert str(path) in result.stdout
    zone = parse_zone_text(path.read_text())
    keys = {r.rdata.key: r.rdata.flags for r in zone.records() if r.name == alice.address}
    assert set(keys) == alice.key_set
    assert all(flags & KeyFlag.REGISTERED for flags in keys.values())
    assert zone.soa.rdata.serial == answer.serial
    carol = Name.from_text("carol@example.com")
    assert any(r.name == carol for r in zone.records())


def test_workers_forward_updates_to_the_main_process(tmp_path, start_daemon, smtp_server):
    reg = Registry(tmp_path, start_daemon, smtp_server, top_extra="workers = 2\n")
    reg.start()
    reg.primary.wait_logged(r"all 2 processes answering")
    owners = [Owner(f"u{i}@example.com") for i in range(6)]
    for owner in owners:  # over UDP and TCP: the kernel spreads them over both processes
        for udp in (True, False):
            envelope = reg.envelope(m.Kind.REGISTER,
                                    m.register_fields(owner.address, owner.encrypt, owner.sign),
                                    owner.ed)
            rcode, answer = reg.send(envelope, udp=udp)
            assert rcode == Rcode.NOERROR and answer.kind == m.AnswerKind.ACCEPTED
    wait_until(lambda: len(smtp_server.received) >= len(owners))
    for mail in smtp_server.received[:len(owners)]:
        owner = next(o for o in owners if [str(o.address).rstrip(".")] == mail.rcpt_tos)
        rcode, answer = reg.answer_challenge(reg.challenge(mail.content, owner), owner.ed)
        assert rcode == Rcode.NOERROR
        assert reg.published(owner) == owner.key_set


def test_removal_by_mail_token(registry):
    alice = Owner("alice@example.com")
    confirm(registry, alice, 1)
    time.sleep(1.1)  # mail_interval = 1s
    fields = m.address_fields(alice.address)
    rcode, answer = registry.send(registry.envelope(m.Kind.UNREGISTER_MAIL, fields))
    assert rcode == Rcode.NOERROR and answer.kind == m.AnswerKind.ACCEPTED
    mail = registry.next_mail(2)
    assert b"confirm the removal" in mail
    request_id, token = m.read_mail_token(attachment_from_mail(mail).decode("ascii"))
    wrong = registry.send(registry.envelope(m.Kind.UNREGISTER_CONFIRM,
                                            m.token_fields(request_id, bytes(16))))
    assert wrong[0] == Rcode.NOTAUTH and registry.published(alice) == alice.key_set
    rcode, answer = registry.send(registry.envelope(m.Kind.UNREGISTER_CONFIRM,
                                                    m.token_fields(request_id, token)))
    assert rcode == Rcode.NOERROR and answer.kind == m.AnswerKind.WITHDRAWN
    assert registry.published(alice) == set()
    # an address without keys gets the same answer, and no mail
    bob = Name.from_text("bob@example.com")
    rcode, answer = registry.send(registry.envelope(m.Kind.UNREGISTER_MAIL,
                                                    m.address_fields(bob)))
    assert rcode == Rcode.NOERROR and answer.kind == m.AnswerKind.ACCEPTED
    time.sleep(0.5)
    assert all(r.rcpt_tos != ["bob@example.com"] for r in registry.smtp.received)


def test_a_backup_is_recovered_by_mail_token(registry):
    alice = Owner("alice@example.com")
    backup = b"the owner's keys, sealed under a passphrase the registry never sees"
    rcode, _ = registry.send(registry.envelope(
        m.Kind.REGISTER, m.register_fields(alice.address, alice.encrypt, alice.sign, backup),
        alice.ed))
    assert rcode == Rcode.NOERROR
    challenge = registry.challenge(registry.next_mail(1), alice)
    assert registry.answer_challenge(challenge, alice.ed)[0] == Rcode.NOERROR
    time.sleep(1.1)  # mail_interval = 1s
    rcode, _ = registry.send(registry.envelope(m.Kind.RECOVER, m.address_fields(alice.address)))
    assert rcode == Rcode.NOERROR
    request_id, token = m.read_mail_token(
        attachment_from_mail(registry.next_mail(2)).decode("ascii"))
    reply = X25519PrivateKey.generate()
    rcode, answer = registry.send(registry.envelope(
        m.Kind.RECOVER_CONFIRM,
        m.token_fields(request_id, token, reply.public_key().public_bytes_raw())))
    assert rcode == Rcode.NOERROR and answer.kind == m.AnswerKind.RECOVERED
    assert m.open_backup(reply, answer.backup) == backup
    # the token is used up
    again = registry.send(registry.envelope(
        m.Kind.RECOVER_CONFIRM,
        m.token_fields(request_id, token, reply.public_key().public_bytes_raw())))
    assert again[0] == Rcode.NOTAUTH
