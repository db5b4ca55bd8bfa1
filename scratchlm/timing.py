"""Wall-clock timing that is honest on every device: the one timer the lessons and benchmarks share.

A GPU runs kernels asynchronously: `model(x)` returns as soon as the work is queued, so reading the clock
right after measures the queueing, not the work. `synchronize(device)` waits for the device to finish, and
`seconds_per_call` brackets every timed call with it. The first calls of anything pay one-off costs (memory
allocation, kernel selection, lazy initialisation), hence the warm-up calls that are run but not timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait until the work queued on `device` is done (a no-op on CPU, where every call is synchronous)."""
    kind = torch.device(device).type if device is not None else "cpu"
    if kind == "cuda":
        torch.cuda.synchronize()
    elif kind == "mps":
        torch.mps.synchronize()


def seconds_per_call(
    fn: Callable[[], object], repeats: int = 5, warmup: int = 1, device: torch.device | str | None = None
) -> list[float]:
    """Seconds taken by each of `repeats` calls of `fn`, after `warmup` untimed calls, synchronising `device`.

    Return every measurement rather than one summary: the minimum is the usual estimate of what the work
    costs (noise only ever adds time), the spread says how noisy the machine was.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times
