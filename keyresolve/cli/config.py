"""Daemon configuration: TOML files into validated dataclasses.

Relative paths are relative to the config file. Unknown keys are errors (a
typo must not silently change behaviour). Every error names the file and key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..authority.ratelimit import DEFAULT_SLIP, MAX_SLIP, MAX_UPDATE_RATE, UPDATE_RATE
from ..protocol.errors import ConfigError, InvalidName, InvalidRecord, excerpt
from ..protocol.grammar import CONTROL_RE, HOST_RE
from ..protocol.names import Name
from ..protocol.serial import SERIAL_POLICIES
from ..protocol.transport import (DEFAULT_MAX_TCP, DEFAULT_MAX_TCP_PER_ADDRESS,
                                  DEFAULT_MAX_TRANSFER_TIME_OUT, DEFAULT_TCP_IDLE,
                                  DEFAULT_TCP_SEND_TIMEOUT, Endpoint, parse_endpoint)
from ..protocol.tsig import DEFAULT_MAX_FUDGE, SharedKey
from ..registry.mailboxes import MailboxPolicy, parse_mailboxes
from ..registry.addresses import MailError, validate_address
from ..registry.defaults import DEFAULT_CONFIRM_WITHIN, DEFAULT_REVERIFY_EVERY, DEFAULT_REVERIFY_GRACE
from ..protocol.records import parse_ttl
from ..files.private import MAX_PASSWORD_FILE, read_private
from .sharedkeys import shared_keys_from_config

#: The log levels a daemon takes (log_level, --log-level), least severe first.
LOG_LEVELS = ("debug", "info", "warning", "error")
#: Log line formats (log_format): "text", or "json", one JSON object a line.
LOG_FORMATS = ("text", "json")

#: Most `workers` a server may run: far beyond any machine's cores here, and
#: each holds LMDB readers (store.MAX_READERS is shared by all of them).
MAX_WORKERS = 64


@dataclass
class ZoneConfig:
    """One zone served by `keyresolve serve`."""

    name: Name
    file: Path | None = None
    #: Key names allowed to transfer and NOTIFY this zone (UPDATE is the
    #: registry's: `registration`).
    allow_transfer: list[Name] = field(default_factory=list)
    allow_notify: list[Name] = field(default_factory=list)
    #: Refuse unsigned queries for names in this zone.
    require_signed: bool = False
    #: A secondary zone's primaries, tried in order (empty: a primary zone).
    primaries: list[Endpoint] = field(default_factory=list)
    #: Key for SOA checks, transfers and NOTIFY (signs them; a secondary also
    #: accepts NOTIFY signed with it).
    tsig_key: Name | None = None
    #: Secondaries to NOTIFY when the serial changes.
    notify: list[Endpoint] = field(default_factory=list)
    #: Directories besides the zone file's own that its $INCLUDEs may read.
    include_dirs: list[Path] = field(default_factory=list)
    #: A primary zone's reload that changes it without a higher serial:
    #: "keep" refuses it, "increment"/"unixtime" pick the serial
    #: (`serial.next_serial`, as Knot's serial-policy).
    serial_policy: str = "keep"
    #: Owners may register keys in this (primary) zone (issue #20); the
    #: config then needs a `[registry]` section.
    registration: bool = False

    @property
    def is_secondary(self) -> bool:
        """True for a zone transferred from primaries rather than read from a file."""
        return bool(self.primaries)


@dataclass
class ServeConfig:
    """The `keyresolve serve` configuration."""

    path: Path
    listen: list[Endpoint]
    data_dir: Path
    zones: list[ZoneConfig] = field(default_factory=list)
    tcp_idle_timeout: float = DEFAULT_TCP_IDLE
    tcp_send_timeout: float = DEFAULT_TCP_SEND_TIMEOUT
    #: Longest an outbound zone transfer may take, in seconds (BIND's
    #: max-transfer-time-out); `tcp_send_timeout` is its idle bound.
    max_transfer_time_out: float = DEFAULT_MAX_TRANSFER_TIME_OUT
    max_tcp_connections: int = DEFAULT_MAX_TCP
    #: Concurrent TCP connections one client address may hold.
    max_tcp_per_address: int = DEFAULT_MAX_TCP_PER_ADDRESS
    #: UDP answers per second per client prefix and answer class (response
    #: rate limiting, `keyresolve.authority.ratelimit`); 0: off.
    rate_limit: int = 0
    #: Every `slip`-th rate-limited answer is sent truncated; 0: none.
    slip: int = DEFAULT_SLIP
    log_level: str = "info"
    #: "text" or "json" (`LOG_FORMATS`).
    log_format: str = "text"
    keys: dict[Name, SharedKey] = field(default_factory=dict)
    #: Widest time window a signed request gets, whatever fudge it states.
    max_fudge: int = DEFAULT_MAX_FUDGE
    #: Processes answering on the listen addresses (SO_REUSEPORT): this one
    #: and workers - 1 more (`keyresolve serve --workers` overrides it).
    workers: int = 1
    #: Keys allowed to send control messages (`keyresolve ctl`).
    control_keys: list[Name] = field(default_factory=list)
    #: Obey unsigned control messages from loopback addresses.
    control_loopback: bool = True
    #: File the daemon writes its process id to while it runs (None: none).
    pidfile: Path | None = None
    #: The `[registry]` section (None: no registry).
    registry: RegistryConfig | None = None

    def get_zone(self, origin: Name) -> ZoneConfig | None:
        """The configuration of the zone `origin`, if we serve it."""
        for zone in self.zones:
            if zone.name == origin:
                return zone
        return None


def fingerprint(config: ServeConfig) -> str:
    """A digest of what a worker must share with its main process: the whole
    config with the keys' secrets, but not `workers` and `log_level`, which
    the main process sets itself, nor `listen` and `pidfile`, which only the
    main process uses. A worker restarted after the config file or a key
    file changed on disk computes another one."""
    digest = hashlib.sha256(repr(dataclasses.replace(config, workers=1, log_level="", listen=[],
                                                     pidfile=None)).encode())
    for key in config.keys.values():  # the file's order, as both processes read it
        digest.update(len(key.secret).to_bytes(4, "big") + key.secret)
    return digest.hexdigest()


class Table:
    """A TOML table with typed getters that name the key in errors."""

    def __init__(self, data: dict, where: str) -> None:
        self.data = dict(data)
        self.where = where

    def _err(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where}{key}: {message}")

    def get(self, key: str, kind: type | tuple, default: Any = ..., *, what: str = "") -> Any:
        if key not in self.data:
            if default is ...:
                raise self._err(key, "missing")
            return default
        value = self.data.pop(key)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise self._err(key, f"must be {what or getattr(kind, '__name__', kind)}")
        return value

    def endpoints(self, key: str, *, allow_zero: bool) -> list[Endpoint]:
        values = self.get(key, list, what="a list of \"ip:port\" strings")
        if not values:
            raise self._err(key, "must list at least one address")
        try:
            return [parse_endpoint(v, allow_zero=allow_zero) for v in values]
        except ValueError as exc:
            raise self._err(key, str(exc)) from None

    def name(self, key: str) -> Name:
        text = self.get(key, str)
        try:
            return Name.from_text(text if text.endswith(".") else text + ".")
        except InvalidName as exc:
            raise self._err(key, str(exc)) from None

    def key_names(self, key: str, keys: dict[Name, SharedKey]) -> list[Name]:
        """A list of key names, each defined in the [keys] tables."""
        values = self.get(key, list, [], what="a list of key names")
        names = []
        for value in values:
            try:
                name = Name.from_text(value if str(value).endswith(".") else f"{value}.")
            except (InvalidName, TypeError):
                raise self._err(key, f"invalid key name {value!r}") from None
            if name not in keys:
                raise self._err(key, f"key {value!r} is not defined in [keys]")
            names.append(name)
        return names

    def key_names_one(self, key: str, keys: dict[Name, SharedKey]) -> Name:
        """One key name, defined in the [keys] tables."""
        value = self.get(key, str)
        self.data[key] = [value]
        return self.key_names(key, keys)[0]

    def positive(self, key: str, default: float, kind: type = float) -> Any:
        value = self.get(key, (int, float) if kind is float else int, default, what="a number")
        if value <= 0:
            raise self._err(key, "must be positive")
        return kind(value)

    def finish(self) -> None:
        if self.data:
            raise self._err(sorted(self.data)[0], "unknown setting")


def read_toml(path: Path) -> dict:
    """Parse a TOML file, turning every failure into ConfigError."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8; tomllib decodes before parsing
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start})") from None


