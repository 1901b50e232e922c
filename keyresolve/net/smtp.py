"""The outbox's SMTP shell: send the queued registry mails through the
configured submission server.

`SmtpSender.send` sends one mail with smtplib in a worker thread
(`trio.to_thread.run_sync`), each SMTP step bounded by a timeout, with
STARTTLS and AUTH when configured. The password is read from its file at
each send (0600, see `files.private.read_private`) and never appears in a log
line or an error. A failure is classified as Postfix does: a 5xx reply is
permanent (the mail is dropped, one line logged), anything else (4xx,
refused or broken connection, timeout, TLS or authentication failure, as
Postfix's smtp_sasl_auth_soft_bounce) is temporary (retried).

`run_outbox` (an `Outbox`) sends what is due, records failures with the
backoff of `keyresolve.registry.outbox`, and sleeps until the next mail is
due or it is woken (`Outbox.wake`, after an enqueue). A mail leaves the
queue only once the SMTP server took it: an SMTP outage or a restart
(mid-send too: the mail is then sent again) never loses one.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ..protocol.errors import ConfigError, StoreError, cut
from ..protocol.grammar import CONTROL_CHAR
from ..files.private import MAX_PASSWORD_FILE, read_private
from ..store.mailqueue import MailQueue, QueuedMail
from ..registry.outbox import Action, Delivery, after_attempt

log = logging.getLogger("keyresolve.mail")

#: Seconds each SMTP step (connect, a command's reply, the data) may take:
#: Postfix's smtp_connect_timeout and smtp_helo_timeout are 30 s and 300 s;
#: a submission server on the operator's own network answers in well
#: under a second, and the outbox sends one mail at a time.
SMTP_TIMEOUT = 30.0
#: Mails sent in one outbox step before the queue is looked at again.
BATCH = 32
#: Longest sleep of the outbox between two looks at the queue, in seconds:
#: a mail queued without `Outbox.wake` (another process) waits no longer.
MAX_IDLE = 60.0
#: How often the outbox forgets addresses whose `mail_interval` is over.
PRUNE_EVERY = 600.0
#: Longest server reply quoted in a log line.
MAX_REPLY = 200
_CONTROL_RUN_RE = re.compile(CONTROL_CHAR + "+")


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the submission server (the `[registry]` settings)."""

    host: str
    port: int
    starttls: bool = False
    user: str | None = None
    #: File holding the password (owner-only); required with `user`.
    password_file: Path | None = None
    #: Seconds per SMTP step.
    timeout: float = SMTP_TIMEOUT

    @classmethod
    def from_registry(cls, registry: Any) -> SmtpSettings:
        """The settings of a `config.RegistryConfig`."""
        host, port = registry.smtp
        return cls(host, port, registry.starttls, registry.user, registry.password_file)


@dataclass(frozen=True)
class SendResult:
    """The outcome of one try, and its reason as one log-safe line."""

    delivery: Delivery
    reason: str
    #: The server could not be reached or talked to (refused, timed out,
    #: reset, no greeting): the other mails due are not tried this round.
    unreachable: bool = False


class SmtpSender:
    """Sends queued mails through one submission server."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    async def send(self, mail: QueuedMail) -> SendResult:
        """Send `mail`; never raises for a failure to send (see SendResult).
        Cancelled mid-send, the thread finishes on its own and the mail
        stays queued (it may then be sent twice, never lost)."""
        return await trio.to_thread.run_sync(self.send_blocking, mail, abandon_on_cancel=True)

    def send_blocking(self, mail: QueuedMail) -> SendResult:
        """`send`, in the calling thread."""
        password = None
        try:
            password = self._password()
            self._deliver(mail, password)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()), (0, b""))
            return self._failure(code, reply, password, "recipient refused")
        except smtplib.SMTPAuthenticationError as exc:
            return SendResult(Delivery.TEMPORARY, _scrub(
                f"authentication failed: {_reply(exc.smtp_code, exc.smtp_error)}", password))
        except smtplib.SMTPConnectError as exc:  # no 220 greeting
            result = self._failure(exc.smtp_code, exc.smtp_error, password, "greeting")
            return SendResult(Delivery.TEMPORARY, result.reason, unreachable=True)
        except smtplib.SMTPResponseException as exc:
            return self._failure(exc.smtp_code, exc.smtp_error, password, "refused")
        except smtplib.SMTPNotSupportedError as exc:
            return SendResult(Delivery.TEMPORARY, _scrub(f"not supported by the server: {exc}",
                                                         password))
        except ConfigError as exc:  # the password file: named, never read out
            return SendResult(Delivery.TEMPORARY, str(exc))
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timeout, TLS
            text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return SendResult(Delivery.TEMPORARY, _scrub(
                f"{type(exc).__name__}: {cut(text or 'connection failed', MAX_REPLY)}",
                password), unreachable=isinstance(exc, (OSError, smtplib.SMTPServerDisconnected)))
        except Exception as exc:  # smtplib on a reply it did not expect: keep the mail
            return SendResult(Delivery.TEMPORARY, f"unexpected {type(exc).__name__}")
        return SendResult(Delivery.SENT, "sent")

    def _password(self) -> str | None:
        if self.settings.user is None or self.settings.password_file is None:
            return None
        data = read_private(self.settings.password_file, MAX_PASSWORD_FILE, "password_file")
        try:
            return data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise ConfigError(f"password_file {self.settings.password_file} "
                              "is not UTF-8 text") from None

    def _deliver(self, mail: QueuedMail, password: str | None) -> None:
        settings = self.settings
        # EHLO names the registry's own domain, not socket.getfqdn() (a DNS
        # lookup that can hang).
        helo = mail.sender.rpartition("@")[2] or "localhost"
        with smtplib.SMTP(settings.host, settings.port, local_hostname=helo,
                          timeout=settings.timeout) as smtp:
            if settings.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.user is not None:
                smtp.login(settings.user, password or "")
            smtp.sendmail(mail.sender, [mail.recipient], mail.data)

    @staticmethod
    def _failure(code: int, reply: bytes | str, password: str | None,
                 what: str) -> SendResult:
        delivery = Delivery.PERMANENT if 500 <= code <= 599 else Delivery.TEMPORARY
        return SendResult(delivery, _scrub(f"{what}: {_reply(code, reply)}", password))


def _reply(code: int, reply: bytes | str) -> str:
    """An SMTP reply as one line, cut to `MAX_REPLY` characters."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return cut(f"{code} {_CONTROL_RUN_RE.sub(' ', text).strip()}", MAX_REPLY)


