"""Where a run trains and how fast: the device, mixed precision (AMP) and ``torch.compile``,
each checked before any work so an impossible option is one line, not a traceback mid-run."""

from __future__ import annotations

import os
import shutil

import torch
from torch import nn

from xpt.toolkit.console import err
from xpt.train.errors import TrainingError


def resolve_device(name: str) -> torch.device:
    """ "auto" -> CUDA when available, else CPU; "cuda" without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = float32). AMP is CUDA-only; "auto" prefers bf16."""
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def compile_problem(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot work on ``device`` here (None: it can): its CPU
    back-end builds C++ with the system compiler, its CUDA back-end needs Triton."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile (needs torch >= 2.0)"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "torch.compile on CUDA needs Triton (pip install triton)"
    compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
    if not any(shutil.which(c) for c in compilers if c):
        return "torch.compile on CPU needs a C++ compiler (apt-get install g++, or set CXX)"
    return None


def compile_model(model: nn.Module, device: torch.device) -> nn.Module:
    """``torch.compile(model)`` after :func:`compile_problem` found nothing missing; the
    bare ``model`` keeps the state-dict names (no ``_orig_mod.`` prefix in checkpoints)."""
    problem = compile_problem(device)
    if problem:
        raise TrainingError(f"--compile: {problem}; run without --compile")
    return torch.compile(model)


def check_options(amp: str, compiled: bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--amp``; refuses ``--compile`` (``compiled``) where it cannot
    work and notes that AMP is off away from a GPU."""
    amp_dtype = resolve_amp(amp, device)
    if compiled and (problem := compile_problem(device)):
        raise TrainingError(f"--compile: {problem}; run without --compile")
    if device.type != "cuda" and amp in ("bf16", "fp16"):
        err.print(f"[yellow]note[/yellow] AMP is CUDA-only; training in float32 on {device}")
    return amp_dtype
