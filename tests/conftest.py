"""Fixtures shared by the test packages."""

from __future__ import annotations

import os

# One compute thread per test process, set before numpy / torch / scikit-learn load their
# thread pools (an exported value wins). `make test` runs one pytest worker per core, and
# more threads than free cores leave OpenMP and OpenBLAS threads spinning at barriers while
# a partner thread waits for a core: on a busy 2-core machine a 1 s benchmark test took 43 s
# with the default 2 threads, a t-SNE of 40 points 5 s instead of 0.1 s. The tests that
# need more threads set them (test_memory.py's subprocess).
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest


def family_cloud(family: str, rng: np.random.Generator, points: int) -> np.ndarray:
    """(points, 3) float32 of a simple shape family (sphere, box, ring, rod), centred,
    randomly scaled, max radius 1."""
    if family == "sphere":
        p = rng.normal(size=(points, 3))
        p /= np.linalg.norm(p, axis=1, keepdims=True)
    elif family == "box":
        p = rng.uniform(-1, 1, size=(points, 3)) * [0.6, 0.3, 0.5]
    elif family == "ring":
        t = rng.uniform(0, 2 * np.pi, points)
        p = np.stack([np.cos(t), 0.05 * rng.normal(size=points), np.sin(t)], axis=1)
    elif family == "rod":
        thin = 0.05 * rng.normal(size=(points, 2))
        p = np.stack([thin[:, 0], rng.uniform(-1, 1, points), thin[:, 1]], axis=1)
    else:
        raise ValueError(f"unknown family {family!r}")
    p = p * rng.uniform(0.7, 1.0) - p.mean(axis=0)
    return (p / np.linalg.norm(p, axis=1).max()).astype(np.float32)


@pytest.fixture(scope="session")
def shared_modelnet10() -> Path:
    """The real ModelNet10 point clouds beside the checkout (``../shared/data/modelnet10``,
    Open3D PCD files, +Z up); the test is skipped where they are absent. The package never
    reads them."""
    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "modelnet10"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not on this machine")
    return folder


@pytest.fixture(scope="session")
def write_modelnet_h5() -> Callable[..., Path]:
    """A writer of ``modelnet40_ply_hdf5_2048`` folders as its authors packed them (h5py
    directly, not xpt's writer): shuffled ``uint8`` (n, 1) labels, ``<split>_files.txt``
    listing ``data/modelnet40_ply_hdf5_2048/...`` paths, ``shape_names.txt``."""
    import h5py

    def write(
        folder: Path,
        classes: Sequence[str],
        per_class: dict[str, int],
        points: int = 64,
        seed: int = 0,
    ) -> Path:
        folder.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        for split, count in per_class.items():
            labels = np.repeat(np.arange(len(classes)), count)
            rng.shuffle(labels)
            data = np.stack([family_cloud(classes[label], rng, points) for label in labels])
            with h5py.File(folder / f"ply_data_{split}0.h5", "w") as handle:
                handle.create_dataset("data", data=data)
                handle.create_dataset("label", data=labels.astype(np.uint8).reshape(-1, 1))
            (folder / f"{split}_files.txt").write_text(
                f"data/modelnet40_ply_hdf5_2048/ply_data_{split}0.h5\n"
            )
        (folder / "shape_names.txt").write_text("".join(f"{name}\n" for name in classes))
        return folder

    return write


DGCNN_REFERENCE = Path(__file__).resolve().parent / "data" / "dgcnn_reference_fixture.pt"


@pytest.fixture(scope="session")
def dgcnn_reference() -> dict:
    """The release DGCNN's state dict (float32), test clouds and expected features."""
    import torch

    data = torch.load(DGCNN_REFERENCE, weights_only=True)
    data["state_dict"] = {
        k: v.float() if v.is_floating_point() else v for k, v in data["state_dict"].items()
    }
    return data


SNAKE_CASE = re.compile(r"[a-z][a-z0-9_]*")
# Keys that are data, not field names: category ids (manifest), C values (cv_accuracy).
DATA_KEYED = {"categories", "cv_accuracy"}
FEWSHOT_SETTING = re.compile(r"\d+w\d+s(_pct)?")  # "5w10s": a few-shot setting's name


