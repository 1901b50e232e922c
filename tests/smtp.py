"""A real SMTP server for the tests: aiosmtpd on 127.0.0.1, collecting what
it receives, able to refuse (a temporary 421/451 or a permanent 550 reply)
and to be stopped and started again on the same port (an outage)."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    """One mail as the server took it: the envelope and the message bytes."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes


class _Controller(Controller):
    """aiosmtpd's threaded controller serving a socket bound in advance, so
    the port is known before the start and kept across restarts."""

    def __init__(self, handler, sock: socket.socket, **kwargs) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=sock.getsockname()[1],
                         server_hostname="smtp.test", **kwargs)
        self._sock = sock

    def _create_server(self):
        return self.loop.create_server(self._factory_invoker, sock=self._sock)


class SmtpServer:
    """The test SMTP server. `refuse_rcpt` / `refuse_data`: a reply such as
    ``"451 4.3.0 try again later"`` given instead of accepting RCPT / DATA
    (None: accept). With `user`, AUTH is required (PLAIN or LOGIN) and
    `password` is the one accepted. With `tls_context`, STARTTLS is offered
    and required before anything else (AUTH included)."""

    def __init__(self, *, user: str | None = None, password: str | None = None,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.received: list[Received] = []
        #: Set each time a mail is taken (wait on it instead of sleeping).
        self.arrived = threading.Event()
        self.refuse_rcpt: str | None = None
        self.refuse_data: str | None = None
        self.user = user
        self.password = password
        self.tls_context = tls_context
        self.port = 0
        self._controller: _Controller | None = None

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def start(self) -> None:
        """Listen (again) on `port` (first: a free port) and serve."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        kwargs: dict = {}
        if self.tls_context is not None:  # STARTTLS offered and required, AUTH after it
            kwargs = dict(tls_context=self.tls_context, require_starttls=True)
        if self.user is not None:
            kwargs.update(auth_required=True, authenticator=self._authenticate,
                          auth_require_tls=self.tls_context is not None)
        self._controller = _Controller(_Handler(self), sock, **kwargs)
        self._controller.start()

    def stop(self) -> None:
        """Stop serving: connections to the port are refused until `start`."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == (self.user or "").encode()
              and auth_data.password == (self.password or "").encode())
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 235 or 535


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.server.refuse_rcpt is not None:
            return self.server.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.server.refuse_data is not None:
            return self.server.refuse_data
        self.server.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                             envelope.original_content or envelope.content))
        self.server.arrived.set()
        return "250 Message accepted for delivery"
