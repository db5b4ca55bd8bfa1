import itertools
import json
import math
import os
import signal

import pytest
import torch

from scratchlm.errors import CheckpointError, ConfigError
from scratchlm.training import PRESETS, TrainConfig, lr_at, param_groups, preset, train


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(n_embd=100, n_head=3), "n_embd=100 is not divisible by n_head=3"),
        (dict(batch_size=0), "batch_size must be a positive integer, got 0"),
        (dict(max_iters=-1), "max_iters must be a non-negative integer, got -1"),
        (dict(learning_rate=0.0), "learning_rate must be positive"),
        (dict(min_lr=0.1, learning_rate=0.01), "min_lr must be in [0, learning_rate=0.01]"),
        (dict(dropout=1.5), "dropout must be in [0, 1)"),
        (dict(betas=(0.9,)), "betas must be two numbers in [0, 1)"),
        (dict(grad_clip=-1.0), "grad_clip must be >= 0"),
        (dict(weight_decay=float("nan")), "weight_decay must be a number"),
        (dict(dtype="float16"), "dtype must be one of auto, float32, bfloat16"),
        (dict(resume=True), "resume=True needs out_dir"),
        (dict(val_fraction=1.0), "val_fraction must be between 0 and 1"),
    ],
)
def test_config_validation_messages(overrides, message):
    with pytest.raises(ConfigError) as error:
        TrainConfig().replace(**overrides)
    assert message in str(error.value)


def test_presets():
    assert set(PRESETS) == {"smoke", "cpu", "cpu-modern", "gpu"}
    gpu = preset("gpu")
    model = gpu.model
    assert (model.n_layer, model.n_head, model.n_embd, model.block_size, gpu.batch_size) == (6, 6, 384, 256, 64)
    assert (model.dropout, gpu.max_iters, gpu.learning_rate, gpu.min_lr, gpu.warmup_iters) == (
        0.2,
        5000,
        1e-3,
        1e-4,
        100,
    )
    assert TrainConfig.preset("smoke", max_iters=3).max_iters == 3
    with pytest.raises(ConfigError, match="unknown preset 'tpu'; choose one of: smoke, cpu, gpu"):
        preset("tpu")
    with pytest.raises(ConfigError, match="unknown TrainConfig field"):
        preset("cpu", n_layers=3)
    with pytest.raises(ConfigError, match="not divisible"):
        preset("cpu", n_embd=130)


def test_lr_schedule_warmup_cosine_floor():
    config = TrainConfig(learning_rate=1.0, min_lr=0.1, warmup_iters=10, max_iters=110)
    lrs = [lr_at(step, config) for step in range(130)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(lrs[:10]))  # warmup rises
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:111]))  # cosine falls
    assert lrs[60] == pytest.approx(0.55)  # halfway through the decay: the mean of max and min
    assert lrs[110:] == [0.1] * 20


def test_weight_decay_only_on_matrices():
    from scratchlm.model import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    decay, no_decay = param_groups(model, 0.1)
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert sum(p.numel() for p in decay["params"] + no_decay["params"]) == model.num_parameters()


def test_smoke_run_reduces_loss_and_logs_metrics(tmp_path, tiny_train_config):
    out = tmp_path / "run"
    result = train(tiny_train_config(out_dir=str(out)))
    assert [m["step"] for m in result.metrics] == [0, 10, 20, 30]
    first, last = result.metrics[0], result.metrics[-1]
    assert first["val_loss"] == pytest.approx(math.log(result.tokenizer.vocab_size), abs=0.3)
    assert last["val_loss"] < first["val_loss"] - 0.5
    assert len(result.step_losses) == 30
    assert {"step", "train_loss", "val_loss", "lr", "tokens", "tokens_per_s", "elapsed_s"} <= set(last)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == result.metrics
    assert result.checkpoint_path == out / "ckpt.pt" and result.checkpoint_path.is_file()


