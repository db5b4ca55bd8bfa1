"""Fixtures shared by the unit tests.

(The notebooks' smoke-mode time budget is enforced by the root `conftest.py`, not here.)
"""

from collections.abc import Callable, Iterator

import pytest
import torch

from scratchlm.model import GPT, GPTConfig
from scratchlm.training import TrainConfig


@pytest.fixture
def tiny_text() -> str:
    """A small deterministic corpus for tests that do not need Tiny Shakespeare."""
    lines = [f"To be, or not to be: line {i} of a tiny play.\n" for i in range(200)]
    return "".join(lines)


@pytest.fixture
def text_file(tmp_path, tiny_text) -> str:
    """`tiny_text` saved as a UTF-8 file; its path as a string, as `--data` and `TrainConfig.data` take it."""
    path = tmp_path / "tiny.txt"
    path.write_text(tiny_text, encoding="utf-8")
    return str(path)


@pytest.fixture
def tiny_train_config(text_file) -> Callable[..., TrainConfig]:
    """A factory of training configs for a one-layer, 16-wide GPT on `text_file` that trains in a second or two;
    keyword arguments replace fields by name (model and training alike, `TrainConfig.replace`).

    A test module with other defaults wraps it: `functools.partial(tiny_train_config, max_iters=12)`."""

    def make(**overrides) -> TrainConfig:
        base = dict(
            data=text_file, n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=30,
            learning_rate=1e-2, min_lr=1e-3, warmup_iters=3, eval_interval=10, eval_iters=2, progress=False,
        )  # fmt: skip
        return TrainConfig().replace(**{**base, **overrides})

    return make


@pytest.fixture
def cpp_compiler() -> None:
    """Skips a test that runs `torch.compile` on the CPU where Inductor finds no C++ compiler to build with (a
    fresh machine need not have one; CI does). The probe is the library's own, the one `compile_model` runs."""
    from scratchlm.errors import ConfigError
    from scratchlm.training.step import _check_cpp_compiler

    try:
        _check_cpp_compiler()
    except ConfigError as e:
        pytest.skip(str(e))


@pytest.fixture
def one_thread(monkeypatch) -> Iterator[None]:
    """Tiny models gain nothing from a second thread, and on a machine shared with other jobs they lose a lot.

    A module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("SCRATCHLM_THREADS", "1")  # what the CLI's configure_threads() will use
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_gpt_config() -> dict:
    """The sizes of a tiny GPT, as `GPTConfig` keyword arguments.

    A test module whose assertions need other sizes overrides this fixture (pytest's fixture overriding):

        @pytest.fixture
        def tiny_gpt_config(tiny_gpt_config):
            return {**tiny_gpt_config, "n_head": 4}
    """
    return dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)


@pytest.fixture
def make_tiny_gpt(tiny_gpt_config) -> Callable[..., GPT]:
    """`make_tiny_gpt(**overrides)`: a GPT of `tiny_gpt_config` with `overrides`, initialised from seed 0."""

    def make(**overrides) -> GPT:
        torch.manual_seed(0)
        return GPT(GPTConfig(**{**tiny_gpt_config, **overrides}))

    return make
