"""Named datasets of an h5 file, as the published point-cloud releases store them
(ModelNet40's and ShapeNetPart's ``ply_data_*.h5``, ScanObjectNN's ``*.h5``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


class H5Error(ValueError):
    """Why an h5 file cannot be read; the reader that called adds the path."""


def read_datasets(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """``keys`` of the h5 file at ``path``, as stored; an :class:`H5Error` names a missing
    dataset (and what the file holds) or a file that is not readable HDF5."""
    import h5py

    arrays: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as handle:
            for key in keys:
                item = handle.get(key)
                if not isinstance(item, h5py.Dataset):
                    found = ", ".join(sorted(handle)) or "nothing"
                    raise H5Error(f"no '{key}' dataset (the file holds: {found})")
                arrays[key] = item[()]
    except OSError as error:
        raise H5Error(f"not a readable HDF5 file (another format or truncated): {error}") from None
    return arrays