#: Default cache bound, in records (issue: "cache_size = 100000").
DEFAULT_CACHE_SIZE = 100_000
#: Default bound on the resolver's infrastructure cache (delegation NS sets
#: and name-server addresses), in records: keyresolve.resolver.cache.DEFAULT_MAX_INFRA_RECORDS.
DEFAULT_INFRA_CACHE_SIZE = 20_000
#: Default TTL cap: one day, as BIND's max-cache-ttl is one week and Unbound's
#: one day; keys can be replaced, so staleness matters more than hit rate.
DEFAULT_MAX_TTL = 86_400
#: Default bound on resolutions in progress at once; beyond it new questions
#: get SERVFAIL at once instead of queueing without limit.
DEFAULT_MAX_CLIENTS = 1000


@dataclass
class UpstreamServer:
    """An upstream server the resolver signs its queries to."""

    address: Endpoint
    tsig_key: Name


@dataclass
class ResolverConfig:
    """The `keyresolve resolver` configuration."""

    path: Path
    listen: list[Endpoint]
    root_hints: Path
    cache_size: int = DEFAULT_CACHE_SIZE
    infra_cache_size: int = DEFAULT_INFRA_CACHE_SIZE
    max_ttl: int = DEFAULT_MAX_TTL
    max_clients: int = DEFAULT_MAX_CLIENTS
    tcp_idle_timeout: float = DEFAULT_TCP_IDLE
    tcp_send_timeout: float = DEFAULT_TCP_SEND_TIMEOUT
    max_tcp_connections: int = DEFAULT_MAX_TCP
    #: Concurrent TCP connections one client address may hold.
    max_tcp_per_address: int = DEFAULT_MAX_TCP_PER_ADDRESS
    log_level: str = "info"
    #: "text" or "json" (`LOG_FORMATS`).
    log_format: str = "text"
    keys: dict[Name, SharedKey] = field(default_factory=dict)
    #: Widest time window a signed request gets, whatever fudge it states.
    max_fudge: int = DEFAULT_MAX_FUDGE
    #: Keys allowed to send control messages (cache flush); loopback always may.
    control_keys: list[Name] = field(default_factory=list)
    servers: list[UpstreamServer] = field(default_factory=list)
    #: Obey unsigned control messages from loopback addresses.
    control_loopback: bool = True
    #: File the daemon writes its process id to while it runs (None: none).
    pidfile: Path | None = None

    def get_upstream_key(self, address: Endpoint) -> SharedKey | None:
        """The key the config pairs with an upstream server, if any."""
        for server in self.servers:
            if server.address == address:
                return self.keys[server.tsig_key]
        return None


