"""Remote shard sets: a set served over http (a localhost server in a thread, read through
webdataset's curl handler) or through ``pipe:cat`` resolves from its manifest like the local
folder, and one epoch of the pretraining loader gives the same batches."""

from __future__ import annotations

import functools
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from xpt.toolkit.shards.remote import manifest_url, opener_url, sibling_url
from xpt.train.data import LoaderConfig, ShardLoader, ShardSpecError, resolve_shards

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="http is read with curl")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(tiny_shards: Path) -> Iterator[str]:
    """``http://127.0.0.1:PORT/set`` serving the tiny shard set (the parent folder)."""
    handler = functools.partial(_QuietHandler, directory=str(tiny_shards.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{tiny_shards.name}"
    server.shutdown()
    thread.join()


def _epoch(spec: str | Path) -> list:
    config = LoaderConfig(batch_size=4, points=32, image_size=16, shuffle_buffer=8)
    loader = ShardLoader(resolve_shards(spec), config, on_error=None)
    batches = list(loader.epoch(0))
    assert loader.failures == []
    return batches


def _same_batches(a: list, b: list) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x.keys == y.keys
        assert torch.equal(x.points, y.points) and torch.equal(x.images, y.images)


def test_urls_beside_the_manifest() -> None:
    assert manifest_url("https://host/set") == "https://host/set/manifest.json"
    assert manifest_url("https://host/set/") == "https://host/set/manifest.json"
    assert manifest_url("https://host/set/train-{000000..000009}.tar") is None
    assert manifest_url("https://host/set/train-000000.tar") is None
    assert manifest_url("pipe:cat set/train-000000.tar") is None
    piped = "pipe:aws s3 cp s3://b/set/manifest.json -"
    assert manifest_url(piped) == piped
    assert sibling_url(piped, "val-000001.tar") == "pipe:aws s3 cp s3://b/set/val-000001.tar -"
    assert sibling_url("pipe:cat '/a b/manifest.json'", "t.tar") == "pipe:cat '/a b/t.tar'"
    assert sibling_url("https://h/s/manifest.json?k=1", "t.tar") == "https://h/s/t.tar?k=1"
    assert opener_url("s3://b/set/t.tar") == "pipe:aws s3 cp s3://b/set/t.tar -"


@needs_curl
@pytest.mark.parametrize("form", ["{}", "{}/", "{}/manifest.json"])
def test_http_set_resolves_from_its_manifest(served: str, tiny_shards: Path, form: str) -> None:
    local = resolve_shards(tiny_shards)
    remote = resolve_shards(form.format(served))
    assert remote.samples == local.samples == 12
    assert remote.urls == tuple(f"{served}/{Path(u).name}" for u in local.urls)
    assert resolve_shards(served, split="val").samples == 2


def test_pipe_set_resolves_from_its_manifest(tiny_shards: Path) -> None:
    local = resolve_shards(tiny_shards)
    remote = resolve_shards(f"pipe:cat {tiny_shards}/manifest.json")
    assert remote.samples == local.samples
    assert remote.urls == tuple(f"pipe:cat {u}" for u in local.urls)


@needs_curl
def test_one_epoch_over_http_equals_the_local_epoch(served: str, tiny_shards: Path) -> None:
    local = _epoch(tiny_shards)
    _same_batches(_epoch(f"{served}/"), local)
    brace = _epoch(f"{served}/train-{{000000..000001}}.tar")  # no manifest: one pass
    assert sorted(k for b in brace for k in b.keys) == sorted(k for b in local for k in b.keys)


def test_one_epoch_over_pipe_equals_the_local_epoch(tiny_shards: Path) -> None:
    _same_batches(_epoch(f"pipe:cat {tiny_shards}/manifest.json"), _epoch(tiny_shards))


@needs_curl
def test_an_unreadable_remote_manifest_is_one_clear_error(served: str, tiny_shards: Path) -> None:
    with pytest.raises(ShardSpecError, match=r"manifest.json: cannot read the manifest: `curl`"):
        resolve_shards(f"{served}-missing/")
    with pytest.raises(
        ShardSpecError, match="`cat /no/such/manifest.json 2>/dev/null` exited with status 1"
    ):
        resolve_shards("pipe:cat /no/such/manifest.json 2>/dev/null")
    with pytest.raises(ShardSpecError, match="lists no 'test' shards"):
        resolve_shards(f"pipe:cat {tiny_shards}/manifest.json", split="test")


def test_verify_and_inspect_say_they_read_local_sets_only(served: str) -> None:
    from typer.testing import CliRunner

    from xpt.toolkit.cli import app

    for command in ("verify", "inspect"):
        result = CliRunner().invoke(app, [command, f"{served}/"])
        assert result.exit_code == 1
        assert f"xpt {command} reads local shard sets only" in " ".join(result.output.split())
