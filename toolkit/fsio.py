"""Atomic file and folder writes: a temporary name in the same folder, then a rename.

An interrupted run therefore never leaves a half-written file under its final name,
which is what lets every command resume by looking only at final names.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the final path.

    An ``OSError`` names ``path``, never the temporary file.
    """
    path = Path(path)
    try:
        return _atomic_write_bytes(path, data)
    except OSError as error:
        raise _naming(error, path) from None


def _atomic_write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented, key-sorted JSON atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


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