def load_resolver_config(path: str | Path) -> ResolverConfig:
    """Read and validate a `keyresolve resolver` config file."""
    path = Path(path)
    top = Table(read_toml(path), f"{path}: ")
    listen = top.endpoints("listen", allow_zero=True)
    hints = path.parent / top.get("root_hints", str)
    config = ResolverConfig(path=path, listen=listen, root_hints=hints)
    config.cache_size = top.positive("cache_size", DEFAULT_CACHE_SIZE, int)
    config.infra_cache_size = top.positive("infra_cache_size", DEFAULT_INFRA_CACHE_SIZE, int)
    config.max_ttl = top.positive("max_ttl", DEFAULT_MAX_TTL, int)
    config.max_clients = top.positive("max_clients", DEFAULT_MAX_CLIENTS, int)
    config.tcp_idle_timeout = top.positive("tcp_idle_timeout", DEFAULT_TCP_IDLE)
    config.tcp_send_timeout = top.positive("tcp_send_timeout", DEFAULT_TCP_SEND_TIMEOUT)
    config.max_tcp_connections = top.positive("max_tcp_connections", DEFAULT_MAX_TCP, int)
    config.max_tcp_per_address = top.positive("max_tcp_per_address",
                                              DEFAULT_MAX_TCP_PER_ADDRESS, int)
    config.log_level, config.log_format = load_logging(top)
    config.keys = load_keys(top, path)
    config.max_fudge = load_max_fudge(top)
    config.control_keys = top.key_names("control_keys", config.keys)
    config.control_loopback = top.get("control_loopback", bool, True)
    config.pidfile = load_pidfile(top, path)
    for i, raw in enumerate(top.get("servers", list, [], what="an array of [[servers]] tables")):
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: servers[{i}]: must be a table")
        table = Table(raw, f"{path}: servers[{i}].")
        try:
            address = parse_endpoint(table.get("address", str))
        except ValueError as exc:
            raise ConfigError(f"{path}: servers[{i}].address: {exc}") from None
        key = table.key_names_one("key", config.keys)
        table.finish()
        config.servers.append(UpstreamServer(address, key))
    top.finish()
    return config


