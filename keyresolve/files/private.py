"""Files holding secrets: read only when they are regular, owner-only files.

Shared by the shells that read secrets from disk: HMAC secret files, the SMTP
password file, private key files. A refusal names the file and why, never
its contents.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..protocol.errors import ConfigError

#: Mode bits a secret file must not have: no access for group or others
#: (as ssh refuses a private key readable by others).
SECRET_FILE_FORBIDDEN_BITS = 0o077
#: Largest password file read (the SMTP password: a password, not a
#: document); the config checks it and `net.smtp` reads it at each send.
MAX_PASSWORD_FILE = 4096


def read_private(path: Path, limit: int, what: str) -> bytes:
    """The contents of `path`, a regular file of at most `limit` bytes that
    only its owner may read (else ConfigError naming `what` and the path,
    never the contents): for secrets such as a password file."""
    try:
        # O_NONBLOCK: opening a FIFO must not hang; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot open: {exc.strerror}") from None
    try:
        # fstat the open file, so the file checked is the file read.
        check_private(os.fstat(fd), path, what)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ConfigError(f"{what} {path} is larger than {limit} bytes")
    return data


def check_private(st: os.stat_result, path: Path, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file")
    if st.st_mode & SECRET_FILE_FORBIDDEN_BITS:
        raise ConfigError(f"{what} {path} is accessible by group or others "
                          f"(mode {stat.S_IMODE(st.st_mode):04o}; chmod 600 it)")


__all__ = ["MAX_PASSWORD_FILE", "SECRET_FILE_FORBIDDEN_BITS", "check_private", "read_private"]
