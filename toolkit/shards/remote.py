"""Shard sets that live elsewhere: URLs read through WebDataset's opener (``wds.gopen``).

A remote set is named the way a local one is, by its folder or its ``manifest.json``;
the manifest is read through the same opener as the shards, and the shard URLs are made
relative to it::

    https://host/set/  or  https://host/set/manifest.json
        -> https://host/set/train-000000.tar, ...
    pipe:aws s3 cp s3://bucket/set/manifest.json -
        -> pipe:aws s3 cp s3://bucket/set/train-000000.tar -
    s3://bucket/set/  (shorthand for the pipe: command above; needs the aws CLI)

``http(s)://`` goes through ``curl`` (webdataset's handler), ``pipe:CMD`` runs ``CMD`` in
a shell and reads its stdout. In a ``pipe:`` command the one word ending in
``manifest.json`` is the manifest; the shard names replace that ending.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from xpt.toolkit.shards.manifest import MANIFEST, ManifestError, parse_manifest

# Two letters at least: a one-letter "scheme" is a Windows drive (C:).
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]+):", re.IGNORECASE)
# ``manifest.json`` ending a word of a pipe: command (optionally before a closing quote).
_PIPE_MANIFEST = re.compile(r"(?<=[\s/'\"=])manifest\.json(?=['\"]?(?:\s|$))")
_SHARD_SUFFIX = re.compile(r"\.(tar|tgz|tar\.gz|tar\.zst)$", re.IGNORECASE)
_LOCAL_ONLY = (
    "xpt {command} reads local shard sets only (it checks files on disk); copy the set "
    "here first (e.g. `aws s3 sync s3://bucket/set/ set/`, or curl manifest.json and its "
    "shards into a folder) and run it on that folder. `xpt pretrain` reads remote sets."
)


def is_remote(spec: str) -> bool:
    """True for a URL read through the opener (``pipe:``, ``http(s)://``, ``s3://``, ...);
    plain paths and ``file:`` URLs are local."""
    match = _SCHEME.match(spec)
    return bool(match) and match[1].lower() != "file"


def local_only(spec: str, command: str) -> str:
    """The one line saying that ``xpt command`` does not read the remote ``spec``."""
    return f"{spec}: {_LOCAL_ONLY.format(command=command)}"


def opener_url(url: str) -> str:
    """The URL as ``wds.gopen`` opens it: ``s3://...`` becomes ``pipe:aws s3 cp URL -``
    (webdataset has no s3 handler of its own); anything else is unchanged."""
    if url.lower().startswith("s3://"):
        return f"pipe:aws s3 cp {shlex.quote(url)} -"
    return url


def manifest_url(spec: str) -> str | None:
    """The manifest URL of a remote ``spec`` that names a set (its folder or its
    ``manifest.json``), or None when ``spec`` names shards (``.tar``, brace patterns)."""
    if spec.startswith("pipe:"):
        return spec if len(_PIPE_MANIFEST.findall(spec)) == 1 else None
    scheme, host, path, query, fragment = urlsplit(spec)
    last = path.rsplit("/", 1)[-1]
    if last == MANIFEST:
        return spec
    if "{" in spec or _SHARD_SUFFIX.search(last):
        return None
    if not path.endswith("/"):  # https://host/set: a folder
        if "." in last:
            return None  # some other file: read as a shard
        path += "/"
    return urlunsplit((scheme, host, path + MANIFEST, query, fragment))


def sibling_url(manifest: str, name: str) -> str:
    """The URL of file ``name`` beside the manifest at URL ``manifest``."""
    if manifest.startswith("pipe:"):
        return _PIPE_MANIFEST.sub(name, manifest, count=1)
    scheme, host, path, query, fragment = urlsplit(manifest)
    return urlunsplit((scheme, host, path.rsplit("/", 1)[0] + "/" + name, query, fragment))


def read_url(url: str) -> bytes:
    """The whole content at ``url`` (through the opener); OSError/ValueError on failure,
    including a ``pipe:`` command or ``curl`` that exits non-zero."""
    import webdataset as wds

    stream = wds.gopen(opener_url(url))
    with contextlib.closing(stream):
        return stream.read()


def read_remote_manifest(url: str) -> dict[str, Any]:
    """Read and sanity-check the manifest at ``url``; ManifestError says why not."""
    try:
        data = read_url(url)
    except Exception as error:  # the opener's errors: OSError, ValueError, a failed command
        raise ManifestError(f"{url}: cannot read the manifest: {_reason(url, error)}") from None
    if not data:
        raise ManifestError(f"{url}: cannot read the manifest: nothing came back")
    return parse_manifest(data, url)


def _reason(url: str, error: Exception) -> str:
    """One line for an opener error (webdataset's Pipe says ``(args...): exit N (read)``)."""
    status = re.search(r"\): exit (-?\d+) \(read\)", str(error))
    if status is None:
        return " ".join(str(error).split()) or type(error).__name__
    opened = opener_url(url)
    program = opened[5:].strip() if opened.startswith("pipe:") else "curl"
    hint = " (curl exits 22 for an HTTP error such as 404)" if program == "curl" else ""
    return f"`{program}` exited with status {status[1]}{hint}"
