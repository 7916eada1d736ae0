"""SQLite's errors said in words: which file, SQLite's message and code, the likely cause.

Every SQLite file the library keeps (the event store, checkpoints, keys, the audit log)
names its errors with :func:`named_error`. SQLite's code alone often cannot tell what
happened: it reports ``SQLITE_CANTOPEN`` for a missing file, a missing directory, a
file it may not read, and a database in WAL mode whose directory cannot take the
``-wal`` and ``-shm`` files (a read-only mount, an immutable directory). So an error
opening a file is explained by looking at the file and its directory
(:func:`open_cause`).
"""

from __future__ import annotations

import os
import sqlite3
import struct
import sys

from .._errors import StoreError

__all__ = ["NOTHING_WRITTEN", "named_error", "open_cause", "read_only_file", "unwritable_directory"]

#: what an SQLite primary result code means for a file, said in a StoreError
_CAUSES = {
    8: (  # SQLITE_READONLY
        "the file or its directory cannot be written (permissions, a read-only mount), or "
        "the -wal and -shm files SQLite keeps beside it in WAL mode (one left read-only "
        "by a reader, say); without those a database in a read-only directory cannot "
        "even be read (an event store can, with ?immutable=1, if nothing writes it)"
    ),
    10: (  # SQLITE_IOERR: EFBIG (a file size limit), a failing device
        "the disk failed or the file reached a size limit (RLIMIT_FSIZE, the file system's)"
    ),
    13: "the disk is full",  # SQLITE_FULL
    14: "the file or its directory cannot be opened (missing, or no permission)",
}

#: what a failed write tells its caller: its transaction was rolled back, and its file's
#: owner opens a connection again if the file was read-only (see :func:`read_only_file`)
NOTHING_WRITTEN = (
    "nothing of this call was written; reads go on, and writes work again once the cause is gone"
)

#: the codes an opening refused for want of a writable directory comes with: EACCES on
#: the directory gives READONLY_DIRECTORY, EROFS and EPERM (an immutable one) CANTOPEN
_OPENING_CODES = frozenset({"SQLITE_CANTOPEN", "SQLITE_READONLY_DIRECTORY"})
#: ``FS_IOC_GETFLAGS`` (Linux: ``_IOR('f', 1, long)``) and its ``FS_IMMUTABLE_FL``
_GET_FLAGS = 0x80006601 | struct.calcsize("l") << 16
_IMMUTABLE_FLAG = 0x10


def named_error(
    error: BaseException,
    path: str,
    outcome: str = "",
    *,
    head: str | None = None,
    kind: type[StoreError] = StoreError,
    hint: str = "",
) -> BaseException:
    """A ``sqlite3`` error as a ``kind`` error naming ``path`` and the likely cause.

    The message is ``<head>: <SQLite's message> (<its code>); <the likely cause>;
    <outcome>``. ``head`` says which file it is, ``SQLite: 'path'`` unless given (the
    key store's is ``the key store 'path' failed``); ``outcome`` is what became of the
    call ("nothing was written"). An error opening the file is explained by
    :func:`open_cause`; when that finds the file's directory cannot be written, ``hint``
    (what to do instead, such as ``?immutable=1`` for an event store) ends the message.
    The ``sqlite3`` error is kept as ``__cause__``. Other errors are returned as is.
    """
    if not isinstance(error, sqlite3.Error):
        return error
    code = getattr(error, "sqlite_errorcode", None)
    name = getattr(error, "sqlite_errorname", None)
    lead = f"SQLite: {path!r}" if head is None else head
    parts = [f"{lead}: {error}" + (f" ({name})" if name else "")]
    found = open_cause(path) if name in _OPENING_CODES else None
    cause = found[0] if found is not None else None
    if cause is None and isinstance(code, int):
        cause = _CAUSES.get(code & 0xFF)
    if cause is not None:
        parts.append(cause)
    if outcome:
        parts.append(outcome)
    if hint and found is not None and found[1]:
        parts.append(hint)
    translated = kind("; ".join(parts))
    translated.__cause__ = error
    if outcome == NOTHING_WRITTEN:
        translated.written = False
    return translated


def open_cause(path: str) -> tuple[str | None, bool]:
    """Why SQLite cannot open the file at ``path``, found by looking at it and its
    directory, and whether that is a directory it cannot write.

    ``(None, False)`` when nothing found explains it (SQLite's code is then all there
    is). Permissions are checked with ``os.access``, for this process's real user.
    """
    file = os.path.abspath(path)
    directory = os.path.dirname(file)
    if not os.path.isdir(directory):
        return f"its directory {directory!r} does not exist", False
    if os.path.isdir(file):
        return "it is a directory, not a file", False
    why = _unwritable(directory)
    if not os.path.exists(file):
        if why is None:
            return "the file does not exist", False
        return f"the file does not exist, and its directory cannot be written ({why})", False
    if not os.access(file, os.R_OK):
        return "the file cannot be read (no permission)", False
    if why is None:
        return None, False
    return (
        f"its directory {directory!r} cannot be written ({why}): in WAL mode SQLite keeps "
        "the -wal and -shm files beside the database, and without them it cannot even "
        "read it"
    ), True


def unwritable_directory(path: str) -> str | None:
    """Why the directory of ``path``, an existing file this process may read, cannot be
    written: a read-only file system, an immutable directory, no permission (None: it
    can be written, or ``path`` is no such file)."""
    file = os.path.abspath(path)
    if not os.path.isfile(file) or not os.access(file, os.R_OK):
        return None
    return _unwritable(os.path.dirname(file))


def _unwritable(directory: str) -> str | None:
    if os.access(directory, os.W_OK):  # False on a read-only file system, even for root
        return None
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return "a read-only file system"
    except OSError:
        pass
    if _immutable(directory):
        return "immutable: chattr +i"
    return "no permission"


def _immutable(directory: str) -> bool:
    """Whether ``directory`` has the immutable attribute (Linux; False where unknown)."""
    if sys.platform != "linux":
        return False
    import fcntl

    try:
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        flags = fcntl.ioctl(descriptor, _GET_FLAGS, bytes(8))
    except OSError:  # a file system without attributes (tmpfs)
        return False
    finally:
        os.close(descriptor)
    return bool(int.from_bytes(flags[:4], sys.byteorder) & _IMMUTABLE_FLAG)


def read_only_file(error: BaseException) -> bool:
    """Whether ``error`` is SQLite's "attempt to write a readonly database".

    A connection that opened a file it could not write (SQLite then opens it read-only)
    stays read-only after the file becomes writable: its owner opens a new one.
    """
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.Error) and isinstance(code, int) and code & 0xFF == 8
