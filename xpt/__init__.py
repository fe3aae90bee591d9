"""xpt: cross-modal self-supervised 3D learning (CrossPoint) from meshes to benchmarks."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``xpt.load_encoder`` (imported on first use, so ``import xpt`` and the CLI stay light)."""
    if name == "load_encoder":
        from xpt.train.encoder import load_encoder

        return load_encoder
    raise AttributeError(f"module 'xpt' has no attribute {name!r}")
