"""The registry in `keyresolve serve` (issue #20): thin shells around the
pure core `keyresolve.registry`.

- `load_or_make_keys`: the registry's own X25519 and Ed25519 key pair, made
  in `key_dir` (0700) on first start, as PKCS#8 PEM files (0600).
- `RegistryService.handle`: an UPDATE (docs/protocol.md 8E) in the main
  process, decided one at a time: `Registry.handle` decides; its mail is
  built (`registry.mails`) and queued durably (`store.mailqueue`) before
  the answer; its change is taken into the state at once (`Registry.apply`,
  so the next request is decided on it) and committed with the changes
  that arrived meanwhile, as one zone transaction carrying an update-log
  entry for each (a group commit); then NOTIFY of the zone's secondaries,
  and the answers. A failed commit fails its requests and rebuilds the
  state from the update log.
- `RegistryService.run`: the outbox (`net.smtp.Outbox`) and the
  re-verification timer (`Registry.due`).
- `RegistryService.flush_mail`: every queued mail due now (`ctl mail-flush`).
- `RegistryService.set_mailboxes`: the operator's `mailboxes` policy
  (`registry.mailboxes`), the `Registry.allowed` hook, taken again on reload.
- `RegistryService.rebuild`: the registered state from the update log.
- `RegistryService.overlay`: the records a registration zone holds beyond
  its zone file (the registry's apex KEYs and the registered keys), which
  every compile of the zone file adds (`Store.load_zone_file(overlay=)`).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..authority.policy import Action, allowed
from ..authority.ratelimit import UPDATE_BURST, RequestLimiter
from ..cli.config import RegistryConfig, ServeConfig
from ..cli.keygen import make_key_dir, write_private_key
from ..net.faultlog import FaultLog
from ..net.smtp import Outbox, SmtpSender, SmtpSettings
from ..protocol.codes import Rcode, RType
from ..protocol.errors import KeyresolveError, ProtocolError, Refused, StoreError
from ..protocol.message import Message
from ..protocol.names import Name
from ..protocol.records import ADDR, KEY, KeyAlgorithm, KeyUsage, Record
from ..protocol.serial import next_serial
from ..registry.mails import MailError, MailKind, make_mail
from ..registry.messages import (Kind, LogEntry, LogOp, key_id_bytes, make_answer,
                                 make_update_answer, update_payload)
from ..registry.outbox import Admission
from ..registry.state import (Change, ChallengeMail, Limits, Mail, NoticeMail, Registry,
                              TokenMail)
from ..files.private import read_private
from ..store.mailqueue import MailQueue
from ..store.zones import Store
from .common import our_failure

log = logging.getLogger("keyresolve.registry")

#: File names of the registry's key pair in `key_dir`.
ENCRYPT_KEY_FILE = "registry.x25519.pem"
SIGN_KEY_FILE = "registry.ed25519.pem"
#: Largest private key file read (a PKCS#8 PEM of a 32-byte key is ~120 bytes).
MAX_KEY_FILE = 4096
#: TTL of the registry's apex KEYs and of registered KEYs: an hour, as
#: `keyresolve keygen` prints (a withdrawn key leaves caches within it).
REGISTRY_KEY_TTL = 3600
#: Longest sleep of the re-verification timer: it also wakes after every
#: request (which may add an earlier expiry).
MAX_DUE_SLEEP = 60.0
#: Where the mail queue lives, under data_dir.
MAIL_QUEUE_DIR = "mailqueue"
#: Most changes committed in one zone transaction (a group commit): the
#: changes that arrived while the previous transaction committed, as
#: databases group the commits of concurrent transactions; bounded so a
#: transaction (its dirty pages, its journal entry) stays small.
MAX_COMMIT_BATCH = 256
#: Longest a commit waits for the requests being decided to join it (a
#: group commit's window, as PostgreSQL's commit_delay and MySQL's
#: binlog_group_commit_sync_delay): concurrent confirmations then share one
#: transaction, one NOTIFY and one IXFR. A few milliseconds against the
#: 50 ms a confirmation may take to reach the secondaries (issue #20).
GROUP_COMMIT_WINDOW = 0.005


# -- the registry's keys ---------------------------------------------------------------
def load_or_make_keys(key_dir: Path) -> tuple[X25519PrivateKey, Ed25519PrivateKey]:
    """The registry's key pair from `key_dir`, made there (dir 0700, files
    0600) when neither file exists. A directory with one file of the two, an
    unreadable or group-readable file is a ConfigError naming it (never its
    contents)."""
    paths = key_dir / ENCRYPT_KEY_FILE, key_dir / SIGN_KEY_FILE
    present = [path.exists() for path in paths]
    if not any(present):
        make_key_dir(key_dir)
        for path, key in zip(paths, (X25519PrivateKey.generate(),
                                     Ed25519PrivateKey.generate())):
            write_private_key(path, key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
        log.info("registry key pair made in %s", key_dir)
    elif not all(present):
        missing = paths[present.index(False)]
        raise KeyresolveError(f"registry key_dir {key_dir}: {missing.name} is missing "
                              "(restore it, or remove the other file to make a new pair)")
    keys = []
    for path, kind in zip(paths, (X25519PrivateKey, Ed25519PrivateKey)):
        data = read_private(path, MAX_KEY_FILE, "registry key")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise KeyresolveError(f"registry key {path} is not a PKCS#8 PEM private "
                                  "key") from None
        if not isinstance(key, kind):
            raise KeyresolveError(f"registry key {path} is not an {kind.__name__[:-10]} key")
        keys.append(key)
    return keys[0], keys[1]


def public_keys(encrypt: X25519PrivateKey, sign: Ed25519PrivateKey) -> tuple[KEY, KEY]:
    """The KEY rdatas the registry publishes at the apex of its zones."""
    return (KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, encrypt.public_key().public_bytes_raw()),
            KEY(KeyAlgorithm.ED25519, KeyUsage.SIGN, sign.public_key().public_bytes_raw()))


# -- mails -----------------------------------------------------------------------------
def _address_text(name: Name) -> str:
    return name.to_text().rstrip(".")


def _ids(ids: tuple[bytes, ...]) -> list[str]:
    return [key_id.hex() for key_id in ids]


def _when(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def build_mail(mail: Mail, sender: str, now: float) -> tuple[str, bytes]:
    """(recipient, the message bytes) of a mail the registry decided."""
    recipient = _address_text(mail.address)
    common = dict(sender=sender, recipient=recipient,
                  date=datetime.fromtimestamp(now, timezone.utc), unique=secrets.token_hex(16))
    if isinstance(mail, ChallengeMail):
        kind = MailKind.CONFIRM if mail.purpose == Kind.CONFIRM else MailKind.REVERIFY
        data = make_mail(kind, attachment=mail.attachment, key_ids=_ids(mail.added),
                         replaced=_ids(mail.replaced), expires=_when(mail.expires), **common)
    elif isinstance(mail, TokenMail):
        kind = MailKind.REMOVAL if mail.purpose == Kind.UNREGISTER_CONFIRM else MailKind.RECOVERY
        data = make_mail(kind, attachment=mail.token.encode("ascii"),
                         expires=_when(mail.expires), **common)
    else:
        assert isinstance(mail, NoticeMail)
        data = make_mail(MailKind.WITHDRAWN, attachment=None, key_ids=_ids(mail.removed),
                         **common)
    return recipient, data


# -- the zone change ------------------------------------------------------------------
def _next_serial(policy: str | None, serial: int, now: float) -> int:
    """The serial after a registry change: by the zone's `serial_policy`
    when it is "unixtime", else the next one ("keep" is about zone files:
    the registry's change must increase the serial, RFC 1982)."""
    return next_serial("unixtime" if policy == "unixtime" else "increment", serial, serial,
                       True, now)


def _key_set(keys) -> set[tuple[int, bytes]]:
    return {(int(key.algorithm), key.key) for key in keys}


def commit_changes(store: Store, origin: Name, changes: list[Change],
                   serial_policy: str | None, now: float) -> tuple[list[LogEntry], Record]:
    """Commit `changes` of the zone `origin`, in order, as one zone
    transaction: each address's KEYs (its other records kept), the SOA
    serial increased once, one transfer-journal entry, an update-log entry
    per change (with the new serial). Returns the entries and the new SOA."""
    with store.begin(origin) as txn:
        apex = txn.get_node(origin)
        soa_rrset = None if apex is None else apex.get(RType.SOA)
        if soa_rrset is None:
            raise StoreError(f"zone {origin} has no SOA")
        soa = soa_rrset.rdatas[0]
        serial = _next_serial(serial_policy, soa.serial, now)
        entries = []
        for change in changes:
            if change.zone != origin:
                raise StoreError(f"a change of {change.zone} in a commit of {origin}")
            _change_node(txn, change)
            entry = change.log_entry(serial)
            txn.log_update(entry.to_wire())
            entries.append(entry)
        new_soa = Record(origin, RType.SOA, soa_rrset.ttl,
                         dataclasses.replace(soa, serial=serial))
        txn.commit(new_soa)
    return entries, new_soa


def _change_node(txn, change: Change) -> None:
    """The address's KEYs as `change` leaves them (RENEW: untouched)."""
    if change.op is LogOp.RENEW:
        return
    removed = _key_set(change.replaced) | _key_set(change.keys)
    added = change.keys if change.op is LogOp.PUBLISH else ()
    node = txn.get_node(change.address) or {}
    records = [Record(change.address, rtype, rrset.ttl, rdata)
               for rtype, rrset in node.items() for rdata in rrset.rdatas
               if rtype != RType.KEY or _key_set([rdata]).isdisjoint(removed)]
    records += [Record(change.address, RType.KEY, REGISTRY_KEY_TTL, key) for key in added]
    txn.replace_node(change.address, records)


def commit_change(store: Store, change: Change, serial_policy: str | None,
                  now: float) -> tuple[LogEntry, Record]:
    """`commit_changes` of one change: its log entry and the new SOA."""
    entries, soa = commit_changes(store, change.zone, [change], serial_policy, now)
    return entries[0], soa


def ensure_apex_keys(store: Store, origin: Name, keys: tuple[KEY, ...],
                     serial_policy: str | None, now: float) -> Record | None:
    """Publish `keys` at the apex of `origin` if it lacks one of them (one
    transaction, the serial increased): the new SOA, or None if nothing changed."""
    with store.begin(origin) as txn:
        apex = txn.get_node(origin) or {}
        present = apex.get(RType.KEY)
        have = set() if present is None else _key_set(present.rdatas)
        if _key_set(keys) <= have:
            return None
        soa_rrset = apex[RType.SOA]
        soa = soa_rrset.rdatas[0]
        serial = _next_serial(serial_policy, soa.serial, now)
        for key in keys:
            if (int(key.algorithm), key.key) not in have:
                txn.add(Record(origin, RType.KEY, REGISTRY_KEY_TTL, key))
        new_soa = Record(origin, RType.SOA, soa_rrset.ttl,
                         dataclasses.replace(soa, serial=serial))
        txn.commit(new_soa)
    return new_soa


# -- the service ----------------------------------------------------------------------
class RegistryService:
    """The registry of one `keyresolve serve` main process (see the module
    docstring). `zone_changed(zone_config, soa)` NOTIFYs a zone's
    secondaries; `write_lock` is the server's one store writer lock."""

    def __init__(self, config: ServeConfig, store: Store, server: ADDR,
                 write_lock: trio.Lock, zone_changed: Callable,
                 clock: Callable[[], float] = time.time,
                 limiter: RequestLimiter | None = None, faults: FaultLog | None = None) -> None:
        registry = config.registry
        assert registry is not None
        self.config = config
        self.store = store
        self.write_lock = write_lock
        self.zone_changed = zone_changed
        self.clock = clock
        self.encrypt_key, self.sign_key = load_or_make_keys(registry.key_dir)
        self.apex_keys = public_keys(self.encrypt_key, self.sign_key)
        self.server = server
        #: The operator's mailbox policy (None: every local part may register).
        self.mailboxes = registry.mailbox_policy
        self._log_mailboxes(registry)
        self.registry = self._new_registry()
        self.queue = MailQueue(Path(config.data_dir) / MAIL_QUEUE_DIR,
                               mail_interval=registry.mail_interval)
        self.outbox = Outbox(self.queue, SmtpSender(SmtpSettings.from_registry(registry)),
                             self.clock)
        #: Per-request lines (refusals), logged at a bounded rate: a flood
        #: of requests does not become a flood of log lines.
        self.faults = faults or FaultLog(log)
        self.limiter = limiter or RequestLimiter(
            rate=float(registry.rate_limit), burst=max(UPDATE_BURST, registry.rate_limit))
        #: One request (or re-verification step) at a time: each is decided
        #: on the state the previous one left.
        self.lock = trio.Lock()
        self._wake = trio.Event()
        #: Changes decided and taken into the state, waiting for their commit.
        self._submitted: list[tuple[Change, _Ticket]] = []
        self._commit_wake = trio.Event()
        #: Requests admitted and not yet decided, and an event set when
        #: none is left: what a commit waits for (`GROUP_COMMIT_WINDOW`).
        self._deciding = 0
        self._decided = trio.Event()

    def _new_registry(self) -> Registry:
        registry = self.config.registry
        return Registry(
            zones=[zone.name for zone in self.config.zones if zone.registration],
            private=self.encrypt_key, signer=self.sign_key, server=self.server,
            clock=lambda: int(self.clock()), random=secrets.token_bytes,
            limits=Limits(confirm_within=registry.confirm_within,
                          reverify_every=registry.reverify_every,
                          reverify_grace=registry.reverify_grace),
            allowed=self._allowed)

    def _allowed(self, address: Name) -> bool:
        """The `Registry.allowed` hook: the current `mailboxes` policy."""
        return self.mailboxes is None or self.mailboxes.allows(address)

    @staticmethod
    def _log_mailboxes(registry: RegistryConfig) -> None:
        policy = registry.mailbox_policy
        if policy is None:
            log.info("registry: no mailboxes file: every local part may register")
        else:
            log.info("registry: mailboxes %s: %d local parts and %d patterns may register",
                     registry.mailboxes, len(policy.exact), len(policy.prefixes))

    def set_mailboxes(self, config: ServeConfig) -> None:
        """Take the `mailboxes` policy of a re-read config file (read by
        `load_serve_config`; an invalid file failed that read, and the
        running policy stays). Registered owners keep their keys."""
        if config.registry is None:
            return
        self.mailboxes = config.registry.mailbox_policy
        self._log_mailboxes(config.registry)

    def reconfigure(self, config: ServeConfig) -> None:
        """Follow a re-read config file for the zones' settings (NOTIFY
        targets, serial policy). The `[registry]` section and which zones
        take registrations are read at start: a change of them is logged,
        and a restart applies it."""
        zones = {zone.name for zone in config.zones if zone.registration}
        if config.registry != self.config.registry or zones != self.registry.zones:
            log.warning("%s: [registry] or registration zones changed: a restart applies it",
                        config.path)
        if any(config.get_zone(zone) is None for zone in self.registry.zones):
            log.warning("%s: a registration zone was removed: the registry keeps it until a "
                        "restart", config.path)
            return
        self.config = config

    async def flush_mail(self) -> int:
        """Make every queued mail due now and wake the outbox (`ctl
        mail-flush`, Postfix's ``postqueue -f``): how many were queued."""
        waiting = await trio.to_thread.run_sync(self.queue.retry_all, self.clock())
        self.outbox.wake()
        log.info("registry: mail queue flushed: %d mails queued; trying them now", waiting)
        return waiting

    def close(self) -> None:
        """Close the mail queue."""
        self.queue.close()

    def status(self) -> dict[str, int]:
        """The registry's part of `ctl status`: registrations, requests
        waiting for a mail's answer, mails queued, requests refused by the
        per-prefix limit."""
        return {"registrations": len(self.registry.registrations),
                "registry_pending": len(self.registry.pending),
                "mails_queued": self.queue.total(), "registry_rate_limited": self.limiter.refused}

    @property
    def zones(self) -> list[Name]:
        return sorted(self.registry.zones)

    # -- state -------------------------------------------------------------------
    def rebuild(self) -> int:
        """Take every update-log entry of the registration zones into the
        registered state, in order; returns how many."""
        count = 0
        for zone in self.zones:
            for raw in self.store.update_log(zone):
                try:
                    self.registry.apply(LogEntry.from_wire(raw))
                except ProtocolError as exc:
                    log.error("zone %s: update-log entry %d unreadable (%s); skipped", zone,
                              count, exc)
                count += 1
        log.info("registry: %d registrations in %d zones, from %d update-log entries",
                 len(self.registry.registrations), len(self.zones), count)
        return count

    def overlay(self, origin: Name) -> list[Record]:
        """What the registration zone `origin` serves beyond its zone file:
        the registry's apex KEYs and every registered key (empty for
        another zone)."""
        if origin not in self.registry.zones:
            return []
        records = [Record(origin, RType.KEY, REGISTRY_KEY_TTL, key) for key in self.apex_keys]
        for registration in self.registry.registrations.values():
            if registration.zone == origin:
                records += [Record(registration.address, RType.KEY, REGISTRY_KEY_TTL, key)
                            for key in registration.keys]
        return records

    async def publish_apex_keys(self) -> None:
        """Put the registry's KEYs at the apex of each registration zone that
        lacks them (a zone stored before the registry was configured)."""
        for zone in self.zones:
            config = self.config.get_zone(zone)
            async with self.write_lock:
                soa = await trio.to_thread.run_sync(
                    ensure_apex_keys, self.store, zone, self.apex_keys,
                    config.serial_policy, self.clock())
            if soa is not None:
                log.info("zone %s: registry keys published at the apex, serial %d", zone,
                         soa.rdata.serial)
                self.zone_changed(config, soa)

    # -- requests ----------------------------------------------------------------
    async def handle(self, query: Message, peer: tuple) -> Message:
        """The response to an UPDATE (docs/protocol.md 8E.7); never raises
        but for cancellation: a failure is SERVFAIL, logged."""
        try:
            return await self._handle(query, peer)
        except ProtocolError as exc:
            if our_failure(exc):
                log.exception("registry: UPDATE from %s failed", peer[0])
            else:
                if isinstance(exc, Refused):
                    self.faults.info("registry refused",
                                     "registry: refused an UPDATE from %s: %s", peer[0], exc)
                return make_update_answer(query, None, exc.rcode)
        except KeyresolveError as exc:
            log.error("registry: UPDATE from %s failed: %s", peer[0], exc)
        except Exception:
            log.exception("registry: UPDATE from %s failed", peer[0])
        return make_update_answer(query, None, Rcode.SERVFAIL)

    async def _handle(self, query: Message, peer: tuple) -> Message:
        zone, envelope = update_payload(query)
        decision = allowed(self.config.get_zone(zone), Action.UPDATE, None, peer)
        if not decision.ok:
            raise decision.error()
        if not self.limiter.allow(peer[0], self.clock()):
            raise Refused(f"more than {self.limiter.burst} requests at once, or "
                          f"{self.limiter.rate:g} a second, from {peer[0]}'s prefix")
        ticket = None
        self._deciding += 1
        try:
            async with self.lock:
                outcome = self.registry.handle(zone, envelope)
                if outcome.mail is not None:
                    await self._queue(outcome.mail)
                if outcome.change is not None:
                    ticket = self._submit(outcome.change)
        finally:
            self._deciding -= 1
            if not self._deciding:
                self._decided.set()
        self._wake.set()
        answer = outcome.finish(0 if ticket is None else await ticket.wait())
        return make_update_answer(query, make_answer(answer, self.sign_key))

    async def _queue(self, mail: Mail) -> None:
        """Build `mail` and queue it (committed to disk when this returns)."""
        try:
            recipient, data = build_mail(mail, self.config.registry.sender, self.clock())
        except MailError as exc:  # an address the mail format refuses
            log.warning("registry: no mail to %s: %s", mail.address, exc)
            return
        admission = await trio.to_thread.run_sync(self.queue.enqueue, recipient,
                                                  self.config.registry.sender, data,
                                                  self.clock())
        if admission is Admission.QUEUED:
            self.outbox.wake()
        else:
            log.info("registry: mail to %s not queued: %s", recipient, admission)

    def _submit(self, change: Change) -> _Ticket:
        """Take `change` into the state now (the next request is decided on
        it) and queue its commit: the ticket gives the serial once committed."""
        self.registry.apply(change.log_entry(0))
        ticket = _Ticket()
        self._submitted.append((change, ticket))
        self._commit_wake.set()
        return ticket

    async def _committer(self) -> None:
        """Commit what was submitted, a zone's changes at a time in one
        transaction, then NOTIFY. A failed commit fails its requests
        (SERVFAIL), and the state is rebuilt from the update log."""
        while True:
            await self._commit_wake.wait()
            self._commit_wake = trio.Event()
            while self._submitted:
                await self._gather()
                zone = self._submitted[0][0].zone
                batch = [item for item in self._submitted if item[0].zone == zone]
                batch = batch[:MAX_COMMIT_BATCH]
                taken = {id(item) for item in batch}
                self._submitted = [item for item in self._submitted if id(item) not in taken]
                await self._commit_batch(zone, batch)

    async def _gather(self) -> None:
        """Let the requests admitted meanwhile be decided first (bounded by
        `GROUP_COMMIT_WINDOW`), so that they join this commit: before each
        commit, also the next one after a commit (the owners just answered
        send their next requests while it runs)."""
        await trio.lowlevel.checkpoint()  # requests whose bytes have arrived start
        if self._deciding and len(self._submitted) < MAX_COMMIT_BATCH:
            self._decided = trio.Event()
            with trio.move_on_after(GROUP_COMMIT_WINDOW):
                await self._decided.wait()

    async def _commit_batch(self, origin: Name, batch: list[tuple[Change, _Ticket]]) -> None:
        zone = self.config.get_zone(origin)
        changes = [change for change, _ in batch]
        try:
            async with self.write_lock:  # a compile reads `overlay` under it
                entries, soa = await trio.to_thread.run_sync(
                    commit_changes, self.store, origin, changes, zone.serial_policy,
                    self.clock())
        except Exception as exc:
            log.error("registry: commit of %d changes to %s failed: %s; the registry state "
                      "is rebuilt from the update log", len(changes), origin, exc)
            for _, ticket in batch:
                ticket.fail(exc)
            async with self.lock:
                self.registry = self._new_registry()
                await trio.to_thread.run_sync(self.rebuild)
            return
        for change, entry in zip(changes, entries):
            log.info("registry: %s %s in %s (%s), serial %d", change.op.value, change.address,
                     origin, ", ".join(key_id_bytes(k).hex() for k in change.keys) or "-",
                     entry.serial)
        self.zone_changed(zone, soa)
        for _, ticket in batch:
            ticket.done(soa.rdata.serial)

    # -- the loops ---------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """The outbox and the re-verification timer, until cancelled. Mails
        queued before the start are tried at once."""
        waiting = await trio.to_thread.run_sync(self.queue.retry_all, self.clock())
        if waiting:
            log.info("registry: %d mails queued; trying them now", waiting)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.outbox.run)
            nursery.start_soon(self._committer)
            nursery.start_soon(self._reverify)
            task_status.started()

    async def _reverify(self) -> None:
        while True:
            try:
                tickets = []
                async with self.lock:
                    for action in self.registry.due():
                        if action.mail is not None:
                            await self._queue(action.mail)
                        if action.change is not None:
                            tickets.append(self._submit(action.change))
                for ticket in tickets:
                    await ticket.wait()
            except (KeyresolveError, OSError) as exc:
                log.error("registry: re-verification step failed: %s", exc)
            next_due = self.registry.next_due()
            wait = MAX_DUE_SLEEP if next_due is None else next_due - self.clock()
            with trio.move_on_after(min(max(wait, 0.0), MAX_DUE_SLEEP)):
                await self._wake.wait()
            self._wake = trio.Event()


class _Ticket:
    """A submitted change's commit: its serial, or the error that failed it."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self._serial = 0
        self._error: Exception | None = None

    def done(self, serial: int) -> None:
        self._serial = serial
        self._event.set()

    def fail(self, error: Exception) -> None:
        self._error = error
        self._event.set()

    async def wait(self) -> int:
        """The serial of the commit; its error (StoreError) if it failed."""
        await self._event.wait()
        if self._error is not None:
            raise StoreError(f"commit failed: {self._error}")
        return self._serial


__all__ = ["ENCRYPT_KEY_FILE", "GROUP_COMMIT_WINDOW", "MAIL_QUEUE_DIR", "MAX_COMMIT_BATCH",
           "MAX_DUE_SLEEP", "REGISTRY_KEY_TTL", "RegistryService", "SIGN_KEY_FILE", "build_mail",
           "commit_change", "commit_changes", "ensure_apex_keys", "load_or_make_keys",
           "public_keys"]
