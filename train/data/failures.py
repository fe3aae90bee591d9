"""Failure recording: a corrupt shard or sample met by a pipeline stage becomes one
:class:`~xpt.toolkit.failures.Failure` (a shard that breaks off, under the shard's file
name), kept by the worker until it ships them with its next chunk.
"""

from __future__ import annotations

import tarfile

from xpt.toolkit.failures import Failure

STAGE = "pretrain-data"


class SampleError(ValueError):
    """An object, or a whole shard, that cannot be used: ``key`` is the object's key, or the
    shard's file name when the whole shard (or the rest of it) is lost."""

    def __init__(self, key: str, url: str | None, reason: str):
        super().__init__(f"{url}: {key}: {reason}")
        self.key, self.url, self.reason = key, url, reason


class FailureRecorder:
    """The pipeline stages' error handler: records each problem as one Failure."""

    def __init__(self) -> None:
        self.pending: list[Failure] = []

    def __call__(self, exn: SampleError) -> None:
        self.pending.append(Failure(exn.key, exn.url, STAGE, exn.reason))

    def drain(self) -> list[Failure]:
        taken, self.pending = self.pending, []
        return taken


def _shard_reason(exn: Exception) -> str:
    """Why a shard could not be read to its end, in one line."""
    if isinstance(exn, tarfile.ReadError) and "unexpected end of data" in str(exn):
        return "truncated: the tar data ends inside a member (unexpected end of data)"
    if isinstance(exn, tarfile.ReadError) and "could not be opened" in str(exn):
        # (tarfile lists every compression it tried, one line each)
        return "an empty file (0 bytes)" if "empty file" in str(exn) else "not a tar file"
    if isinstance(exn, OSError) and exn.strerror:
        return f"{type(exn).__name__}: {exn.strerror}"
    return f"{type(exn).__name__}: {exn}" if str(exn) else type(exn).__name__
