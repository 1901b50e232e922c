"""The outbox's SMTP shell (keyresolve.net.smtp) against a real SMTP server
(aiosmtpd, tests/smtp.py) and a real LMDB queue; the queue's clock is a
fake one, moved by the test, so no test waits for a retry."""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timezone

import pytest
import trio

from keyresolve.store.mailqueue import MailQueue
from keyresolve.net import smtp
from keyresolve.net.smtp import Outbox, SmtpSender, SmtpSettings
from keyresolve.registry.mails import MailKind, attachment_from_mail, make_mail
from keyresolve.registry.outbox import MAX_QUEUE_LIFETIME, Action, Admission, Delivery
from tests.registry_fixtures import Clock
from tests.smtp import SmtpServer

T0 = 1_800_000_000.0
HOUR = 3600.0
BLOB = b"\x00sealed challenge\xff" * 20
SENDER = "keys@example.com"


def registry_mail(recipient: str = "owner@example.com", blob: bytes = BLOB) -> bytes:
    return make_mail(MailKind.CONFIRM, sender=SENDER, recipient=recipient,
                     date=datetime.fromtimestamp(T0, timezone.utc),
                     unique="0123456789abcdef0123", attachment=blob, key_ids=["enc:A"])


@pytest.fixture
def queue(tmp_path):
    with MailQueue(tmp_path / "mailqueue", mail_interval=HOUR) as q:
        yield q


def outbox_for(server: SmtpServer, queue: MailQueue, clock: Clock, **settings) -> Outbox:
    host, port = server.address
    return Outbox(queue, SmtpSender(SmtpSettings(host, port, **settings)), clock)


def step(outbox: Outbox) -> list[tuple[int, Delivery, Action]]:
    return [(mail.id, result.delivery, action)
            for mail, result, action in trio.run(outbox.step)]


def enqueue(queue: MailQueue, clock: Clock, recipient: str = "owner@example.com",
            blob: bytes = BLOB) -> None:
    assert queue.enqueue(recipient, SENDER, registry_mail(recipient, blob), clock()) \
        is Admission.QUEUED


def test_a_queued_mail_arrives_and_parses_back(smtp_server, queue):
    clock = Clock(T0)
    enqueue(queue, clock)
    assert step(outbox_for(smtp_server, queue, clock)) == [(0, Delivery.SENT, Action.DONE)]
    [received] = smtp_server.received
    assert (received.mail_from, received.rcpt_tos) == (SENDER, ["owner@example.com"])
    # as a mail client stores it: LF line ends, a delivery header on top
    stored = b"Return-Path: <keys@example.com>\n" + received.content.replace(b"\r\n", b"\n")
    assert attachment_from_mail(stored) == BLOB
    assert queue.total() == 0 and queue.next_due() is None


def test_smtp_down_then_up_the_mail_arrives(smtp_server, queue, caplog):
    caplog.set_level(logging.INFO, "keyresolve.mail")
    clock = Clock(T0)
    outbox = outbox_for(smtp_server, queue, clock)
    smtp_server.stop()
    enqueue(queue, clock)
    assert step(outbox) == [(0, Delivery.TEMPORARY, Action.RETRY)]
    assert queue.next_due() == T0 + 60
    assert "mail 0 to owner@example.com deferred (ConnectionRefusedError" in caplog.text
    clock.now += 59
    assert step(outbox) == []  # not due yet
    clock.now += 1
    assert step(outbox) == [(0, Delivery.TEMPORARY, Action.RETRY)]
    assert queue.next_due() == T0 + 60 + 120  # backoff doubled
    smtp_server.start()
    clock.now = T0 + 180
    assert step(outbox) == [(0, Delivery.SENT, Action.DONE)]
    assert attachment_from_mail(smtp_server.received[0].content) == BLOB
    assert queue.get(0) is None


