"""The local file system for the pure zone readers, and the collector pause.

`zonedata.zonefile` and `zonedata.bulkcompile` read files only through the
`zonefile.Files` object they are given; `LOCAL_FILES` is the one that reads
the local disk. The callers that build or compile big zones (the store, the
CLI, the benchmarks) pause the cyclic garbage collector meanwhile with
`gc_paused`: a zone is millions of objects and no cycles (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO


class LocalFiles:
    """`zonefile.Files` on the local disk."""

    def realpath(self, path: str) -> str:
        """`os.path.realpath`: absolute, symlinks and ``..`` resolved."""
        return os.path.realpath(path)

    def open(self, path: str, *, nofollow: bool = False) -> BinaryIO:
        """Open a regular file (`zonefile.Files.open`); `OSError` with the
        reason as its strerror otherwise ("not a regular file" for devices
        and FIFOs, which could be endless: /dev/zero)."""
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)  # a FIFO would wait for a writer
        if nofollow:
            flags |= getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags)
        try:
            stream = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        try:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
        except BaseException:
            stream.close()
            raise
        return stream

    def size(self, stream: BinaryIO) -> int:
        """The size of the file `stream` reads."""
        return os.fstat(stream.fileno()).st_size


#: The local disk, for the `files=` argument of the zone readers.
LOCAL_FILES = LocalFiles()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a zone is built or compiled.

    A `Zone` is millions of long-lived containers and no reference cycles,
    and every collection walks all of them. Reference counting still frees
    what is dropped. The switch is process-wide (a thread building a zone
    pauses collection for the other threads meanwhile); it is turned back on
    at the end if it was on at the start.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


__all__ = ["LOCAL_FILES", "LocalFiles", "gc_paused"]