def load_keys(top: Table, path: Path) -> dict[Name, SharedKey]:
    """The [keys.NAME] tables of a config file, as a keyring."""
    raw = top.get("keys", dict, {}, what="a table of [keys.NAME] tables")
    try:
        return shared_keys_from_config(raw, path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_logging(top: Table) -> tuple[str, str]:
    """The `log_level` (one of `LOG_LEVELS`) and `log_format` (one of
    `LOG_FORMATS`) settings; anything else is an error naming the setting."""
    level = top.data.pop("log_level", "info")
    if not isinstance(level, str) or level.lower() not in LOG_LEVELS:
        raise top._err("log_level", f"must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    log_format = top.data.pop("log_format", "text")
    if log_format not in LOG_FORMATS:
        raise top._err("log_format",
                       f"must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    return level.lower(), log_format


def load_pidfile(top: Table, path: Path) -> Path | None:
    """The `pidfile` setting: a file name, relative to the config file, whose
    directory exists."""
    value = top.get("pidfile", str, None, what="a file name")
    if value is None:
        return None
    if not value:
        raise top._err("pidfile", "must be a file name")
    pidfile = path.parent / value
    if not pidfile.parent.is_dir():
        raise top._err("pidfile", f"directory {pidfile.parent} does not exist")
    return pidfile


#: Largest `max_fudge`: a trailer's fudge is 16 bits (RFC 8945 4.2).
MAX_FUDGE_SETTING = 0xFFFF


def load_max_fudge(top: Table) -> int:
    """The `max_fudge` setting: whole seconds, 1 .. 65535 (0 would fail a
    request signed in the second before it arrived)."""
    value = top.get("max_fudge", int, DEFAULT_MAX_FUDGE, what="an integer number of seconds")
    if not 1 <= value <= MAX_FUDGE_SETTING:
        raise top._err("max_fudge", f"must be 1 .. {MAX_FUDGE_SETTING} seconds")
    return value


def _include_dirs(table: Table, base: Path) -> list[Path]:
    """A zone's include_dirs: existing directories, relative to `base`."""
    values = table.get("include_dirs", list, [], what="a list of directory names")
    dirs = []
    for value in values:
        if not isinstance(value, str) or not value:
            raise table._err("include_dirs", "must be a list of directory names")
        path = base / value
        if not path.is_dir():
            raise table._err("include_dirs", f"{path} is not a directory")
        dirs.append(path)
    return dirs


def _default_notify_key(zone: ZoneConfig, where: str) -> None:
    """A primary zone with `notify` and no `key` signs its NOTIFYs with its
    one `allow_transfer` key (its secondaries transfer with it, so they take
    a NOTIFY signed with it); with several, which one is for the config to
    say. With none they go unsigned (`unsigned_notify_zones`)."""
    if zone.is_secondary or not zone.notify or zone.tsig_key is not None:
        return
    if len(zone.allow_transfer) == 1:
        zone.tsig_key = zone.allow_transfer[0]
    elif zone.allow_transfer:
        names = ", ".join(str(name).rstrip(".") for name in zone.allow_transfer)
        raise ConfigError(f"{where}.key: notify needs the key to sign NOTIFY with; "
                          f"allow_transfer lists several ({names}): set key to one of them")


def unsigned_notify_zones(config: ServeConfig) -> list[ZoneConfig]:
    """The primary zones whose NOTIFYs go unsigned: `notify` and no key."""
    return [zone for zone in config.zones
            if not zone.is_secondary and zone.notify and zone.tsig_key is None]


def load_serve_config(path: str | Path) -> ServeConfig:
    """Read and validate a `keyresolve serve` config file."""
    path = Path(path)
    base = path.parent
    top = Table(read_toml(path), f"{path}: ")
    listen = top.endpoints("listen", allow_zero=True)
    data_dir = base / top.get("data_dir", str)
    config = ServeConfig(path=path, listen=listen, data_dir=data_dir)
    config.tcp_idle_timeout = top.positive("tcp_idle_timeout", DEFAULT_TCP_IDLE)
    config.tcp_send_timeout = top.positive("tcp_send_timeout", DEFAULT_TCP_SEND_TIMEOUT)
    config.max_transfer_time_out = top.positive("max_transfer_time_out",
                                                DEFAULT_MAX_TRANSFER_TIME_OUT)
    config.max_tcp_connections = top.positive("max_tcp_connections", DEFAULT_MAX_TCP, int)
    config.max_tcp_per_address = top.positive("max_tcp_per_address",
                                              DEFAULT_MAX_TCP_PER_ADDRESS, int)
    config.rate_limit = top.get("rate_limit", int, 0, what="a whole number (0: off)")
    if config.rate_limit < 0:
        raise ConfigError(f"{path}: rate_limit: must be 0 (off) or positive")
    config.slip = top.get("slip", int, DEFAULT_SLIP, what="a whole number")
    if not 0 <= config.slip <= MAX_SLIP:
        raise ConfigError(f"{path}: slip: must be 0..{MAX_SLIP}")
    config.log_level, config.log_format = load_logging(top)
    config.workers = top.positive("workers", 1, int)
    if config.workers > MAX_WORKERS:
        raise ConfigError(f"{path}: workers: at most {MAX_WORKERS}")
    config.keys = load_keys(top, path)
    config.max_fudge = load_max_fudge(top)
    config.control_keys = top.key_names("control_keys", config.keys)
    config.control_loopback = top.get("control_loopback", bool, True)
    config.pidfile = load_pidfile(top, path)
    seen: set[Name] = set()
    for i, raw in enumerate(top.get("zones", list, [], what="an array of [[zones]] tables")):
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: zones[{i}]: must be a table")
        table = Table(raw, f"{path}: zones[{i}].")
        zone = ZoneConfig(name=table.name("name"))
        file = table.get("file", str, None)
        zone.file = None if file is None else base / file
        if "primaries" in table.data:
            zone.primaries = table.endpoints("primaries", allow_zero=False)
        if (zone.file is None) == (not zone.primaries):
            raise ConfigError(f"{path}: zones[{i}]: give either file (a primary zone) "
                              f"or primaries (a secondary zone)")
        if "key" in table.data:
            zone.tsig_key = table.key_names_one("key", config.keys)
        if "notify" in table.data:
            zone.notify = table.endpoints("notify", allow_zero=False)
        zone.allow_transfer = table.key_names("allow_transfer", config.keys)
        zone.allow_notify = table.key_names("allow_notify", config.keys)
        if "allow_update" in table.data:
            raise ConfigError(f"{path}: zones[{i}].allow_update: no longer read: UPDATE is the "
                              "registry's, set registration = true and a [registry] section")
        _default_notify_key(zone, f"{path}: zones[{i}]")
        zone.require_signed = table.get("require_signed", bool, False)
        zone.include_dirs = _include_dirs(table, base)
        if zone.include_dirs and zone.is_secondary:
            raise ConfigError(f"{path}: zones[{i}].include_dirs: only a primary zone "
                              "(file) has includes")
        zone.registration = table.get("registration", bool, False)
        if zone.registration and zone.is_secondary:
            raise ConfigError(f"{path}: zones[{i}].registration: only a primary zone (file) "
                              "takes registrations; its secondaries serve them by IXFR")
        zone.serial_policy = table.get("serial_policy", str, "keep")
        if zone.serial_policy not in SERIAL_POLICIES:
            raise ConfigError(f"{path}: zones[{i}].serial_policy: must be one of "
                              f"{', '.join(SERIAL_POLICIES)}, not {zone.serial_policy!r}")
        table.finish()
        if zone.name in seen:
            raise ConfigError(f"{path}: zones[{i}].name: zone {zone.name} is listed twice")
        seen.add(zone.name)
        config.zones.append(zone)
    if "registry" in top.data:
        config.registry = load_registry(top, path)
        first = config.listen[0][0] if config.listen else None
        if (config.registry.public_address is None and first is not None
                and ipaddress.ip_address(first).is_unspecified):
            raise ConfigError(f"{path}: registry.public_address: needed when the first listen "
                              f"address is a wildcard ({first}): the address owners answer "
                              "challenges at, named in every challenge mail")
    for i, zone in enumerate(config.zones):
        if zone.registration and config.registry is None:
            raise ConfigError(f"{path}: zones[{i}].registration: needs a [registry] section "
                              "(the SMTP server and address its mails go out through)")
    top.finish()
    return config


# -- the registry (issue #20) ------------------------------------------------------

#: The `[registry]` durations' defaults, in seconds (issue #20's example):
#: one mail per address per hour; the others (a confirmation mail answered
#: within a day, keys re-verified every 180 days with 14 days to answer) are
#: `registry.state`'s.
DEFAULT_MAIL_INTERVAL = 3_600
#: Where the registry keeps its own key pair, relative to the config file.
DEFAULT_KEY_DIR = "registry-keys"
#: Longest `confirm_within`: a pending request is state held for a stranger;
#: 30 days is six times the outbox's 5-day queue lifetime, ample for the
#: mail to arrive and be answered.
MAX_CONFIRM_WITHIN = 30 * 86_400


@dataclass
class RegistryConfig:
    """The `[registry]` section of the serve config: the mail side of the
    registry (issue #20). Durations are whole seconds."""

    #: The submission server, (host, port); host is a name or an IP address.
    smtp: tuple[str, int]
    #: The registry's address: the From of its mails and the SMTP envelope sender.
    sender: str
    #: The directory of the registry's own key pair (made on first start).
    key_dir: Path
    #: Upgrade the SMTP connection with STARTTLS (refuse to send without it).
    starttls: bool = False
    #: SMTP AUTH user, and the owner-only file holding its password.
    user: str | None = None
    password_file: Path | None = None
    #: A registration, removal or recovery request expires after this.
    confirm_within: int = DEFAULT_CONFIRM_WITHIN
    #: At most one mail per address per this.
    mail_interval: int = DEFAULT_MAIL_INTERVAL
    #: Registered keys are re-verified every this, and withdrawn when their
    #: owner did not answer within `reverify_grace`.
    reverify_every: int = DEFAULT_REVERIFY_EVERY
    reverify_grace: int = DEFAULT_REVERIFY_GRACE
    #: UPDATE requests a second each client prefix (/24, /56) may send
    #: beyond a burst of max(30, this) (`ratelimit.RequestLimiter`).
    rate_limit: int = UPDATE_RATE
    #: The `mailboxes` file, and the policy read from it (None: every local
    #: part may register). Not compared: a reload applies a change of them
    #: (`RegistryService.set_mailboxes`) without a restart; the policy is
    #: not in the fingerprint either (workers do not use it).
    mailboxes: Path | None = field(default=None, compare=False)
    mailbox_policy: MailboxPolicy | None = field(default=None, compare=False, repr=False)
    #: Where owners' tools send their answers, named in every challenge mail
    #: (an IP address and port; None: the first `listen` address, which
    #: must then not be a wildcard).
    public_address: Endpoint | None = None


#: Largest `mailboxes` file read: a million local parts of 64 octets with
#: their line ends, beyond any registry's list (Postfix reads its lookup
#: tables whole too).
MAX_MAILBOXES_FILE = 65 * 1024 * 1024


def read_mailboxes(path: Path) -> MailboxPolicy:
    """The policy of the `mailboxes` file at `path` (`registry.mailboxes`);
    ConfigError naming the file (and the line) otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MAILBOXES_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the mailboxes file: "
                          f"{exc.strerror or exc}") from None
    if len(data) > MAX_MAILBOXES_FILE:
        raise ConfigError(f"{path}: mailboxes file larger than {MAX_MAILBOXES_FILE} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start})") from None
    return parse_mailboxes(text, str(path))


def parse_host_port(text: object) -> tuple[str, int]:
    """``host:port`` with a host name or IP address (``[ipv6]:port``) into
    (host, port); ValueError with a one-line message otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"must be a string like smtp.example.com:587, not {text!r}")
    host, sep, port = text.rpartition(":")
    if text.startswith("[") or not sep or ":" in host:
        return parse_endpoint(text)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"port in {excerpt(text)} must be 1 .. 65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if len(host) > 253 or not HOST_RE.match(host):
            raise ValueError(f"{excerpt(host)} in {excerpt(text)} is not a host name "
                             "or IP address") from None
    return ("127.0.0.1" if host == "localhost" else host), int(port)


def parse_duration(text: object) -> int:
    """A duration with units, as zone-file TTLs are written (``90s``,
    ``30m``, ``12h``, ``1d``, ``2w``, ``1h30m``), in whole seconds, at least
    1; ValueError with a one-line message otherwise. A bare number is
    refused: the unit says what was meant."""
    shape = "a duration with units (s, m, h, d, w) like \"1d\" or \"12h\""
    if not isinstance(text, str):
        raise ValueError(f"must be {shape}, written as a string")
    if text.isdigit() or not text:
        raise ValueError(f"must be {shape}, not {excerpt(text)}")
    try:
        seconds = parse_ttl(text)
    except InvalidRecord:
        raise ValueError(f"must be {shape}, not {excerpt(text)}") from None
    if seconds < 1:
        raise ValueError("must be at least 1s")
    return seconds


def _duration(table: Table, key: str, default: int, maximum: int | None = None) -> int:
    if key not in table.data:
        return default
    try:
        seconds = parse_duration(table.data.pop(key))
    except ValueError as exc:
        raise table._err(key, str(exc)) from None
    if maximum is not None and seconds > maximum:
        raise table._err(key, f"at most {maximum // 86_400}d")
    return seconds


def load_registry(top: Table, path: Path) -> RegistryConfig:
    """The `[registry]` section (see `RegistryConfig`); every setting
    checked, an error naming it."""
    raw = top.get("registry", dict, what="a [registry] table")
    table = Table(raw, f"{path}: registry.")
    try:
        smtp = parse_host_port(table.get("smtp", str, what="a \"host:port\" string"))
    except ValueError as exc:
        raise table._err("smtp", str(exc)) from None
    try:
        sender = validate_address(table.get("from", str, what="an address"), "from")
    except MailError as exc:
        raise ConfigError(f"{path}: registry.{exc}") from None
    key_dir = path.parent / table.get("key_dir", str, DEFAULT_KEY_DIR, what="a directory name")
    if key_dir.exists() and not key_dir.is_dir():
        raise table._err("key_dir", f"{key_dir} is not a directory")
    if not key_dir.parent.is_dir():
        raise table._err("key_dir", f"directory {key_dir.parent} does not exist")
    config = RegistryConfig(smtp=smtp, sender=sender, key_dir=key_dir)
    config.starttls = table.get("starttls", bool, False)
    config.user = table.get("user", str, None, what="a user name")
    if config.user is not None and (not config.user or CONTROL_RE.search(config.user)):
        raise table._err("user", "must be a user name without control characters")
    password_file = table.get("password_file", str, None, what="a file name")
    if (config.user is None) != (password_file is None):
        missing = "password_file" if password_file is None else "user"
        raise table._err(missing, "user and password_file go together (SMTP AUTH)")
    if password_file is not None:
        config.password_file = path.parent / password_file
        read_private(config.password_file, MAX_PASSWORD_FILE,
                     f"{path}: registry.password_file:")
    config.confirm_within = _duration(table, "confirm_within", DEFAULT_CONFIRM_WITHIN,
                                      MAX_CONFIRM_WITHIN)
    config.mail_interval = _duration(table, "mail_interval", DEFAULT_MAIL_INTERVAL)
    config.reverify_every = _duration(table, "reverify_every", DEFAULT_REVERIFY_EVERY)
    config.reverify_grace = _duration(table, "reverify_grace", DEFAULT_REVERIFY_GRACE)
    config.rate_limit = table.get("rate_limit", int, UPDATE_RATE,
                                  what="requests a second")
    if not 1 <= config.rate_limit <= MAX_UPDATE_RATE:
        raise table._err("rate_limit", f"must be 1 .. {MAX_UPDATE_RATE} (requests a second "
                         "per client prefix)")
    if config.reverify_grace >= config.reverify_every:
        raise table._err("reverify_grace", "must be shorter than reverify_every (an owner "
                         "answers one challenge before the next is mailed)")
    public = table.get("public_address", str, None, what='an "ip:port" string')
    if public is not None:
        try:
            config.public_address = parse_endpoint(public)
        except ValueError as exc:
            raise table._err("public_address", str(exc)) from None
        if ipaddress.ip_address(config.public_address[0]).is_unspecified:
            raise table._err("public_address", f"{public!r} is a wildcard: give the address "
                             "owners reach this server at")
    mailboxes = table.get("mailboxes", str, None, what="a file name")
    if mailboxes is not None:
        config.mailboxes = path.parent / mailboxes
        try:
            config.mailbox_policy = read_mailboxes(config.mailboxes)
        except ConfigError as exc:
            raise table._err("mailboxes", str(exc)) from None
    table.finish()
    return config