def non_snake_keys(data: object, path: str = "") -> list[str]:
    """Every dict key in ``data`` (recursively) that is not snake_case, as ``path/key``;
    the keys of dicts under :data:`DATA_KEYED` and few-shot setting names are data."""
    found: list[str] = []
    if isinstance(data, dict):
        data_keyed = path.rsplit("/", 1)[-1] in DATA_KEYED
        for key, value in data.items():
            name = str(key)
            if not (data_keyed or SNAKE_CASE.fullmatch(name) or FEWSHOT_SETTING.fullmatch(name)):
                found.append(f"{path}/{name}")
            found += non_snake_keys(value, f"{path}/{name}")
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += non_snake_keys(value, f"{path}[{index}]")
    return found


@pytest.fixture
def assert_snake_case() -> Callable[[object], None]:
    """Fails with the offending paths when a JSON report has a key that is not snake_case."""

    def check(data: object) -> None:
        bad = non_snake_keys(data)
        assert not bad, f"keys not in snake_case: {bad}"

    return check


def _started_until(
    command: Sequence[str | Path], env: dict[str, str], ready: Callable[[], bool], what: str
) -> subprocess.Popen:
    """``command`` started in its own process group (so a signal can reach all of it, as a
    terminal's Ctrl-C does), returned once ``ready()`` holds; fails if the process ends
    first or ``what`` has not happened within 120 s."""
    process = subprocess.Popen(
        [str(part) for part in command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not ready():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{what} within 120 s"
        time.sleep(0.02)
    return process


@pytest.fixture(scope="session")
def started_until() -> Callable[..., subprocess.Popen]:
    """:func:`_started_until`: run a command until it is ready to be signalled."""
    return _started_until


def _write_cad_stl(path: Path, triangles: np.ndarray) -> Path:
    """A binary STL as CAD and slicer tools write it (not trimesh's writer): an 80-byte
    header, a uint32 triangle count, per facet its unit normal, three float32 corners and a
    zero uint16 attribute. ``triangles`` : (n, 3, 3) float, Z up as those tools keep it."""
    import struct

    triangles = np.asarray(triangles, dtype=np.float32)
    header = b"Binary STL written by a CAD exporter, units mm, Z up".ljust(80, b" ")
    facets = []
    for tri in triangles:
        normal = np.cross(tri[1] - tri[0], tri[2] - tri[0])
        normal = normal / np.linalg.norm(normal)
        facets.append(struct.pack("<12fH", *normal, *tri.ravel(), 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + struct.pack("<I", len(triangles)) + b"".join(facets))
    return path


@pytest.fixture(scope="session")
def write_cad_stl() -> Callable[[Path, np.ndarray], Path]:
    """:func:`_write_cad_stl`: a binary STL as CAD tools write it."""
    return _write_cad_stl


@pytest.fixture(scope="module")
def one_thread():
    """Run torch on one thread (for a whole test module, so that runs compared with each
    other use the same reductions): on a small shared CI machine more threads mostly wait."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The files that take longest (seconds of `pytest --durations` on 2 idle cores, serial), run
# first: `make test` hands whole files to its pytest-xdist workers (--dist loadfile, in this
# order with --no-loadscope-reorder), so no long file starts while the other workers are
# running out of work. Only the order of the files changes; a name missing here runs after.
LONGEST_FIRST = (
    "train/test_loop.py",  # 52 s
    "train/test_distributed.py",  # 45 s
    "train/test_pretrain_cli.py",  # 25 s
    "train/test_interrupt.py",  # 20 s
    "render/test_render_pool.py",  # 17 s
    "test_cli_faults.py",  # 17 s
    "test_reproduce_recipe.py",  # 15 s
    "toolkit/test_demo.py",  # 13 s
    "test_cli_faults_locks.py",  # 13 s
    "test_cli_faults_disk.py",  # 12 s
    "render/test_render_cli.py",  # 10 s
    "test_cli_faults_messages.py",  # 9 s
    "train/test_probe.py",  # 9 s
    "toolkit/test_memory.py",  # 9 s
    "toolkit/test_shards.py",  # 8 s
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    tests = Path(__file__).resolve().parent

    def file_rank(item: pytest.Item) -> int:
        path = Path(item.path).resolve()
        name = path.relative_to(tests).as_posix() if path.is_relative_to(tests) else ""
        return rank.get(name, len(rank))

    items.sort(key=file_rank)  # stable: each file's tests stay together and in their order
