"""Transport settings both sides share (sans-IO): endpoints in text, TCP limits.

The configuration (cli.config) validates them and the socket shells
(net.server) apply them; neither imports the other.
"""

from __future__ import annotations

import ipaddress

#: An IP address (IPv6 without brackets) and a port.
Endpoint = tuple[str, int]

#: Default idle time before a TCP connection is closed (RFC 7766 6.2.3
#: suggests seconds, not minutes, for servers under load).
DEFAULT_TCP_IDLE = 10.0
#: Default cap on concurrent TCP connections; beyond it new ones are closed.
DEFAULT_MAX_TCP = 512
#: Default time allowed to write one TCP message (one frame of a reply or of
#: a transfer) before the connection is closed: a peer that stops reading
#: costs its own connection only. Knot bounds each TCP read or write the same
#: way (`tcp-io-timeout`); 10 s matches the idle timeout. For a zone
#: transfer it is the idle bound (BIND's max-transfer-idle-out, 60 min
#: there): stricter, as a transfer message is at most 16 kB and a secondary
#: that takes none in 10 s is stalled or slower than 1.6 kB/s.
DEFAULT_TCP_SEND_TIMEOUT = 10.0
#: Default bound on the whole of a multi-message reply (an outbound zone
#: transfer), however steadily its peer reads: the transfer holds an LMDB
#: read snapshot, and while one is open LMDB cannot reuse the pages written
#: since, so a peer that trickles (one message per `DEFAULT_TCP_SEND_TIMEOUT`,
#: which is the idle bound) would make the store file grow for as long as it
#: likes. BIND's max-transfer-time-out is 120 min; ours is 30 min, three
#: times what a 1M-key zone (70 MB, benchmarks/RESULTS.md) takes at 1 Mbit/s.
DEFAULT_MAX_TRANSFER_TIME_OUT = 1800.0
#: Default cap on concurrent TCP connections from one client address, so
#: one address cannot take all `DEFAULT_MAX_TCP` (Unbound sets such caps
#: per client netblock: tcp-connection-limit).
DEFAULT_MAX_TCP_PER_ADDRESS = 32


def parse_endpoint(text: str, *, allow_zero: bool = False) -> Endpoint:
    """Parse ``ip:port`` or ``[ipv6]:port`` into (host, port)."""
    if not isinstance(text, str):
        raise ValueError(f"address must be a string like 127.0.0.1:5300, not {text!r}")
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"IPv6 address {text!r} must be written [ipv6]:port")
    if not sep or not port.isdigit():
        raise ValueError(f"address {text!r} must be ip:port or [ipv6]:port")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} in {text!r} is not an IP address") from None
    value = int(port)
    if not (0 if allow_zero else 1) <= value <= 65535:
        raise ValueError(f"port {value} in {text!r} is out of range")
    return host, value


def format_endpoint(endpoint: Endpoint) -> str:
    """The ``ip:port`` text of an endpoint."""
    host, port = endpoint[0], endpoint[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


__all__ = ["DEFAULT_MAX_TCP", "DEFAULT_MAX_TCP_PER_ADDRESS", "DEFAULT_MAX_TRANSFER_TIME_OUT",
           "DEFAULT_TCP_IDLE", "DEFAULT_TCP_SEND_TIMEOUT", "Endpoint", "format_endpoint",
           "parse_endpoint"]