def test_a_restart_keeps_the_queued_mail(smtp_server, tmp_path):
    """The registry queues a mail while SMTP is down, and stops; the next
    one sends it from the reopened environment."""
    clock = Clock(T0)
    smtp_server.stop()
    with MailQueue(tmp_path / "q", mail_interval=HOUR) as queue:
        enqueue(queue, clock)
        assert step(outbox_for(smtp_server, queue, clock))[0][2] is Action.RETRY
    smtp_server.start()
    clock.now += 60
    with MailQueue(tmp_path / "q", mail_interval=HOUR) as queue:
        assert queue.total() == 1
        assert step(outbox_for(smtp_server, queue, clock)) == [
            (0, Delivery.SENT, Action.DONE)]
    assert len(smtp_server.received) == 1


@pytest.mark.parametrize("stage, reply, delivery", [
    ("rcpt", "550 5.1.1 no such user", Delivery.PERMANENT),
    ("rcpt", "451 4.3.0 try again later", Delivery.TEMPORARY),
    ("rcpt", "421 4.7.0 closing, too busy", Delivery.TEMPORARY),
    ("data", "554 5.6.0 message refused", Delivery.PERMANENT),
    ("data", "452 4.3.1 insufficient storage", Delivery.TEMPORARY),
])
def test_refusals_permanent_dropped_temporary_retried(smtp_server, queue, caplog, stage,
                                                      reply, delivery):
    caplog.set_level(logging.INFO, "keyresolve.mail")
    setattr(smtp_server, f"refuse_{stage}", reply)
    clock = Clock(T0)
    enqueue(queue, clock)
    outbox = outbox_for(smtp_server, queue, clock)
    [(_, got, action)] = step(outbox)
    assert got is delivery
    code = reply.split()[0]
    lines = [r.getMessage() for r in caplog.records if r.name == "keyresolve.mail"]
    if delivery is Delivery.PERMANENT:
        assert action is Action.DROP and queue.total() == 0
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert lines == [f"mail 0 to owner@example.com dropped: "
                         f"{'recipient refused' if stage == 'rcpt' else 'refused'}: {reply}"]
    else:
        assert action is Action.RETRY and queue.total() == 1
        assert code in lines[0] and "deferred" in lines[0]
        setattr(smtp_server, f"refuse_{stage}", None)
        clock.now += 60
        assert step(outbox) == [(0, Delivery.SENT, Action.DONE)]
    assert len(smtp_server.received) == (delivery is Delivery.TEMPORARY)


def test_given_up_after_the_queue_lifetime(smtp_server, queue, caplog):
    caplog.set_level(logging.INFO, "keyresolve.mail")
    clock = Clock(T0)
    enqueue(queue, clock)
    smtp_server.stop()
    outbox = outbox_for(smtp_server, queue, clock)
    tries = 0
    while queue.total():
        due = queue.next_due()
        clock.now = max(due, clock.now)
        step(outbox)
        tries += 1
        assert tries < 200  # bounded: the schedule gives up in ~125 tries
    assert clock.now - T0 >= MAX_QUEUE_LIFETIME
    assert "given up after" in caplog.records[-1].getMessage()
    assert caplog.records[-1].levelname == "WARNING"


def test_mail_interval_one_mail_per_address(smtp_server, queue):
    clock = Clock(T0)
    outbox = outbox_for(smtp_server, queue, clock)
    enqueue(queue, clock)
    mail = registry_mail()
    assert queue.enqueue("owner@example.com", SENDER, mail, clock.now + 1) \
        is Admission.THROTTLED
    step(outbox)
    clock.now += HOUR - 1
    assert queue.enqueue("Owner@Example.com", SENDER, mail, clock.now) is Admission.THROTTLED
    step(outbox)
    clock.now += 1
    enqueue(queue, clock)
    step(outbox)
    assert len(smtp_server.received) == 2


def test_a_flood_is_bounded(smtp_server, queue, monkeypatch):
    """Registrations for many random addresses: the queue stops at its
    bound, the mails queued are sent, none beyond it."""
    from keyresolve.registry import outbox as decisions
    monkeypatch.setattr(decisions, "MAX_QUEUED", 20)
    clock = Clock(T0)
    results = [queue.enqueue(f"user{i}@example.com", SENDER, registry_mail(f"u{i}@e.com"),
                             clock()) for i in range(50)]
    assert results.count(Admission.QUEUED) == 20
    assert set(results[20:]) == {Admission.QUEUE_FULL}
    step(outbox_for(smtp_server, queue, clock))
    assert len(smtp_server.received) == 20 and queue.total() == 0


