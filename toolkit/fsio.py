"""Atomic file and folder writes: a temporary name in the same folder, then a rename.

An interrupted run therefore never leaves a half-written file under its final name,
which is what lets every command resume by looking only at final names. A write that
fails (a full disk above all) removes its temporary file and raises :class:`WriteError`, one
line naming the file, the reason and the space left.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

TMP_PREFIX = ".tmp-"
_FULL = (errno.ENOSPC, errno.EDQUOT)  # the errors of a full disk or quota


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_folder(path: str | os.PathLike) -> Path:
    """Create folder ``path`` and its parents (an existing one is fine); returns it.

    A file in the way raises ``NotADirectoryError`` naming ``path`` (``mkdir`` says
    "File exists", which reads as if the folder were there).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None
    return path


def check_writable(*paths: str | os.PathLike | None) -> None:
    """Fail now, not after the work, if an output file of ``paths`` could not be written:
    creates its folder and a throw-away file in it. None and ``-`` (stdout) are skipped.
    Raises ``OSError`` naming the path."""
    for path in paths:
        if path is not None and os.fspath(path) != "-":
            _check_writable(Path(path))


def _check_writable(path: Path) -> None:
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        make_folder(path.parent)
        with tempfile.TemporaryFile(prefix=TMP_PREFIX, dir=path.parent):
            pass
    except OSError as error:
        raise _naming(error, path) from None


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` as the same kind of ``OSError`` about ``path`` (not a temporary name)."""
    if error.errno is None:
        return error
    code = errno.ENOTDIR if isinstance(error, FileExistsError) else error.errno
    return OSError(code, os.strerror(code), str(path))


class WriteError(OSError):
    """A file or folder that could not be written, as the one line a command prints:
    ``<path>: cannot write <what>: <why>[ (<free> free on <mount>)][; the previous <name> is
    kept]``. Built like any ``OSError`` (``WriteError(errno, reason, path)``), so it pickles
    across processes and ``except OSError`` still catches it."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"

    @property
    def disk_full(self) -> bool:
        """The disk or the quota is full: every later write there would fail too."""
        return self.errno in _FULL


@contextmanager
def writing(path: str | os.PathLike, what: str = "the file") -> Iterator[None]:
    """Turn a failure to write ``path`` inside the block into a :class:`WriteError`.

    Meant for writes that go to a temporary name and remove it on failure, or that append a
    line to a record whose readers skip a torn last line: an existing ``path`` is kept (the
    message says so). Translates an ``OSError``, or a
    ``RuntimeError`` raised around one (``torch.save`` on a full disk raises ``[enforce fail
    at inline_container.cc] unexpected pos``); anything else passes through.
    """
    try:
        yield
    except WriteError:
        raise
    except (OSError, RuntimeError) as error:
        cause = _os_error(error)
        if cause is None:
            raise
        raise _write_error(cause, Path(path), what) from None


def _os_error(error: BaseException) -> OSError | None:
    """``error`` itself or the ``OSError`` it was raised from or while handling, if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _write_error(error: OSError, path: Path, what: str) -> WriteError:
    """``error``, met while writing ``path``, as a :class:`WriteError` naming ``path``."""
    code = errno.ENOTDIR if isinstance(error, FileExistsError) else error.errno
    why = os.strerror(code) if code else str(error)
    why = why[:1].lower() + why[1:]
    space = _free_space(path.parent) if code in _FULL else None
    if space:
        why += f" ({space})"
    if path.is_file():
        why += f"; the previous {path.name} is kept"
    return WriteError(code, f"cannot write {what}: {why}", str(path))


def _free_space(folder: Path) -> str | None:
    """``12.3 MB free on /mnt/x`` for the file system of ``folder`` (or of its nearest
    existing parent); None when that cannot be read."""
    folder = folder.resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    mount = folder
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    return f"{_decimal_size(free)} free on {mount}"


def _decimal_size(size: int) -> str:
    """``512 B``, ``12.3 MB``: bytes in SI units, as ``df -H`` counts them."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if round(value, 1) < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def atomic_write(
    path: str | os.PathLike, write: Callable[[BinaryIO], object], what: str = "the file"
) -> Path:
    """Call ``write`` with a binary file open on a temporary name beside ``path``, fsync it
    and rename it over ``path``, so ``path`` is never half-written; returns ``path``.

    The file gets the mode a plain ``open()`` would give it (``mkstemp`` creates 0600). A
    failure removes the temporary file and raises :class:`WriteError` (``what`` names the
    file in it: "the checkpoint"); an existing ``path`` is kept as it was.
    """
    path = Path(path)
    with writing(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
        try:
            with open(fd, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, what: str = "the file") -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda handle: handle.write(data), what)


def atomic_write_text(path: str | os.PathLike, text: str, what: str = "the file") -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), what)


def atomic_write_json(path: str | os.PathLike, data: Any, what: str = "the file") -> Path:
    """Write ``data`` as indented, key-sorted JSON atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", what)


@contextmanager
def atomic_directory(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; rename it to ``final`` on success.

    A folder left over from an interrupted attempt is removed first, and so is the
    temporary folder when the body raises. An existing ``final`` is replaced.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def printable(text: str | os.PathLike) -> str:
    """``text`` as valid Unicode: bytes of a file name that are not UTF-8 become ``\\xNN``.

    Python decodes such bytes to lone surrogates (``surrogateescape``), which cannot be
    written as UTF-8 and make invalid JSON strings; records and keys use this form instead.
    """
    text = os.fspath(text)
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file name decoded to
        data = text.encode("utf-8", "backslashreplace")
    return data.decode("utf-8", "backslashreplace")


def not_a_folder(path: str | os.PathLike) -> str | None:
    """Why no folder can be at ``path``: ``a file, not a folder`` when ``path`` is a file,
    ``<parent> is a file, not a folder`` when one of its parents is; None otherwise.

    For messages about an output folder: ``mkdir`` says "File exists" or "Not a directory",
    which reads as if the folder were there, and names only the part it tripped on.
    """
    path = Path(path)
    for candidate in (path, *path.parents):
        if os.path.isdir(candidate):
            return None
        if os.path.lexists(candidate):
            return (
                "a file, not a folder"
                if candidate == path
                else f"{candidate} is a file, not a folder"
            )
    return None


@contextmanager
def removed_if_left_empty(path: str | os.PathLike) -> Iterator[Path]:
    """Yield ``path``; when the body raises, remove the folders of ``path`` that did not exist
    before and are still empty, so that a run failing at its start leaves no empty output
    folder that reads as a half-done run."""
    path = Path(path)
    new = [p for p in (path, *path.parents) if not os.path.lexists(p)]
    try:
        yield path
    except BaseException:
        for folder in new:  # deepest first; rmdir removes only an empty folder
            try:
                folder.rmdir()
            except OSError:
                break
        raise
