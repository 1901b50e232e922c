"""The authoritative server's side of `keyresolve ctl`: the CONTROL commands.

Runs in the main process (workers forward CONTROL messages to it). The wire
format is `keyresolve.protocol.control`'s; this module only does what each command
says and reports it as result fields (docs/protocol.md 8A).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from .. import __version__
from ..protocol.codes import ControlCommand, Rcode
from ..cli.config import ZoneConfig
from ..protocol.transport import format_endpoint
from ..protocol.control import Value, error_fields, make_result, parse_request
from ..protocol.errors import ConfigError, NotAuth, ProtocolError, Refused, ServerFailure
from ..protocol.message import Message, make_response
from ..protocol.names import Name
from ..store.zones import Store
from .secondary import SecondaryZone

if TYPE_CHECKING:
    from .serve import AuthDaemon

log = logging.getLogger("keyresolve.serve")

#: Time between the reply to `stop` (or `reload`) and the shutdown (or the
#: workers' restart), so the reply leaves first, through a worker if it came so.
REPLY_GRACE = 0.5


class ServerControl:
    """Run CONTROL commands on an `AuthDaemon`; `stop()` shuts the server down."""

    def __init__(self, daemon: AuthDaemon, stop: Callable[[], None]) -> None:
        self.daemon = daemon
        self.stop = stop
        self.started = time.time()

    async def run(self, query: Message, peer: tuple) -> Message:
        """The response to an accepted CONTROL message: NOERROR with the
        command's result, or the error's rcode with its reason."""
        try:
            request = parse_request(query)
        except ProtocolError as exc:
            return make_response(query, exc.rcode)
        what = request.command.name.lower() + ("" if request.zone is None
                                               else f" {request.zone}")
        try:
            handler = _COMMANDS.get(request.command)
            if handler is None:
                raise Refused(f"{request.command.name} is a resolver command")
            fields = await handler(self, request.zone, peer)
        except ProtocolError as exc:
            log.info("control %s from %s: %s %s", what, peer[0], exc.rcode.name, exc)
            return make_result(query, error_fields(exc), exc.rcode)
        except Exception:
            log.exception("control %s from %s failed", what, peer[0])
            return make_response(query, Rcode.SERVFAIL)
        return make_result(query, fields)

    # -- the commands ------------------------------------------------------------
    async def status(self, zone: None, peer: tuple) -> dict[str, Value]:
        config = self.daemon.config
        secondaries = sum(1 for z in config.zones if z.is_secondary)
        now = time.time()
        fields: dict[str, Value] = {
            "version": __version__, "pid": os.getpid(), "started": int(self.started),
            "uptime": int(now - self.started), "zones": len(config.zones),
            "primary_zones": len(config.zones) - secondaries,
            "secondary_zones": secondaries, "workers": config.workers,
            "messages": self.daemon.handler.messages}
        if self.daemon.registry is not None:
            fields.update(await trio.to_thread.run_sync(self.daemon.registry.status))
        return fields

    async def reload(self, zone: None, peer: tuple) -> dict[str, Value]:
        log.info("reload requested by %s", peer[0])
        try:
            # the workers restart after the reply, which one of them may carry
            change, results = await self.daemon.reload_all(restart_workers=False)
        except ConfigError as exc:
            log.error("reload: %s; the running configuration is kept", exc)
            raise ServerFailure(f"{exc}; the running configuration is kept") from None
        from .serve import LoadStatus, log_reload_done  # serve imports this module
        log_reload_done(results)
        if change.changed and self.daemon.pool is not None:
            self.daemon.nursery.start_soon(self._restart_workers_soon)
        return {"config": "changed" if change.changed else "unchanged",
                "zones_added": [str(n) for n in change.added],
                "zones_removed": [str(n) for n in change.removed],
                "zones_changed": [str(n) for n in change.modified],
                "loaded": [str(r.zone.name) for r in results if r.status is LoadStatus.LOADED],
                "unchanged": [str(r.zone.name) for r in results
                              if r.status is LoadStatus.UNCHANGED],
                "failed": [f"{r.zone.name} {r.error.splitlines()[0] if r.error else ''}"
                           for r in results if r.status is LoadStatus.FAILED]}

    async def reload_zone(self, origin: Name, peer: tuple) -> dict[str, Value]:
        from .serve import LoadStatus, load_primary_zone, log_results

        zone = self._zone(origin)
        if zone.is_secondary:
            raise Refused(f"{origin} is a secondary zone: refresh or retransfer it")
        log.info("reload of %s requested by %s", origin, peer[0])
        async with self.daemon.handler.write_lock:
            result = await load_primary_zone(self.daemon.store, zone,
                                             self.daemon.overlay(zone.name))
        log_results([result])
        if result.status is LoadStatus.FAILED:
            raise ServerFailure(f"zone {origin} not loaded: {result.error.splitlines()[0]}")
        if result.serial_changed:
            self._notify(zone)
        return {"zone": str(origin), "result": str(result.status), "serial": result.serial,
                "records": result.records}

    async def zone_status(self, origin: Name, peer: tuple) -> dict[str, Value]:
        zone = self._zone(origin)
        store = self.daemon.store
        info = await trio.to_thread.run_sync(store.get_zone_info, origin)
        fields: dict[str, Value] = {"zone": str(origin),
                                    "role": "secondary" if zone.is_secondary else "primary",
                                    "serial": None if info is None else info.serial,
                                    "records": None if info is None else info.records}
        if not zone.is_secondary:
            journal = await trio.to_thread.run_sync(store.journal_info, origin)
            fields.update({"file": os.path.abspath(zone.file),
                           "loaded": None if info is None else int(info.loaded_at),
                           "journal": 0 if journal is None else journal.entries,
                           "notify": [format_endpoint(t) for t in zone.notify]})
            return fields
        secondary = self.daemon.handler.secondaries.get(origin)
        state = secondary.state if isinstance(secondary, SecondaryZone) else None
        fields.update({
            "primaries": [format_endpoint(p) for p in zone.primaries],
            "transferred_from": None if info is None else info.primary,
            "last_transfer": _seconds(None if info is None else info.transferred_at),
            "last_check": _seconds(None if info is None else info.last_success),
            "last_result": getattr(secondary, "last_result", None),
            "next_refresh": None if state is None else int(state.next_check),
            "expires": None if state is None or state.soa is None
            else _seconds(state.expires_at()),
            "state": "expired" if secondary is not None and secondary.expired(time.time())
            else "serving"})
        return fields

    async def zone_export(self, origin: Name, peer: tuple) -> dict[str, Value]:
        """Write the zone as served (a registration zone: its file and its
        registrations) to `data_dir/export/ZONE.zone`, replacing it whole."""
        self._zone(origin)
        log.info("export of %s requested by %s", origin, peer[0])
        name = origin.to_text().rstrip(".") or "root"
        path = Path(self.daemon.config.data_dir) / EXPORT_DIR / f"{name}.zone"
        serial, records = await trio.to_thread.run_sync(export_zone, self.daemon.store, origin,
                                                        path)
        return {"zone": str(origin), "file": os.path.abspath(path), "serial": serial,
                "records": records}

    async def refresh(self, origin: Name, peer: tuple) -> dict[str, Value]:
        secondary = self._secondary(origin)
        log.info("refresh of %s requested by %s", origin, peer[0])
        secondary.notify()
        return {"zone": str(origin), "result": "checking the primaries now"}

    async def retransfer(self, origin: Name, peer: tuple) -> dict[str, Value]:
        secondary = self._secondary(origin)
        log.info("retransfer of %s requested by %s", origin, peer[0])
        secondary.retransfer()
        return {"zone": str(origin), "result": "full transfer started"}

    async def notify(self, origin: Name, peer: tuple) -> dict[str, Value]:
        zone = self._zone(origin)
        if not zone.notify:
            raise Refused(f"zone {origin} has no notify targets")
        sent = self._notify(zone)
        if not sent:
            raise ServerFailure(f"zone {origin} is not loaded")
        log.info("NOTIFY of %s requested by %s", origin, peer[0])
        return {"zone": str(origin), "notified": [format_endpoint(t) for t in zone.notify]}

    async def mail_flush(self, zone: None, peer: tuple) -> dict[str, Value]:
        """Retry every mail the registry has queued now (``postqueue -f``)."""
        registry = self.daemon.registry
        if registry is None:
            raise Refused("this server has no [registry] section: no mail queue")
        log.info("mail queue flush requested by %s", peer[0])
        queued = await registry.flush_mail()
        return {"mails_queued": queued, "result": "trying them now"}

    async def stop_server(self, zone: None, peer: tuple) -> dict[str, Value]:
        log.info("stop requested by %s: shutting down", peer[0])
        self.daemon.nursery.start_soon(self._stop_soon)
        return {"result": "stopping"}

    # -- helpers -----------------------------------------------------------------
    async def _restart_workers_soon(self) -> None:
        await trio.sleep(REPLY_GRACE)
        async with self.daemon.reload_lock:
            await self.daemon.restart_workers()

    async def _stop_soon(self) -> None:
        await trio.sleep(REPLY_GRACE)
        self.stop()

    def _zone(self, origin: Name) -> ZoneConfig:
        zone = self.daemon.config.get_zone(origin)
        if zone is None:
            raise NotAuth(f"{origin} is not a zone of this server")
        return zone

    def _secondary(self, origin: Name) -> SecondaryZone:
        self._zone(origin)
        secondary = self.daemon.handler.secondaries.get(origin)
        if not isinstance(secondary, SecondaryZone):
            raise Refused(f"{origin} is a primary zone here: reload it instead")
        return secondary

    def _notify(self, zone: ZoneConfig) -> bool:
        with self.daemon.store.snapshot() as snap:
            view = snap.get_zone(zone.name)
            soa = None if view is None else view.soa
        if soa is None:
            return False
        self.daemon.zone_changed(zone, soa)
        return True


#: Where `ctl zone-export` writes, under data_dir.
EXPORT_DIR = "export"


def export_zone(store: Store, origin: Name, path: Path) -> tuple[int, int]:
    """Write the zone `origin` as stored to the zone file `path` (through a
    temporary file renamed over it); (serial, records). ServerFailure if
    the zone is not loaded."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    records = 0
    with store.snapshot() as snap:
        view = snap.get_zone(origin)
        if view is None:
            raise ServerFailure(f"zone {origin} is not loaded")
        serial = view.serial
        with open(temporary, "w", encoding="utf-8") as out:
            out.write(f"; zone {origin} as served, serial {serial}\n$ORIGIN {origin}\n")
            for record in snap.iter_records(origin):
                out.write(record.to_text(origin) + "\n")
                records += 1
    os.replace(temporary, path)
    return serial, records


def _seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


_COMMANDS = {
    ControlCommand.STATUS: ServerControl.status,
    ControlCommand.RELOAD: ServerControl.reload,
    ControlCommand.RELOAD_ZONE: ServerControl.reload_zone,
    ControlCommand.ZONE_STATUS: ServerControl.zone_status,
    ControlCommand.REFRESH: ServerControl.refresh,
    ControlCommand.RETRANSFER: ServerControl.retransfer,
    ControlCommand.NOTIFY: ServerControl.notify,
    ControlCommand.STOP: ServerControl.stop_server,
    ControlCommand.ZONE_EXPORT: ServerControl.zone_export,
    ControlCommand.MAIL_FLUSH: ServerControl.mail_flush,
}
