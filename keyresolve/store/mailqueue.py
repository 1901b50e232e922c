"""The durable outbox: the registry's mails, queued in LMDB until sent.

One LMDB environment (a directory, 0700; files 0600: it holds addresses)
with three sub-DBs:

- ``mail``: mail id (8 bytes, big-endian, never reused) -> msgpack
  ``[recipient, sender, created_at, next_at, failures, data]``;
- ``due``: next_at (milliseconds, 8 bytes big-endian) + mail id -> empty:
  the mails in the order they are due;
- ``address``: the recipient, lower-cased -> msgpack ``[queued, last_at]``:
  how many of its mails are queued and when the last was queued (for
  `mail_interval`); dropped by `prune` once neither matters.

and in ``meta``: ``next_id``, and ``bytes``, the size of the mails queued.

`enqueue` commits (LMDB's synchronous commit: the data is on disk) before
it returns, so a mail is never lost once the registry answers the request
that queued it. The decisions are `keyresolve.registry.outbox`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from ..protocol.errors import StoreError
from ..registry.outbox import Admission, admit, forgettable

#: Map size of the queue's environment: the queue's bytes are bounded by
#: outbox.MAX_QUEUED_BYTES (256 MiB); LMDB needs room for copy-on-write
#: pages on top. The file grows only as far as it is written.
DEFAULT_MAP_SIZE = 1 << 30
#: Largest mail queued: mails.MAX_MAIL_BYTES, what a recipient's tool reads.
MAX_QUEUED_MAIL = 1 << 20
_MAIL_DB = b"mail"
_DUE_DB = b"due"
_ADDRESS_DB = b"address"
_META_DB = b"meta"
_NEXT_ID = b"next_id"
_BYTES = b"bytes"


@dataclass(frozen=True)
class QueuedMail:
    """A mail in the queue."""

    id: int
    recipient: str
    sender: str
    #: When it was queued, and when it is next tried (the queue's clock).
    created_at: float
    next_at: float
    #: Failed tries so far.
    failures: int
    #: The message as SMTP sends it.
    data: bytes


def _translate(method: Callable) -> Callable:
    """LMDB's errors as StoreError (one line, the queue's path)."""
    @functools.wraps(method)
    def wrapper(self: MailQueue, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except lmdb.Error as exc:
            raise StoreError(f"mail queue {self.path}: {exc}") from None
    return wrapper


def _id_key(mail_id: int) -> bytes:
    return mail_id.to_bytes(8, "big")


def _due_key(next_at: float, mail_id: int) -> bytes:
    return max(0, int(next_at * 1000)).to_bytes(8, "big") + _id_key(mail_id)


def _address_key(address: str) -> bytes:
    return address.lower().encode("utf-8", "surrogateescape")


class MailQueue:
    """The durable outbox (see the module docstring)."""

    @_translate
    def __init__(self, path: str | Path, *, mail_interval: float,
                 map_size: int = DEFAULT_MAP_SIZE) -> None:
        """Open (creating) the queue in the directory `path`; an address gets
        at most one mail per `mail_interval` seconds."""
        self.path = Path(path)
        self.mail_interval = mail_interval
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"mail queue {self.path}: {exc.strerror}") from None
        self._env = lmdb.open(str(self.path), subdir=True, max_dbs=4, map_size=map_size,
                              mode=0o600)
        self._mail = self._env.open_db(_MAIL_DB)
        self._due = self._env.open_db(_DUE_DB)
        self._address = self._env.open_db(_ADDRESS_DB)
        self._meta = self._env.open_db(_META_DB)

    def close(self) -> None:
        """Close the environment."""
        self._env.close()

    def __enter__(self) -> MailQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @_translate
    def enqueue(self, recipient: str, sender: str, data: bytes, now: float) -> Admission:
        """Queue the mail `data` from `sender` to `recipient` at `now`, unless
        `outbox.admit` says otherwise; the answer says which. Committed to
        disk when it returns."""
        if not isinstance(data, bytes) or not 0 < len(data) <= MAX_QUEUED_MAIL:
            raise StoreError(f"a queued mail is 1 to {MAX_QUEUED_MAIL} bytes")
        key = _address_key(recipient)
        with self._env.begin(write=True) as txn:
            raw = txn.get(key, db=self._address)
            queued, last_at = (0, None) if raw is None else msgpack.unpackb(raw)
            total_bytes = self._get_int(txn, _BYTES)
            admission = admit(now=now, last_mail_at=last_at, interval=self.mail_interval,
                              queued_for_address=queued,
                              queued_total=txn.stat(self._mail)["entries"],
                              queued_bytes=total_bytes, size=len(data))
            if admission is not Admission.QUEUED:
                return admission
            mail_id = self._get_int(txn, _NEXT_ID)
            txn.put(_NEXT_ID, (mail_id + 1).to_bytes(8, "big"), db=self._meta)
            txn.put(_BYTES, (total_bytes + len(data)).to_bytes(8, "big"), db=self._meta)
            txn.put(_id_key(mail_id),
                    msgpack.packb([recipient, sender, now, now, 0, data]), db=self._mail)
            txn.put(_due_key(now, mail_id), b"", db=self._due)
            txn.put(key, msgpack.packb([queued + 1, now]), db=self._address)
        return admission

    @_translate
    def due(self, now: float, limit: int) -> list[QueuedMail]:
        """The mails due at `now` (next_at <= now), earliest first, at most `limit`."""
        end = _due_key(now, 0xFFFFFFFFFFFFFFFF)
        found = []
        with self._env.begin() as txn:
            for key, _ in txn.cursor(db=self._due):
                if key > end or len(found) >= limit:
                    break
                mail = self._get(txn, int.from_bytes(key[8:], "big"))
                if mail is not None:
                    found.append(mail)
        return found

    @_translate
    def next_due(self) -> float | None:
        """When the earliest mail is due (None: the queue is empty)."""
        with self._env.begin() as txn:
            cursor = txn.cursor(db=self._due)
            if not cursor.first():
                return None
            return int.from_bytes(cursor.key()[:8], "big") / 1000

    @_translate
    def get(self, mail_id: int) -> QueuedMail | None:
        """The queued mail `mail_id`, if it is still queued."""
        with self._env.begin() as txn:
            return self._get(txn, mail_id)

    @_translate
    def mark_sent(self, mail_id: int) -> None:
        """Remove the mail `mail_id`: it was sent."""
        self._remove(mail_id)

    @_translate
    def drop(self, mail_id: int) -> None:
        """Remove the mail `mail_id`: it failed for good or was given up."""
        self._remove(mail_id)

    @_translate
    def mark_failed(self, mail_id: int, next_at: float) -> None:
        """Count a failed try of the mail `mail_id`; try it again at `next_at`."""
        with self._env.begin(write=True) as txn:
            mail = self._get(txn, mail_id)
            if mail is None:
                return
            txn.delete(_due_key(mail.next_at, mail_id), db=self._due)
            txn.put(_id_key(mail_id), msgpack.packb(
                [mail.recipient, mail.sender, mail.created_at, next_at, mail.failures + 1,
                 mail.data]), db=self._mail)
            txn.put(_due_key(next_at, mail_id), b"", db=self._due)

    @_translate
    def retry_all(self, now: float) -> int:
        """Make every queued mail due at `now` (its failures kept, so its
        backoff goes on where it was): Postfix's ``postqueue -f``, done at
        start, when an operator may just have mended the mail setup.
        Returns how many mails were waiting."""
        with self._env.begin(write=True) as txn:
            waiting = [int.from_bytes(key[8:], "big") for key, _ in txn.cursor(db=self._due)]
            for mail_id in waiting:
                mail = self._get(txn, mail_id)
                if mail is None or mail.next_at <= now:
                    continue
                txn.delete(_due_key(mail.next_at, mail_id), db=self._due)
                txn.put(_id_key(mail_id), msgpack.packb(
                    [mail.recipient, mail.sender, mail.created_at, now, mail.failures,
                     mail.data]), db=self._mail)
                txn.put(_due_key(now, mail_id), b"", db=self._due)
        return len(waiting)

    @_translate
    def count(self, address: str) -> int:
        """Mails queued for `address` (any case)."""
        with self._env.begin() as txn:
            raw = txn.get(_address_key(address), db=self._address)
        return 0 if raw is None else msgpack.unpackb(raw)[0]

    @_translate
    def total(self) -> int:
        """Mails queued in all."""
        with self._env.begin() as txn:
            return txn.stat(self._mail)["entries"]

    @_translate
    def total_bytes(self) -> int:
        """Bytes of the mails queued in all."""
        with self._env.begin() as txn:
            return self._get_int(txn, _BYTES)

    @_translate
    def prune(self, now: float) -> int:
        """Forget the addresses with no queued mail whose last mail is
        `mail_interval` old; returns how many."""
        with self._env.begin(write=True) as txn:
            stale = [key for key, value in txn.cursor(db=self._address)
                     if self._stale(msgpack.unpackb(value), now)]
            for key in stale:
                txn.delete(key, db=self._address)
        forgotten = len(stale)
        return forgotten

    # -- internals ---------------------------------------------------------
    def _stale(self, record: list, now: float) -> bool:
        queued, last_at = record
        return queued == 0 and forgettable(now=now, last_mail_at=last_at,
                                           interval=self.mail_interval)

    def _get_int(self, txn: lmdb.Transaction, key: bytes) -> int:
        raw = txn.get(key, db=self._meta)
        return 0 if raw is None else int.from_bytes(raw, "big")

    def _get(self, txn: lmdb.Transaction, mail_id: int) -> QueuedMail | None:
        raw = txn.get(_id_key(mail_id), db=self._mail)
        if raw is None:
            return None
        try:
            recipient, sender, created_at, next_at, failures, data = msgpack.unpackb(raw)
        except (ValueError, TypeError, msgpack.UnpackException):
            raise StoreError(f"mail queue {self.path}: mail {mail_id} is unreadable") from None
        return QueuedMail(mail_id, recipient, sender, created_at, next_at, failures, data)

    def _remove(self, mail_id: int) -> None:
        with self._env.begin(write=True) as txn:
            mail = self._get(txn, mail_id)
            if mail is None:
                return
            txn.delete(_id_key(mail_id), db=self._mail)
            txn.delete(_due_key(mail.next_at, mail_id), db=self._due)
            txn.put(_BYTES, max(0, self._get_int(txn, _BYTES) - len(mail.data))
                    .to_bytes(8, "big"), db=self._meta)
            key = _address_key(mail.recipient)
            raw = txn.get(key, db=self._address)
            if raw is not None:
                queued, last_at = msgpack.unpackb(raw)
                txn.put(key, msgpack.packb([max(0, queued - 1), last_at]), db=self._address)
