"""What both daemons do with every request before answering it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..protocol import tsig
from ..protocol.codes import Rcode
from ..protocol.errors import (BadKey, BadSignature, BadTime, KeyresolveError, NotAuth, ProtocolError,
                      Refused, ServerFailure)
from ..protocol.message import Message, error_response_wire, make_response
from ..net.faultlog import FaultLog
from ..protocol.tsig import SharedKey, SharedKeys, ReplayGuard


def accept_request(data: bytes, peer: tuple, keyring: SharedKeys, faults: FaultLog, *,
                   max_fudge: int | None = None, replay: ReplayGuard | None = None,
                   ) -> tuple[Message, SharedKey | None, int] | bytes | None:
    """Decode and authenticate one request.

    Returns ``(query, key, now)`` to answer (key is None for an unsigned
    query), or the error reply to send at once (FORMERR, BADVERS, NOTIMP, an
    RFC 8945 HMAC error, or a signed NOTAUTH/REFUSED from `replay`), or None
    to drop it (unreadable, or a response: servers never answer responses,
    so two servers cannot loop). `max_fudge` caps the window a request may
    state; `replay` accepts each signed state-changing request once. Faults
    are logged through `faults`, at a bounded rate.
    """
    try:
        query = Message.from_wire(data)
    except ProtocolError as exc:
        faults.info("malformed message", "%s from %s: %s", exc.rcode.name, peer[0], exc)
        return error_response_wire(data, exc.rcode)
    except Exception:
        faults.exception("decoder failure", "decoder failed on a message from %s", peer[0])
        return error_response_wire(data, Rcode.FORMERR)
    if query.qr:
        return None
    now = int(time.time())
    if query.signature is None:
        return query, None, now
    try:
        key = tsig.verify(query, keyring, now, max_fudge=max_fudge)
    except (BadKey, BadSignature, BadTime) as exc:
        faults.warning("bad signature", "%s from %s: %s", exc.rcode.name, peer[0], exc)
        return tsig.make_error_response(query, exc, keyring, now)
    if replay is not None and query.opcode in tsig.STATE_CHANGING:
        try:
            replay.check(query.signature, now)
        except (NotAuth, Refused) as exc:
            faults.warning("replay", "%s from %s: %s", exc.rcode.name, peer[0], exc)
            return tsig.sign(make_response(query, exc.rcode), key, now,
                             request_mac=query.signature.mac,
                             fudge=tsig.window(query.signature.fudge, max_fudge))
    return query, key, now


def our_failure(exc: ProtocolError) -> bool:
    """Whether `exc`, raised while answering a request, is a failure of our
    own side (`remote` False: a name or record of ours that is invalid, a
    bug), answered SERVFAIL and logged at ERROR, rather than the rcode it
    carries (an invalid name's FORMERR would blame the peer). ServerFailure
    is ours too but is itself the answer (an expired zone), logged where the
    state changed. A peer's error (`remote`) is answered with its rcode and
    logged, if at all, at INFO or WARNING through the fault log: a peer's
    garbage is no fault of ours, and a flood of it must not fill the log with
    errors."""
    return not exc.remote and not isinstance(exc, ServerFailure)


@contextlib.contextmanager
def pidfile(path: Path | None) -> Iterator[None]:
    """Write the process id to `path` (if set) for the duration; remove it
    after, unless another process has written its own there meanwhile."""
    if path is None:
        yield
        return
    pid = f"{os.getpid()}\n"
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        temporary.write_text(pid)
        os.replace(temporary, path)  # readers never see a half-written file
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise KeyresolveError(f"cannot write pidfile {path}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        try:
            if path.read_text() == pid:
                path.unlink()
        except OSError:
            pass
