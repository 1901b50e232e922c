"""What both daemons do with every request before answering it."""

from __future__ import annotations

import time

from .. import tsig
from ..codes import Rcode
from ..errors import BadKey, BadSignature, BadTime, ProtocolError
from ..message import Message, error_response_wire
from ..net.faultlog import FaultLog
from ..tsig import Key, Keyring


def accept_request(data: bytes, peer: tuple, keyring: Keyring,
                   faults: FaultLog) -> tuple[Message, Key | None, int] | bytes | None:
    """Decode and authenticate one request.

    Returns ``(query, key, now)`` to answer (key is None for an unsigned
    query), or the error reply to send at once (FORMERR, BADVERS, NOTIMP, or
    an RFC 8945 HMAC error), or None to drop it (unreadable, or a response:
    servers never answer responses, so two servers cannot loop). Faults
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
        return query, tsig.verify(query, keyring, now), now
    except (BadKey, BadSignature, BadTime) as exc:
        faults.warning("bad signature", "%s from %s: %s", exc.rcode.name, peer[0], exc)
        return tsig.make_error_response(query, exc, keyring, now)
