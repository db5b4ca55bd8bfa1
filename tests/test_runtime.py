import random

import pytest
import torch

from scratchlm import runtime
from scratchlm.errors import ConfigError


def test_default_device_on_a_cpu_machine(monkeypatch):
    monkeypatch.delenv(runtime.DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.get_device() == torch.device("cpu")


def test_cuda_is_preferred_over_mps(monkeypatch):
    monkeypatch.delenv(runtime.DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert runtime.get_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.get_device().type == "mps"


def test_unavailable_or_unknown_device_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        runtime.get_device("cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        runtime.get_device("tpu")


def test_set_seed_makes_every_rng_repeatable():
    g = runtime.set_seed(123)
    a = (random.random(), torch.rand(3), torch.rand(3, generator=g))
    g = runtime.set_seed(123)
    b = (random.random(), torch.rand(3), torch.rand(3, generator=g))
    assert a[0] == b[0] and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])


@pytest.mark.parametrize("value, smoke", [("1", True), ("true", True), ("0", False), ("", False)])
def test_smoke_switch(monkeypatch, value, smoke):
    monkeypatch.setenv(runtime.SMOKE_ENV, value)
    assert runtime.is_smoke() is smoke


def test_pick_follows_the_mode(monkeypatch):
    monkeypatch.setenv(runtime.SMOKE_ENV, "1")
    assert runtime.pick(smoke=1, cpu=2, gpu=3) == 1
    monkeypatch.setenv(runtime.SMOKE_ENV, "0")
    assert runtime.pick(smoke=1, cpu=2, gpu=3, device=torch.device("cpu")) == 2
    assert runtime.pick(smoke=1, cpu=2, gpu=3, device=torch.device("cuda")) == 3
    assert runtime.pick(smoke=1, cpu=2, device=torch.device("cuda")) == 2


def test_configure_threads_caps_at_the_core_count():
    before = torch.get_num_threads()
    try:
        assert 1 <= runtime.configure_threads(1000) <= (runtime.os.cpu_count() or 1)
    finally:
        torch.set_num_threads(before)


def test_threads_from_the_environment(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(runtime.THREADS_ENV, "1")
        assert runtime.configure_threads() == 1 == torch.get_num_threads()
        monkeypatch.setenv(runtime.THREADS_ENV, "zero")
        with pytest.raises(ConfigError, match="SCRATCHLM_THREADS"):
            runtime.configure_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("cores, threads", [(1, 1), (2, 1), (4, 3), (8, 7), (64, 8)])
def test_default_threads_leave_one_core_to_the_rest_of_the_machine(monkeypatch, cores, threads):
    """With every core in use, one other busy process made training 2.7-4.1x slower on 2 vCPUs (configure_threads)."""
    before = torch.get_num_threads()
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: cores)
    try:
        assert runtime.default_threads(cores) == threads
        assert runtime.configure_threads() == threads
        assert runtime.configure_threads(cores) == cores  # asking for every core still gets them
    finally:
        torch.set_num_threads(before)
