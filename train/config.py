"""The ``xpt pretrain`` configuration: one typed dataclass with the paper's defaults.

Values come from, in increasing priority: these defaults, a TOML file (``--config``, flat
keys named as the fields), then the options given on the command line. The resolved
configuration is saved as ``RUN_DIR/config.json`` and inside every checkpoint.
"""

from __future__ import annotations

import json
import os
import types
import typing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from xpt.toolkit.fsio import atomic_write_json
from xpt.toolkit.shards.schema import SPLITS as SHARD_SPLITS

CONFIG_FILE = "config.json"

BACKBONES = ("dgcnn", "pointnet", "dgcnn_seg")
EDGECONVS = ("fast", "plain")  # xpt.train.models.edgeconv.EDGECONV_IMPLS
IMAGE_ENCODERS = ("resnet50", "resnet18")
LOSSES = ("both", "imid", "cmid")
AMP_MODES = ("auto", "bf16", "fp16", "off")
DEVICES = ("auto", "cpu", "cuda")
LR_SCHEDULES = ("epoch", "step", "release")
PROBE_SPLITS = ("val", "test")
PROBE_PROTOCOLS = ("xpt", "crosspoint")  # xpt.benchmarks.protocols.PROTOCOLS
SHUFFLES = ("auto", "full", "buffer")

# ``--replay-release``: the published code's behaviour where xpt's defaults differ
# (docs/REPRODUCE.md, "Differences"). Applied over the defaults, under --config and options.
RELEASE_PRESET: dict[str, Any] = {
    "splits": "train,val",  # every object of the set (the release reads all of ShapeNet)
    "shuffle": "full",  # the whole dataset reshuffled every epoch
    "lr_schedule": "release",  # the scheduler stepped before each epoch (off by one)
    "probe_split": "test",  # best checkpoint chosen on the test split (with --probe)
    "probe_protocol": "crosspoint",  # by SVC(C=0.1) on raw features, stored BN statistics
    "amp": "off",  # float32
    "global_negatives": False,  # one GPU's batch as negatives
    "sync_bn": False,
}
PRESETS = {"release": RELEASE_PRESET}

# Fields that fix the shapes of the saved models: a resumed run must keep them.
MODEL_FIELDS = ("backbone", "image_encoder", "k", "emb_dims", "proj_dim")


