"""Datagrams received and sent in batches: Linux's recvmmsg and sendmmsg.

One system call moves up to `SLOTS` datagrams each way, where `socket`
makes one per datagram and converts every peer address to a tuple and back
(NSD and Knot batch the same way). The calls go through ctypes, because
neither the standard library nor trio offers them, into buffers allocated
once per socket: the kernel writes at most a slot's size into each, and
every length read back is bounded by the slot it describes.

`DatagramBatch.open` returns None where this is not available (not Linux,
not 64-bit, a libc without the calls, or `KEYRESOLVE_NO_MMSG` set in the
environment); the server loop then calls recvfrom and sendto per datagram,
with the same results.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import mmap
import operator
import os
import socket
import struct
import sys

from ..protocol.message import MAX_MESSAGE

#: Datagrams per system call each way. 64 measured faster than 16 under
#: load (benchmarks/RESULTS.md); the loop's `MAX_BATCH` still bounds how
#: many are answered before other tasks run.
SLOTS = 64
#: Bytes per receive slot: the largest datagram the loop reads, as
#: recvfrom(MAX_DATAGRAM) does; a longer one is cut there and fails to decode.
#: The buffers are anonymous mappings, so pages never written take no memory.
RECV_SLOT = MAX_MESSAGE
#: Bytes per send slot: the largest UDP payload (65,535 minus the IP and UDP
#: headers). A longer reply could not be sent anyway; it is dropped.
SEND_SLOT = 65507
#: Bytes kept per peer address: a sockaddr_in6 (28 bytes) fits.
NAME_SLOT = 128
#: Peer address tuples remembered by their raw bytes; past it, start over.
#: Bounds the memory clients with changing ports can take.
MAX_PEERS = 4096
#: recvmmsg calls one `receive` makes while each returns only an error it
#: consumes (EINTR, an ICMP error queued by an earlier send): bounds the call
#: as the per-datagram loop is bounded by its batch; then it reports nothing.
MAX_RECEIVE_TRIES = SLOTS
#: Set in the environment, turns batching off (the per-datagram loop runs).
DISABLE_ENV = "KEYRESOLVE_NO_MMSG"

_RETRY = frozenset((errno.EINTR,))
_EMPTY = frozenset((errno.EAGAIN, errno.EWOULDBLOCK))


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.c_void_p), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_HDR = ctypes.sizeof(_Mmsghdr)
#: The size of a peer address the kernel writes, by socket family.
_SOCKADDR_SIZE = {socket.AF_INET: 16, socket.AF_INET6: 28}
_IOV = ctypes.sizeof(_Iovec)
_NAMELEN_AT = _Msghdr.msg_namelen.offset
_LEN_AT = _Mmsghdr.msg_len.offset


def _libc_calls():
    """(recvmmsg, sendmmsg) from the C library, or None."""
    if (sys.platform != "linux" or ctypes.sizeof(ctypes.c_void_p) != 8
            or os.environ.get(DISABLE_ENV)):
        return None  # the layouts below are 64-bit Linux's
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                         ctypes.c_void_p]
    recvmmsg.restype = ctypes.c_int
    sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    sendmmsg.restype = ctypes.c_int
    return recvmmsg, sendmmsg


def _buffer(size: int) -> tuple[mmap.mmap, int]:
    """An anonymous mapping of `size` bytes and its address."""
    area = mmap.mmap(-1, size)
    return area, ctypes.addressof(ctypes.c_char.from_buffer(area))


def peer_from_sockaddr(raw: bytes) -> tuple:
    """The address tuple `socket.recvfrom` gives for a sockaddr_in or
    sockaddr_in6 (family in host byte order, port and flow info in network
    order, the scope id in host order)."""
    family = int.from_bytes(raw[:2], sys.byteorder)
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET and len(raw) >= 8:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    if family == socket.AF_INET6 and len(raw) >= 28:
        return (socket.inet_ntop(socket.AF_INET6, raw[8:24]), port,
                int.from_bytes(raw[4:8], "big"), int.from_bytes(raw[24:28], sys.byteorder))
    raise ValueError(f"not an IPv4 or IPv6 address (family {family}, {len(raw)} bytes)")


class BatchUnavailable(OSError):
    """The kernel described a datagram in a way batching does not expect
    (a peer address of another size): the caller goes back to recvfrom."""


class DatagramBatch:
    """Batched receive and send on one UDP socket (made by `open`).

    `receive` returns the datagrams ready, as (data, peer); `send` then
    answers them: its list holds a reply or None for each, in order. Replies
    go to the addresses of the datagrams they answer, which the next
    `receive` overwrites.
    """

    def __init__(self, sock: socket.socket, calls) -> None:
        self._fileno = sock.fileno  # asked each call: a closed socket's number may be reused
        self._recvmmsg, self._sendmmsg = calls
        #: The size of every peer address on this socket (IPv4 or IPv6).
        self._name_len = _SOCKADDR_SIZE[sock.family]
        self._recv_area, recv_at = _buffer(SLOTS * RECV_SLOT)
        self._send_area, self._send_at = _buffer(SLOTS * SEND_SLOT)
        self._names, names_at = _buffer(SLOTS * NAME_SLOT)
        self._recv_hdrs = (_Mmsghdr * SLOTS)()
        self._send_hdrs = (_Mmsghdr * SLOTS)()
        self._recv_iovs = (_Iovec * SLOTS)()  # kept alive: the headers point into them
        self._send_iovs = (_Iovec * SLOTS)()
        for i in range(SLOTS):
            self._recv_iovs[i].iov_base = recv_at + i * RECV_SLOT
            self._recv_iovs[i].iov_len = RECV_SLOT
            for hdrs, iovs in ((self._recv_hdrs, self._recv_iovs),
                               (self._send_hdrs, self._send_iovs)):
                hdr = hdrs[i].msg_hdr
                hdr.msg_name, hdr.msg_namelen = names_at + i * NAME_SLOT, NAME_SLOT
                hdr.msg_iov, hdr.msg_iovlen = ctypes.addressof(iovs[i]), 1
            # a reply goes to the address its datagram came from: the same slot
            self._send_hdrs[i].msg_hdr.msg_namelen = self._name_len
        #: The receive headers as set up: restored before each call, since
        #: the kernel rewrites each name length.
        self._recv_template = bytes(memoryview(self._recv_hdrs).cast("B"))
        self._recv_hdrs_at = ctypes.addressof(self._recv_hdrs)
        self._send_hdrs_at = ctypes.addressof(self._send_hdrs)
        self._recv_hdrs_view = memoryview(self._recv_hdrs).cast("B")
        self._send_iovs_view = memoryview(self._send_iovs).cast("B")
        self._send_view = memoryview(self._send_area)
        data = memoryview(self._recv_area)
        names = memoryview(self._names)
        #: Each slot's received bytes up to a length, and its peer address.
        self._slot_views = [data[i * RECV_SLOT:(i + 1) * RECV_SLOT] for i in range(SLOTS)]
        self._name_slices = [names[i * NAME_SLOT:i * NAME_SLOT + self._name_len]
                             for i in range(SLOTS)]
        #: (name length, datagram length) of each of the first n headers.
        self._lengths = [struct.Struct("=" + (f"{_NAMELEN_AT}xI{_LEN_AT - _NAMELEN_AT - 4}x"
                                              f"I{_HDR - _LEN_AT - 4}x") * n)
                         for n in range(SLOTS + 1)]
        #: (iov_base, iov_len) of n iovecs.
        self._iovecs = [struct.Struct("=" + "QQ" * n) for n in range(SLOTS + 1)]
        self._peers: dict[bytes, tuple] = {}
        self._received = 0  # datagrams of the last `receive`: what `send` may answer

    @classmethod
    def open(cls, sock: socket.socket) -> DatagramBatch | None:
        """Batching for `sock` (a UDP socket), or None where it is not
        available (see the module docstring)."""
        calls = _libc_calls()
        if calls is None or sock.type != socket.SOCK_DGRAM or sock.family not in _SOCKADDR_SIZE:
            return None
        return cls(sock, calls)

    def receive(self, limit: int = SLOTS) -> list[tuple[bytes, tuple]]:
        """The datagrams ready now (up to `limit`, at most `SLOTS`), as
        (data, peer); empty when none is. An error queued on the socket (an
        ICMP error from an earlier send) is passed over, as with recvfrom."""
        fd = self._fileno()
        if fd < 0:
            raise OSError(errno.EBADF, "the socket is closed")
        for _ in range(MAX_RECEIVE_TRIES):
            ctypes.memmove(self._recv_hdrs_at, self._recv_template, len(self._recv_template))
            count = self._recvmmsg(fd, self._recv_hdrs_at, min(limit, SLOTS),
                                   socket.MSG_DONTWAIT, None)
            if count > 0:
                break
            code = ctypes.get_errno()
            if count == 0 or code in _EMPTY:
                return []
            if code == errno.EBADF:
                raise OSError(code, os.strerror(code))
            # EINTR, or a queued error (ECONNREFUSED...): it is consumed; call again
        else:
            return []
        self._received = 0  # until the datagrams are known to have peers
        fields = self._lengths[count].unpack_from(self._recv_hdrs_view)
        if fields[::2].count(self._name_len) != count:
            raise BatchUnavailable(f"a peer address of {set(fields[::2])} bytes")
        sizes = [min(size, RECV_SLOT) for size in fields[1::2]]
        data = list(map(bytes, map(operator.getitem, self._slot_views, map(slice, sizes))))
        raws = list(map(bytes, self._name_slices[:count]))
        peers = list(map(self._peers.get, raws))
        if None in peers:
            for i, peer in enumerate(peers):
                if peer is None:
                    peers[i] = self._peer(raws[i])
        self._received = count
        return list(zip(data, peers))

    def _peer(self, raw: bytes) -> tuple:
        try:
            peer = peer_from_sockaddr(raw)
        except ValueError as exc:
            raise BatchUnavailable(str(exc)) from None
        if len(self._peers) >= MAX_PEERS:
            self._peers.clear()
        self._peers[raw] = peer
        return peer

    def send(self, replies: list[bytes | None]) -> None:
        """Send `replies[i]`, where it is not None, to the peer of datagram i
        of the last `receive`. As with sendto, a reply the kernel will not
        take (a full buffer, an unreachable peer) is dropped: UDP may drop."""
        if len(replies) > self._received:
            raise ValueError(f"{len(replies)} replies to {self._received} datagrams")
        if not replies:
            return
        if None not in replies and max(map(len, replies)) <= SEND_SLOT:
            self._send_run(0, replies)  # the common case: one run
            return
        start = 0
        for end, reply in enumerate([*replies, None]):
            if reply is None or len(reply) > SEND_SLOT:  # larger than any datagram: dropped
                if end > start:
                    self._send_run(start, replies[start:end])
                start = end + 1

    def _send_run(self, first: int, replies: list[bytes]) -> None:
        """Send `replies` from the slots that begin at `first`."""
        sizes = list(map(len, replies))
        base = self._send_at + first * SEND_SLOT
        offsets = itertools.accumulate(sizes, initial=base)
        joined = b"".join(replies)
        at = first * SEND_SLOT
        self._send_view[at:at + len(joined)] = joined
        self._iovecs[len(replies)].pack_into(self._send_iovs_view, first * _IOV,
                                             *itertools.chain.from_iterable(zip(offsets, sizes)))
        fd = self._fileno()
        total, sent = len(replies), 0
        while sent < total and fd >= 0:
            count = self._sendmmsg(fd, self._send_hdrs_at + (first + sent) * _HDR,
                                   total - sent, 0)
            if count > 0:
                sent += count
                continue
            code = ctypes.get_errno()
            if code in _RETRY:
                continue
            if code in _EMPTY or code == errno.EBADF:
                return  # the rest would fail the same way
            sent += 1  # this reply's peer refused it: skip to the next