def test_resume_is_exact_with_dropout(tmp_path, tiny_train_config):
    """N steps, a checkpoint, N more steps == 2N steps in one go (weights, every loss)."""
    common = dict(dropout=0.2, lr_decay_iters=12, eval_interval=4, grad_accum_steps=2)
    straight = train(tiny_train_config(max_iters=12, **common))

    out = str(tmp_path / "run")
    train(tiny_train_config(max_iters=6, out_dir=out, **common))
    torch.manual_seed(999)  # whatever happens between the two runs must not matter
    resumed = train(tiny_train_config(max_iters=12, out_dir=out, resume=True, **common))

    assert resumed.step_losses == straight.step_losses
    resumed_val = {m["step"]: m["val_loss"] for m in resumed.metrics}
    assert [m["step"] for m in resumed.metrics] == [0, 4, 6, 8, 12]  # 6: where the first run stopped
    assert all(resumed_val[m["step"]] == m["val_loss"] for m in straight.metrics)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_ctrl_c_saves_the_step_and_resumes_exactly(tmp_path, monkeypatch, tiny_train_config):
    """The first SIGINT finishes the step in progress, checkpoints it and stops; resuming then matches a run
    that was never interrupted."""
    from scratchlm import training
    from scratchlm.training import loop, step

    common = dict(dropout=0.2, lr_decay_iters=12, eval_interval=4)
    handler_before = signal.getsignal(signal.SIGINT)  # default, or ignored when run as a background job
    straight = train(tiny_train_config(max_iters=12, **common))

    real_get_batch, calls = loop.get_batch, []

    def interrupt_during_step_7(*args):
        calls.append(1)
        if len(calls) == 15:  # 4 batches per evaluation (steps 0 and 4), so the 15th is step 7's
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of a step: batch drawn, no update yet
        return real_get_batch(*args)

    monkeypatch.setattr(loop, "get_batch", interrupt_during_step_7)  # training batches
    monkeypatch.setattr(step, "get_batch", interrupt_during_step_7)  # evaluation batches
    out = str(tmp_path / "run")
    with pytest.raises(training.TrainingInterrupted, match="stopped at step 7, checkpoint saved"):
        train(tiny_train_config(max_iters=12, out_dir=out, **common))
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is handler_before  # the handler was put back

    resumed = train(tiny_train_config(max_iters=12, out_dir=out, resume=True, **common))
    assert resumed.step_losses == straight.step_losses
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_resume_checks_the_architecture(tmp_path, tiny_train_config):
    out = str(tmp_path / "run")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(tiny_train_config(out_dir=out, resume=True))
    train(tiny_train_config(max_iters=2, out_dir=out))
    with pytest.raises(ConfigError, match="n_embd=16 \\(now 32\\)"):
        train(tiny_train_config(max_iters=4, n_embd=32, out_dir=out, resume=True))


def test_grad_accumulation_matches_a_bigger_batch(tiny_train_config):
    """Two micro-batches of 4 give the same update as the same 8 sequences in one batch (no dropout)."""
    from scratchlm.training import loop

    a = train(tiny_train_config(max_iters=1, batch_size=4, grad_accum_steps=2, eval_iters=1))
    real_get_batch = loop.get_batch
    calls = []

    def paired_batches(data, block_size, batch_size, generator, device):
        # draw the same 8 windows the accumulating run drew, as one batch of 8
        x1, y1 = real_get_batch(data, block_size, 4, generator, device)
        x2, y2 = real_get_batch(data, block_size, 4, generator, device)
        calls.append(batch_size)
        return torch.cat([x1, x2]), torch.cat([y1, y2])

    loop.get_batch = paired_batches
    try:
        b = train(tiny_train_config(max_iters=1, batch_size=8, eval_iters=1))
    finally:
        loop.get_batch = real_get_batch
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=name)


def test_bfloat16_autocast_trains_and_saves_float32_weights(tmp_path, tiny_train_config):
    """dtype="bfloat16" forces autocast (on a CPU too): the loss still falls, and the weights stay float32."""
    from scratchlm.checkpoint import load

    result = train(tiny_train_config(max_iters=20, dtype="bfloat16", out_dir=str(tmp_path)))
    assert result.metrics[-1]["val_loss"] < result.metrics[0]["val_loss"]
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    assert load(tmp_path).model_state["transformer.wte.weight"].dtype == torch.float32


