"""`keyresolve ctl`: send one CONTROL command to a running server, print the result.

The wire format is `keyresolve.protocol.control`'s (docs/protocol.md 8A); this module
is the client's shell: resolve the server, send over TCP, print text or JSON.
"""

from __future__ import annotations

import ipaddress
import json
import time

from ..protocol.codes import Rcode, rcode_to_text
from .config import load_serve_config
from ..protocol.transport import Endpoint, format_endpoint
from ..protocol.control import decode_result, make_request, request_for, to_text
from ..protocol.errors import ConfigError, FormError, KeyresolveError, NetworkError, ProtocolError
from ..protocol.names import Name
from ..net.client import query
from ..protocol.tsig import SharedKey

#: Exit status when no reply arrived, as `keyresolve dig` (BIND's dig).
EXIT_NO_REPLY = 9
#: Exit status when the server answered with an error.
EXIT_ERROR = 1


class CtlError(KeyresolveError):
    """A failed `keyresolve ctl` call, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


def server_from_config(path: str) -> Endpoint:
    """The first listen address of a serve config, as a client reaches it
    (a wildcard address becomes loopback)."""
    try:
        host, port = load_serve_config(path).listen[0]
    except ConfigError as exc:
        raise CtlError(str(exc)) from None
    if port == 0:
        raise CtlError(f"{path}: listen port 0 (chosen at start): give --server")
    if ipaddress.ip_address(host).is_unspecified:
        host = "::1" if ":" in host else "127.0.0.1"
    return host, port


def parse_zone(text: str | None) -> Name | None:
    """A ZONE argument (the trailing dot optional); ValueError when invalid."""
    if text is None:
        return None
    try:
        return Name.from_text(text if text.endswith(".") else text + ".")
    except ProtocolError as exc:
        raise ValueError(f"ZONE: {exc}") from None


async def run(server: Endpoint, word: str, zone: Name | None, key: SharedKey | None, *,
              timeout: float, as_json: bool) -> str:
    """Send `word` (on `zone`) to `server`, signed with `key` if given; the
    text to print. CtlError when no reply came or the server refused."""
    command = request_for(word, zone)
    message = make_request(command, zone)
    try:
        exchange = await query(server, message, timeout=timeout, retries=0, tcp=True, key=key)
    except NetworkError as exc:
        raise CtlError(str(exc), EXIT_NO_REPLY) from None
    except ProtocolError as exc:
        raise CtlError(f"bad reply from {format_endpoint(server)}: {exc}",
                       EXIT_NO_REPLY) from None
    if key is not None and exchange.verified != "ok":
        raise CtlError(f"reply not verified: {exchange.verified}")
    try:
        response, fields = decode_result(exchange.wire)
    except FormError as exc:
        raise CtlError(f"bad reply from {format_endpoint(server)}: {exc}") from None
    rcode = response.rcode
    if as_json:
        doc = {"command": word, "zone": None if zone is None else str(zone),
               "server": format_endpoint(server), "rcode": rcode_to_text(rcode),
               "result": fields}
        if key is not None:
            doc["verified"] = exchange.verified
        text = json.dumps(doc)
        if rcode != Rcode.NOERROR:
            raise CtlError(text)
        return text
    if rcode != Rcode.NOERROR:
        reason = fields.get("error")
        if reason is None and rcode == Rcode.NOTIMP:
            reason = "not a command this server takes"
        raise CtlError(f"{word}: {format_endpoint(server)} answered {rcode_to_text(rcode)}"
                       + (f": {reason}" if reason else ""))
    return to_text(fields, time.time()) if fields else "ok"