def write_password(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "smtp.password"
    path.write_text(text + "\n")
    os.chmod(path, mode)
    return path


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_with_the_password_file(tmp_path, queue, caplog):
    caplog.set_level(logging.DEBUG)
    server = SmtpServer(user="registry", password="s3cret-Pa55")
    server.start()
    try:
        clock = Clock(T0)
        enqueue(queue, clock)
        good = write_password(tmp_path, "s3cret-Pa55")
        outbox = outbox_for(server, queue, clock, user="registry", password_file=good)
        assert step(outbox)[0][1] is Delivery.SENT

        enqueue(queue, clock, "other@example.com")
        wrong = outbox_for(server, queue, clock, user="registry",
                           password_file=write_password(tmp_path, "wrong-Pa55word"))
        [(_, delivery, action)] = step(wrong)
        assert (delivery, action) == (Delivery.TEMPORARY, Action.RETRY)
        assert "authentication failed: 535" in caplog.text
        clock.now += 60
        open_to_all = write_password(tmp_path, "wrong-Pa55word", 0o644)
        loose = outbox_for(server, queue, clock, user="registry", password_file=open_to_all)
        assert step(loose)[0][1] is Delivery.TEMPORARY
        assert "chmod 600" in caplog.text
        for secret in ("s3cret-Pa55", "wrong-Pa55word"):
            assert secret not in caplog.text
    finally:
        server.stop()
    assert len(server.received) == 1


def test_starttls_refused_by_the_server_keeps_the_mail(smtp_server, queue, caplog):
    caplog.set_level(logging.INFO, "keyresolve.mail")
    clock = Clock(T0)
    enqueue(queue, clock)
    assert step(outbox_for(smtp_server, queue, clock, starttls=True)) == [
        (0, Delivery.TEMPORARY, Action.RETRY)]
    assert "STARTTLS" in caplog.text and smtp_server.received == []


def test_a_silent_server_times_out(queue):
    """A server that accepts the connection and never greets: the step ends
    after the timeout, the mail is kept."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        clock = Clock(T0)
        enqueue(queue, clock)
        sender = SmtpSender(SmtpSettings(*silent.getsockname(), timeout=0.3))
        [(_, result, action)] = trio.run(Outbox(queue, sender, clock).step)
    assert (result.delivery, action) == (Delivery.TEMPORARY, Action.RETRY)
    assert "timed out" in result.reason


class ReportingSender(SmtpSender):
    """An SmtpSender that reports each outcome on a trio channel, so a test
    awaits the loop's tries instead of sleeping."""

    def __init__(self, settings: SmtpSettings) -> None:
        super().__init__(settings)
        self.outcomes, self.reports = trio.open_memory_channel(100)

    async def send(self, mail):
        result = await super().send(mail)
        self.outcomes.send_nowait(result.delivery)
        return result


def test_run_outbox_sends_when_woken_and_when_due(smtp_server, queue):
    """The loop: a mail queued and `wake` -> sent at once; one queued with
    the server down is retried by the loop when due (the fake clock moved,
    the loop woken), without the test sleeping."""
    clock = Clock(T0)
    sender = ReportingSender(SmtpSettings(*smtp_server.address))

    async def main():
        outbox = Outbox(queue, sender, clock)
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                await nursery.start(outbox.run)
                enqueue(queue, clock)
                outbox.wake()
                assert await sender.reports.receive() is Delivery.SENT
                smtp_server.stop()
                enqueue(queue, clock, "second@example.com")
                outbox.wake()
                assert await sender.reports.receive() is Delivery.TEMPORARY
                assert queue.get(1).failures == 1  # recorded before the loop sleeps
                smtp_server.start()
                clock.now += 60
                outbox.wake()
                assert await sender.reports.receive() is Delivery.SENT
                nursery.cancel_scope.cancel()

    trio.run(main)
    assert [r.rcpt_tos for r in smtp_server.received] == [["owner@example.com"],
                                                          ["second@example.com"]]
    assert queue.total() == 0


def test_batch_and_idle_bounds_are_named():
    assert smtp.BATCH > 0 and 0 < smtp.MAX_IDLE <= 60 and smtp.SMTP_TIMEOUT > 0


def test_settings_from_the_registry_config(tmp_path):
    from keyresolve.cli.config import load_serve_config

    path = tmp_path / "serve.toml"
    path.write_text('listen = ["127.0.0.1:0"]\ndata_dir = "d"\n[registry]\n'
                    'smtp = "127.0.0.1:2525"\nfrom = "keys@example.com"\nstarttls = true\n')
    settings = SmtpSettings.from_registry(load_serve_config(path).registry)
    assert settings == SmtpSettings("127.0.0.1", 2525, starttls=True)


def make_tls(tmp_path):
    """A CA (its PEM file) and a server context whose certificate it signed,
    for 127.0.0.1."""
    import datetime as dt
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def cert(subject, issuer, key, signer, *, ca):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(hours=1))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca_cert = cert(ca_name, ca_name, ca_key, ca_key, ca=True)
    leaf = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name,
                key, ca_key, ca=False)
    ca_pem, cert_pem, key_pem = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_pem, key_pem)
    return ca_pem, context


