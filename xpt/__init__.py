"""xpt: cross-modal self-supervised 3D learning (CrossPoint) from meshes to benchmarks."""

__version__ = "0.1.0"
