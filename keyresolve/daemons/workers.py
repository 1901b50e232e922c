"""`keyresolve serve --workers N`: the main process and its N - 1 workers.

Every process binds the same UDP and TCP addresses with SO_REUSEPORT (the
kernel spreads clients over them) and answers queries and outbound
transfers from the one LMDB store, which workers open read-only: a reload or
an inbound transfer committed by the main process is seen by the workers'
next read transaction, with no restart and no message.

Only the main process writes: it compiles zones, reloads on SIGHUP, runs
the secondaries' refreshes and transfers, and sends NOTIFY. A NOTIFY that
reaches a worker is forwarded to it over a channel (an AF_UNIX SEQPACKET
socket pair per worker) and its reply comes back the same way. Messages on
the channel are msgpack arrays:

- worker -> main: ``["ready"]`` once its sockets are bound;
  ``["forward", token, host, port, tcp, data]`` for a NOTIFY, CONTROL or
  UPDATE message (FORWARDED_OPCODES);
- main -> worker: ``["reply", token, data or nil]``.

A configuration change re-read by the main process restarts the workers, one
at a time (`WorkerPool.restart`), so they answer by the new one. A worker that
exits is logged and restarted (at most MAX_WORKER_RESTARTS
times); a worker whose channel closes (the main process is gone) exits.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import socket
import subprocess
import sys

import msgpack
import trio

from ..protocol.codes import Opcode
from ..cli.config import ServeConfig, fingerprint
from ..protocol.transport import format_endpoint
from ..protocol.errors import KeyresolveError

log = logging.getLogger("keyresolve.serve")

#: What `_run_once` returns when `WorkerPool.restart` ended the worker's life.
_RESTARTED = object()
#: Longest a worker may take from its start to "ready" (imports, store, bind).
WORKER_START_TIMEOUT = 30.0
#: Time a worker has to exit after SIGTERM before it is killed.
WORKER_STOP_TIMEOUT = 5.0
#: Restarts of one worker before the main process stops restarting it (it
#: keeps answering itself); bounds a crash loop.
MAX_WORKER_RESTARTS = 5
#: Pause before a restart, so a worker that dies at once cannot spin.
WORKER_RESTART_DELAY = 1.0
#: Time a worker waits for the main process's reply to a forwarded message.
FORWARD_TIMEOUT = 5.0
#: Time a worker waits for the main process's reply to a forwarded CONTROL
#: message: a reload it asks for compiles every changed zone first.
CONTROL_FORWARD_TIMEOUT = 300.0
#: Time a worker waits for the main process's reply to a forwarded UPDATE:
#: the registry commits one change at a time, and waits for a reload's
#: compile to end before its own.
UPDATE_FORWARD_TIMEOUT = 60.0
#: The opcodes a worker forwards to the main process (which alone runs the
#: secondaries' refreshes, reloads, control commands and the registry), and
#: how long it waits for each one's reply.
FORWARDED_OPCODES: dict[int, float] = {Opcode.NOTIFY: FORWARD_TIMEOUT,
                                       Opcode.CONTROL: CONTROL_FORWARD_TIMEOUT,
                                       Opcode.UPDATE: UPDATE_FORWARD_TIMEOUT}
#: Largest channel message: a forwarded message (at most 65535 bytes) plus
#: its envelope.
MAX_CHANNEL_MESSAGE = 65536 + 512


def open_worker_channel(fd: int) -> trio.socket.SocketType:
    """The worker's end of its channel, from the descriptor the main process passed."""
    return trio.socket.from_stdlib_socket(socket.socket(fileno=fd))


