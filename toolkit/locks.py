"""Who writes where: one xpt per output folder.

Output folders: each command's library entry point holds :func:`folder_lock` on its output
folder for the whole run, an exclusive ``flock`` of ``OUT/.xpt.lock``. A second writer is
refused with one line naming the holder. The kernel releases a flock when its process dies
(even by SIGKILL), so a dead process's lock is free without any clean-up: the JSON in the
file (``{pid, command, started, host}``) only names the holder in the refusal, and a file
left by a dead holder is taken over with a note. Parts of a render job array share one
folder by design and each lock a file of their own (:func:`part_lock`). Readers that list
an output folder skip these files (:func:`is_lock_file`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from xpt.toolkit.fsio import make_folder

LOCK_FILE = ".xpt.lock"
# flock's errors on file systems that cannot lock: the run goes on unguarded.
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


class FolderInUse(OSError):
    """Another live process holds the folder's lock: ``filename`` is the folder, ``strerror``
    names the holder (``in use by another xpt (pid 1234, xpt shard, since 18:02:11); ...``)."""


def part_lock(index: int, count: int) -> str:
    """The lock file of part ``index`` of ``count`` in a folder the parts share
    (:data:`LOCK_FILE` for a whole run)."""
    return LOCK_FILE if count == 1 else f".xpt-part-{index:03d}-of-{count:03d}.lock"


def is_lock_file(name: str) -> bool:
    """Whether ``name`` is one of the lock files of :func:`folder_lock` (a reader skips it)."""
    return name.startswith(".xpt") and name.endswith(".lock")


@contextmanager
def folder_lock(folder: str | os.PathLike, command: str, name: str = LOCK_FILE) -> Iterator[Path]:
    """Hold the exclusive lock ``folder/name`` for the body (``folder`` is created); yields
    the lock file's path.

    ``command`` ("xpt shard") names this run in another's refusal. Raises
    :class:`FolderInUse` when a live process holds the lock. On exit the lock file is
    removed, and so is ``folder`` when this call created it and nothing was written in it.
    """
    folder = Path(folder)
    created = not folder.exists()
    make_folder(folder)
    path = folder / name
    fd = None
    try:
        fd = _acquire(folder, path)
        if fd is not None:
            _claim(fd, folder, path, command)
        yield path
    finally:
        if fd is not None:
            _release(fd, path)
        if created:
            with suppress(OSError):
                folder.rmdir()


def carry_lock(folder: str | os.PathLike, into: str | os.PathLike) -> None:
    """Hard-link ``folder``'s held lock file into ``into``, the folder about to replace it
    (:func:`~xpt.toolkit.fsio.atomic_directory`), so the lock stays on the replacement;
    where no link can be made it ends with the replaced folder."""
    with suppress(OSError):
        os.link(Path(folder) / LOCK_FILE, Path(into) / LOCK_FILE)


def _acquire(folder: Path, path: Path) -> int | None:
    """An open descriptor of ``path`` holding its flock; None where the file system has no
    locks. A file its holder removed while this process waited on it is opened anew."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise FolderInUse(errno.EBUSY, _in_use(holder), str(folder)) from None
        except OSError as error:
            os.close(fd)
            if error.errno not in _NO_LOCKS:
                raise OSError(error.errno, error.strerror, str(path)) from None
            with suppress(OSError):
                path.unlink()
            _note(f"{folder}: the file system cannot lock files; a second xpt here is not refused")
            return None
        if _same_file(fd, path):
            return fd
        os.close(fd)


def _claim(fd: int, folder: Path, path: Path, command: str) -> None:
    """Write this process into the lock file, noting a dead holder's lock taken over."""
    stale = _read_holder(fd)
    if stale is not None:
        _note(f"{folder}: took over the lock of an xpt no longer running ({_describe(stale)})")
    holder = {
        "pid": os.getpid(),
        "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host": socket.gethostname(),
    }
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(path)) from None


def _release(fd: int, path: Path) -> None:
    """Remove the lock file (unless it was replaced since) and let go of the lock."""
    try:
        if _same_file(fd, path):
            with suppress(OSError):
                path.unlink()
    finally:
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        there = path.stat()
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _read_holder(fd: int) -> dict[str, Any] | None:
    """The holder recorded in the lock file; None when it is empty or not ours."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and "pid" in holder else None


def _describe(holder: dict[str, Any]) -> str:
    """``pid 1234, xpt shard, since 18:02:11`` (the date too when not today, the host when
    it is another machine)."""
    day, _, clock = str(holder.get("started", "?")).partition("T")
    started = clock if day == time.strftime("%Y-%m-%d") else f"{day} {clock}".strip()
    host = holder.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"pid {holder['pid']}{where}, {holder.get('command', 'xpt')}, since {started}"


def _in_use(holder: dict[str, Any] | None) -> str:
    """The refusal's reason: who holds the folder, and what to do."""
    who = "" if holder is None else f" ({_describe(holder)})"
    return f"in use by another xpt{who}; wait for it or stop it"


def _note(message: str) -> None:
    from rich.markup import escape

    from xpt.toolkit.console import err

    err.print(f"[yellow]note[/yellow] {escape(message)}", highlight=False, soft_wrap=True)