def _scrub(text: str, password: str | None) -> str:
    """`text` with the password blanked, should a server echo it."""
    if password:
        text = text.replace(password, "[password]")
    return text


class Outbox:
    """The loop that empties the mail queue through a sender.

    `clock` returns the queue's time (seconds; `time.time` in a daemon, a
    fake clock in tests): it decides what is due and the backoff, while the
    sleeps between steps are trio's."""

    def __init__(self, queue: MailQueue, sender: SmtpSender,
                 clock: Callable[[], float]) -> None:
        self.queue = queue
        self.sender = sender
        self.clock = clock
        self._wake = trio.Event()
        self._pruned_at: float | None = None

    def wake(self) -> None:
        """Look at the queue now (call after an enqueue)."""
        self._wake.set()

    async def step(self) -> list[tuple[QueuedMail, SendResult, Action]]:
        """Try every mail due now (at most `BATCH`), record each outcome in
        the queue; returns what was done."""
        now = self.clock()
        if self._pruned_at is None or not 0 <= now - self._pruned_at < PRUNE_EVERY:
            self.queue.prune(now)
            self._pruned_at = now
        done = []
        suspended: SendResult | None = None
        for mail in self.queue.due(now, BATCH):
            if suspended is not None:
                # The server is unreachable: the rest wait their backoff
                # untried, as Postfix suspends delivery to a dead destination.
                result = suspended
            else:
                result = await self.sender.send(mail)
                if result.unreachable:
                    suspended = SendResult(Delivery.TEMPORARY,
                                           f"not tried, server unreachable: {result.reason}",
                                           unreachable=True)
            now = self.clock()
            decision = after_attempt(created_at=mail.created_at, failures=mail.failures,
                                     now=now, delivery=result.delivery)
            where = f"mail {mail.id} to {mail.recipient}"
            if decision.action is Action.DONE:
                self.queue.mark_sent(mail.id)
                log.info("%s sent", where)
            elif decision.action is Action.DROP:
                self.queue.drop(mail.id)
                log.warning("%s dropped: %s", where, result.reason)
            elif decision.action is Action.EXPIRE:
                self.queue.drop(mail.id)
                log.warning("%s given up after %d tries: %s", where, mail.failures + 1,
                            result.reason)
            else:
                assert decision.next_at is not None
                self.queue.mark_failed(mail.id, decision.next_at)
                log.info("%s deferred (%s); next try in %.0f s", where, result.reason,
                         decision.next_at - now)
            done.append((mail, result, decision.action))
        return done

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Step, then sleep until the next mail is due (at most `MAX_IDLE`)
        or `wake`; forever. A failing queue (StoreError) is logged and the
        loop goes on."""
        task_status.started()
        while True:
            try:
                done = await self.step()
                next_due = self.queue.next_due()
            except StoreError as exc:
                log.error("mail queue: %s", exc)
                done, next_due = [], None
            wait = MAX_IDLE if next_due is None else next_due - self.clock()
            if len(done) >= BATCH:
                wait = 0.0
            with trio.move_on_after(min(max(wait, 0.0), MAX_IDLE)):
                await self._wake.wait()
            self._wake = trio.Event()


async def run_outbox(queue: MailQueue, sender: SmtpSender, clock: Callable[[], float], *,
                     task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
    """Send the queue's mails forever (`Outbox.run`)."""
    await Outbox(queue, sender, clock).run(task_status=task_status)