class WorkerPool:
    """The main process's side: start, supervise and stop the workers, and
    answer what they forward through `handler`."""

    def __init__(self, config: ServeConfig, bound: list[tuple[str, int]], handler) -> None:
        self.config = config
        self.bound = bound
        self.handler = handler
        #: The cancel scope of each worker's current life, and the workers
        #: being restarted (`restart`) with the event their new life sets.
        self._lives: dict[int, trio.CancelScope] = {}
        self._restarting: dict[int, trio.Event] = {}

    async def restart(self, config: ServeConfig) -> None:
        """Restart the workers one at a time with `config` (the main
        process's new one), each new worker ready before the next stops."""
        self.config = config
        for index in sorted(self._lives):
            ready = self._restarting[index] = trio.Event()
            self._lives[index].cancel()
            with trio.move_on_after(WORKER_STOP_TIMEOUT + WORKER_START_TIMEOUT):
                await ready.wait()
            self._restarting.pop(index, None)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start workers 1 .. N-1; report started once each is ready; supervise them
        until cancelled (then stop them all)."""
        async with trio.open_nursery() as nursery:
            for index in range(1, self.config.workers):
                await nursery.start(self._supervise, index)
            log.info("all %d processes answering", self.config.workers)
            task_status.started()

    async def _supervise(self, index: int,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        attempt = 0
        first = task_status  # None once the first life has started
        while True:
            try:
                code = await self._run_once(index, first)
                first = None
                if code is _RESTARTED:
                    log.info("worker %d restarting for the new configuration", index)
                    continue
            except KeyresolveError as exc:
                if first is not None:
                    raise  # a worker that cannot start at all: the server cannot either
                code = None
                log.error("%s", exc)  # it names the worker
            if attempt >= MAX_WORKER_RESTARTS:
                log.error("worker %d exited (status %s) after %d restarts; not restarting it",
                          index, code, attempt)
                return
            log.error("worker %d exited (status %s); restarting it", index, code)
            await trio.sleep(WORKER_RESTART_DELAY)
            attempt += 1

    async def _run_once(self, index: int, task_status) -> int | None:
        """One life of worker `index`: its exit status (it never ends normally)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cmd = [sys.executable, "-m", "keyresolve", "serve", "--config", str(self.config.path),
               "--log-level", logging.getLevelName(logging.getLogger().level).lower(),
               "--worker", f"{index}:{theirs.fileno()}",
               "--config-digest", fingerprint(self.config)]
        for address in self.bound:
            cmd += ["--bound", format_endpoint(address)]
        try:
            with theirs:
                proc = await trio.lowlevel.open_process(cmd, pass_fds=(theirs.fileno(),),
                                                        stdin=subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
        channel = trio.socket.from_stdlib_socket(ours)
        with channel:  # closed last: a worker stopped by SIGTERM need not see it close
            try:
                with trio.move_on_after(WORKER_START_TIMEOUT):
                    first = await channel.recv(MAX_CHANNEL_MESSAGE)
                if not first or msgpack.unpackb(first) != ["ready"]:
                    raise KeyresolveError(f"worker {index} did not start "
                                          f"(pid {proc.pid}, status {proc.poll()})")
                log.info("worker %d started (pid %d)", index, proc.pid)
                if task_status is not None:
                    task_status.started()
                restarted = self._restarting.get(index)
                if restarted is not None:
                    restarted.set()
                with trio.CancelScope() as life:
                    self._lives[index] = life
                    if await self._relay(index, channel):
                        return await proc.wait()
                    return None  # stopped below, then restarted like one that exited
                return _RESTARTED  # `restart` cancelled this life
            finally:
                self._lives.pop(index, None)
                await _stop(proc)

    async def _relay(self, index: int, channel: trio.socket.SocketType) -> bool:
        """Answer what worker `index` forwards until it closes the channel
        (True). False if the channel fails, as when the worker dies between a
        message and its reply: that ends this life of the worker, never the
        server."""
        async with trio.open_nursery() as nursery:
            try:
                while message := await channel.recv(MAX_CHANNEL_MESSAGE):
                    reply = self._answer(message)
                    if isinstance(reply, bytes):
                        await channel.send(reply)
                    else:  # a CONTROL command: the others go on meanwhile
                        nursery.start_soon(self._reply_later, index, channel, reply)
            except OSError as exc:
                log.error("worker %d: its channel failed (%s)", index, exc.strerror or exc)
                nursery.cancel_scope.cancel()
                return False
        return True

    @staticmethod
    async def _reply_later(index: int, channel: trio.socket.SocketType, reply) -> None:
        try:
            await channel.send(await reply)
        except OSError as exc:  # the worker is gone: its supervisor sees that
            log.warning("worker %d: reply not sent (%s)", index, exc.strerror or exc)

    def _answer(self, message: bytes):
        """The reply to one forwarded message (no reply if the handler
        fails), or an awaitable of it."""
        try:
            kind, token, host, port, tcp, data = msgpack.unpackb(message)
            if kind != "forward":
                raise ValueError(kind)
        except (ValueError, TypeError, msgpack.UnpackException):
            log.error("unreadable message from a worker; ignored")
            return msgpack.packb(["reply", None, None])
        try:
            reply = self.handler.handle(data, (host, port), tcp)
        except Exception:  # the handler must not raise; never let it stop the server
            log.exception("failed to answer a message a worker forwarded from %s", host)
            reply = None
        if inspect.isawaitable(reply):
            return _packed_later(token, reply)
        return msgpack.packb(["reply", token, reply if isinstance(reply, bytes) else None])


async def _packed_later(token: int, pending) -> bytes:
    """The channel reply to a forwarded message answered by an awaitable."""
    try:
        reply = await pending
    except Exception:
        log.exception("failed to answer a message a worker forwarded")
        reply = None
    return msgpack.packb(["reply", token, reply if isinstance(reply, bytes) else None])


async def _stop(proc: trio.Process) -> None:
    """SIGTERM, then SIGKILL after WORKER_STOP_TIMEOUT; returns once it has exited."""
    if proc.returncode is not None:
        return
    proc.terminate()
    with trio.CancelScope(shield=True):
        with trio.move_on_after(WORKER_STOP_TIMEOUT):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


class Forwarder:
    """The worker's side of the channel: forward messages, await the replies."""

    def __init__(self, channel: trio.socket.SocketType) -> None:
        self.channel = channel
        self._tokens = itertools.count()
        self._waiting: dict[int, trio.MemorySendChannel] = {}

    async def run(self, cancel_scope: trio.CancelScope,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Say ready, then deliver replies; cancel `cancel_scope` (the
        worker) when the main process closes the channel."""
        await self.channel.send(msgpack.packb(["ready"]))
        task_status.started()
        while message := await self.channel.recv(MAX_CHANNEL_MESSAGE):
            try:
                _, token, reply = msgpack.unpackb(message)
            except (ValueError, TypeError, msgpack.UnpackException):
                continue
            waiter = self._waiting.pop(token, None)
            if waiter is not None:
                waiter.send_nowait(reply)
        log.info("the main process closed the channel: worker exiting")
        cancel_scope.cancel()

    async def forward(self, data: bytes, peer: tuple, tcp: bool,
                      timeout: float = FORWARD_TIMEOUT) -> bytes | None:
        """The main process's reply to `data` from `peer` (None: none, or
        none within `timeout`)."""
        token = next(self._tokens)
        send, receive = trio.open_memory_channel(1)
        self._waiting[token] = send
        try:
            await self.channel.send(msgpack.packb(["forward", token, peer[0], peer[1], tcp,
                                                   data]))
            with trio.move_on_after(timeout):
                return await receive.receive()
            log.warning("no reply from the main process to a message from %s", peer[0])
            return None
        finally:
            self._waiting.pop(token, None)
