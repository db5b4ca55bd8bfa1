"""Where and how big: device choice, seeding, thread count and the smoke/CPU/GPU size switch.

Lessons call `pick(smoke=..., cpu=..., gpu=...)` for every size that should shrink in CI
(`SCRATCHLM_SMOKE=1`) and grow on a GPU, so one notebook serves a laptop, Colab and the test suite.
"""

from __future__ import annotations

import os
import random
from typing import Literal, TypeVar

import numpy as np
import torch

from scratchlm.errors import ConfigError

T = TypeVar("T")
Mode = Literal["smoke", "cpu", "gpu"]

SMOKE_ENV = "SCRATCHLM_SMOKE"
DEVICE_ENV = "SCRATCHLM_DEVICE"
THREADS_ENV = "SCRATCHLM_THREADS"


def get_device(preferred: str | None = None) -> torch.device:
    """Return the best available device: cuda > mps > cpu.

    `preferred` (or the environment variable SCRATCHLM_DEVICE) forces one; asking for a device that is
    not available is a `ConfigError` rather than a crash deep inside the first tensor op.
    """
    name = preferred or os.environ.get(DEVICE_ENV) or None
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {name!r}; expected one of auto, cpu, cuda, mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but CUDA is not available on this machine")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was requested but MPS is not available on this machine")
    return torch.device(name)


def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices) and return a CPU generator seeded the same way.

    Passing the returned generator explicitly to samplers keeps a result independent of how many random
    numbers other code consumed in between.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def is_smoke() -> bool:
    """True when SCRATCHLM_SMOKE is set to a true value (CI runs every notebook this way)."""
    return os.environ.get(SMOKE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def run_mode(device: torch.device | None = None) -> Mode:
    """'smoke' under SCRATCHLM_SMOKE=1, else 'gpu' on CUDA/MPS, else 'cpu'."""
    if is_smoke():
        return "smoke"
    device = device or get_device()
    return "gpu" if device.type in ("cuda", "mps") else "cpu"  # the `train` command's preset follows this too


def pick(smoke: T, cpu: T, gpu: T | None = None, device: torch.device | None = None) -> T:
    """Choose a size for the current mode; `gpu` defaults to the CPU value."""
    mode = run_mode(device)
    if mode == "smoke":
        return smoke
    if mode == "gpu" and gpu is not None:
        return gpu
    return cpu


def default_threads(cores: int) -> int:
    """The thread count `configure_threads` uses by default on `cores` CPUs: one less, at least 1, at most 8."""
    return max(1, min(cores - 1, 8))


def configure_threads(max_threads: int | None = None) -> int:
    """Use at most `max_threads` intra-op threads (default: `default_threads`, one less than the CPUs).

    Why not every CPU: PyTorch's OpenMP threads meet at a barrier after each parallel operation, hundreds of times
    per training step of a small model, and a thread that arrives first spins there. With every core in use, a
    second process on one core makes each barrier wait for a thread the kernel has descheduled. Measured on 2
    vCPUs (AMD EPYC; `train` on the reference CPU recipe; `bench/train_throughput.py`, bench/README.md): idle,
    2 threads gave 21,600-22,600 tokens/s and 1 thread 14,800-16,600; with a busy process on one core, 2 threads
    gave 3,200-4,900 and 1 thread 13,200-13,300. Leaving a core free costs an idle 2-core machine about 30% and
    spares a shared one a 2.7-4.1x collapse; the default does not depend on the load of the moment, so a run resumed
    later uses the same thread count and continues exactly. OMP_WAIT_POLICY=PASSIVE (waiting threads sleep) also
    prevents the collapse but made 2 threads slower than 1 even on an idle machine (15,100 vs 16,000 tokens/s).

    SCRATCHLM_THREADS=N overrides the default (not an explicit `max_threads`); either may use every CPU, as on a
    2-core machine known to be idle.
    """
    cores = os.cpu_count() or 1
    if max_threads is None and (env := os.environ.get(THREADS_ENV, "").strip()):
        if not env.isdigit() or int(env) < 1:
            raise ConfigError(f"{THREADS_ENV} must be a positive integer, got {env!r}")
        max_threads = int(env)
    n = max(1, min(max_threads or default_threads(cores), cores))
    torch.set_num_threads(n)
    return n