def test_too_little_data_is_a_config_error(tmp_path, tiny_train_config):
    path = tmp_path / "short.txt"
    path.write_text("just a few characters", encoding="utf-8")
    with pytest.raises(ConfigError, match="too few for block_size=16"):
        train(tiny_train_config(data=str(path)))


def test_saved_tokenizer_file_is_used(tmp_path, tiny_text, tiny_train_config):
    from scratchlm.tokenizers.char import CharTokenizer

    wide = CharTokenizer.from_text(tiny_text + "XYZ")
    wide.save(tmp_path / "tok.json")
    result = train(tiny_train_config(max_iters=1, tokenizer=str(tmp_path / "tok.json")))
    assert result.tokenizer.vocab_size == wide.vocab_size == result.model.config.vocab_size


def test_tinyshakespeare_through_the_registry():
    result = train(preset("smoke", max_iters=2, eval_iters=1, progress=False))
    assert result.tokenizer.vocab_size == 65


def test_bpe_tokenizer_file_is_detected_and_travels_in_the_checkpoint(tmp_path, tiny_text, tiny_train_config):
    from scratchlm import checkpoint
    from scratchlm.tokenizers import BPETokenizer

    BPETokenizer.train(tiny_text, 300, progress=False).save(tmp_path / "bpe.tok")
    out = tmp_path / "run"
    result = train(tiny_train_config(max_iters=1, tokenizer=str(tmp_path / "bpe.tok"), out_dir=str(out)))
    assert isinstance(result.tokenizer, BPETokenizer) and result.model.config.vocab_size == 300
    assert checkpoint.load(out).build_tokenizer().encode("To be") == result.tokenizer.encode("To be")


def _assert_same_steps(compiled, eager) -> None:
    """Two runs' losses at every step and final weights agree to float32 rounding."""
    torch.testing.assert_close(compiled.step_losses, eager.step_losses, rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(compiled.model.state_dict().items(), eager.model.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.usefixtures("cpp_compiler")
def test_compile_trains_the_same_steps_as_eager(monkeypatch, tiny_train_config):
    """compile=True (`compile_model`: on the CPU with Inductor's C++ wrapper) takes the same steps as eager, to
    float32 rounding: compiling changes how the step runs, not what it computes."""
    from scratchlm.training import compile_model

    options = []
    real_compile = torch.compile

    def recording_compile(model, **kwargs):
        options.append(kwargs.get("options"))
        return real_compile(model, **kwargs)

    monkeypatch.setattr(torch, "compile", recording_compile)
    assert compile_model(torch.nn.Linear(2, 2), torch.device("cuda")) is not None  # lazy: builds nothing here
    assert options == [None]
    config = tiny_train_config(n_layer=2, max_iters=4, eval_interval=4, eval_iters=1)
    eager = train(config)
    compiled = train(config.replace(compile=True))
    assert options[1:] == [{"cpp_wrapper": True}]
    _assert_same_steps(compiled, eager)


@pytest.mark.usefixtures("cpp_compiler")
def test_compile_trains_the_modern_recipe_the_same_as_eager(tiny_train_config):
    """The modern block (RMSNorm, SwiGLU, RoPE, QK-norm, grouped-query heads, untied) with Muon, compiled: inside
    `torch.compile` RoPE takes its real form (the eager CPU path multiplies complex numbers), and the steps are
    eager's to float32 rounding."""
    config = tiny_train_config(
        n_layer=2, n_kv_head=1, arch="llama", qk_norm=True, optimizer="muon", max_iters=3, eval_interval=3,
        eval_iters=1,
    )  # fmt: skip
    eager = train(config)
    compiled = train(config.replace(compile=True))
    _assert_same_steps(compiled, eager)


def test_compile_without_a_cpp_compiler_is_a_config_error_before_training(monkeypatch, tiny_train_config):
    """On the CPU Inductor compiles C++: with no compiler, compile=True stops with one line before the first step."""
    from torch._inductor import cpp_builder
    from torch._inductor.exc import InvalidCxxCompiler

    def no_compiler():
        raise InvalidCxxCompiler

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    message = r"compile=True on the CPU needs a working C\+\+ compiler .* or train without compiling"
    with pytest.raises(ConfigError, match=message):
        train(tiny_train_config(compile=True, max_iters=2))