def test_starttls_then_auth(tmp_path, queue, monkeypatch, caplog):
    """STARTTLS with the certificate checked (trusted through SSL_CERT_FILE,
    as the system's CAs would be), then AUTH over it; an untrusted
    certificate keeps the mail queued."""
    caplog.set_level(logging.INFO, "keyresolve.mail")
    ca_pem, context = make_tls(tmp_path)
    server = SmtpServer(user="registry", password="s3cret-Pa55", tls_context=context)
    server.start()
    try:
        clock = Clock(T0)
        enqueue(queue, clock)
        outbox = outbox_for(server, queue, clock, starttls=True, user="registry",
                            password_file=write_password(tmp_path, "s3cret-Pa55"))
        assert step(outbox) == [(0, Delivery.TEMPORARY, Action.RETRY)]
        assert "certificate verify failed" in caplog.text
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_pem))
        clock.now += 60
        assert step(outbox) == [(0, Delivery.SENT, Action.DONE)]
        plain = outbox_for(server, queue, clock, user="registry",
                           password_file=write_password(tmp_path, "s3cret-Pa55"))
        enqueue(queue, clock, "other@example.com")
        assert step(plain)[0][1] is Delivery.TEMPORARY  # 530: STARTTLS first
    finally:
        server.stop()
    assert [r.rcpt_tos for r in server.received] == [["owner@example.com"]]
    assert "s3cret-Pa55" not in caplog.text


def test_an_unreachable_server_is_tried_once_per_round(smtp_server, queue, caplog):
    """With the server down, one connection attempt defers every mail due
    (Postfix's 'delivery temporarily suspended'), instead of one attempt,
    and one timeout, per mail."""
    caplog.set_level(logging.INFO, "keyresolve.mail")
    clock = Clock(T0)
    for i in range(3):
        enqueue(queue, clock, f"user{i}@example.com")
    smtp_server.stop()
    sender = ReportingSender(SmtpSettings(*smtp_server.address))
    outbox = Outbox(queue, sender, clock)
    assert [action for _, _, action in trio.run(outbox.step)] == [Action.RETRY] * 3
    assert sender.reports.statistics().current_buffer_used == 1  # one try
    assert [m.failures for m in queue.due(clock.now + 60, 10)] == [1, 1, 1]
    assert caplog.text.count("not tried, server unreachable: ConnectionRefusedError") == 2
    smtp_server.start()
    clock.now += 60
    assert [action for _, _, action in trio.run(outbox.step)] == [Action.DONE] * 3
