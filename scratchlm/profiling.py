"""What a call costs in memory and which operators it runs: the measurements behind lesson 07.

Peak extra memory: on CUDA the caching allocator keeps a high-water mark (`torch.cuda.max_memory_allocated`).
On CPU torch keeps no allocator statistics, but the profiler with `profile_memory=True` records every allocation
and free with its size and time; adding them up in time order and taking the maximum gives the peak of live bytes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

R = TypeVar("R")


def peak_extra_memory(fn: Callable[[], R], device: torch.device | str | None = None) -> tuple[R, int]:
    """Run `fn()` and return (its result, the peak bytes it allocated above what was live before the call).

    Tensors that exist before the call (the inputs) are not counted; the result, if kept alive, is. On CUDA
    this is `max_memory_allocated` minus the memory allocated at the start; elsewhere the peak is rebuilt from
    the CPU profiler's allocation events (the profiler slows the call down: time it separately).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = fn()
        torch.cuda.synchronize(device)
        return result, torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu":
        raise ValueError(f"peak memory can be measured on cpu and cuda, not {device.type}")
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr_fd():  # kineto logs a line to fd 2 on start and stop, which notebooks would show
        prof.start()
    try:
        result = fn()
    finally:
        with _quiet_stderr_fd():
            prof.stop()
    return result, peak_live_bytes(_cpu_memory_events(prof))


def operators_called(fn: Callable[[], object]) -> list[str]:
    """Names of the operators (e.g. `aten::mm`) that `fn()` ran on the CPU side, in the order they started."""
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU])
    with _quiet_stderr_fd():
        prof.start()
    try:
        fn()
    finally:
        with _quiet_stderr_fd():
            prof.stop()
    return [e.name for e in sorted(prof.events(), key=lambda e: e.time_range.start)]


def peak_live_bytes(events: list[tuple[int, int]]) -> int:
    """The maximum running total of `(time, bytes)` allocation (+) and free (-) events taken in time order."""
    live = peak = 0
    for _, nbytes in sorted(events, key=lambda e: e[0]):
        live += nbytes
        peak = max(peak, live)
    return peak


def _cpu_memory_events(prof) -> list[tuple[int, int]]:
    """(start time ns, signed bytes) of every CPU allocation and free the profiler saw."""
    # The raw kineto events keep one "[memory]" record per allocation; `prof.events()` merges those that
    # happen inside an operator into the operator's total, which hides peaks inside a call.
    return [
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]


@contextlib.contextmanager
def _quiet_stderr_fd() -> Iterator[None]:
    """Send what C++ code writes to file descriptor 2 to /dev/null for the duration (Python's own stderr too)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