@dataclass(frozen=True)
class PretrainConfig:
    """CrossPoint pretraining settings (Afham et al., CVPR 2022, and its release).

    ``lr_schedule``: cosine annealing from ``lr`` to 0 over ``epochs`` (T_max = epochs).
    "epoch" (the default, the paper's intent) trains epoch e (0-based) at the cosine value
    of e, so the first epoch at ``lr``; "step" anneals per optimiser step; "release" replays
    ``train_crosspoint.py``, which steps the scheduler before every epoch, so epoch e trains
    at the value of e + 1 and the last epoch (all of a 1-epoch run) at lr 0.
    ``amp``: "off" (the default) trains in float32, as the paper; "auto" is bf16 where the
    GPU supports it, else fp16 with a GradScaler (the speed option); AMP is CUDA-only.
    ``splits``: the shard splits pretraining reads, comma-separated ("train,val").
    ``shuffle``: "full" draws a fresh permutation of every sample each epoch (the published
    code's reshuffle; local shards only), "buffer" shuffles the shard order and a
    ``shuffle_buffer``-sample buffer (streams, remote shards), "auto" (the default) is "full"
    where every shard is a local file, else "buffer".
    ``samples_per_epoch`` overrides the manifest's count. ``skip_missing_shards`` trains
    without the local shards a manifest lists that are not there (else that is an error).
    ``edgeconv``: DGCNN's EdgeConv
    formulation, "fast" (default) or "plain" (the reference's); the same function and
    parameters, equal to float32 rounding.
    ``probe`` names an evaluation dataset (``xpt benchmark --dataset``) for the per-epoch
    linear probe (``xpt.benchmarks.probe``) every ``probe_every`` epochs; ``probe_split``
    "val" holds out part of its train split, "test" replays the release's selection on test;
    ``probe_protocol`` "xpt" (BatchNorm re-estimated, standardised features, C by CV on the
    fit split) or "crosspoint" (the release's probe: raw features, C=0.1).
    ``global_negatives`` and ``sync_bn`` matter only with several processes (torchrun):
    NT-Xent over the embeddings of every rank's batch (else each rank's own batch, as on
    one GPU), and BatchNorm statistics over every rank's batch (CUDA only).
    ``preset``: "release" when the run started from :data:`RELEASE_PRESET`
    (``--replay-release``), recorded so every report can say so.
    ``channels_last`` stores the image encoder's weights and inputs NHWC (faster
    convolutions on tensor-core GPUs; same state dict). ``compile`` wraps both encoders in
    ``torch.compile`` (needs a C++ compiler on CPU, Triton on CUDA; checkpoints keep the
    plain module names).
    """

    backbone: str = "dgcnn"
    image_encoder: str = "resnet50"
    epochs: int = 100
    batch_size: int = 20
    lr: float = 1e-3
    weight_decay: float = 1e-6
    lr_schedule: str = "epoch"
    points: int = 2048
    k: int = 15
    edgeconv: str = "fast"
    emb_dims: int = 1024
    proj_dim: int = 256
    image_size: int = 224
    loss: str = "both"
    temperature: float = 0.1
    amp: str = "off"
    device: str = "auto"
    workers: int = 4
    seed: int = 0
    splits: str = "train"
    shuffle: str = "auto"
    shuffle_buffer: int = 1000
    samples_per_epoch: int | None = None
    skip_missing_shards: bool = False
    max_steps: int | None = None
    checkpoint_every_steps: int = 500
    checkpoint_every_epochs: int = 10
    log_every_steps: int = 50
    probe: str | None = None
    probe_data: str | None = None
    probe_variant: str | None = None
    probe_per_category: int | None = None
    probe_every: int = 1
    probe_split: str = "val"
    probe_points: int = 1024
    probe_protocol: str = "xpt"
    global_negatives: bool = False
    sync_bn: bool = False
    tensorboard: bool = False
    channels_last: bool = False
    compile: bool = False
    preset: str | None = None

    def __post_init__(self) -> None:
        choices = {
            "backbone": BACKBONES,
            "edgeconv": EDGECONVS,
            "image_encoder": IMAGE_ENCODERS,
            "loss": LOSSES,
            "amp": AMP_MODES,
            "device": DEVICES,
            "lr_schedule": LR_SCHEDULES,
            "probe_split": PROBE_SPLITS,
            "probe_protocol": PROBE_PROTOCOLS,
            "shuffle": SHUFFLES,
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}"
                )
        positive = (
            "epochs",
            "batch_size",
            "points",
            "k",
            "emb_dims",
            "proj_dim",
            "image_size",
            "shuffle_buffer",
            "checkpoint_every_steps",
            "checkpoint_every_epochs",
            "log_every_steps",
            "probe_every",
            "probe_points",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:  # BatchNorm in training and NT-Xent's negatives need two
            raise ValueError(
                f"--batch-size (batch_size) {self.batch_size} is too small: BatchNorm and "
                "the contrastive loss need at least 2 objects per batch"
            )
        for name in ("samples_per_epoch", "max_steps", "probe_per_category"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or unset, got {getattr(self, name)}")
        names = self.split_names
        if not names or len(set(names)) != len(names) or not set(names) <= set(SHARD_SPLITS):
            raise ValueError(
                f"splits must be distinct names among {', '.join(SHARD_SPLITS)}, separated "
                f"by commas, got {self.splits!r}"
            )
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if not self.lr > 0 or self.weight_decay < 0 or not self.temperature > 0:
            raise ValueError(
                f"need lr > 0, weight_decay >= 0, temperature > 0; got {self.lr}, "
                f"{self.weight_decay}, {self.temperature}"
            )
        if self.backbone in ("dgcnn", "dgcnn_seg") and self.k > self.points:
            raise ValueError(
                f"k={self.k} neighbours need at least as many points, got {self.points}"
            )

    @property
    def split_names(self) -> tuple[str, ...]:
        """``splits`` as a tuple of names ("train,val" -> ("train", "val"))."""
        return tuple(name.strip() for name in self.splits.split(",") if name.strip())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, where: str = "config") -> PretrainConfig:
        """Build from plain values (JSON / TOML), type-checked; unknown keys are an error."""
        return cls().updated(values, where=where)

    def updated(self, values: dict[str, Any], *, where: str = "config") -> PretrainConfig:
        """A copy with ``values`` applied; unknown keys or wrong types raise ValueError."""
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys: {', '.join(known)}"
            )
        checked = {name: _check_type(name, value, where) for name, value in values.items()}
        try:
            return replace(self, **checked)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None


_HINTS = typing.get_type_hints(PretrainConfig)


def _check_type(name: str, value: Any, where: str) -> Any:
    """``value`` converted to the field's type (int -> float is allowed), or ValueError."""
    hint = _HINTS[name]
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    if isinstance(value, bool):
        ok = bool in allowed
    elif isinstance(value, int) and float in allowed:
        return float(value)
    else:
        ok = any(t is not type(None) and isinstance(value, t) for t in allowed)
    if not ok:
        expected = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
        raise ValueError(f"{where}: {name} must be {expected}, got {value!r}")
    return value


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """The flat key/value table of a TOML config file (ValueError naming the file)."""
    path = Path(path)
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, installed as tomli
        import tomli as tomllib
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read config: {exc}") from None
    nested = sorted(k for k, v in values.items() if isinstance(v, dict))
    if nested:
        raise ValueError(f"{path}: tables are not supported, use flat keys ({', '.join(nested)})")
    return values


def resolve_config(
    base: PretrainConfig | None = None,
    file: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    preset: str | None = None,
) -> PretrainConfig:
    """``base`` (default: the paper's settings), then the ``preset`` (:data:`PRESETS`), then
    ``file`` (TOML), then ``overrides``.

    ``overrides`` entries whose value is None are ignored, so unset CLI options do not
    replace what the file says.
    """
    config = base or PretrainConfig()
    if preset is not None:  # (an unknown preset is refused by the config's own check)
        config = config.updated({**PRESETS.get(preset, {}), "preset": preset}, where="preset")
    if file is not None:
        config = config.updated(load_toml(file), where=str(file))
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    return config.updated(given, where="command line")


def save_config(config: PretrainConfig, run_dir: str | os.PathLike) -> Path:
    """Write ``RUN_DIR/config.json`` atomically."""
    return atomic_write_json(Path(run_dir) / CONFIG_FILE, config.to_dict())


def load_config(path: str | os.PathLike) -> PretrainConfig:
    """Read a ``config.json`` written by :func:`save_config` (or a run folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read config: {exc}") from None
    return PretrainConfig.from_dict(values, where=str(path))
